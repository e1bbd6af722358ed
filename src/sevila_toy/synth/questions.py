"""Question templates: multiple-choice questions about a scene, each with the frames that answer it.

Types (the ``question_type`` code, also the qid prefix):

* ``colour`` — "What colour was the shape that appeared?" (5 of the 6 colours)
* ``moved`` — "What colour was the shape that moved?" (5 of the 6 colours)
* ``shape`` — "What shape appeared?" (the 4 shapes)
* ``direction`` — "Which way did the red circle move?" (left, right, up, down)
* ``recolour`` — "What colour did the red circle turn?" (the 5 colours other than the named one)
* ``count`` — "How many shapes flashed?" (two to five)
* ``temporal`` — "What happened after/before the red circle showed up?" (the 4 kinds of event)

Options are the answer vocabulary itself (less one value where a type has more than 5 or the question
names one), drawn without looking at the scene. So a colour or shape visible elsewhere in the video is
usually among the distractors, and yet frames outside the evidence say nothing about which option is right:
preferring "present" distractors would make the answer the odd one out. The answer's position comes from a
`Deck`, so every option letter is correct equally often.

`DEFAULT_QUESTION_TYPES` are the types whose answer is a colour seen in the evidence frames, which the demo
model's small backbone reads; the others (shapes, directions, counts, event kinds) are asked only when named
(``question_types``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sevila_toy.synth.balance import Deck
from sevila_toy.synth.world import (
    COLOURS,
    COUNT_WORDS,
    DIRECTIONS,
    EVENT_PHRASES,
    SHAPES,
    Appear,
    Change,
    Event,
    Flash,
    Move,
    Scene,
)

QUESTION_TYPES = ("colour", "moved", "shape", "direction", "recolour", "count", "temporal")
DEFAULT_QUESTION_TYPES = ("colour", "moved", "recolour")
COLOUR_TEXT = "What colour was the shape that appeared?"
MOVED_TEXT = "What colour was the shape that moved?"
SHAPE_TEXT = "What shape appeared?"
DIRECTION_TEXT = "Which way did the {colour} {shape} move?"
RECOLOUR_TEXT = "What colour did the {colour} {shape} turn?"
COUNT_TEXT = "How many shapes flashed?"
TEMPORAL_TEXT = "What happened {side} the {colour} {shape} showed up?"
TEMPORAL_SIDES = ("after", "before")
TEXTS = (COLOUR_TEXT, MOVED_TEXT, SHAPE_TEXT, DIRECTION_TEXT, RECOLOUR_TEXT, COUNT_TEXT, TEMPORAL_TEXT)
MAX_QUESTIONS = 3
Span = tuple[int, int]


@dataclass(frozen=True)
class Question:
    """A multiple-choice question and its evidence: inclusive frame spans, all of which must be seen."""

    type: str
    text: str
    options: list[str]
    answer: int
    evidence: tuple[Span, ...]


@dataclass
class QuestionDecks:
    """Balanced sources of answer positions (per number of options) and of temporal answers."""

    positions: dict[int, Deck[int]]
    temporal: Deck[str]

    @classmethod
    def create(cls, rng: np.random.Generator) -> QuestionDecks:
        return cls({n: Deck(range(n), rng) for n in (4, 5)}, Deck(EVENT_PHRASES, rng))


def check_question_types(types: Sequence[str]) -> tuple[str, ...]:
    """`types` as a tuple in `QUESTION_TYPES` order; error on an unknown or missing type."""
    unknown = [t for t in types if t not in QUESTION_TYPES]
    if unknown or not types:
        raise ValueError(
            f"question types must be some of {', '.join(QUESTION_TYPES)}; got {', '.join(types) or 'none'}"
        )
    return tuple(t for t in QUESTION_TYPES if t in types)


def available_types(scene: Scene, decks: QuestionDecks, types: Sequence[str] = DEFAULT_QUESTION_TYPES) -> list[str]:
    """The question types among `types` that `scene` can answer, in `QUESTION_TYPES` order.

    A question that names a shape by its colour and shape is only asked if no other shape looks the same.
    A temporal question is only asked when its answer keeps the kinds balanced: flashes, which have no
    single shape to name, can only be answers and would otherwise be the answer far more often.
    """
    found = []
    for qtype in QUESTION_TYPES:
        if qtype not in types:
            continue
        if qtype == "temporal":
            pairs = _temporal_pairs(scene)
            ok = bool(pairs) and decks.temporal.can_draw({neighbour.phrase for _, _, neighbour in pairs})
        else:
            event = _subject(scene, qtype)
            named = event.identity if event is not None and qtype in _NAMING else None
            ok = event is not None and (named is None or scene.is_unique(named))
        if ok:
            found.append(qtype)
    return found


def ask(
    scene: Scene, rng: np.random.Generator, decks: QuestionDecks, types: Sequence[str] = DEFAULT_QUESTION_TYPES
) -> list[Question]:
    """Up to 3 questions of distinct types among `types` about `scene`, chosen at random among those it can
    answer (none when it can answer none)."""
    possible = available_types(scene, decks, types)
    count = min(int(rng.integers(1, MAX_QUESTIONS, endpoint=True)), len(possible))
    chosen = [possible[i] for i in sorted(rng.permutation(len(possible))[:count])]
    return [_build(qtype, scene, rng, decks) for qtype in chosen]


def _subject(scene: Scene, qtype: str) -> Event | None:
    """The event a single-event question type is about (a scene has at most one event of each kind)."""
    return next((e for e in scene.events if isinstance(e, _SUBJECTS[qtype])), None)


def _build(qtype: str, scene: Scene, rng: np.random.Generator, decks: QuestionDecks) -> Question:
    if qtype == "temporal":
        return _temporal_question(_temporal_pairs(scene), rng, decks)
    text, answer, distractors, evidence = _TEMPLATES[qtype](_subject(scene, qtype), rng)
    return _arrange(qtype, text, answer, distractors, evidence, rng, decks)


def _arrange(
    qtype: str,
    text: str,
    answer: str,
    distractors: Sequence[str],
    evidence: tuple[Span, ...],
    rng: np.random.Generator,
    decks: QuestionDecks,
) -> Question:
    """Distractors in random order with the answer inserted at a dealt position."""
    options = [distractors[i] for i in rng.permutation(len(distractors))]
    position = decks.positions[len(options) + 1].draw()
    options.insert(position, answer)
    return Question(qtype, text, options, position, evidence)


_Parts = tuple[str, str, list[str], tuple[Span, ...]]


def _colour_question(event: Appear, rng: np.random.Generator) -> _Parts:
    others = [c for c in COLOURS if c != event.colour]
    others.pop(int(rng.integers(len(others))))  # 5 options at most: leave out one wrong colour at random
    return COLOUR_TEXT, event.colour, others, ((event.first, event.last),)


def _moved_question(event: Move, rng: np.random.Generator) -> _Parts:
    others = [c for c in COLOURS if c != event.colour]
    others.pop(int(rng.integers(len(others))))
    return MOVED_TEXT, event.colour, others, ((event.first, event.last),)


def _shape_question(event: Appear, rng: np.random.Generator) -> _Parts:
    others = [s for s in SHAPES if s != event.shape]
    return SHAPE_TEXT, event.shape, others, ((event.first, event.last),)


def _direction_question(event: Move, rng: np.random.Generator) -> _Parts:
    others = [d for d in DIRECTIONS if d != event.direction]
    text = DIRECTION_TEXT.format(colour=event.colour, shape=event.shape)
    return text, event.direction, others, ((event.first, event.last),)


def _recolour_question(event: Change, rng: np.random.Generator) -> _Parts:
    # The named colour is no option: it cannot be the answer, and the question already shows it.
    others = [c for c in COLOURS if c not in (event.colour, event.new_colour)]
    text = RECOLOUR_TEXT.format(colour=event.colour, shape=event.shape)
    return text, event.new_colour, others, ((event.switch, event.last),)


def _count_question(event: Flash, rng: np.random.Generator) -> _Parts:
    others = [word for n, word in COUNT_WORDS.items() if n != event.count]
    return COUNT_TEXT, COUNT_WORDS[event.count], others, ((event.first, event.last),)


_SUBJECTS: dict[str, type[Event]] = {
    "colour": Appear,
    "moved": Move,
    "shape": Appear,
    "direction": Move,
    "recolour": Change,
    "count": Flash,
}
_TEMPLATES: dict[str, Callable[[Any, np.random.Generator], _Parts]] = {
    "colour": _colour_question,
    "moved": _moved_question,
    "shape": _shape_question,
    "direction": _direction_question,
    "recolour": _recolour_question,
    "count": _count_question,
}
_NAMING = ("direction", "recolour")
"""Types whose text names the event's shape by its look."""

_Pair = tuple[Event, str, Event]


def _temporal_pairs(scene: Scene) -> list[_Pair]:
    """(anchor, "after"/"before", neighbour) for every uniquely named anchor with a neighbouring event."""
    pairs: list[_Pair] = []
    events = scene.events
    for i, anchor in enumerate(events):
        if anchor.identity is None or not scene.is_unique(anchor.identity):
            continue
        if i + 1 < len(events):
            pairs.append((anchor, TEMPORAL_SIDES[0], events[i + 1]))
        if i > 0:
            pairs.append((anchor, TEMPORAL_SIDES[1], events[i - 1]))
    return pairs


def _temporal_question(pairs: Sequence[_Pair], rng: np.random.Generator, decks: QuestionDecks) -> Question:
    """The neighbouring event's kind, chosen through the deck among the pairs so that kinds stay balanced.

    The anchor is named by its look only ("showed up"), so the question does not tell which kind of event
    it was, and every kind remains a possible answer.
    """
    answer = decks.temporal.draw({neighbour.phrase for _, _, neighbour in pairs})
    matching = [pair for pair in pairs if pair[2].phrase == answer]
    anchor, side, neighbour = matching[int(rng.integers(len(matching)))]
    colour, shape = anchor.identity  # type: ignore[misc]
    text = TEMPORAL_TEXT.format(side=side, colour=colour, shape=shape)
    evidence = tuple(sorted((anchor.named_frames, (neighbour.first, neighbour.last))))
    others = [p for p in EVENT_PHRASES if p != answer]
    return _arrange("temporal", text, answer, others, evidence, rng, decks)
