"""Every stage's loss and gradient norms, computed through the training code path (recipe → StageModel →
backward, as the loop runs it), equal those recorded from the original implementation."""

from __future__ import annotations

import math

import pytest
import torch

from sevila.train.loop import check_frozen_gradients, check_trainable
from sevila.train.recipes import StageModel, build_recipe
from tests.support.train import one_thread  # noqa: F401 (autouse fixture)

# The fixture's gradient-norm groups, by the second component of our parameter names.
GROUPS = {"query_tokens": "query_tokens", "qformer": "qformer", "proj": "projection", "ln_vision": "layernorm"}

# fixture branch -> (stage, recipe options)
BRANCHES = {
    "train_qvh": ("pretrain-localizer", {}),
    "train_qa_with_loc": ("finetune-answerer", {}),
    "train_qa_wo_loc": ("finetune-answerer", {"uniform_frames": True}),
    "train_loc": ("refine-localizer", {}),
}


def fixture_batch(parity, name: str) -> dict:
    """The batch a DataLoader would give the recipe for the fixture's records (collate's layout)."""
    info = parity.summary[name]
    n = info["n_frms"]
    if name == "train_qvh":
        records = parity.qvh_records
        prompts = {"loc_prompt": parity.qvh_prompts, "qa_prompt": [""] * len(records)}
        extra = {
            "frame_labels": parity.qvh_frame_labels(n),
            "answer": torch.full((len(records),), -1),
            "num_options": [None] * len(records),
        }
    else:
        records, prompts = parity.qa_records, {"loc_prompt": parity.loc_prompts, "qa_prompt": parity.qa_prompts}
        extra = {
            "answer": parity.answers,
            "num_options": [r["num_option"] for r in records],
            "frame_labels": [None] * len(records),
        }
    return {
        "qid": [str(r.get("qid", i)) for i, r in enumerate(records)],
        "frames": parity.frames(n, len(records)),
        **prompts,
        **extra,
    }


@pytest.mark.parity
@pytest.mark.parametrize("name", list(BRANCHES))
def test_recipe_loss_and_gradients_match_the_original(parity, name):
    stage, options = BRANCHES[name]
    info = parity.summary[name]
    recipe = build_recipe(stage, num_keyframes=info.get("frame_num", 4), **options)
    model = parity.model()  # eval mode: the fixture was recorded without dropout
    model.set_trainable(recipe.branch)
    check_trainable(model, recipe.branch)

    loss = StageModel(model, recipe)(fixture_batch(parity, name))
    loss.backward()
    check_frozen_gradients(model, recipe.branch)

    assert float(loss.detach()) == pytest.approx(float(parity.outputs[f"{name}.loss"]), rel=1e-5, abs=1e-4)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for group, marker in GROUPS.items():
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for n, g in grads.items() if n.split(".")[1] == marker))
        assert norm == pytest.approx(info["grad_norm_by_group"][group], rel=1e-4), group


@pytest.mark.parity
def test_a_batch_of_failed_videos_gives_zero_gradients(parity):
    model = parity.model()
    model.set_trainable("answerer")
    StageModel(model, build_recipe("finetune-answerer"))(None).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and not p.grad.any() for p in trainable)


def test_mixed_option_counts_give_the_token_mean_of_one_call():
    """A batch mixing 4- and 5-option questions: the per-group losses weighted by question share equal the
    mean over all label tokens (every row's target "Option X</s>" has the same length)."""
    import torch

    from sevila import prompts
    from sevila.train.recipes import by_option_count
    from tests.support.tiny import OPTIONS, QUESTION, random_frames, tiny_model

    model = tiny_model(seed=6)
    frames = random_frames(3, 4, model.config)
    batch = {
        "frames": frames,
        "answer": torch.tensor([1, 3, 0]),
        "num_options": [4, 5, 4],
        "qid": ["a", "b", "c"],
        "qa_prompt": [prompts.qa_prompt(QUESTION, OPTIONS[:n]) for n in (4, 5, 4)],
    }
    mixed = by_option_count(
        batch, lambda part, n: model.answerer_loss_uniform(part["frames"], part["qa_prompt"], part["answer"], n).loss
    )
    # The same token-mean by hand: per-row sums of token losses over all 9 label tokens.
    rows = [
        model.answerer_loss_uniform(
            frames[i : i + 1], batch["qa_prompt"][i : i + 1], batch["answer"][i : i + 1], n
        ).loss
        for i, n in enumerate((4, 5, 4))
    ]
    torch.testing.assert_close(mixed, sum(rows) / 3)
