"""Two processes (torchrun, gloo on CPU) train to the same weights as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sevila.train import train
from sevila.train.logs import read_metrics
from tests.support.train import (  # noqa: F401 (one_thread is an autouse fixture)
    make_videos,
    one_thread,
    run_config,
    save_tiny_model,
    tiny_run,
    write_splits,
)

pytestmark = pytest.mark.slow


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    videos = make_videos(tmp_path / "videos")
    model = save_tiny_model(tmp_path / "model", dropout=False)  # dropout masks differ per process by design
    splits = write_splits(tmp_path, "qa", train=8, val=3)
    # Global batch 4 per optimizer step either way: 2 processes x 1 x accumulation 2, or 1 x 2 x 2.
    common = dict(grad_accum_steps=2, epochs=2, checkpoint_every_steps=1, data__train_frames=3, num_keyframes=2)
    config = run_config("finetune-answerer", model, videos, splits, tmp_path / "ddp", batch_size=1, **common)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sevila.cli",
        "train",
        str(path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    single = train(tiny_run("finetune-answerer", model, videos, splits, tmp_path / "one", batch_size=2, **common))
    assert not single.stopped

    two = load_file(tmp_path / "ddp" / "checkpoint" / "trainable.safetensors")
    one = load_file(tmp_path / "one" / "checkpoint" / "trainable.safetensors")
    start = load_file(model / "model.safetensors")
    assert two.keys() == one.keys()
    # Attention key biases get an exactly zero gradient (softmax ignores a constant added to every logit of a
    # row), so their gradients are pure rounding noise, which AdamW's normalisation turns into lr-sized steps
    # that differ with the order of the all-reduce. Every other weight must agree to float32 rounding.
    noise = {k for k in one if k.endswith("key.bias")}
    diff = max(float((two[k] - one[k]).abs().max()) for k in one if k not in noise)
    noise_diff = max(float((two[k] - one[k]).abs().max()) for k in noise)
    moved = max(float((one[k] - start[k]).abs().max()) for k in one)
    print(
        f"\nmax |two processes - one process|: {diff:.3g} over trained weights ({noise_diff:.3g} on the "
        f"zero-gradient key biases); training moved weights by up to {moved:.3g}"
    )
    assert diff < 1e-6 and moved > 1e-3
    ddp_lines, one_lines = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    assert [m["step"] for m in ddp_lines] == [m["step"] for m in one_lines]
    for a, b in zip(ddp_lines, one_lines, strict=True):
        for key in ("loss", "val_qa_accuracy"):
            if key in b:
                assert torch.isclose(torch.tensor(a[key]), torch.tensor(b[key]), rtol=1e-5), (key, a, b)
