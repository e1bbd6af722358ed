"""Behaviour of the SeViLA module on tiny models built here (no fixture needed)."""

import pytest
import torch

from sevila import prompts
from sevila.config import SeViLAConfig
from sevila.model import FrameFeatures, Precision, SeViLA, select_keyframes
from tests.support.tiny import OPTIONS, QUESTION, random_frames, tiny_model


def batch_prompts(videos: int, num_options: int):
    options = OPTIONS[:num_options]
    qa = [prompts.qa_prompt(f"{QUESTION} {i}", options) for i in range(videos)]
    loc = [prompts.loc_prompt(f"{QUESTION} {i}", options) for i in range(videos)]
    return qa, loc


def test_paper_model_has_the_published_size_without_allocating_memory():
    with torch.device("meta"):
        model = SeViLA(SeViLAConfig.preset("paper"))
    total = sum(p.numel() for p in model.parameters())
    per_branch = [sum(p.numel() for p in branch.parameters()) for branch in (model.answerer, model.localizer)]
    assert 4.0e9 < total < 4.2e9  # "4.1 B parameters": ViT-g 986 M + Flan-T5-XL 2.85 B + two branches
    assert per_branch == [106_739_968, 106_739_968]  # Q-Former 105.1 M + queries + projection + LayerNorm
    assert sum(p.numel() for p in model.vision.parameters()) == 985_949_440
    assert model.language_model.lm_head.weight is not model.language_model.shared.weight


@pytest.mark.parametrize("num_frames, num_keyframes, num_options, videos", [(8, 4, 5, 2), (6, 3, 4, 3), (5, 2, 2, 1)])
def test_scores_equal_those_read_from_a_greedy_generate(num_frames, num_keyframes, num_options, videos):
    """Our one/two decoder steps give exactly scores[0] / scores[1] of the reference's 30-token generate."""
    model = tiny_model(seed=num_frames)
    frames = random_frames(videos, num_frames, model.config, seed=num_frames)
    qa, loc = batch_prompts(videos, num_options)
    with torch.no_grad():
        prediction = model.predict(frames, qa, num_options, loc, num_keyframes=num_keyframes)
        features = model.encode_frames(frames)
        generate = dict(
            num_beams=1,
            do_sample=False,
            max_new_tokens=30,
            min_length=1,
            output_scores=True,
            return_dict_in_generate=True,
        )
        embeds, mask = model.frame_level_inputs(features.localizer, loc)
        loc_out = model.language_model.generate(inputs_embeds=embeds, attention_mask=mask, **generate)
        yes = loc_out.scores[0][:, model.text.yes_id].view(videos, num_frames)
        torch.testing.assert_close(prediction.frame_scores, yes, atol=1e-5, rtol=1e-5)
        keyframes = yes.topk(num_keyframes).indices.sort().values
        assert prediction.keyframes.tolist() == keyframes.tolist()
        tokens = features.answerer[torch.arange(videos)[:, None], keyframes]
        embeds, mask = model.video_level_inputs(tokens, qa)
        qa_out = model.language_model.generate(inputs_embeds=embeds, attention_mask=mask, **generate)
    assert len(qa_out.scores) >= 2
    expected = qa_out.scores[1][:, model.text.option_token_ids(num_options)]
    torch.testing.assert_close(prediction.option_scores, expected, atol=1e-5, rtol=1e-5)
    assert prediction.first_token.tolist() == qa_out.sequences[:, 1].tolist()


def test_keyframes_are_the_top_k_in_temporal_order():
    scores = torch.tensor([[0.1, 5.0, -1.0, 4.0, 3.0, 9.0], [7.0, 1.0, 2.0, 3.0, 8.0, 0.0]])
    assert select_keyframes(scores, 3).tolist() == [[1, 3, 5], [0, 3, 4]]
    with pytest.raises(ValueError, match="cannot select 7 keyframes from 6 frames"):
        select_keyframes(scores, 7)


def test_uniform_and_single_frame_answerers():
    model = tiny_model()
    frames = random_frames(2, 4, model.config)
    qa, _ = batch_prompts(2, 5)
    with torch.no_grad():
        features = model.encode_frames(frames)
        uniform = model.predict(features, qa, 5, use_localizer=False)
        joint = model.answer(features.answerer, qa, 5)
        single = model.answer_per_frame(features.answerer, qa, 5)
        first_alone = model.answer(features.answerer[:, :1], qa, 5)
    assert uniform.keyframes.tolist() == [[0, 1, 2, 3]] * 2
    torch.testing.assert_close(uniform.option_scores, joint.option_scores)
    assert single.option_scores.shape == (2, 4, 5) and single.first_token.shape == (2, 4)
    # One frame in the multi-frame layout ("Frame 1: ") differs from the single-frame layout ("Frame: ").
    assert not torch.allclose(single.option_scores[:, 0], first_alone.option_scores)


def test_features_are_question_independent_and_chunking_changes_nothing():
    model = tiny_model()
    frames = random_frames(2, 6, model.config)
    with torch.no_grad():
        whole = model.encode_frames(frames)
        chunked = model.encode_frames(frames, chunk_size=4)
    torch.testing.assert_close(whole.answerer, chunked.answerer)
    torch.testing.assert_close(whole.localizer, chunked.localizer)
    assert whole.answerer.shape == (2, 6, model.config.qformer.num_query_tokens, model.config.language_model.d_model)
    many = FrameFeatures(whole.answerer, whole.localizer).select(torch.tensor([0, 0, 1]))
    assert many.answerer.shape[0] == 3


@pytest.mark.parametrize("branch", ["answerer", "localizer"])
def test_only_the_trained_branch_gets_gradients(branch):
    model = tiny_model()
    model.set_trainable(branch)
    model.train()
    assert not model.vision.training, "the frozen ViT stays in eval mode"
    frames = random_frames(2, 4, model.config)
    qa, loc = batch_prompts(2, 4)
    answers = torch.tensor([1, 3])
    if branch == "answerer":
        result = model.answerer_loss_with_localizer(frames, qa, loc, answers, 4, num_keyframes=2)
        assert result.keyframes.shape == (2, 2)
    else:
        result = model.refine_localizer_loss(frames, qa, loc, answers, 4)
        assert result.pseudo_labels.shape == (2, 4) and result.pseudo_labels.dtype == torch.bool
    result.loss.backward()
    with_grad = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {branch}
    assert torch.isfinite(result.loss)


def test_pretraining_loss_checks_label_shape():
    model = tiny_model()
    frames = random_frames(2, 4, model.config)
    loc = [prompts.qvhighlights_loc_prompt("a man walks his dog")] * 2
    loss = model.pretrain_localizer_loss(frames, loc, torch.tensor([[1, 0, 0, 1], [0, 0, 1, 1]], dtype=torch.bool))
    assert torch.isfinite(loss.loss)
    with pytest.raises(ValueError, match=r"frame_labels has shape \(2, 3\), expected \(videos, frames\) = \(2, 4\)"):
        model.pretrain_localizer_loss(frames, loc, torch.zeros(2, 3, dtype=torch.bool))


def test_clear_errors_for_bad_calls():
    model = tiny_model()
    frames = random_frames(2, 4, model.config)
    qa, loc = batch_prompts(2, 5)
    with pytest.raises(ValueError, match="prompts has 1 entries for 2 videos"):
        model.predict(frames, qa[:1], 5, loc)
    with pytest.raises(TypeError, match="must be a list of strings"):
        model.predict(frames[:1], qa[0], 5, loc[:1])
    with pytest.raises(ValueError, match="num_options must be between 2 and 5"):
        model.predict(frames, qa, 6, loc)
    with pytest.raises(ValueError, match="cannot select 5 keyframes from 4 frames"):
        model.predict(frames, qa, 5, loc, num_keyframes=5)
    with pytest.raises(ValueError, match="answer index 5 is outside 0..3"):
        model.answerer_loss_uniform(frames, qa, torch.tensor([0, 5]), 4)
    with pytest.raises(ValueError, match="loc_prompts are required"):
        model.predict(frames, qa, 5)
    bare = SeViLA(SeViLAConfig.preset("tiny"))
    with pytest.raises(RuntimeError, match="has no tokenizer"):
        bare.predict(frames, qa, 5, loc)


def test_long_prompts_are_truncated_keeping_the_end_of_sequence_token():
    model = tiny_model()
    long_prompt = prompts.qa_prompt(" ".join([QUESTION] * 10), OPTIONS)
    encoded = model.text([long_prompt, "Option A"])
    assert encoded.ids.shape[1] == model.config.max_text_length
    assert encoded.ids[0, -1].item() == model.text.tokenizer.eos_token_id
    assert encoded.mask[1].sum().item() == 3  # ▁Option ▁A </s>, then padding


def test_frame_prefixes_of_different_lengths_are_padded_with_mask_zero():
    model = tiny_model()
    prefixes = model.text.keyframe_prefixes(10)  # "Frame 10: " is one token longer than "Frame 1: "
    assert prefixes.mask[0].tolist()[-1] == 0 and prefixes.mask[9].tolist()[-1] == 1
    tokens = torch.zeros(1, 10, model.config.qformer.num_query_tokens, model.config.language_model.d_model)
    _, mask = model.video_level_inputs(tokens, ["Question: what"])
    assert (mask == 0).sum().item() == 9


def test_precision_settings():
    assert Precision.for_device("cpu") == Precision()
    with pytest.raises(ValueError, match="T5 must not run in float16"):
        Precision(language_model=torch.float16)
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        Precision.parse("fp8", "fp32", "bf16")
    model = tiny_model()
    frames = random_frames(1, 4, model.config)
    qa, loc = batch_prompts(1, 5)
    with torch.no_grad():
        full = model.predict(frames, qa, 5, loc, num_keyframes=2)
        model.apply_precision(Precision(vision=torch.bfloat16, language_model=torch.bfloat16))
        assert model.language_model.lm_head.weight.dtype == torch.bfloat16
        assert model.answerer.qformer.layernorm.weight.dtype == torch.float32
        half = model.predict(frames, qa, 5, loc, num_keyframes=2)
    assert half.option_scores.dtype == torch.float32
    torch.testing.assert_close(half.frame_scores, full.frame_scores, atol=0.5, rtol=0.05)
