"""Training parity: every branch's T5 calls, loss, pseudo-labels and full gradients equal the recorded ones.

Each branch is one forward + backward from zero gradients with dropout off, as the fixture was recorded.
"""

import math

import pytest
import torch

from sevila.model import scoring
from tests.support.parity import close, lavis_to_ours

pytestmark = pytest.mark.parity

LOSS = dict(rtol=1e-5, atol=1e-4)
GRAD = dict(atol=1e-5, rtol=1e-3)
# The fixture's gradient-norm groups, by the first name inside a branch.
GROUPS = {"query_tokens": "query_tokens", "qformer": "qformer", "proj": "projection", "ln_vision": "layernorm"}


def run_branch(parity, name, trainable, compute):
    """Fresh model, only ``trainable`` gets gradients; returns (model, StageLoss)."""
    model = parity.model()
    model.set_trainable(trainable)
    model.zero_grad(set_to_none=True)
    result = compute(model)
    result.loss.backward()
    close(result.loss.detach().reshape(1), parity.outputs[f"{name}.loss"], **LOSS)
    return model, result


def check_gradients(parity, name, model, branch):
    out, info = parity.outputs, parity.summary[name]
    recorded = {k[len(f"{name}.grad.") :]: v for k, v in out.items() if k.startswith(f"{name}.grad.")}
    ours = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(ours) == {lavis_to_ours(k) for k in recorded}, "the same parameters receive gradients"
    for key, grad in recorded.items():
        close(ours[lavis_to_ours(key)], grad, **GRAD)
    for group, marker in GROUPS.items():
        members = [g for n, g in ours.items() if n.split(".")[1] == marker]
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in members))
        assert norm == pytest.approx(info["grad_norm_by_group"][group], rel=1e-4), group
    assert all(n.startswith(branch + ".") for n in ours)


def check_t5_call(parity, model, prefix, embeds, mask, targets):
    """The exact T5 inputs and, from them, the logits at the labels and the log-sum-exp per position."""
    out = parity.outputs
    close(embeds, out[f"{prefix}.inputs_embeds"])
    close(mask, out[f"{prefix}.attention_mask"], atol=0, rtol=0)
    labels, decoder_mask = model.text.labels(targets)
    close(labels, out[f"{prefix}.labels"], atol=0, rtol=0)
    close(decoder_mask, out[f"{prefix}.decoder_attention_mask"], atol=0, rtol=0)
    with torch.no_grad():
        logits = scoring.teacher_forced_logits(model.language_model, embeds, mask, labels)
    at_labels = logits.gather(-1, labels.clamp(min=0)[..., None])[..., 0].masked_fill(labels < 0, 0)
    expected = out[f"{prefix}.logits_at_labels"].masked_fill(labels < 0, 0)
    close(at_labels, expected)
    close(logits.logsumexp(-1).masked_fill(labels < 0, 0), out[f"{prefix}.logsumexp"].masked_fill(labels < 0, 0))


def answer_targets(parity, repeat=1):
    letters = parity.config.option_letters
    return [f"Option {letters[a]}" for a in parity.answers.tolist() for _ in range(repeat)]


def test_localizer_self_refinement(parity):
    name, info = "train_loc", parity.summary["train_loc"]
    n, batch = info["n_frms"], len(parity.qa_records)
    frames = parity.frames(n, batch)
    model, result = run_branch(
        parity,
        name,
        "localizer",
        lambda m: m.refine_localizer_loss(
            frames, parity.qa_prompts, parity.loc_prompts, parity.answers, parity.num_options
        ),
    )
    assert result.pseudo_labels.long().tolist() == parity.outputs[f"{name}.pseudo_labels"].tolist()
    check_gradients(parity, name, model, "localizer")
    with torch.no_grad():
        vit = model.encode_vision(frames)
        close(vit, parity.outputs[f"{name}.vit_out"])
        answerer = model.answerer(vit).view(batch, n, *model._token_shape())
        localizer = model.localizer(vit).view(batch, n, *model._token_shape())
        close(answerer.flatten(0, 1), parity.outputs[f"{name}.t5_proj_out"])
        close(localizer.flatten(0, 1), parity.outputs[f"{name}.t5_proj_loc_out"])
        labels, logits = model.pseudo_labels(answerer, parity.qa_prompts, parity.answers, parity.num_options)
    close(logits.flatten(0, 1), parity.outputs[f"{name}.pseudo_label_answer_logits"])
    embeds, mask = model.frame_level_inputs(answerer, parity.qa_prompts)
    check_t5_call(parity, model, f"{name}.t5call0", embeds, mask, answer_targets(parity, repeat=n))
    embeds, mask = model.frame_level_inputs(localizer, parity.loc_prompts)
    words = ["yes" if y else "no" for y in labels.flatten().tolist()]
    check_t5_call(parity, model, f"{name}.t5call1", embeds, mask, words)


def test_answerer_on_localizer_keyframes(parity):
    name, info = "train_qa_with_loc", parity.summary["train_qa_with_loc"]
    n, k, batch = info["n_frms"], info["frame_num"], len(parity.qa_records)
    frames = parity.frames(n, batch)
    model, result = run_branch(
        parity,
        name,
        "answerer",
        lambda m: m.answerer_loss_with_localizer(
            frames, parity.qa_prompts, parity.loc_prompts, parity.answers, parity.num_options, num_keyframes=k
        ),
    )
    assert result.keyframes.tolist() == parity.outputs[f"{name}.selected_frames"].tolist()
    close(result.frame_scores, parity.outputs[f"{name}.loc_yes_logits"])
    check_gradients(parity, name, model, "answerer")
    with torch.no_grad():
        features = model.encode_frames(frames)
        embeds, mask = model.frame_level_inputs(features.localizer, parity.loc_prompts)
        close(embeds, parity.outputs[f"{name}.gencall0.inputs_embeds"])
        close(mask, parity.outputs[f"{name}.gencall0.attention_mask"], atol=0, rtol=0)
        yes_no = model.frame_scores(features.localizer, parity.loc_prompts, with_no=True)
        close(yes_no.flatten(0, 1), parity.outputs[f"{name}.gencall0.step0_yes_no_logits"])
        tokens = features.answerer[torch.arange(batch)[:, None], result.keyframes]
        close(tokens.flatten(0, 1), parity.outputs[f"{name}.t5_proj_out"])
    embeds, mask = model.video_level_inputs(tokens, parity.qa_prompts)
    check_t5_call(parity, model, f"{name}.t5call0", embeds, mask, answer_targets(parity))


@pytest.mark.parametrize("name, video_level", [("train_qa_wo_loc", True), ("train_qa_wo_loc_frame", False)])
def test_answerer_on_uniform_frames(parity, name, video_level):
    info = parity.summary[name]
    n, batch = info["n_frms"], len(parity.qa_records)
    frames = parity.frames(n, batch)
    model, _ = run_branch(
        parity,
        name,
        "answerer",
        lambda m: m.answerer_loss_uniform(frames, parity.qa_prompts, parity.answers, parity.num_options, video_level),
    )
    check_gradients(parity, name, model, "answerer")
    with torch.no_grad():
        tokens = model.encode_frames(frames).answerer
    close(tokens.flatten(0, 1), parity.outputs[f"{name}.t5_proj_out"])
    if video_level:
        embeds, mask = model.video_level_inputs(tokens, parity.qa_prompts)
        targets = answer_targets(parity)
    else:
        embeds, mask = model.frame_level_inputs(tokens, parity.qa_prompts)
        targets = answer_targets(parity, repeat=n)
    check_t5_call(parity, model, f"{name}.t5call0", embeds, mask, targets)


def test_localizer_pretraining_on_moments(parity):
    name, info = "train_qvh", parity.summary["train_qvh"]
    n, batch = info["n_frms"], len(parity.qvh_records)
    frames = parity.frames(n, batch)
    labels = parity.qvh_frame_labels(n)
    assert ["_".join("yes" if y else "no" for y in row) for row in labels.tolist()] == info["qa_output"]
    model, _ = run_branch(
        parity, name, "localizer", lambda m: m.pretrain_localizer_loss(frames, parity.qvh_prompts, labels)
    )
    check_gradients(parity, name, model, "localizer")
    with torch.no_grad():
        tokens = model.encode_frames(frames).localizer
    close(tokens.flatten(0, 1), parity.outputs[f"{name}.t5_proj_loc_out"])
    embeds, mask = model.frame_level_inputs(tokens, parity.qvh_prompts)
    check_t5_call(
        parity, model, f"{name}.t5call0", embeds, mask, ["yes" if y else "no" for y in labels.flatten().tolist()]
    )
