"""`sevila convert` streams tensor by tensor into safetensors shards; loading allocates each part once, in its
target dtype; what `convert` reports and writes (permissions, tokenizer name) is true."""

import json
import os
import re
import stat

import pytest
import torch
from safetensors.torch import load_file

from sevila import cli
from sevila.config import SeViLAConfig
from sevila.convert import (
    convert_blip2_state_dict,
    convert_lavis_state_dict,
    convert_original_checkpoint,
    from_blip2,
    load_lavis_checkpoint,
)
from sevila.model import SeViLA, weights
from sevila.model.precision import Precision
from sevila.model.weights import CheckpointError, from_pretrained
from tests.support.tiny import tiny_model, write_tiny_blip2

ALIASES = ("language_model.encoder.embed_tokens.weight", "language_model.decoder.embed_tokens.weight")


def lavis_key(key: str) -> str:
    """Our branch key -> its LAVIS name (the inverse of `sevila.convert.lavis.LAVIS_RULES` for the two branches)."""
    branch, _, rest = key.partition(".")
    suffix = {"answerer": "", "localizer": "_loc"}[branch]
    for ours, theirs in (
        ("layernorm.", "ln_vision"),
        ("projection.", "t5_proj"),
        ("qformer.layernorm.", "Qformer{}.bert.embeddings.LayerNorm"),
    ):
        if rest.startswith(ours):
            return theirs.format(suffix) + ("" if "{}" in theirs else suffix) + "." + rest[len(ours) :]
    if rest == "query_tokens":
        return f"query_tokens{suffix}"
    layer = re.fullmatch(r"qformer\.encoder\.layer\.(\d+)\.(.*)", rest)
    tail = re.sub(r"^(attention|crossattention)\.attention\.", r"\1.self.", layer.group(2))
    return f"Qformer{suffix}.bert.encoder.layer.{layer.group(1)}.{tail}"


def write_lavis_checkpoint(path, seed: int = 7) -> dict[str, torch.Tensor]:
    """A sevila_pretrained.pth-like file (both branches) plus a ViT block's q/v biases, a T5 tensor, a buffer
    LAVIS keeps and a key SeViLA does not know."""
    model = tiny_model(seed=seed)
    state = {
        lavis_key(k): v.clone() for k, v in model.state_dict().items() if k.startswith(("answerer.", "localizer."))
    }
    width = model.config.vision.hidden_size
    state["visual_encoder.blocks.1.attn.q_bias"] = torch.randn(width)
    state["visual_encoder.blocks.1.attn.v_bias"] = torch.randn(width)
    state["t5_model.lm_head.weight"] = torch.randn_like(model.language_model.lm_head.weight)
    state["Qformer.bert.embeddings.position_ids"] = torch.arange(8)[None]
    state["something.else"] = torch.zeros(1)
    torch.save({"model": state, "epoch": 1}, path)
    return state


def expected_conversion(blip2: dict, lavis: dict, config: SeViLAConfig) -> dict[str, torch.Tensor]:
    """What converting did before it streamed: BLIP-2 loaded into a float32 model, the checkpoint over it."""
    tensors = dict(convert_blip2_state_dict(blip2).tensors)
    tensors.update(convert_lavis_state_dict(lavis, config.vision.num_hidden_layers).tensors)
    return {k: v.float() for k, v in tensors.items() if k not in ALIASES}


def read_output(directory) -> dict[str, torch.Tensor]:
    """The written weights, read with safetensors' own reader."""
    index = directory / "model.safetensors.index.json"
    if not index.is_file():
        return load_file(directory / "model.safetensors")
    tensors = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        tensors.update(load_file(directory / shard))
    return tensors


@pytest.fixture
def sources(tmp_path):
    config = SeViLAConfig.preset("tiny")
    blip2 = write_tiny_blip2(tmp_path / "blip2", config, shards=2)
    lavis = write_lavis_checkpoint(tmp_path / "sevila.pth")
    return config, blip2, lavis


def test_streamed_conversion_writes_the_same_tensors_into_shards(tmp_path, sources, monkeypatch):
    config, blip2, lavis = sources
    # No model is built: neither the one that loading materialises nor any module moved off the meta device.
    monkeypatch.setattr(weights, "empty_model", lambda *a, **k: pytest.fail("convert built a model"))
    monkeypatch.setattr(torch.nn.Module, "to_empty", lambda *a, **k: pytest.fail("convert materialised a module"))
    report = convert_original_checkpoint(
        tmp_path / "sevila.pth", tmp_path / "out", base=tmp_path / "blip2", max_shard_size=200_000
    )
    monkeypatch.undo()

    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / "out" / "model.safetensors").exists()
    largest = max(v.numel() * 4 for v in blip2.values())
    for shard in shards:
        assert (tmp_path / "out" / shard).stat().st_size <= max(200_000, largest) + 100_000  # + its header

    written = read_output(tmp_path / "out")
    expected = expected_conversion(blip2, lavis, config)
    assert sorted(written) == sorted(expected) == sorted(index["weight_map"])
    for key, value in expected.items():
        assert written[key].dtype == value.dtype and torch.equal(written[key], value), key
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in written.values())

    # ... which is what loading BLIP-2 and then the checkpoint into a float32 model gives, bit for bit.
    model = from_blip2(tmp_path / "blip2", precision=Precision(), log=False)
    load_lavis_checkpoint(model, tmp_path / "sevila.pth", log=False)
    reference = {k: v for k, v in model.state_dict().items() if k not in ALIASES}
    assert sorted(reference) == sorted(written)
    assert all(torch.equal(reference[k], written[k]) for k in reference)

    loaded = from_pretrained(tmp_path / "out", precision=Precision())
    assert all(torch.equal(v, written[k]) for k, v in loaded.state_dict().items() if k not in ALIASES)
    assert sorted(report.loaded) == sorted(written) and not report.missing
    assert report.unexpected == ["something.else"]


def test_convert_dtype_option_and_single_file_output(tmp_path, sources, capsys):
    config, blip2, lavis = sources
    code = cli.main(
        [
            "convert",
            str(tmp_path / "sevila.pth"),
            str(tmp_path / "out"),
            "--base",
            str(tmp_path / "blip2"),
            "--dtype",
            "bf16",
        ]
    )
    assert code == 0
    assert "model.safetensors" in capsys.readouterr().out
    assert not (tmp_path / "out" / "model.safetensors.index.json").exists()
    written = read_output(tmp_path / "out")
    for key, value in expected_conversion(blip2, lavis, config).items():
        assert written[key].dtype == torch.bfloat16 and torch.equal(written[key], value.to(torch.bfloat16)), key


def test_loading_allocates_each_part_once_in_its_target_dtype(tmp_path, sources, monkeypatch):
    config, blip2, lavis = sources
    convert_original_checkpoint(
        tmp_path / "sevila.pth", tmp_path / "out", base=tmp_path / "blip2", max_shard_size=300_000
    )
    precision = Precision(vision=torch.bfloat16, qformer=torch.float32, language_model=torch.bfloat16)
    # Before a weight is read, every parameter already has its storage dtype (no float32 model first).
    empty = weights.empty_model(config, None, "cpu", precision)
    assert {p.dtype for p in empty.vision.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in empty.localizer.parameters()} == {torch.float32}
    assert {p.dtype for p in empty.language_model.parameters()} == {torch.bfloat16}

    # The files are read tensor by tensor, never whole (safetensors' loaders would map or read a whole file).
    import safetensors
    import safetensors.torch

    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("safe_open maps a whole file"))
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("load_file reads a whole file"))
    model = from_pretrained(tmp_path / "out", precision=precision)
    monkeypatch.undo()
    lm = model.language_model
    assert lm.encoder.embed_tokens.weight is lm.shared.weight and lm.decoder.embed_tokens.weight is lm.shared.weight
    assert lm.lm_head.weight is not lm.shared.weight
    expected = expected_conversion(blip2, lavis, config)
    for key, value in model.state_dict().items():
        if key not in ALIASES:
            assert torch.equal(value, expected[key].to(value.dtype)), key
    assert lm.shared.weight.dtype == torch.bfloat16 and model.answerer.query_tokens.dtype == torch.float32


def test_save_pretrained_replaces_a_sharded_save_and_reads_back(tmp_path, sources):
    convert_original_checkpoint(
        tmp_path / "sevila.pth", tmp_path / "m", base=tmp_path / "blip2", max_shard_size=300_000
    )
    assert (tmp_path / "m" / "model.safetensors.index.json").is_file()
    model = tiny_model(seed=9)
    with torch.no_grad():
        model.vision.to(torch.bfloat16)  # mixed dtypes in one file: offsets stay aligned
    model.save_pretrained(tmp_path / "m")
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert "model.safetensors" in names and not any(n.startswith("model-") or n.endswith(".json.tmp") for n in names)
    assert "model.safetensors.index.json" not in names, "a stale index would shadow the new weights"
    official = load_file(tmp_path / "m" / "model.safetensors")
    for key, value in model.state_dict().items():
        if key not in ALIASES:
            assert official[key].dtype == value.dtype and torch.equal(official[key], value), key
    loaded = from_pretrained(tmp_path / "m", precision=Precision())
    assert torch.equal(
        loaded.vision.encoder.layers[0].mlp.fc1.weight, model.vision.encoder.layers[0].mlp.fc1.weight.float()
    )


def test_written_files_are_world_readable(tmp_path, sources):
    previous = os.umask(0o022)
    try:
        assert (
            cli.main(
                [
                    "convert",
                    str(tmp_path / "sevila.pth"),
                    str(tmp_path / "out"),
                    "--base",
                    str(tmp_path / "blip2"),
                    "--max-shard-size",
                    "300KB",
                ]
            )
            == 0
        )
        tiny_model().save_pretrained(tmp_path / "saved")
    finally:
        os.umask(previous)
    files = [p for d in ("out", "saved") for p in (tmp_path / d).rglob("*") if p.is_file()]
    assert any(p.name.startswith("model-00002") for p in files) and any(p.name == "model.safetensors" for p in files)
    modes = {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


def test_the_config_names_a_tokenizer_never_a_local_path(tmp_path, sources, monkeypatch):
    convert_original_checkpoint(tmp_path / "sevila.pth", tmp_path / "out", base=tmp_path / "blip2")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tokenizer_name"] == "google/flan-t5-xl"
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.json").is_file()
    assert from_blip2(tmp_path / "blip2", log=False).config.tokenizer_name == "google/flan-t5-xl"

    blip2_config = json.loads((tmp_path / "blip2" / "config.json").read_text())
    blip2_config["text_config"]["_name_or_path"] = "google/flan-t5-base"  # the name BLIP-2's T5 was made from
    (tmp_path / "blip2" / "config.json").write_text(json.dumps(blip2_config))
    convert_original_checkpoint(tmp_path / "sevila.pth", tmp_path / "out2", base=tmp_path / "blip2")
    assert json.loads((tmp_path / "out2" / "config.json").read_text())["tokenizer_name"] == "google/flan-t5-base"

    # A hub id base (served from a local hub cache, offline) is recorded as that hub id.
    import shutil

    import huggingface_hub.constants as hub

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--tester--tiny-blip2"
    shutil.copytree(tmp_path / "blip2", repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    convert_original_checkpoint(tmp_path / "sevila.pth", tmp_path / "out3", base="tester/tiny-blip2")
    assert json.loads((tmp_path / "out3" / "config.json").read_text())["tokenizer_name"] == "tester/tiny-blip2"


def test_damaged_shards_are_one_line_errors_naming_file_and_key(tmp_path, sources):
    convert_original_checkpoint(
        tmp_path / "sevila.pth", tmp_path / "out", base=tmp_path / "blip2", max_shard_size=300_000
    )
    index_path = tmp_path / "out" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    last = sorted(set(index["weight_map"].values()))[-1]
    data = (tmp_path / "out" / last).read_bytes()
    (tmp_path / "out" / last).write_bytes(data[:-10])
    with pytest.raises(
        CheckpointError, match=rf"{last}: not a readable safetensors file \(ValueError, [\w.]+: data offsets"
    ):
        from_pretrained(tmp_path / "out")
    (tmp_path / "out" / last).unlink()
    with pytest.raises(CheckpointError, match=rf"model.safetensors.index.json: lists shard {last}, which is not in"):
        from_pretrained(tmp_path / "out")
    index["weight_map"]["answerer.extra"] = index["weight_map"]["answerer.query_tokens"]
    index_path.write_text(json.dumps(index))
    (tmp_path / "out" / last).write_bytes(data)
    with pytest.raises(CheckpointError, match=r"index.json: answerer.extra is not in its shard model-\d+"):
        from_pretrained(tmp_path / "out")


def test_convert_without_base_streams_a_complete_checkpoint(tmp_path):
    """A full LAVIS state dict (ViT, both branches, T5) and a config: every weight from the checkpoint."""
    model = tiny_model(seed=11)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith(("answerer.", "localizer.")):
            state[lavis_key(key)] = value
        elif key.startswith("language_model.") and key not in ALIASES:
            state["t5_model." + key[len("language_model.") :]] = value
    vision = {k: v for k, v in model.state_dict().items() if k.startswith("vision.")}
    state["visual_encoder.cls_token"] = vision.pop("vision.embeddings.class_embedding")
    state["visual_encoder.pos_embed"] = vision.pop("vision.embeddings.position_embedding")
    for key, value in vision.items():
        rest = key[len("vision.") :]
        rest = rest.replace("embeddings.patch_embedding.", "patch_embed.proj.").replace("encoder.layers.", "blocks.")
        rest = rest.replace("layer_norm", "norm").replace("self_attn.projection.", "attn.proj.")
        rest = rest.replace("self_attn.qkv.", "attn.qkv.")
        if rest.endswith("attn.qkv.bias"):
            q, _, v = value.chunk(3)
            state[f"visual_encoder.{rest[: -len('qkv.bias')]}q_bias"] = q
            state[f"visual_encoder.{rest[: -len('qkv.bias')]}v_bias"] = v
            with torch.no_grad():
                model.state_dict()[key][model.config.vision.hidden_size : 2 * model.config.vision.hidden_size] = 0
        else:
            state[f"visual_encoder.{rest}"] = value
    torch.save({"model": state}, tmp_path / "full.pth")
    model.tokenizer.save_pretrained(str(tmp_path / "tok"))
    report = convert_original_checkpoint(
        tmp_path / "full.pth",
        tmp_path / "out",
        config=model.config,
        tokenizer=str(tmp_path / "tok"),
        max_shard_size=100_000,
    )
    assert not report.missing and not report.unexpected and not report.origins
    loaded = from_pretrained(tmp_path / "out", precision=Precision())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    del state["t5_model.lm_head.weight"]
    torch.save({"model": state}, tmp_path / "partial.pth")
    with pytest.raises(
        CheckpointError,
        match=r"partial.pth: the checkpoint lacks 1 weights of the model, e.g. "
        r"language_model.lm_head.weight",
    ):
        convert_original_checkpoint(
            tmp_path / "partial.pth", tmp_path / "out2", config=model.config, tokenizer=str(tmp_path / "tok")
        )


def test_a_tied_language_model_loads_tied_in_bf16(tmp_path):
    config = SeViLAConfig.preset("tiny")
    config.language_model.tie_word_embeddings = True
    model = tiny_model(seed=4, config=config)
    model.save_pretrained(tmp_path / "m")
    precision = Precision(vision=torch.bfloat16, qformer=torch.bfloat16, language_model=torch.bfloat16)
    loaded = from_pretrained(tmp_path / "m", precision=precision)
    lm = loaded.language_model
    assert lm.lm_head.weight is lm.shared.weight is lm.encoder.embed_tokens.weight
    assert lm.shared.weight.dtype == torch.bfloat16
    assert torch.equal(lm.shared.weight, model.language_model.shared.weight.to(torch.bfloat16))
    assert isinstance(loaded, SeViLA)
