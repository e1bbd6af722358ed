"""Loading and saving: our format, transformers BLIP-2 directories and hub ids, original LAVIS .pth files."""

import pytest
import torch

from sevila import cli, prompts
from sevila.config import SeViLAConfig
from sevila.convert import convert_lavis_state_dict, from_blip2, load_lavis_checkpoint
from sevila.loading import load_model
from sevila.model.weights import CheckpointError, from_pretrained
from tests.support.tiny import OPTIONS, QUESTION, random_frames, tiny_model, write_tiny_blip2


def predict(model, frames):
    qa = [prompts.qa_prompt(QUESTION, OPTIONS)] * frames.shape[0]
    loc = [prompts.loc_prompt(QUESTION, OPTIONS)] * frames.shape[0]
    with torch.no_grad():
        return model.predict(frames, qa, 5, loc, num_keyframes=2)


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model(seed=3)
    model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer"} <= files
    assert not any(name.endswith(".tmp") for name in files)
    loaded = from_pretrained(tmp_path / "m")
    frames = random_frames(1, 6, model.config)
    a, b = predict(model, frames), predict(loaded, frames)
    torch.testing.assert_close(a.option_scores, b.option_scores, atol=0, rtol=0)
    assert a.keyframes.tolist() == b.keyframes.tolist()
    lm = loaded.language_model
    assert lm.encoder.embed_tokens.weight is lm.shared.weight and lm.lm_head.weight is not lm.shared.weight


def test_a_tied_language_model_round_trips_tied(tmp_path):
    config = tiny_model().config
    config.language_model.tie_word_embeddings = True
    model = tiny_model(seed=4, config=config)
    assert model.language_model.lm_head.weight is model.language_model.shared.weight
    with torch.no_grad():  # make the shared table distinctive, so a head loaded from elsewhere would differ
        model.language_model.shared.weight.mul_(3.0)
    model.save_pretrained(tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    lm = loaded.language_model
    assert lm.lm_head.weight is lm.shared.weight
    torch.testing.assert_close(lm.shared.weight, model.language_model.shared.weight, atol=0, rtol=0)
    frames = random_frames(1, 6, model.config)
    torch.testing.assert_close(predict(model, frames).option_scores, predict(loaded, frames).option_scores)


def test_loading_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found: nowhere"):
        from_pretrained("nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path / "empty")
    model = tiny_model()
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        from_pretrained(tmp_path / "m")
    (tmp_path / "bad.pth").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="bad.pth: not a readable PyTorch checkpoint"):
        load_lavis_checkpoint(model, tmp_path / "bad.pth")
    torch.save({"model": {"foo.bar": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: none of its 1 tensors is a SeViLA/BLIP-2 weight"):
        load_lavis_checkpoint(model, tmp_path / "other.pth")


def test_partial_lavis_checkpoint_with_report_and_shape_errors(tmp_path):
    model = tiny_model()
    width = model.config.vision.hidden_size
    q = model.config.qformer
    state = {
        "ln_vision_loc.weight": torch.full((width,), 2.0),
        "ln_vision_loc.bias": torch.full((width,), 0.5),
        "query_tokens_loc": torch.ones(1, q.num_query_tokens, q.hidden_size),
        "Qformer_loc.bert.encoder.layer.0.crossattention.self.key.weight": torch.ones(q.hidden_size, width),
        "Qformer_loc.bert.embeddings.position_ids": torch.arange(8)[None],
        "Qformer_loc.cls.predictions.bias": torch.zeros(3),
        "something.else": torch.zeros(1),
    }
    torch.save({"model": state, "epoch": 3}, tmp_path / "loc.pth")
    before = model.answerer.layernorm.weight.clone()
    report = load_lavis_checkpoint(model, tmp_path / "loc.pth")
    assert sorted(report.loaded) == sorted(
        [
            "localizer.layernorm.weight",
            "localizer.layernorm.bias",
            "localizer.query_tokens",
            "localizer.qformer.encoder.layer.0.crossattention.attention.key.weight",
        ]
    )
    assert report.unexpected == ["something.else"]
    assert len(report.ignored) == 2 and report.missing
    assert torch.equal(model.localizer.layernorm.weight, state["ln_vision_loc.weight"])
    assert torch.equal(model.answerer.layernorm.weight, before), "keys it does not cover keep their values"
    assert "4 tensors" in report.summary() and "missing" in report.summary()

    torch.save({"query_tokens": torch.zeros(1, 3, 7)}, tmp_path / "wrong.pth")
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch for answerer.query_tokens: checkpoint has \(1, 3, 7\), "
        r"model expects \(1, 16, 32\)",
    ):
        load_lavis_checkpoint(model, tmp_path / "wrong.pth")


def test_eva_vit_file_without_prefix_keeps_39_of_40_blocks():
    model = tiny_model()
    depth, width = model.config.vision.num_hidden_layers, model.config.vision.hidden_size
    state = {"cls_token": torch.ones(1, 1, width)}
    for block in range(depth + 1):  # EVA-CLIP has one block more than BLIP-2 uses
        state[f"blocks.{block}.attn.q_bias"] = torch.full((width,), 1.0 + block)
        state[f"blocks.{block}.attn.v_bias"] = torch.full((width,), -1.0)
    converted = convert_lavis_state_dict(state, depth)
    assert converted.ignored == [f"blocks.{depth}.attn.q_bias", f"blocks.{depth}.attn.v_bias"] or all(
        k.startswith(f"visual_encoder.blocks.{depth}.") for k in converted.ignored
    )
    bias = converted.tensors["vision.encoder.layers.0.self_attn.qkv.bias"]
    assert bias.tolist() == [1.0] * width + [0.0] * width + [-1.0] * width
    assert "vision.embeddings.class_embedding" in converted.tensors


@pytest.mark.parametrize("shards", [1, 2])
def test_blip2_directory_initialises_both_branches(tmp_path, shards):
    config = SeViLAConfig.preset("tiny")
    state = write_tiny_blip2(tmp_path / "blip2", config, shards=shards)
    model = from_blip2(tmp_path / "blip2", log=False)
    for branch in (model.answerer, model.localizer):
        assert torch.equal(branch.query_tokens, state["query_tokens"])
        assert torch.equal(branch.projection.weight, state["language_projection.weight"])
        assert torch.equal(branch.layernorm.weight, state["vision_model.post_layernorm.weight"])
        assert branch.layernorm.eps == 1e-5
        assert torch.equal(
            branch.qformer.encoder.layer[0].crossattention.attention.key.weight,
            state["qformer.encoder.layer.0.crossattention.attention.key.weight"],
        )
    assert torch.equal(model.language_model.lm_head.weight, state["language_model.lm_head.weight"])
    assert torch.equal(
        model.vision.encoder.layers[1].mlp.fc2.weight, state["vision_model.encoder.layers.1.mlp.fc2.weight"]
    )
    assert model.config.language_model.dense_act_fn == "gelu"
    assert model.text is not None


def test_load_model_takes_a_blip2_where_our_format_refers_to_it(tmp_path):
    config = SeViLAConfig.preset("tiny")
    write_tiny_blip2(tmp_path / "blip2", config)
    with pytest.raises(CheckpointError, match="a transformers BLIP-2, not a SeViLA model; load it with"):
        from_pretrained(tmp_path / "blip2")
    model, reference = load_model(tmp_path / "blip2"), from_blip2(tmp_path / "blip2", log=False)
    assert not model.training
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())


def test_hub_ids_resolve_through_the_hub_cache(tmp_path, monkeypatch):
    """The hub code path for real, served from a local cache (offline), as after a first download."""
    import huggingface_hub.constants as hub

    model = tiny_model(seed=5)
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--tester--tiny-sevila"
    model.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    loaded = from_pretrained("tester/tiny-sevila")
    frames = random_frames(1, 4, model.config)
    torch.testing.assert_close(predict(loaded, frames).option_scores, predict(model, frames).option_scores)
    with pytest.raises(CheckpointError, match="could not get tester/absent from the Hugging Face Hub"):
        from_pretrained("tester/absent")


def test_convert_command_with_a_blip2_base(tmp_path, capsys):
    config = SeViLAConfig.preset("tiny")
    blip2 = write_tiny_blip2(tmp_path / "blip2", config)
    width = config.vision.hidden_size
    torch.save(
        {"model": {"ln_vision_loc.weight": torch.full((width,), 3.0), "ln_vision_loc.bias": torch.zeros(width)}},
        tmp_path / "sevila.pth",
    )
    code = cli.main(["convert", str(tmp_path / "sevila.pth"), str(tmp_path / "out"), "--base", str(tmp_path / "blip2")])
    assert code == 0
    err = capsys.readouterr().err
    total = len(from_pretrained(tmp_path / "out").state_dict()) - 2  # T5's encoder/decoder embeddings are shared
    assert f"loaded {total} tensors (2 from {tmp_path / 'sevila.pth'}, {total - 2} from base " in err
    assert "0 missing" in err and err.count("loaded") == 1, "one report, counting the base's weights as loaded"
    model = from_pretrained(tmp_path / "out")
    assert torch.equal(model.localizer.layernorm.weight, torch.full((width,), 3.0))
    assert torch.equal(model.answerer.layernorm.weight, blip2["vision_model.post_layernorm.weight"])


def test_convert_command_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out"), "--config", "tiny"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    assert "either --base" in capsys.readouterr().err


@pytest.mark.parity
def test_convert_original_fixture_checkpoint_reproduces_its_outputs(parity, tmp_path):
    """weights.pth of the fixture (full LAVIS state dict) -> our format -> the recorded localizer scores."""
    parity.config.save(tmp_path / "config.json")
    code = cli.main(
        [
            "convert",
            str(parity.root / "weights.pth"),
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "config.json"),
            "--tokenizer",
            str(parity.root / "tokenizer"),
        ]
    )
    assert code == 0
    model = from_pretrained(tmp_path / "out")
    info = parity.summary["infer_loc"]
    with torch.no_grad():
        prediction = model.predict(
            parity.frames(info["n_frms"], info["batch"]),
            parity.qa_prompts,
            parity.num_options,
            parity.loc_prompts,
            num_keyframes=info["frame_num"],
        )
    torch.testing.assert_close(
        prediction.frame_scores, parity.outputs["infer_loc.loc_yes_logits"], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        prediction.option_scores, parity.outputs["infer_loc.answer_logits"], atol=1e-4, rtol=1e-4
    )
