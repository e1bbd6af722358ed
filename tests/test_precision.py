"""Precision modes (`sevila.model.precision`): names and defaults, storage dtypes, the dtypes every stage computes in
(the `reference` mode is emulated on the CPU with CPU autocast), agreement between modes, and `--precision`."""

import json

import pytest
import torch
from torch import nn

from sevila import cli, prompts
from sevila.hub import DEMO_DIR
from sevila.model import Precision
from tests.support.tiny import OPTIONS, QUESTION, random_frames, tiny_model

needs_demo = pytest.mark.skipif(not (DEMO_DIR / "model" / "config.json").is_file(), reason="demo model not built")


def prompts_for(videos: int):
    qa = [prompts.qa_prompt(f"{QUESTION} {i}", OPTIONS) for i in range(videos)]
    loc = [prompts.loc_prompt(f"{QUESTION} {i}", OPTIONS) for i in range(videos)]
    return qa, loc


def run(model, frames, videos=2, k=3):
    qa, loc = prompts_for(videos)
    with torch.no_grad():
        return model.predict(frames, qa, 5, loc, num_keyframes=k)


# ---------------------------------------------------------------------------------------------- names
def test_modes_by_name_and_device_defaults():
    assert Precision.for_device("cpu") == Precision.named(None, "cpu") == Precision.named("fp32") == Precision()
    assert Precision.for_device("cuda") == Precision.for_device("cuda:1") == Precision.reference()
    reference = Precision.named("Reference", "cpu")  # a CPU emulates it with CPU autocast
    assert (reference.vision, reference.qformer, reference.language_model) == (
        torch.float16,
        torch.float32,
        torch.bfloat16,
    )
    assert reference.vision_fp32_norms and reference.promote_t5_inputs
    bf16 = Precision.named("bf16", "cpu")
    assert (bf16.vision, bf16.qformer, bf16.language_model) == (torch.bfloat16, torch.float32, torch.bfloat16)
    assert bf16 == Precision(vision=torch.bfloat16, language_model=torch.bfloat16)  # today's all-bf16 path
    assert [Precision.named(m).name for m in ("reference", "bf16", "fp32")] == ["reference", "bf16", "fp32"]
    assert Precision.parse("bf16", "fp32", "fp32").name == "custom"
    assert Precision.named(reference) is reference
    assert "\n" not in reference.describe() and "fp16 autocast" in reference.describe()


@pytest.mark.parametrize(
    "name, device, message",
    [
        ("fp16", "cpu", "unknown precision 'fp16'; choose one of reference, bf16, fp32"),
        ("mixed", "cuda", "unknown precision 'mixed'; choose one of reference, bf16, fp32"),
        ("reference", "mps", "precision 'reference' runs on cuda or cpu, not mps; use fp32 there"),
    ],
)
def test_bad_names_give_one_line_errors(name, device, message):
    with pytest.raises(ValueError) as err:
        Precision.named(name, device)
    assert str(err.value) == message


def test_inconsistent_custom_settings_are_refused():
    with pytest.raises(ValueError, match="T5 must not run under float16 autocast"):
        Precision(language_model_autocast=torch.float16)
    with pytest.raises(ValueError, match="needs vision_autocast"):
        Precision(vision=torch.float16, vision_fp32_norms=True)
    with pytest.raises(ValueError, match="not a SeViLA parameter name"):
        Precision().param_dtype("t5.shared.weight")


# ---------------------------------------------------------------------------------------------- storage
def test_reference_storage_is_the_originals():
    """Conv/Linear weights and biases of the ViT fp16, everything else of it fp32 (convert_weights_to_fp16);
    both branches fp32; T5 bf16, its embeddings still tied."""
    model = tiny_model().apply_precision(Precision.reference())
    for module_name, module in model.vision.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"vision.{module_name}.{name}" if module_name else f"vision.{name}"
            expected = torch.float16 if isinstance(module, (nn.Linear, nn.Conv2d)) else torch.float32
            assert param.dtype == expected == Precision.reference().param_dtype(full), full
    assert model.vision.embeddings.position_embedding.dtype == torch.float32
    assert {p.dtype for b in (model.answerer, model.localizer) for p in b.parameters()} == {torch.float32}
    assert {p.dtype for p in model.language_model.parameters()} == {torch.bfloat16}
    t5 = model.language_model
    assert t5.encoder.embed_tokens.weight is t5.shared.weight and t5.decoder.embed_tokens.weight is t5.shared.weight


def test_apply_precision_keeps_fp32_values_exact_and_is_idempotent():
    model = tiny_model()
    norm = model.vision.encoder.layers[0].layer_norm1.weight.detach().clone()
    fc1 = model.vision.encoder.layers[0].mlp.fc1.weight.detach().clone()
    model.apply_precision(Precision.reference()).apply_precision(Precision.reference())
    assert torch.equal(model.vision.encoder.layers[0].layer_norm1.weight, norm)  # never rounded through fp16
    assert torch.equal(model.vision.encoder.layers[0].mlp.fc1.weight, fc1.half())
    assert model.precision == Precision.reference()


# ---------------------------------------------------------------------------------------------- compute
class DtypeLog:
    """Output dtypes of modules, by a label, via forward hooks."""

    def __init__(self):
        self.seen: dict[str, set] = {}
        self.handles = []

    def watch(self, label: str, modules):
        for module in modules:
            self.handles.append(
                module.register_forward_hook(
                    lambda _m, _i, out, label=label: self.seen.setdefault(label, set()).add(
                        (out[0] if isinstance(out, tuple) else getattr(out, "last_hidden_state", out)).dtype
                    )
                )
            )

    def watch_input(self, label: str, module, key: str | int):
        """The dtype of an input of ``module``: a keyword argument by name, or a positional one by index."""
        self.handles.append(
            module.register_forward_pre_hook(
                lambda _m, args, kwargs: self.seen.setdefault(label, set()).add(
                    (args[key] if isinstance(key, int) else kwargs[key]).dtype
                ),
                with_kwargs=True,
            )
        )


def of_type(module, kind):
    return [m for m in module.modules() if isinstance(m, kind)]


def test_reference_runs_every_stage_in_the_originals_dtypes():
    """The original's precision on the localizer branch of generate (docs/fidelity.md, "Precision modes"): ViT
    matmuls fp16 with an fp32 residual stream and fp32 LayerNorms; localizer fp32; answerer under bf16 autocast
    (its LayerNorms fp32); T5 bf16 with fp32 inputs for the localizer and bf16 inputs for the answerer; logits
    bf16 values returned as float32."""
    model = tiny_model().apply_precision(Precision.reference())
    log = DtypeLog()
    log.watch("vit linear", of_type(model.vision, (nn.Linear, nn.Conv2d)))
    log.watch("vit layernorm", of_type(model.vision, nn.LayerNorm))
    log.watch("vit residual", model.vision.encoder.layers)
    log.watch("localizer linear", of_type(model.localizer, nn.Linear))
    log.watch("localizer layernorm", of_type(model.localizer, nn.LayerNorm))
    log.watch("answerer linear", of_type(model.answerer, nn.Linear))
    log.watch("answerer layernorm", of_type(model.answerer, nn.LayerNorm))
    log.watch("t5 linear", of_type(model.language_model, nn.Linear))
    # What T5's encoder is fed reaches its first LayerNorm unchanged, whichever way the encoder is run.
    log.watch_input("t5 encoder input", model.language_model.encoder.block[0].layer[0].layer_norm, 0)
    frames = random_frames(2, 6, model.config)
    with torch.no_grad():
        states = model.encode_vision(frames)
        features = model.encode_frames(frames)
        qa, loc = prompts_for(2)
        scores = model.frame_scores(features.localizer, loc)
        log.seen["localizer t5 input"] = set(log.seen.pop("t5 encoder input"))
        answer = model.predict(features, qa, 5, loc, num_keyframes=3)
    seen = log.seen
    assert seen["vit linear"] == {torch.float16}
    assert seen["vit layernorm"] == seen["vit residual"] == {torch.float32} and states.dtype == torch.float32
    assert seen["localizer linear"] == seen["localizer layernorm"] == {torch.float32}
    assert seen["answerer linear"] == {torch.bfloat16} and seen["answerer layernorm"] == {torch.float32}
    assert features.localizer.dtype == torch.float32 and features.answerer.dtype == torch.bfloat16
    assert seen["localizer t5 input"] == {torch.float32}  # bf16 embeddings + fp32 tokens, promoted
    assert seen["t5 encoder input"] == {torch.float32, torch.bfloat16}  # localizer fp32, answerer bf16
    assert seen["t5 linear"] == {torch.bfloat16}
    for logits in (scores, answer.frame_scores, answer.option_scores):
        assert logits.dtype == torch.float32 and torch.equal(logits, logits.bfloat16().float())  # bf16 values


def test_bf16_on_cpu_runs_vit_and_t5_in_bf16():
    model = tiny_model().apply_precision(Precision.named("bf16", "cpu"))
    log = DtypeLog()
    log.watch("vit", of_type(model.vision, (nn.Linear, nn.LayerNorm)))
    log.watch("branches", of_type(model.localizer, nn.Linear) + of_type(model.answerer, nn.Linear))
    log.watch("t5", of_type(model.language_model, nn.Linear))
    out = run(model, random_frames(2, 6, model.config))
    assert log.seen == {"vit": {torch.bfloat16}, "branches": {torch.float32}, "t5": {torch.bfloat16}}
    assert out.frame_scores.dtype == out.option_scores.dtype == torch.float32


def test_fp32_mode_is_the_unchanged_float32_path():
    frames = random_frames(2, 6, tiny_model().config)
    plain = run(tiny_model(), frames)  # a model no precision was ever applied to
    again = run(tiny_model().apply_precision(Precision.named("fp32")), frames)
    assert torch.equal(again.frame_scores, plain.frame_scores) and torch.equal(again.option_scores, plain.option_scores)
    assert torch.equal(again.keyframes, plain.keyframes)
    # A caller's own autocast (training's, through accelerate) is left alone: fp32 and bf16 add no context.
    for mode in ("fp32", "bf16"):
        model = tiny_model().apply_precision(Precision.named(mode))
        with torch.autocast("cpu", dtype=torch.bfloat16), model.autocast("language_model"):
            assert torch.is_autocast_enabled("cpu")


# Tolerances, in logits (measured over 8 seeds: frame scores ≤ 0.18, option scores ≤ 0.27). On random tiny
# models the frame scores of a video span only ~0.1-0.3 logits (the yes-logit hardly depends on the frame)
# while one bf16 step at |logit| 4-8 is 0.03, so decisions are compared only where fp32's margin exceeds
# twice the tolerance; the trained demo model below must agree on every decision.
FRAME_TOL, OPTION_TOL = 0.25, 0.4


@pytest.mark.parametrize("mode", ["bf16", "reference"])
def test_half_modes_stay_close_to_fp32_on_tiny_models(mode):
    decided = 0
    for seed in (0, 1):
        frames = random_frames(2, 8, tiny_model().config, seed=seed)
        full = run(tiny_model(seed), frames, k=3)
        half = run(tiny_model(seed).apply_precision(Precision.named(mode, "cpu")), frames, k=3)
        assert (half.frame_scores - full.frame_scores).abs().max() <= FRAME_TOL
        assert (half.option_scores - full.option_scores).abs().max() <= OPTION_TOL
        for video in range(2):
            ranked = full.frame_scores[video].sort(descending=True)
            threshold = (ranked.values[2] + ranked.values[3]) / 2
            sure_in = set(ranked.indices[ranked.values > threshold + 2 * FRAME_TOL].tolist())
            sure_out = set(ranked.indices[ranked.values < threshold - 2 * FRAME_TOL].tolist())
            chosen = set(half.keyframes[video].tolist())
            assert sure_in <= chosen and not sure_out & chosen
            options = full.option_scores[video].sort(descending=True).values
            if options[0] - options[1] > 2 * OPTION_TOL:
                assert half.prediction[video] == full.prediction[video]
                decided += 1
            decided += len(sure_in) + len(sure_out)
    assert decided >= 3  # the comparison decided something


@needs_demo
@pytest.mark.parametrize("mode", ["bf16", "reference"])
def test_half_modes_agree_with_fp32_on_the_trained_demo_model(mode):
    """Frame and option scores within 0.3 logits of fp32 (measured up to 0.19 and 0.20; one bf16 step at
    |logit| ~10 is 0.06); the same keyframes and answers wherever fp32's margin exceeds twice that (near-ties,
    such as frames 0.1 apart at the fourth place, may go either way)."""
    from sevila.inference import VideoQA

    example = json.loads((DEMO_DIR / "example.json").read_text())
    questions = [
        (example["question"], example["options"]),
        ("What colour was the shape?", ["red", "green", "blue"]),
        ("How many shapes?", ["one", "two", "three"]),
    ]
    answers = {}
    for name in ("fp32", mode):
        qa = VideoQA.load("demo", device="cpu", cache=False, precision=name)
        assert qa.model.precision == Precision.named(name)
        answers[name] = qa.predict_many(DEMO_DIR / example["video"], questions)
    tolerance, decided = 0.3, 0
    for full, half in zip(answers["fp32"], answers[mode]):
        assert max(abs(a - b) for a, b in zip(half.frame_scores, full.frame_scores)) <= tolerance
        assert max(abs(a - b) for a, b in zip(half.option_scores, full.option_scores)) <= tolerance
        ranked = sorted(full.frame_scores, reverse=True)
        boundary = (ranked[len(full.keyframes) - 1] + ranked[len(full.keyframes)]) / 2
        sure_in = {i for i, v in enumerate(full.frame_scores) if v > boundary + 2 * tolerance}
        sure_out = {i for i, v in enumerate(full.frame_scores) if v < boundary - 2 * tolerance}
        assert sure_in <= set(half.keyframes) and not sure_out & set(half.keyframes)
        options = sorted(full.option_scores, reverse=True)
        if options[0] - options[1] > 2 * tolerance:
            assert half.index == full.index
            decided += 1
        decided += len(sure_in) + len(sure_out)
    assert decided >= 3  # the comparison decided something


# ---------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "command",
    [
        ["answer", "v.mp4", "-q", "q", "-o", "a", "-o", "b"],
        ["eval", "--annotations", "a.jsonl", "--videos", "v", "--output", "o.jsonl"],
        ["demo"],
    ],
)
def test_precision_option_is_parsed_by_every_command(command):
    parser = cli.build_parser()
    assert parser.parse_args(command).precision is None  # the device's default
    assert parser.parse_args([*command, "--precision", "bf16"]).precision == "bf16"


def test_precision_option_reaches_the_loaded_model(monkeypatch, tmp_path, capsys):
    import sevila.inference as inference

    loaded = []
    real = inference.load_model

    def spy(name, device=None, precision=None):
        loaded.append(precision)
        return real(name, device=device, precision=precision)

    monkeypatch.setattr(inference, "load_model", spy)
    assert cli.main(["demo", "--precision", "reference", "--json"]) == 0
    assert loaded == [Precision.reference()]
    assert len(json.loads(capsys.readouterr().out)["keyframes"]) == 4

    annotations = tmp_path / "a.jsonl"
    annotations.write_text("")
    args = [
        "eval",
        "--model",
        "demo",
        "--annotations",
        str(annotations),
        "--videos",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
        "--no-progress",
        "--no-cache",
        "--precision",
        "bf16",
        "--device",
        "cpu",
    ]
    cli.main(args)
    capsys.readouterr()
    assert loaded[1] == Precision.named("bf16", "cpu")


@pytest.mark.parametrize(
    "command", [["demo"], ["answer", "missing.mp4", "--model", "demo", "-q", "q", "-o", "a", "-o", "b"]]
)
def test_bad_precision_names_are_one_line_errors(command, capsys):
    assert cli.main([*command, "--precision", "fp8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sevila {command[0]}: error: unknown precision 'fp8'; choose one of reference, bf16, fp32"


# ---------------------------------------------------------------------------------------------- benchmark
def test_gpu_precision_check_runs_on_cpu_in_its_reduced_form(tmp_path, capsys):
    from benchmarks import gpu_precision_check as script

    out = tmp_path / "rows.json"
    assert script.main(["--device", "cpu", "--model", "tiny", "--repeats", "1", "--json", str(out)]) == 0
    assert "compared with fp32" in capsys.readouterr().out
    rows = json.loads(out.read_text())["models"]["tiny"]
    assert [r["mode"] for r in rows] == ["fp32", "bf16"]
    assert rows[0]["frame_scores_max_abs_diff"] == 0 and rows[0]["answers_same"] == rows[0]["questions"] == 2
    assert 0 < rows[1]["frame_scores_max_abs_diff"] <= FRAME_TOL
