"""The run config: every shipped config file validates; bad configs fail naming the key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from sevila.cli import main
from sevila.data.records import DATASETS
from sevila.train.config import STAGES, ConfigError, apply_overrides, config_from_dict, load_config
from sevila.train.logs import RunLog

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*/*.yaml"))


def minimal() -> dict:
    return {
        "stage": "finetune-answerer",
        "model": "some/model",
        "output_dir": "runs/x",
        "epochs": 1,
        "batch_size": 2,
        "eval_batch_size": 2,
        "data": {"train": "t.jsonl", "val": "v.jsonl", "video_root": "videos", "train_frames": 8, "eval_frames": 8},
        "optim": {"lr": 1e-4},
    }


def test_every_dataset_and_stage_has_a_config():
    found = {(p.parent.name, p.stem) for p in CONFIGS}
    qa = {"nextqa", "star", "how2qa", "tvqa", "vlep"}
    expected = {(d, s) for d in qa for s in ("finetune-answerer", "refine-localizer")}
    expected.add(("qvhighlights", "pretrain-localizer"))
    assert found == expected


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_file_validates_and_says_how_to_launch(path):
    config = load_config(path)
    assert config.stage == path.stem and config.stage in STAGES
    assert path.parent.name in DATASETS
    assert path.parent.name in config.data.train and config.optim.weight_decay == 0.05
    header = path.read_text().split("\nstage:")[0]
    assert f"sevila train configs/{path.parent.name}/{path.stem}.yaml" in header
    assert "accelerate launch" in header and "torchrun --nproc_per_node" in header


def test_original_hyperparameters_of_the_nextqa_scripts():
    ft = load_config(CONFIG_DIR / "nextqa" / "finetune-answerer.yaml")
    assert (ft.data.train_frames, ft.num_keyframes, ft.batch_size, ft.grad_accum_steps) == (32, 4, 8, 2)
    assert (ft.optim.lr, ft.epochs, ft.optim.warmup_steps, ft.optim.warmup_unit) == (3e-5, 10, 1000, "iterations")
    sr = load_config(CONFIG_DIR / "nextqa" / "refine-localizer.yaml")
    assert (sr.data.train_frames, sr.data.eval_frames, sr.batch_size, sr.optim.lr, sr.epochs) == (4, 32, 16, 3e-5, 10)
    qvh = load_config(CONFIG_DIR / "qvhighlights" / "pretrain-localizer.yaml")
    assert (qvh.data.train_frames, qvh.data.eval_frames, qvh.batch_size, qvh.epochs) == (4, 75, 16, 80)
    assert qvh.init == "blip2 Salesforce/blip2-flan-t5-xl" and qvh.model is None


def test_overrides_are_dotted_and_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    config = load_config(
        path,
        [
            "epochs=3",
            "optim.lr=3e-5",
            "data.num_workers=0",
            "uniform_frames=true",
            "optim.max_grad_norm=1",
            "resume=runs/x/checkpoint",
        ],
    )
    assert (config.epochs, config.optim.lr, config.data.num_workers) == (3, 3e-5, 0)
    assert config.uniform_frames is True and config.optim.max_grad_norm == 1.0
    assert config.resume == "runs/x/checkpoint"
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"epochs": "many"}, "epochs", "an integer"),
        ({"optim": {"lr": "fast"}}, "optim.lr", "a number"),
        ({"optim": {"lr": 1e-4, "warmup_unit": "days"}}, "optim.warmup_unit", "'iterations'"),
        ({"batchsize": 4}, "batchsize", "did you mean 'batch_size'"),
        ({"data": {"train": "t", "val": "v", "video_root": "r", "train_frames": 8}}, "data.eval_frames", "missing"),
        ({"stage": "pretrain"}, "stage", "pretrain-localizer"),
        ({"init": "blip2 Salesforce/blip2-flan-t5-xl"}, "model", "exactly one"),
        ({"model": None, "init": "Salesforce/blip2-flan-t5-xl"}, "init", "blip2 <hub id"),
        ({"rounds": 2}, "rounds", "only refine-localizer"),
        ({"num_keyframes": 9}, "num_keyframes", "9 keyframes"),
        ({"batch_size": 0}, "batch_size", "positive"),
        ({"optim": {"lr": 1e-4, "beta2": 1.5}}, "optim.beta2", "[0, 1)"),
        ({"uniform_frames": "yes please"}, "uniform_frames", "true or false"),
        ({"cache_vision_states": True}, "cache_vision_states", "needs data.augment false"),
        ({"vision_cache_bytes": -1}, "vision_cache_bytes", ">= 0"),
    ],
)
def test_bad_config_names_the_key(change, key, words):
    data = minimal()
    data.update(change)
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key
    assert f"'{key}'" in str(info.value) and words in str(info.value)


def test_bad_override_syntax(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["epochs"])
    with pytest.raises(ConfigError, match="'epochs'.*not a section"):
        load_config(path, ["epochs.value=2"])


def test_cli_reports_a_bad_key_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    assert main(["train", str(path), "optim.lr=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("sevila train: error:") and "'optim.lr'" in err and str(path) in err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_missing_tensorboard_is_a_warning_saying_how_to_enable_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.warns(UserWarning, match=r"pip install 'sevila\[tensorboard\]'.*tensorboard=false"):
        log = RunLog(tmp_path, enabled=True, tensorboard=True)
    log.log({"step": 1, "epoch": 0, "loss": 0.5})  # metrics.jsonl still gets every number
    assert (tmp_path / "metrics.jsonl").read_text().count("loss") == 1
