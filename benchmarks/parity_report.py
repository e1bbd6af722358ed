"""Print the max abs difference between our outputs and every tensor recorded from the original.

Usage: python -m benchmarks.parity_report [FIXTURE_DIR]   (default: $SEVILA_PARITY_DIR or ../shared/parity)
The tests assert the tolerances; this script shows the measured margins.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sevila.model import scoring
from tests.support.parity import Fixture, lavis_to_ours
from tests.support.paths import parity_dir

rows: list[tuple[str, float]] = []


def diff(name: str, ours: torch.Tensor, fixture: Fixture) -> None:
    recorded = fixture.outputs[name]
    rows.append((name, (ours.detach().float().reshape(recorded.shape) - recorded.float()).abs().max().item()))


def inference(fx: Fixture) -> None:
    model = fx.model()
    with torch.no_grad():
        for prefix in ("infer_loc", "infer_uniform"):
            info = fx.summary[prefix]
            frames = fx.frames(info["n_frms"], info["batch"])
            vit = model.encode_vision(frames)
            diff(f"{prefix}.vit_out", vit, fx)
            diff(f"{prefix}.ln_vision_out", model.answerer.layernorm(vit), fx)
            features = model.encode_frames(frames)
            if prefix == "infer_loc":
                diff(f"{prefix}.ln_vision_loc_out", model.localizer.layernorm(vit), fx)
                diff(f"{prefix}.t5_proj_loc_out", features.localizer.flatten(0, 1), fx)
                embeds, mask = model.frame_level_inputs(features.localizer, fx.loc_prompts)
                diff(f"{prefix}.loc_encoder_inputs_embeds", embeds, fx)
                diff(f"{prefix}.loc_step0_logits", scoring.first_step_logits(model.language_model, embeds, mask), fx)
                yes_no = model.frame_scores(features.localizer, fx.loc_prompts, with_no=True)
                diff(f"{prefix}.loc_yes_logits", yes_no[..., 0], fx)
                diff(f"{prefix}.loc_no_logits", yes_no[..., 1], fx)
                pred = model.predict(frames, fx.qa_prompts, fx.num_options, fx.loc_prompts, info["frame_num"])
                diff(f"{prefix}.selected_frames", pred.keyframes, fx)
                tokens = features.answerer[torch.arange(info["batch"])[:, None], pred.keyframes]
            else:
                pred = model.predict(frames, fx.qa_prompts, fx.num_options, use_localizer=False)
                tokens = features.answerer
            diff(f"{prefix}.t5_proj_out", tokens.flatten(0, 1), fx)
            embeds, mask = model.video_level_inputs(tokens, fx.qa_prompts)
            diff(f"{prefix}.qa_encoder_inputs_embeds", embeds, fx)
            steps = scoring.greedy_second_step_logits(model.language_model, embeds, mask)
            diff(f"{prefix}.qa_step0_logits", steps.step0_logits, fx)
            diff(f"{prefix}.qa_step1_logits", steps.step1_logits, fx)
            diff(f"{prefix}.answer_logits", pred.option_scores, fx)
            diff(f"{prefix}.pred", pred.prediction, fx)
        info = fx.summary["infer_qvh"]
        features = model.encode_frames(fx.frames(info["n_frms"], info["batch"]))
        embeds, mask = model.frame_level_inputs(features.localizer, fx.qvh_prompts)
        diff("infer_qvh.step0_logits", scoring.first_step_logits(model.language_model, embeds, mask), fx)
        diff("infer_qvh.yes_logits", model.frame_scores(features.localizer, fx.qvh_prompts), fx)


def training(fx: Fixture) -> None:
    branches = {
        "train_loc": (
            "localizer",
            lambda m, f: m.refine_localizer_loss(f, fx.qa_prompts, fx.loc_prompts, fx.answers, fx.num_options),
        ),
        "train_qa_with_loc": (
            "answerer",
            lambda m, f: m.answerer_loss_with_localizer(
                f,
                fx.qa_prompts,
                fx.loc_prompts,
                fx.answers,
                fx.num_options,
                fx.summary["train_qa_with_loc"]["frame_num"],
            ),
        ),
        "train_qa_wo_loc": (
            "answerer",
            lambda m, f: m.answerer_loss_uniform(f, fx.qa_prompts, fx.answers, fx.num_options),
        ),
        "train_qa_wo_loc_frame": (
            "answerer",
            lambda m, f: m.answerer_loss_uniform(f, fx.qa_prompts, fx.answers, fx.num_options, video_level=False),
        ),
        "train_qvh": (
            "localizer",
            lambda m, f: m.pretrain_localizer_loss(f, fx.qvh_prompts, fx.qvh_frame_labels(f.shape[1])),
        ),
    }
    for name, (branch, compute) in branches.items():
        model = fx.model()
        model.set_trainable(branch)
        frames = fx.frames(fx.summary[name]["n_frms"], 2)
        result = compute(model, frames)
        result.loss.backward()
        diff(f"{name}.loss", result.loss, fx)
        if result.pseudo_labels is not None:
            diff(f"{name}.pseudo_labels", result.pseudo_labels.long(), fx)
        grads = dict(model.named_parameters())
        worst = max(
            (grads[lavis_to_ours(k[len(name) + 6 :])].grad - v).abs().max().item()
            for k, v in fx.outputs.items()
            if k.startswith(f"{name}.grad.")
        )
        rows.append((f"{name}.grad.* (all {branch} parameters)", worst))


if __name__ == "__main__":
    fixture = Fixture(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else parity_dir())
    inference(fixture)
    training(fixture)
    width = max(len(n) for n, _ in rows)
    for name, value in rows:
        print(f"{name:{width}s}  {value:.2e}")
    print(f"{'largest':{width}s}  {max(v for _, v in rows):.2e}")
