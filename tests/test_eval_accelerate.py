"""`sevila eval` under `accelerate launch` and `torchrun` (two processes, gloo on CPU): each process answers its
share and rank 0 merges, to the rows one process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sevila import cli
from tests.test_robust_eval import assert_same_predictions, eval_args, world  # noqa: F401 (world: a fixture)

pytestmark = pytest.mark.slow


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


ACCELERATE = ["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
ACCELERATE += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
TORCHRUN = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.mark.parametrize("launcher", [ACCELERATE, TORCHRUN], ids=["accelerate", "torchrun"])
def test_two_processes_shard_eval_like_one_process(world, tmp_path, capsys, launcher):  # noqa: F811
    one = tmp_path / "one.jsonl"
    assert cli.main(eval_args(world, one)) == 0
    capsys.readouterr()

    two = tmp_path / "two.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launch = [sys.executable, "-m", *launcher]
    done = subprocess.run(
        [*launch, "-m", "sevila.cli", *eval_args(world, two)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_predictions(rows(two), rows(one))
    assert not list(tmp_path.glob("two.jsonl.rank*"))  # merged, shards removed
    header = json.loads((tmp_path / "two.jsonl.meta.json").read_text())
    assert header["world_size"] == 2
    assert json.loads((tmp_path / "two.jsonl.metrics.json").read_text())["provenance"]["predictions"] == str(two)
