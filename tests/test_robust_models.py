"""Issue 17, the model, cache, convert and train cases: each bad input is a one-line error naming the file and
field (or the cause), or the right result; never a traceback, a hang or a silently wrong answer."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch
import yaml

from sevila import cli
from sevila.config import SeViLAConfig
from sevila.convert import convert_original_checkpoint
from sevila.features import (
    DEFAULT_CACHE_LIMIT,
    FeatureCache,
    default_cache_limit,
    encode_video,
    parse_cache_limit,
)
from sevila.loading import load_model
from sevila.model.weights import CheckpointError, save_pretrained
from sevila.train import train
from sevila.train.config import load_config
from sevila.train.loop import TrainingError
from sevila.video import VideoError
from sevila_toy.pattern_videos import write_video
from tests.support.tiny import OPTIONS, QUESTION, tiny_model, write_tiny_blip2
from tests.support.train import (  # noqa: F401 (one_thread is an autouse fixture)
    make_videos,
    one_thread,
    save_tiny_model,
    tiny_run,
    train_world,
    write_splits,
)
from tests.test_convert_streaming import write_lavis_checkpoint


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "tiny"
    save_pretrained(tiny_model(seed=1), directory)
    return directory


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=40, fps=10)


def damaged_copy(model_dir, tmp_path, damage):
    directory = tmp_path / "model"
    shutil.copytree(model_dir, directory)
    damage(directory)
    return directory


def edit_config(change):
    def damage(directory):
        config = json.loads((directory / "config.json").read_text())
        change(config)
        (directory / "config.json").write_text(json.dumps(config))

    return damage


def truncate(name, keep):
    def damage(directory):
        data = (directory / name).read_bytes()
        (directory / name).write_bytes(data[: keep(len(data))])

    return damage


# ---------------------------------------------------------------------------------------------- model directories
MODEL_CASES = {
    "config is a list": (
        lambda d: (d / "config.json").write_text("[1, 2]"),
        r"model/config\.json: expected a JSON object of config fields, got an array$",
    ),
    "string where a number belongs": (
        edit_config(lambda c: c["vision"].update(hidden_size="64")),
        r"model/config\.json: config\.vision\.hidden_size: expected an integer, got a string \"64\"$",
    ),
    "string for a float": (
        edit_config(lambda c: c.update(vision_layernorm_eps="small")),
        r"config\.json: config\.vision_layernorm_eps: expected a number, got a string \"small\"$",
    ),
    "section not an object": (
        edit_config(lambda c: c.update(qformer=[1])),
        r"config\.json: config\.qformer: expected a JSON object, got an array$",
    ),
    "truncated config": (
        truncate("config.json", lambda n: n // 2),
        r"model/config\.json: not valid JSON \(",
    ),
    "truncated weights": (
        truncate("model.safetensors", lambda n: n // 2),
        r"model/model\.safetensors: not a readable safetensors file \(ValueError, .*: data offsets",
    ),
    "truncated weights header": (
        truncate("model.safetensors", lambda n: 100),
        r"model/model\.safetensors: not a readable safetensors file \(ValueError: header length \d+ exceeds",
    ),
    "no weights": (
        lambda d: (d / "model.safetensors").unlink(),
        r"model: no model\.safetensors, pytorch_model\.bin or shard index found$",
    ),
    "no config": (
        lambda d: (d / "config.json").unlink(),
        r"model: no config\.json; is this a model directory\?$",
    ),
    "damaged tokenizer": (
        lambda d: (d / "tokenizer" / "tokenizer.json").write_text("garbage"),
        r"tokenizer/tokenizer\.json: not a readable tokenizer file",
    ),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_a_damaged_model_directory_is_one_line_naming_file_and_field(case, model_dir, tmp_path):
    damage, message = MODEL_CASES[case]
    directory = damaged_copy(model_dir, tmp_path, damage)
    with pytest.raises(ValueError, match=message) as caught:
        load_model(directory)
    one_line(caught.value)


def test_a_missing_tokenizer_names_the_folder_and_the_fallback(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = damaged_copy(model_dir, tmp_path, lambda d: shutil.rmtree(d / "tokenizer"))
    with pytest.raises(CheckpointError, match=r"model: no tokenizer in tokenizer/ .*tokenizer_name ") as caught:
        load_model(directory)
    one_line(caught.value)


def test_a_bad_config_through_the_cli_exits_2_with_one_line(model_dir, video, tmp_path, capsys):
    directory = damaged_copy(model_dir, tmp_path, MODEL_CASES["string where a number belongs"][0])
    args = ["answer", str(video), "-q", QUESTION, "-o", OPTIONS[0], "-o", OPTIONS[1], "--model", str(directory)]
    assert cli.main(args + ["--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sevila answer: error: ") and "config.vision.hidden_size: expected an integer" in err
    assert "\n" not in err


def test_config_type_checks_accept_what_configs_hold():
    config = SeViLAConfig.preset("tiny")
    assert SeViLAConfig.from_dict(json.loads(config.to_json())) == config
    data = config.to_dict()
    data["vision_layernorm_eps"] = 1  # an integer is a number
    assert SeViLAConfig.from_dict(data).vision_layernorm_eps == 1
    data["language_model"]["tie_word_embeddings"] = 0
    with pytest.raises(ValueError, match=r"config\.language_model\.tie_word_embeddings: expected true or false"):
        SeViLAConfig.from_dict(data)


# ---------------------------------------------------------------------------------------------- the cache
@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_the_cache_never_hashes_a_device_fifo_or_directory(kind, tmp_path):
    if kind == "device":
        path = "/dev/zero"
    elif kind == "fifo":
        path = tmp_path / "pipe.mp4"
        os.mkfifo(path)
    else:
        path = tmp_path / "folder.mp4"
        path.mkdir()
    expected = {"device": "a device", "fifo": r"a FIFO \(named pipe\)", "directory": "a directory"}[kind]
    with pytest.raises(VideoError, match=rf"{path}: {expected}, not a video file$") as caught:  # no hang
        encode_video(tiny_model(), path, 4, cache=FeatureCache(tmp_path / "cache"))
    one_line(caught.value)


def test_a_damaged_entry_is_a_miss_with_a_warning_and_is_overwritten(video, tmp_path, caplog):
    model = tiny_model(seed=1)
    cache = FeatureCache(tmp_path / "cache")
    first = encode_video(model, video, 4, cache=cache)
    entry = cache.entries()[0]
    data = bytearray(entry.read_bytes())
    data[-16:] = b"\xff" * 16  # tensor bytes (NaN in float32), header intact: safetensors reads it fine
    entry.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="sevila.features"):
        again = encode_video(model, video, 4, cache=cache)
    assert cache.misses == 2 and cache.hits == 0
    assert torch.equal(again.features.answerer, first.features.answerer)
    assert not again.features.answerer.isnan().any()
    [record] = [r for r in caplog.records if "damaged entry" in r.getMessage()]
    assert (
        record.getMessage()
        == f"feature cache: damaged entry {entry} (its tensors do not match their checksum); recomputing it"
    )
    encode_video(model, video, 4, cache=cache)  # overwritten: now a hit
    assert cache.hits == 1


def test_default_limit_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SEVILA_CACHE_LIMIT", raising=False)
    assert FeatureCache(tmp_path).max_bytes == DEFAULT_CACHE_LIMIT == 10 * 10**9
    monkeypatch.setenv("SEVILA_CACHE_LIMIT", "2GiB")
    assert default_cache_limit() == 2 * 2**30 and FeatureCache(tmp_path).max_bytes == 2 * 2**30
    monkeypatch.setenv("SEVILA_CACHE_LIMIT", "none")
    assert FeatureCache(tmp_path).max_bytes is None
    assert FeatureCache(tmp_path, max_bytes="500MB").max_bytes == 500 * 10**6
    assert FeatureCache(tmp_path, max_bytes="unlimited").max_bytes is None
    monkeypatch.setenv("SEVILA_CACHE_LIMIT", "3GB")
    assert FeatureCache(tmp_path, max_bytes=None).max_bytes == 3 * 10**9  # None: not given
    with pytest.raises(ValueError, match=r"^--cache-limit: not a size: '3 apples'"):
        FeatureCache(tmp_path, max_bytes="3 apples")
    assert parse_cache_limit("1.5 GB") == 1_500_000_000
    monkeypatch.setenv("SEVILA_CACHE_LIMIT", "lots")
    with pytest.raises(ValueError, match=r"^\$SEVILA_CACHE_LIMIT: not a size: 'lots' \(e\.g\. 10GB"):
        FeatureCache(tmp_path)


def test_cache_info_and_clear(video, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEVILA_CACHE_LIMIT", raising=False)
    cache = FeatureCache(tmp_path / "cache")
    encode_video(tiny_model(seed=1), video, 4, cache=cache)
    encode_video(tiny_model(seed=1), video, 5, cache=cache)
    size = cache.size_bytes()
    assert cli.main(["cache", "info", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"location: {tmp_path / 'cache'}",
        "entries:  2",
        f"size:     {size / 1000:.1f} KB",
        "limit:    10.0 GB (default; set $SEVILA_CACHE_LIMIT to change)",
    ]
    assert cli.main(["cache", "clear", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.strip() == f"removed 2 entries ({size / 1000:.1f} KB) from {tmp_path / 'cache'}"
    assert cache.entries() == [] and list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setenv("SEVILA_CACHE_LIMIT", "-")
    assert cli.main(["cache", "info", "--cache-dir", str(tmp_path / "cache")]) == 2
    assert capsys.readouterr().err.strip() == (
        "sevila cache: error: $SEVILA_CACHE_LIMIT: not a size: '-' (e.g. 10GB, 500MB, 2GiB, a number of bytes, or none)"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_cache_warns_once_and_answers(video, tmp_path, caplog):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        cache = FeatureCache(folder)
        with caplog.at_level(logging.WARNING, logger="sevila.features"):
            first = encode_video(tiny_model(seed=1), video, 4, cache=cache)
            encode_video(tiny_model(seed=1), video, 5, cache=cache)
    finally:
        folder.chmod(0o700)
    assert first.features.answerer.shape[1] == 4 and not cache.writable
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"feature cache: cannot write to {folder} (PermissionError: Permission denied); continuing without caching"
    ]


def test_a_cache_path_under_a_file_warns_once_and_answers(video, tmp_path, caplog):
    (tmp_path / "file").write_text("not a folder")
    cache = FeatureCache(tmp_path / "file" / "cache")
    with caplog.at_level(logging.WARNING, logger="sevila.features"):
        first = encode_video(tiny_model(seed=1), video, 4, cache=cache)
        encode_video(tiny_model(seed=1), video, 5, cache=cache)
    assert first.features.answerer.shape[1] == 4 and not cache.writable and cache.misses == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"feature cache: cannot write to {tmp_path / 'file' / 'cache'} (NotADirectoryError: Not a directory); "
        "continuing without caching"
    ]


def test_a_full_disk_while_writing_an_entry_warns_and_answers(video, tmp_path, caplog, monkeypatch):
    import safetensors.torch

    def full(tensors, path, metadata=None):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    cache = FeatureCache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="sevila.features"):
        result = encode_video(tiny_model(seed=1), video, 4, cache=cache)
    assert result.features.answerer.shape[1] == 4 and cache.entries() == []
    assert [r.getMessage() for r in caplog.records] == [
        f"feature cache: cannot write to {tmp_path / 'cache'} (SafetensorError: Error while serializing: I/O error: "
        "No space left on device (os error 28)); continuing without caching"
    ]
    assert list((tmp_path / "cache").rglob("*.tmp")) == []  # no temporary left behind


# ---------------------------------------------------------------------------------------------- convert
def test_convert_warns_of_nan_weights_and_records_provenance(tmp_path, caplog):
    # A checkpoint in LAVIS naming (both branches and a T5 tensor), as the convert tests write it.
    original = write_lavis_checkpoint(tmp_path / "sevila.pth", seed=3)
    poisoned = {k: v.clone() for k, v in original.items()}
    key = "Qformer.bert.encoder.layer.0.attention.output.dense.weight"
    poisoned[key].view(-1)[:3] = float("nan")
    poisoned["t5_model.lm_head.weight"].view(-1)[0] = float("inf")
    torch.save({"model": poisoned}, tmp_path / "poisoned.pth")
    base = tmp_path / "blip2"
    write_tiny_blip2(base, SeViLAConfig.preset("tiny"))
    with caplog.at_level(logging.WARNING, logger="sevila.convert.lavis"):
        convert_original_checkpoint(tmp_path / "poisoned.pth", tmp_path / "out", base=base)
    warnings = sorted(r.getMessage() for r in caplog.records)
    assert warnings == sorted(
        [
            f"{tmp_path / 'poisoned.pth'}: answerer.qformer.encoder.layer.0.attention.output.dense.weight "
            "holds 3 NaN or infinite values",
            f"{tmp_path / 'poisoned.pth'}: language_model.lm_head.weight holds 1 NaN or infinite values",
        ]
    )
    record = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert record["producer"].startswith("sevila ") and record["command"] == "convert" and record["date"]
    assert record["sources"][0]["checkpoint"] == str((tmp_path / "poisoned.pth").resolve())
    assert record["sources"][1]["base"] == str(base) and record["nonfinite_tensors"] == {
        "answerer.qformer.encoder.layer.0.attention.output.dense.weight": 3,
        "language_model.lm_head.weight": 1,
    }
    assert load_model(tmp_path / "out") is not None  # provenance.json beside the weights loads fine


# ---------------------------------------------------------------------------------------------- train
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return train_world(tmp_path_factory.mktemp("train"), moments=False)


def test_every_batch_skipped_fails_and_writes_no_best(world, tmp_path, capsys):
    config = tiny_run(
        "finetune-answerer",
        world["model"],
        tmp_path / "wrong-folder",
        world["qa"],
        tmp_path / "run",
        epochs=1,
        data__val_video_root=str(world["videos"]),
    )
    with pytest.raises(TrainingError) as caught:
        train(config)
    message = one_line(caught.value)
    assert message.startswith("every training batch of epoch 1 was skipped (2 batches): no video of ")
    assert f"could be read from {tmp_path / 'wrong-folder'}, first: {tmp_path / 'wrong-folder'}/v" in message
    assert message.endswith(".mp4: file not found; check data.video_root and data.video_path")
    assert not (tmp_path / "run" / "best").exists() and not (tmp_path / "run" / "summary.json").exists()
    # Through the CLI: exit 2 and the same line.
    path = tmp_path / "run.yaml"
    data = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    data["output_dir"] = str(tmp_path / "run2")
    path.write_text(yaml.safe_dump(data))
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sevila train: error: every training batch of epoch 1 was skipped")


def test_the_run_folder_keeps_its_config_and_provenance_and_demo_trains(world, tmp_path):
    config = tiny_run("finetune-answerer", "demo", world["videos"], world["qa"], tmp_path / "run", epochs=1)
    result = train(config)
    assert result.best_dir is not None
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.to_dict() == config.to_dict()
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["command"] == "train" and record["model"] == "demo" and record["sevila_version"]
    assert record["model_directory"].endswith("assets/demo/model")
    training = json.loads((result.best_dir / "training.json").read_text())
    assert training["started_from"] == "demo" and training["sevila_version"] == record["sevila_version"]


def test_no_progress_bar_frames_in_a_log_file(world, tmp_path, capsys, caplog):
    config = tiny_run("finetune-answerer", world["model"], world["videos"], world["qa"], tmp_path / "run", epochs=1)
    with caplog.at_level(logging.INFO, logger="sevila.train.loop"):
        train(config)  # pytest's captured stderr is not a terminal
    assert "\r" not in capsys.readouterr().err
    assert any(r.getMessage().startswith("epoch 1 step 1/2 (global 1): loss ") for r in caplog.records)
