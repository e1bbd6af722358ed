"""Stage starts and best-epoch selection as the original's scripts: refine-localizer replaces the starting
model's localizer by BLIP-2's Q-Former (load_qformer_loc), STAR keeps the epoch with the best mean of its
four type accuracies."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from sevila.cli import main
from sevila.config import SeViLAConfig
from sevila.data import write_records
from sevila.data.records import QARecord
from sevila.model import SeViLA
from sevila.train import train
from sevila.train.config import ConfigError, config_from_dict, load_config
from sevila.train.logs import read_metrics
from sevila.train.start import copy_blip2_localizer
from tests.support.tiny import write_tiny_blip2
from tests.support.train import (  # noqa: F401 (one_thread is an autouse fixture)
    OPTIONS,
    QUESTION,
    make_videos,
    one_thread,
    run_config,
    save_tiny_model,
    tiny_run,
    write_splits,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# The four STAR types, Interaction four times as often as the others (as in STAR, types differ in size).
STAR_VAL = ["Interaction"] * 4 + ["Sequence", "Prediction", "Feasibility"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("start")
    blip2 = root / "blip2"
    return {
        "root": root,
        "videos": make_videos(root / "videos"),
        "model": save_tiny_model(root / "model"),
        "qa": write_splits(root, "qa", train=4, val=2),
        "blip2": blip2,
        "blip2_state": write_tiny_blip2(blip2, SeViLAConfig.preset("tiny"), shards=2, seed=1),
    }


def weights(model: SeViLA) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def blip2_localizer(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """The BLIP-2 tensor the original's load_qformer_loc puts in a localizer key: ln_vision (transformers'
    post_layernorm) -> ln_vision_loc, query_tokens -> query_tokens_loc, Qformer -> Qformer_loc, t5_proj
    (language_projection) -> t5_proj_loc; spelled out here rather than through the converter under test."""
    rest = key[len("localizer.") :]
    for ours, theirs in (
        ("layernorm.", "vision_model.post_layernorm."),
        ("projection.", "language_projection."),
        ("qformer.", "qformer."),
        ("query_tokens", "query_tokens"),
    ):
        if rest.startswith(ours):
            return state[theirs + rest[len(ours) :]]
    raise AssertionError(f"unexpected localizer key {key}")


def assert_localizer_is_blip2(model_weights, state, atol: float = 0.0) -> None:
    keys = [k for k in model_weights if k.startswith("localizer.")]
    assert len(keys) == 49  # layernorm (2), query tokens, projection (2), Q-Former (44) of the tiny model
    for key in keys:
        torch.testing.assert_close(model_weights[key], blip2_localizer(state, key), rtol=0, atol=atol, msg=key)


def test_refine_start_copies_blip2_qformer_into_the_localizer_only(world):
    model = SeViLA.from_pretrained(world["model"])
    before = weights(model)
    copied = copy_blip2_localizer(model, str(world["blip2"]))
    after = weights(model)
    assert sorted(copied) == sorted(k for k in after if k.startswith("localizer."))
    assert_localizer_is_blip2(after, world["blip2_state"])
    assert not torch.equal(before["localizer.query_tokens"], after["localizer.query_tokens"])
    for key, value in before.items():  # answerer, ViT and T5 untouched
        if not key.startswith("localizer."):
            assert torch.equal(after[key], value), key


def test_a_hub_blip2_is_fetched_without_its_vit_and_t5_shards(world, tmp_path, monkeypatch):
    """A hub id served from a local cache (offline): only the JSON files and the shard holding the Q-Former
    are asked for, as with the real 2-shard Salesforce/blip2-flan-t5-xl nothing but its Q-Former is used."""
    import huggingface_hub
    import huggingface_hub.constants as hub
    from safetensors.torch import save_file

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--tester--tiny-blip2"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    state = world["blip2_state"]
    shards = {
        "model-00001-of-00003.safetensors": lambda k: k.startswith("vision_model.") and "post_layernorm" not in k,
        "model-00002-of-00003.safetensors": lambda k: k.startswith("language_model."),
        "model-00003-of-00003.safetensors": lambda k: True,
    }
    weight_map, left = {}, dict(state)
    for name, belongs in shards.items():
        part = {k: v for k, v in left.items() if belongs(k)}
        save_file(part, snapshot / name)
        weight_map.update({k: name for k in part})
        left = {k: v for k, v in left.items() if k not in part}
    (snapshot / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (snapshot / "config.json").write_text((world["blip2"] / "config.json").read_text())
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    asked = []
    download = huggingface_hub.snapshot_download

    def recording_download(*args, **kwargs):
        asked.append(kwargs.get("allow_patterns"))
        return download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording_download)
    model = SeViLA.from_pretrained(world["model"])
    copy_blip2_localizer(model, "tester/tiny-blip2")
    assert asked == [["*.json"], ["model-00003-of-00003.safetensors"]]
    assert_localizer_is_blip2(weights(model), state)


def test_refine_run_trains_from_blip2_localizer_and_keeps_the_answerer(world, tmp_path):
    """End to end: a near-zero learning rate leaves best/ as the run's starting point."""
    run = tmp_path / "run"
    result = train(
        tiny_run(
            "refine-localizer",
            world["model"],
            world["videos"],
            world["qa"],
            run,
            epochs=1,
            rounds=2,
            localizer_init=f"blip2 {world['blip2']}",
            optim__lr=1e-30,
        )
    )
    start = weights(SeViLA.from_pretrained(world["model"]))
    for round_dir in ("round-1", "round-2"):
        best = weights(SeViLA.from_pretrained(run / round_dir / "best"))
        assert_localizer_is_blip2(best, world["blip2_state"], atol=1e-12)
        for key, value in start.items():
            if not key.startswith("localizer."):
                assert torch.equal(best[key], value), key
    info = [json.loads((run / r / "best" / "training.json").read_text()) for r in ("round-1", "round-2")]
    assert info[0]["localizer_from_blip2"] == str(world["blip2"])
    assert info[1]["localizer_from_blip2"] is None  # round 2 starts from round 1's refined localizer
    assert info[1]["started_from"] == str(run / "round-1" / "best")
    assert result.best_dir == run / "best"


def test_localizer_init_model_keeps_the_checkpoints_localizer(world, tmp_path):
    config = tiny_run(
        "refine-localizer",
        world["model"],
        world["videos"],
        world["qa"],
        tmp_path / "run",
        epochs=1,
        localizer_init="model",
        optim__lr=1e-30,
    )
    result = train(config)
    best = weights(SeViLA.from_pretrained(result.best_dir))
    start = weights(SeViLA.from_pretrained(world["model"]))
    for key, value in start.items():
        torch.testing.assert_close(best[key], value, rtol=0, atol=1e-12, msg=key)
    assert json.loads((result.best_dir / "training.json").read_text())["localizer_from_blip2"] is None


def test_shipped_configs_start_and_select_as_the_original_scripts():
    for path in sorted(CONFIG_DIR.glob("*/*.yaml")):
        config = load_config(path)
        refine = config.stage == "refine-localizer"
        assert config.localizer_from == ("Salesforce/blip2-flan-t5-xl" if refine else None), path
        star = path.parent.name == "star"
        expected = {"pretrain-localizer": "val_top1_frame_hit"}.get(
            config.stage, "val_star_mean_type_accuracy" if star else "val_qa_accuracy"
        )
        assert config.selection_metric == expected, path
    keep = load_config(CONFIG_DIR / "nextqa" / "refine-localizer.yaml", ["localizer_init=model"])
    assert keep.localizer_from is None
    plain = load_config(CONFIG_DIR / "star" / "finetune-answerer.yaml", ["select_by=val_qa_accuracy"])
    assert plain.selection_metric == "val_qa_accuracy"


def star_world(root: Path) -> tuple[Path, Path]:
    """QA train records and a STAR-typed validation split (qid prefix = type, as STAR's question ids)."""
    val = [
        QARecord(
            qid=f"{qtype}_T{i}",
            video="v0",
            dataset="star",
            question=QUESTION,
            options=OPTIONS[:4],
            answer=0,
            question_type=qtype,
        )
        for i, qtype in enumerate(STAR_VAL)
    ]
    write_records(root / "star-val.jsonl", val)
    return write_splits(root, "qa", train=4, val=2)[0], root / "star-val.jsonl"


@pytest.mark.parametrize("select_by, best_epoch", [("val_star_mean_type_accuracy", 1), ("val_qa_accuracy", 0)])
def test_star_keeps_the_epoch_with_the_best_type_mean(world, tmp_path, monkeypatch, select_by, best_epoch):
    """Epoch 0 answers the 4 Interaction questions (accuracy 4/7, type mean 1/4), epoch 1 the other three
    (3/7, 3/4): the type mean keeps epoch 1, overall accuracy epoch 0."""
    correct = {0: [t == "Interaction" for t in STAR_VAL], 1: [t != "Interaction" for t in STAR_VAL]}
    calls = []

    def scripted_predict(self, frames, qa_prompts, num_options, **kwargs):
        epoch = len(calls)  # one validation batch per epoch
        calls.append(len(qa_prompts))
        return SimpleNamespace(prediction=torch.tensor([0 if ok else 1 for ok in correct[epoch]]))

    monkeypatch.setattr(SeViLA, "predict", scripted_predict)
    splits = star_world(tmp_path)
    run = tmp_path / "run"
    result = train(
        tiny_run(
            "finetune-answerer",
            world["model"],
            world["videos"],
            splits,
            run,
            epochs=2,
            eval_batch_size=len(STAR_VAL),
            uniform_frames=True,
            select_by=select_by,
        )
    )
    assert calls == [len(STAR_VAL), len(STAR_VAL)]
    epochs = [m for m in read_metrics(run) if "val_qa_accuracy" in m]
    assert [m["val_qa_accuracy"] for m in epochs] == pytest.approx([4 / 7, 3 / 7])
    assert [m["val_star_mean_type_accuracy"] for m in epochs] == pytest.approx([0.25, 0.75])
    assert result.metric == select_by and result.rounds[0].best_epoch == best_epoch
    info = json.loads((run / "best" / "training.json").read_text())
    assert info["epoch"] == best_epoch and info["selected_by"] == select_by


def test_star_selection_refuses_a_validation_split_without_the_four_types(world, tmp_path, capsys):
    config = run_config(
        "finetune-answerer",
        world["model"],
        world["videos"],
        world["qa"],
        tmp_path / "run",
        select_by="val_star_mean_type_accuracy",
    )
    path = tmp_path / "star.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "'select_by'" in err and str(world["qa"][1]) in err
    assert "none is of type Interaction, Sequence, Prediction, Feasibility" in err
    assert not (tmp_path / "run" / "best").exists()


def test_a_localizer_init_that_is_no_blip2_fails_in_one_line(world, tmp_path, capsys):
    config = run_config(
        "refine-localizer",
        world["model"],
        world["videos"],
        world["qa"],
        tmp_path / "run",
        localizer_init=f"blip2 {world['model']}",
    )  # a SeViLA directory, not a BLIP-2
    path = tmp_path / "refine.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "'localizer_init'" in err and "not a transformers BLIP-2" in err


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"localizer_init": "blip-2 Salesforce/blip2-flan-t5-xl"}, "localizer_init", "expected 'model'"),
        ({"localizer_init": "blip2"}, "localizer_init", "'blip2 <hub id or directory>'"),
        ({"localizer_init": "blip2 /no/such/blip2"}, "localizer_init", "neither a directory nor"),
        (
            {"model": None, "init": "blip2 Salesforce/blip2-flan-t5-xl", "localizer_init": "blip2 Salesforce/b"},
            "localizer_init",
            "'init' already",
        ),
        ({"select_by": "val_top1_frame_hit"}, "select_by", "refine-localizer selects its best epoch by"),
        (
            {"stage": "pretrain-localizer", "select_by": "val_star_mean_type_accuracy"},
            "select_by",
            "pretrain-localizer selects its best epoch by val_top1_frame_hit",
        ),
        ({"select_by": "star"}, "select_by", "'val_star_mean_type_accuracy'"),
    ],
)
def test_bad_start_and_selection_options_name_the_key(tmp_path, change, key, words):
    data = {
        "stage": "refine-localizer",
        "model": "some/model",
        "output_dir": "runs/x",
        "epochs": 1,
        "batch_size": 2,
        "eval_batch_size": 2,
        "num_keyframes": 2,
        "data": {"train": "t", "val": "v", "video_root": "r", "train_frames": 4, "eval_frames": 4},
        "optim": {"lr": 1e-4},
    }
    data.update(change)
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key and f"'{key}'" in str(info.value) and words in str(info.value)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)
