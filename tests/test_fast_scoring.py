"""The fast decoder steps and encoder (`sevila.model.scoring`) against transformers' modules and `generate`."""

import pytest
import torch

from sevila import prompts
from sevila.model import Precision, scoring
from tests.support.tiny import OPTIONS, QUESTION, random_frames, tiny_model

GENERATE = dict(
    num_beams=1, do_sample=False, max_new_tokens=3, min_length=1, output_scores=True, return_dict_in_generate=True
)
TOL = dict(atol=1e-5, rtol=1e-5)  # float32 reassociation: measured <= 4e-6 on these models


def t5_inputs(model, padded: bool):
    """Answerer rows (video level) for two videos; ``padded`` gives them prompts of different lengths, so the
    encoder mask has zeros."""
    features = model.encode_frames(random_frames(2, 4, model.config))
    long = prompts.qa_prompt(QUESTION, OPTIONS)
    short = prompts.qa_prompt("what?", OPTIONS[:2]) if padded else long
    return model.video_level_inputs(features.answerer, [long, short])


@pytest.mark.parametrize("padded", [False, True])
@torch.no_grad()
def test_fast_steps_equal_transformers_decoder_and_generate(padded):
    model = tiny_model(seed=3)
    t5 = model.language_model
    embeds, mask = t5_inputs(model, padded)
    assert bool((mask == 0).any()) == padded
    fast = scoring.greedy_second_step_logits(t5, embeds, mask)
    first = scoring.first_step_logits(t5, embeds, mask, [5, 7])
    with scoring.use_fast_steps(False):
        plain = scoring.greedy_second_step_logits(t5, embeds, mask)
        plain_first = scoring.first_step_logits(t5, embeds, mask, [5, 7])
    assert torch.equal(fast.first_token, plain.first_token)
    torch.testing.assert_close(fast.step0_logits, plain.step0_logits, **TOL)
    torch.testing.assert_close(fast.step1_logits, plain.step1_logits, **TOL)
    torch.testing.assert_close(first, plain_first, **TOL)
    generated = t5.generate(inputs_embeds=embeds, attention_mask=mask, **GENERATE)
    assert fast.first_token.tolist() == generated.sequences[:, 1].tolist()
    torch.testing.assert_close(fast.step0_logits, generated.scores[0].float(), **TOL)
    torch.testing.assert_close(fast.step1_logits, generated.scores[1].float(), **TOL)


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
@pytest.mark.parametrize("padded", [False, True])
@torch.no_grad()
def test_fast_encoder_gives_the_same_bits(mode, padded):
    model = tiny_model(seed=4).apply_precision(Precision.named(mode))
    t5 = model.language_model
    embeds, mask = t5_inputs(model, padded)
    fast = scoring.encode(t5, embeds, mask)
    with scoring.use_fast_steps(False):
        plain = scoring.encode(t5, embeds, mask)
    assert fast.dtype == plain.dtype and torch.equal(fast, plain)


@pytest.mark.parametrize("mode", ["bf16", "reference"])
@torch.no_grad()
def test_fast_steps_in_half_precision_stay_within_its_rounding(mode):
    """The attention arithmetic runs in float32 either way; what differs is bf16 rounding elsewhere (one bf16
    step at |logit| 1-2 is 0.008)."""
    model = tiny_model(seed=5).apply_precision(Precision.named(mode))
    frames = random_frames(2, 6, model.config)
    qa = [prompts.qa_prompt(QUESTION, OPTIONS)] * 2
    loc = [prompts.loc_prompt(QUESTION, OPTIONS)] * 2
    fast = model.predict(frames, qa, 5, loc, num_keyframes=3)
    with scoring.use_fast_steps(False):
        plain = model.predict(frames, qa, 5, loc, num_keyframes=3)
    torch.testing.assert_close(fast.frame_scores, plain.frame_scores, atol=0.05, rtol=0.02)
    if torch.equal(fast.keyframes, plain.keyframes) and torch.equal(fast.first_token, plain.first_token):
        torch.testing.assert_close(fast.option_scores, plain.option_scores, atol=0.05, rtol=0.02)


def test_training_and_gradients_use_transformers_modules():
    model = tiny_model(seed=6)
    t5 = model.language_model
    with torch.no_grad():
        embeds, mask = t5_inputs(model, padded=True)
    embeds.requires_grad_(True)
    logits = scoring.first_step_logits(t5, embeds, mask, [5])  # gradients enabled: the usual modules
    logits.sum().backward()
    assert embeds.grad is not None and bool(embeds.grad.abs().sum() > 0)
    with torch.no_grad():
        torch.testing.assert_close(logits.detach(), scoring.first_step_logits(t5, embeds, mask, [5]), **TOL)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        dropped = scoring.first_step_logits(t5, embeds, mask, [5])
        torch.manual_seed(0)
        with scoring.use_fast_steps(False):
            again = scoring.first_step_logits(t5, embeds, mask, [5])
    assert torch.equal(dropped, again)  # training mode (dropout) never takes the fast path


def test_use_fast_steps_restores_the_previous_setting():
    model = tiny_model()
    t5 = model.language_model
    with torch.no_grad():
        assert scoring._fast(t5)
        with scoring.use_fast_steps(False):
            assert not scoring._fast(t5)
            with scoring.use_fast_steps(True):
                assert scoring._fast(t5)
            assert not scoring._fast(t5)
        assert scoring._fast(t5)
