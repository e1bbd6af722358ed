"""Every word the model can meet in this world, for a word-level tokenizer (`sevila.model.build_word_tokenizer`).

Collected from the sources themselves (question templates, answer values, event phrases and queries, and
the SeViLA prompts and frame prefixes built by `sevila.prompts` and `SeViLAConfig`), so a new template or
value cannot be forgotten here. Words are runs of letters and digits: the tokenizer splits punctuation off.
"""

from __future__ import annotations

import re

from sevila import prompts
from sevila.config import SeViLAConfig
from sevila_toy.synth.questions import TEMPORAL_SIDES, TEXTS
from sevila_toy.synth.world import COLOURS, COUNT_WORDS, DIRECTIONS, EVENT_PHRASES, EVENT_TYPES, SHAPES

_WORD = re.compile(r"[A-Za-z0-9]+")
_PLACEHOLDER = re.compile(r"\{\w+\}")


def world_vocabulary() -> list[str]:
    """Sorted distinct words of questions, options, moment queries and the prompts wrapped around them."""
    values = [*COLOURS, *SHAPES, *DIRECTIONS, *COUNT_WORDS.values(), *TEMPORAL_SIDES, *EVENT_PHRASES]
    queries = [_PLACEHOLDER.sub(" ", e.query_template) for e in EVENT_TYPES]
    templates = [_PLACEHOLDER.sub(" ", t) for t in TEXTS] + queries
    config = SeViLAConfig()
    options = list(COLOURS)[: len(prompts.OPTION_LETTERS)]
    scaffolding = [
        prompts.qa_prompt(TEXTS[0], options),
        prompts.loc_prompt(TEXTS[0], options),
        prompts.qvhighlights_loc_prompt(queries[0]),
        *(prompts.answer_target(i) for i in range(len(prompts.OPTION_LETTERS))),
        config.frame_prefix,
        *config.keyframe_prefixes(config.num_frames),
        config.yes_word,
        config.no_word,
    ]
    return sorted({word for text in (*values, *templates, *scaffolding) for word in _WORD.findall(text)})
