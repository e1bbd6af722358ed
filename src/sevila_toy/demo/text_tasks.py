"""Text-only option tasks: the toy T5's stand-in for the language pre-training Flan-T5 arrives with.

SeViLA's answerer needs a T5 that binds an option's text to its letter ("the option that says red is
Option C"). A toy T5 trained from scratch on that forward lookup alone ("Which option is red? Option A: blue
Option B: red ..." -> "Option B") stays at chance; the reverse lookup ("What is option B?" -> "red") it learns
quickly, and with that in place the forward lookup can be found while the number of options grows from two to
five (docs/demo.md, "What it took"). So `sevila_toy.demo.backbone.pretrain_language_model` runs a curriculum over
these tasks: reverse lookups only, then mostly forward lookups, with one more option every
`STEPS_PER_EXTRA_OPTION` steps.
"""

from __future__ import annotations

import numpy as np

from sevila import prompts
from sevila_toy.demo.frame_tasks import FrameTask
from sevila_toy.synth.world import COLOURS, COUNT_WORDS, DIRECTIONS, SHAPES

OPTION_WORDS: tuple[tuple[str, ...], ...] = (
    tuple(COLOURS),
    tuple(SHAPES),
    tuple(DIRECTIONS),
    tuple(COUNT_WORDS.values()),
)
"""The answer vocabularies of the synthetic world's questions; each task draws its options from one."""
TEXT_WORDS = ("Which", "option", "is", "What")
MAX_OPTIONS = len(prompts.OPTION_LETTERS)
REVERSE_ONLY_STEPS = 700
REVERSE_SHARE = 0.3
"""After the reverse-only phase, the share of reverse lookups kept in the mix (so that skill stays)."""
STEPS_PER_EXTRA_OPTION = 800
MASTERY = 90.0
"""Forward-lookup accuracy (%) among five options that ends the language pre-training."""


def options_at(step: int) -> int:
    """Most options a task has at curriculum step ``step``: 2, then one more every `STEPS_PER_EXTRA_OPTION`."""
    return min(MAX_OPTIONS, 2 + step // STEPS_PER_EXTRA_OPTION)


def _listing(question: str, options: list[str]) -> str:
    """The answerer prompt's question and options, without its closing instruction (shorter, so cheaper)."""
    return (
        "Question: "
        + question
        + "".join(f" Option {letter}: {option}" for letter, option in zip(prompts.OPTION_LETTERS, options))
    )


def option_task(
    rng: np.random.Generator, max_options: int = MAX_OPTIONS, reverse_share: float = REVERSE_SHARE
) -> FrameTask:
    """A reverse lookup (probability ``reverse_share``; target: the option's word) or else a forward lookup
    (target: ``"Option K"``, as the answerer says it), with up to ``max_options`` options."""
    vocabulary = OPTION_WORDS[rng.integers(len(OPTION_WORDS))]
    count = min(max_options, len(vocabulary))
    options = [str(word) for word in rng.choice(vocabulary, size=count, replace=False)]
    index = int(rng.integers(count))
    if rng.random() < reverse_share:
        letter = prompts.OPTION_LETTERS[index]
        return FrameTask(_listing(f"What is option {letter}?", options), options[index], tuple(options))
    letters = tuple(prompts.answer_target(i) for i in range(count))
    return FrameTask(_listing(f"Which option is {options[index]}?", options), letters[index], letters)
