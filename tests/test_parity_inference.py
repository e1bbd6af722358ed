"""Inference parity with the original implementation: every recorded activation, logit and decision."""

import pytest
import torch

from sevila.model import scoring
from tests.support.parity import close

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def model(parity):
    return parity.model()


def test_prompts_match_recorded_strings(parity):
    recorded = parity.summary["records"]
    assert parity.qa_prompts == [r["qa_input"] for r in recorded["qa"]]
    assert parity.loc_prompts == [r["loc_input"] for r in recorded["qa"]]
    assert parity.qvh_prompts == [r["loc_input"] for r in recorded["qvh"]]


def test_token_ids_come_from_the_tokenizer(parity, model):
    raw = parity.raw_config
    assert model.text.option_ids == raw["answer_ids"]
    assert (model.text.yes_id, model.text.no_id) == (raw["yes_id"], raw["no_id"])
    out = parity.outputs
    close(model.text.frame_prefix.ids, out["infer_loc.frame_prefix_ids"], atol=0, rtol=0)
    k = out["infer_loc.vid_prefix_ids"].shape[0]
    close(model.text.keyframe_prefixes(k).ids, out["infer_loc.vid_prefix_ids"], atol=0, rtol=0)
    close(model.text.keyframe_prefixes(k).mask, out["infer_loc.vid_prefix_mask"], atol=0, rtol=0)
    for name, prompts_ in (("loc", parity.loc_prompts), ("qa", parity.qa_prompts)):
        encoded = model.text(prompts_)
        close(encoded.ids, out[f"infer_loc.{name}_input_ids"], atol=0, rtol=0)
        close(encoded.mask, out[f"infer_loc.{name}_attention_mask"], atol=0, rtol=0)


@torch.no_grad()
def test_infer_with_localizer(parity, model):
    info, out = parity.summary["infer_loc"], parity.outputs
    n, k, batch = info["n_frms"], info["frame_num"], info["batch"]
    frames = parity.frames(n, batch)
    vit = model.encode_vision(frames)
    close(vit, out["infer_loc.vit_out"])
    close(model.localizer.layernorm(vit), out["infer_loc.ln_vision_loc_out"])
    close(model.answerer.layernorm(vit), out["infer_loc.ln_vision_out"])
    features = model.encode_frames(frames)
    close(features.localizer.flatten(0, 1), out["infer_loc.t5_proj_loc_out"])

    embeds, mask = model.frame_level_inputs(features.localizer, parity.loc_prompts)
    close(embeds, out["infer_loc.loc_encoder_inputs_embeds"])
    close(mask, out["infer_loc.loc_encoder_attention_mask"], atol=0, rtol=0)
    close(scoring.first_step_logits(model.language_model, embeds, mask), out["infer_loc.loc_step0_logits"])
    yes_no = model.frame_scores(features.localizer, parity.loc_prompts, with_no=True)
    close(yes_no[..., 0], out["infer_loc.loc_yes_logits"])
    close(yes_no[..., 1], out["infer_loc.loc_no_logits"])

    prediction = model.predict(frames, parity.qa_prompts, parity.num_options, parity.loc_prompts, num_keyframes=k)
    assert prediction.keyframes.tolist() == out["infer_loc.selected_frames"].tolist()
    close(prediction.frame_scores, out["infer_loc.loc_yes_logits"])
    close(prediction.option_scores, out["infer_loc.answer_logits"])
    assert prediction.prediction.tolist() == out["infer_loc.pred"].tolist()
    assert prediction.first_token.tolist() == out["infer_loc.qa_generated_ids"][:, 1].tolist()

    # The answerer's intermediates on the selected frames (sample-major, temporal order).
    selected = vit.view(batch, n, *vit.shape[1:])[torch.arange(batch)[:, None], prediction.keyframes]
    qformer_in = model.answerer.layernorm(selected.flatten(0, 1))
    queries = model.answerer.query_tokens.expand(qformer_in.shape[0], -1, -1)
    hidden = model.answerer.qformer(query_embeds=queries, encoder_hidden_states=qformer_in).last_hidden_state
    close(hidden, out["infer_loc.qformer_out"])
    tokens = model.answerer.projection(hidden)
    close(tokens, out["infer_loc.t5_proj_out"])
    _check_video_level_answer(model, parity, tokens.view(batch, k, *tokens.shape[1:]), "infer_loc")


@torch.no_grad()
def test_infer_uniform(parity, model):
    info, out = parity.summary["infer_uniform"], parity.outputs
    n, batch = info["n_frms"], info["batch"]
    frames = parity.frames(n, batch)
    vit = model.encode_vision(frames)
    close(vit, out["infer_uniform.vit_out"])
    close(model.answerer.layernorm(vit), out["infer_uniform.ln_vision_out"])
    features = model.encode_frames(frames)
    close(features.answerer.flatten(0, 1), out["infer_uniform.t5_proj_out"])
    prediction = model.predict(frames, parity.qa_prompts, parity.num_options, use_localizer=False)
    close(prediction.option_scores, out["infer_uniform.answer_logits"])
    assert prediction.prediction.tolist() == out["infer_uniform.pred"].tolist()
    assert prediction.frame_scores is None
    assert prediction.keyframes.tolist() == [list(range(n))] * batch
    _check_video_level_answer(model, parity, features.answerer, "infer_uniform")


def _check_video_level_answer(model, parity, tokens, prefix):
    out = parity.outputs
    embeds, mask = model.video_level_inputs(tokens, parity.qa_prompts)
    close(embeds, out[f"{prefix}.qa_encoder_inputs_embeds"])
    close(mask, out[f"{prefix}.qa_encoder_attention_mask"], atol=0, rtol=0)
    steps = scoring.greedy_second_step_logits(model.language_model, embeds, mask)
    close(steps.step0_logits, out[f"{prefix}.qa_step0_logits"])
    close(steps.step1_logits, out[f"{prefix}.qa_step1_logits"])
    # The reading rule of a teacher-forced "Option" first token, for implementations that use it.
    option = model.text.tokenizer("Option", add_special_tokens=False).input_ids
    start = scoring.start_tokens(model.language_model, embeds.shape[0], embeds.device)
    decoder_ids = torch.cat([start, torch.tensor(option).expand(embeds.shape[0], -1)], dim=1)
    forced = scoring.decoder_logits(
        model.language_model,
        scoring.encode(model.language_model, embeds, mask),
        mask,
        decoder_ids,
        model.text.option_token_ids(parity.num_options),
    )[:, 1]
    close(forced, out[f"{prefix}.teacher_forced_option_answer_logits"])


@torch.no_grad()
def test_infer_qvhighlights_localizer(parity, model):
    info, out = parity.summary["infer_qvh"], parity.outputs
    n, batch = info["n_frms"], info["batch"]
    features = model.encode_frames(parity.frames(n, batch))
    embeds, mask = model.frame_level_inputs(features.localizer, parity.qvh_prompts)
    close(embeds, out["infer_qvh.encoder_inputs_embeds"])
    close(mask, out["infer_qvh.encoder_attention_mask"], atol=0, rtol=0)
    close(scoring.first_step_logits(model.language_model, embeds, mask), out["infer_qvh.step0_logits"])
    yes_no = model.frame_scores(features.localizer, parity.qvh_prompts, with_no=True)
    close(yes_no[..., 0], out["infer_qvh.yes_logits"])
    assert (yes_no[..., 0] > yes_no[..., 1]).long().tolist() == out["infer_qvh.pred"].tolist()
    expected_targets = [["yes" if y else "no" for y in row] for row in parity.qvh_frame_labels(n).tolist()]
    assert expected_targets == info["targets"]


@torch.no_grad()
def test_batch_composition_does_not_change_scores(parity, model):
    """Each video's scores are the same alone as in a batch (up to float noise, as the reference's ~1e-6)."""
    info = parity.summary["infer_loc"]
    frames = parity.frames(info["n_frms"], info["batch"])
    together = model.predict(frames, parity.qa_prompts, parity.num_options, parity.loc_prompts)
    for i in range(info["batch"]):
        alone = model.predict(
            frames[i : i + 1], parity.qa_prompts[i : i + 1], parity.num_options, parity.loc_prompts[i : i + 1]
        )
        close(alone.option_scores[0], together.option_scores[i])
        assert alone.keyframes[0].tolist() == together.keyframes[i].tolist()
