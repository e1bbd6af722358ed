"""Planning one video: when its events happen, what they look like and where everything is.

Answer-bearing attributes (the colour and shape of an appearing shape, the colour a shape turns, a
direction, a count) come from `SceneDecks`, so answers are balanced over the vocabulary; everything else
is drawn uniformly and independently of them, so the frames outside an event carry no hint about its
answers (in particular nothing avoids the colour or shape of an appearing shape). The shapes that
questions name (a moving shape, a shape before it changes colour) get a look no other shape has, so the
name is unambiguous. Events are placed uniformly in time with gaps between them, never at chosen sample
points, and away from background shapes so that they are not hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sevila_toy.synth.balance import Deck
from sevila_toy.synth.world import (
    BACKGROUND_RGB,
    COLOURS,
    COUNT_WORDS,
    DIRECTIONS,
    EVENT_TYPES,
    GREY_RGB,
    NUM_FRAMES,
    RADIUS,
    SHAPES,
    SIZE,
    WHITE_RGB,
    Appear,
    Change,
    Event,
    Flash,
    Move,
    Scene,
    Sprite,
)

EVENT_LENGTHS: dict[type[Event], tuple[int, int]] = {Appear: (5, 7), Move: (5, 7), Change: (7, 8), Flash: (4, 5)}
"""Inclusive range of frames per event kind: at most 1 s, at most 4 of the 32 uniform candidates."""
CHANGE_BEFORE = (3, 4)
"""Frames a changing shape keeps its first colour: enough to be seen, and the rest shows the answer."""
MIN_GAP = 4
"""Frames between events, so that order is clear and no candidate frame shows two events."""
MOVE_SPEED = 3.0
"""Pixels per frame of a moving shape: unmistakably faster than the background's drift."""
TRAIL = (0.5, 0.25)
"""Weights of the trail copies one and two steps behind a moving shape (direction visible in one frame)."""
DRIFT_SPEED = (0.15, 0.5)
BACKGROUND_RADII = (5, 7)
EVENTS_PER_VIDEO = ((1, 2, 3), (0.2, 0.4, 0.4))
BACKGROUND_SHAPES = ((0, 1, 2, 3), (0.1, 0.3, 0.35, 0.25))
CLEARANCE = 2
"""Pixels kept between an event shape and any background shape."""
PLACEMENT_TRIES = 30


@dataclass
class SceneDecks:
    """Balanced sources of the answer-bearing attributes."""

    colour: Deck[str]
    shape: Deck[str]
    new_colour: Deck[str]
    direction: Deck[str]
    count: Deck[int]

    @classmethod
    def create(cls, rng: np.random.Generator) -> SceneDecks:
        colours = list(COLOURS)
        return cls(
            colour=Deck(colours, rng),
            shape=Deck(SHAPES, rng),
            new_colour=Deck(colours, rng),
            direction=Deck(list(DIRECTIONS), rng),
            count=Deck(list(COUNT_WORDS), rng),
        )


def plan_scene(rng: np.random.Generator, decks: SceneDecks) -> Scene:
    """A random scene: 1–3 events of distinct kinds in random order and 0–3 drifting background shapes."""
    count = int(rng.choice(EVENTS_PER_VIDEO[0], p=EVENTS_PER_VIDEO[1]))
    kinds = [EVENT_TYPES[i] for i in rng.permutation(len(EVENT_TYPES))[:count]]
    spans = _schedule(rng, [int(rng.integers(*EVENT_LENGTHS[k], endpoint=True)) for k in kinds])
    background = tuple(_background_sprite(rng) for _ in range(rng.choice(BACKGROUND_SHAPES[0], p=BACKGROUND_SHAPES[1])))
    taken: set[tuple[str, str]] = set()  # grey background shapes share no identity with event shapes
    events = tuple(
        _make_event(kind, first, last, rng, decks, background, taken) for kind, (first, last) in zip(kinds, spans)
    )
    return Scene(background, events)


def _free_identity(rng: np.random.Generator, taken: set[tuple[str, str]], but: str | None = None) -> tuple[str, str]:
    """A uniformly drawn (colour, shape) that no shape in `taken` has (and not of colour `but`); marks it taken."""
    free = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in taken and c != but]
    identity = free[int(rng.integers(len(free)))]
    taken.add(identity)
    return identity


def _schedule(rng: np.random.Generator, lengths: Sequence[int]) -> list[tuple[int, int]]:
    """Inclusive frame spans of the given lengths, in order, at least `MIN_GAP` apart, placed at random."""
    slack = NUM_FRAMES - sum(lengths) - MIN_GAP * (len(lengths) - 1)
    offsets = np.sort(rng.integers(0, slack, size=len(lengths), endpoint=True))
    spans, start = [], 0
    for length, offset in zip(lengths, offsets):
        first = start + int(offset)
        spans.append((first, first + length - 1))
        start += length + MIN_GAP
    return spans


def _reflect(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Positions bouncing between `low` and `high` (a mirror fold of the unbounded path)."""
    period = 2 * (high - low)
    folded = np.mod(position - low, period)
    return low + np.where(folded > high - low, period - folded, folded)


def _background_sprite(rng: np.random.Generator) -> Sprite:
    radius = int(rng.integers(*BACKGROUND_RADII, endpoint=True))
    low, high = radius, SIZE - 1 - radius
    start = rng.uniform(low, high, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(*DRIFT_SPEED) * np.array([np.cos(angle), np.sin(angle)])
    path = _reflect(start + np.arange(NUM_FRAMES)[:, None] * velocity, low, high)
    return Sprite(str(rng.choice(SHAPES)), GREY_RGB, radius, 0, path)


def _clearance(xy: np.ndarray, first: int, background: Sequence[Sprite], radius: int) -> float:
    """The smallest gap in pixels between a shape at centres `xy` (from frame `first`) and the background."""
    frames = slice(first, first + len(xy))
    gaps = [np.linalg.norm(xy - s.xy[frames], axis=1).min() - radius - s.radius for s in background]
    return min(gaps, default=float("inf"))


def _place(rng: np.random.Generator, first: int, offsets: np.ndarray, background: Sequence[Sprite]) -> np.ndarray:
    """Centres ``anchor + offsets`` inside the frame for an event shape, clear of the background if possible."""
    low = RADIUS - offsets.min(axis=0)
    high = SIZE - 1 - RADIUS - offsets.max(axis=0)
    best, best_gap = None, -np.inf
    for _ in range(PLACEMENT_TRIES):
        xy = rng.uniform(low, high) + offsets
        gap = _clearance(xy, first, background, RADIUS)
        if gap >= CLEARANCE:
            return xy
        if gap > best_gap:
            best, best_gap = xy, gap
    assert best is not None
    return best


def _still(first: int, last: int) -> np.ndarray:
    return np.zeros((last - first + 1, 2))


def _make_event(
    kind: type[Event],
    first: int,
    last: int,
    rng: np.random.Generator,
    decks: SceneDecks,
    background: Sequence[Sprite],
    taken: set[tuple[str, str]],
) -> Event:
    """One event; moving and changing shapes take an identity from `taken`'s complement, an appearing shape
    takes its (answer) colour and shape from the decks regardless, so no other shape's look depends on them."""
    if kind is Appear:
        colour, shape = decks.colour.draw(), decks.shape.draw()
        xy = _place(rng, first, _still(first, last), background)
        return Appear(first, last, (Sprite(shape, COLOURS[colour], RADIUS, first, xy),), colour, shape)
    if kind is Move:
        return _move(first, last, rng, decks.direction.draw(), background, _free_identity(rng, taken))
    if kind is Change:
        new_colour = decks.new_colour.draw()
        colour, shape = _free_identity(rng, taken, but=new_colour)
        switch = first + int(rng.integers(*CHANGE_BEFORE, endpoint=True))
        xy = _place(rng, first, _still(first, last), background)
        k = switch - first
        sprites = (
            Sprite(shape, COLOURS[colour], RADIUS, first, xy[:k]),
            Sprite(shape, COLOURS[new_colour], RADIUS, switch, xy[k:]),
        )
        return Change(first, last, sprites, colour, new_colour, shape, switch)
    return _flash(first, last, rng, decks.count.draw(), background)


def _blend(rgb: tuple[int, int, int], weight: float) -> tuple[int, int, int]:
    r, g, b = (round(weight * c + (1 - weight) * bg) for c, bg in zip(rgb, BACKGROUND_RGB))
    return r, g, b


def _move(
    first: int,
    last: int,
    rng: np.random.Generator,
    direction: str,
    background: Sequence[Sprite],
    identity: tuple[str, str],
) -> Move:
    colour, shape = identity
    step = MOVE_SPEED * np.array(DIRECTIONS[direction], dtype=float)
    xy = _place(rng, first, np.arange(last - first + 1)[:, None] * step, background)
    # Oldest trail copy first, so newer copies and the shape itself are drawn over it.
    trail = [Sprite(shape, _blend(COLOURS[colour], w), RADIUS, first, xy - (j + 1) * step) for j, w in enumerate(TRAIL)]
    sprites = (*reversed(trail), Sprite(shape, COLOURS[colour], RADIUS, first, xy))
    return Move(first, last, sprites, colour, shape, direction)


def _flash(first: int, last: int, rng: np.random.Generator, count: int, background: Sequence[Sprite]) -> Flash:
    """`count` white shapes in distinct cells of a 4×4 grid (never overlapping), preferring cells clear of the
    background and otherwise the clearest ones."""
    cell = SIZE // 4
    centres = [np.array([cell * (i + 0.5), cell * (j + 0.5)]) for i in range(4) for j in range(4)]
    frames = last - first + 1
    gaps = np.array([_clearance(np.tile(c, (frames, 1)), first, background, RADIUS) for c in centres])
    order = rng.permutation(len(centres))
    # Clear cells tie (the permutation decides among them); blocked ones follow, clearest first.
    chosen = sorted(order, key=lambda i: -min(gaps[i], CLEARANCE))[:count]
    sprites = tuple(
        Sprite(str(rng.choice(SHAPES)), WHITE_RGB, RADIUS, first, np.tile(centres[i], (frames, 1))) for i in chosen
    )
    return Flash(first, last, sprites, count)
