"""The synthetic world's vocabulary, clock and scene model: what exists, not how it is drawn or asked about.

A video is 8 s at 8 fps (64 frames of 64×64 px). With SeViLA's 32 uniform samples every other frame is a
candidate (frames 1, 3, …, 63) and 4 uniform frames land on frames 8, 24, 40 and 56. Events last 4–8
frames (0.5–1 s), so an event covers 2–4 of the 32 candidates and most of the time none of the 4 uniform
frames: choosing frames matters. 8 fps also makes every frame time ``i / 8`` exact in binary, so windows
written in seconds select exactly the intended frames under the ``start <= index / fps <= end`` rule of
`sevila.data.targets.frame_labels`.

Grey background shapes drift slowly for the whole video and say nothing about the answers; every shape an
event is about exists only during that event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

FPS = 8
NUM_FRAMES = 64
DURATION = NUM_FRAMES / FPS
SIZE = 64
"""Frame width and height in pixels."""
RADIUS = 6
"""Half-size of event shapes (13 px across), large enough for their colour to survive 4:2:0 chroma."""

BACKGROUND_RGB = (24, 24, 24)
WHITE_RGB = (245, 245, 245)
"""Flashing shapes are white, a colour no other shape has, so a flash is countable in one frame."""
GREY_RGB = (120, 120, 120)
"""Background shapes are grey, a colour no question or option names: in an event's frames the only
named-colour shapes are the event's, so its evidence frames answer its question without the rest of the
video (while the other events' shapes, seen outside the evidence, are the distractors)."""
# Saturated, far apart in hue (and in the YUV chroma plane), so compression cannot confuse them.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "yellow": (235, 215, 30),
    "green": (40, 190, 60),
    "cyan": (30, 210, 225),
    "blue": (45, 80, 245),
    "purple": (200, 60, 225),
}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
"""Unit steps in image coordinates (x to the right, y down)."""
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four", 5: "five"}


@dataclass(frozen=True, eq=False)
class Sprite:
    """One shape as drawn: a fixed look and a centre per frame from `first` on (``xy[k]`` at frame ``first + k``)."""

    shape: str
    rgb: tuple[int, int, int]
    radius: int
    first: int
    xy: np.ndarray
    """float ``(frames, 2)`` centres (x, y) in pixels."""

    @property
    def last(self) -> int:
        return self.first + len(self.xy) - 1

    def centre(self, frame: int) -> np.ndarray:
        if not self.first <= frame <= self.last:
            raise ValueError(f"frame {frame} is outside the sprite's frames {self.first}..{self.last}")
        return self.xy[frame - self.first]


@dataclass(frozen=True, eq=False)
class Event:
    """Something short that happens: frames ``first..last`` (inclusive) and the sprites that show it."""

    first: int
    last: int
    sprites: tuple[Sprite, ...]

    kind: ClassVar[str]
    phrase: ClassVar[str]
    """What happened, without the details: the options of temporal questions."""
    query_template: ClassVar[str]
    """The event as a moment-retrieval query, over the event's fields (``count`` as a word)."""

    def query(self) -> str:
        """E.g. "a red circle appears"."""
        return self.query_template.format(**vars(self))

    @property
    def identity(self) -> tuple[str, str] | None:
        """(colour, shape) by which a question names the event's shape; None for a flash of several shapes."""
        return None

    @property
    def named_frames(self) -> tuple[int, int]:
        """The frames in which the shape looks as `identity` names it."""
        return self.first, self.last


@dataclass(frozen=True, eq=False)
class Appear(Event):
    """A shape appears and stays still."""

    colour: str
    shape: str

    kind: ClassVar[str] = "appear"
    phrase: ClassVar[str] = "a shape appeared"
    query_template: ClassVar[str] = "a {colour} {shape} appears"

    @property
    def identity(self) -> tuple[str, str]:
        return self.colour, self.shape


@dataclass(frozen=True, eq=False)
class Move(Event):
    """A shape crosses part of the frame quickly in one direction, leaving a short fading trail."""

    colour: str
    shape: str
    direction: str

    kind: ClassVar[str] = "move"
    phrase: ClassVar[str] = "a shape moved"
    query_template: ClassVar[str] = "a {colour} {shape} moves {direction}"

    @property
    def identity(self) -> tuple[str, str]:
        return self.colour, self.shape


@dataclass(frozen=True, eq=False)
class Change(Event):
    """A still shape turns from `colour` to `new_colour` at frame `switch`."""

    colour: str
    new_colour: str
    shape: str
    switch: int

    kind: ClassVar[str] = "change"
    phrase: ClassVar[str] = "a shape changed colour"
    query_template: ClassVar[str] = "a {colour} {shape} turns {new_colour}"

    @property
    def identity(self) -> tuple[str, str]:
        return self.colour, self.shape

    @property
    def named_frames(self) -> tuple[int, int]:
        return self.first, self.switch - 1


@dataclass(frozen=True, eq=False)
class Flash(Event):
    """Several white shapes appear together for a moment."""

    count: int

    kind: ClassVar[str] = "flash"
    phrase: ClassVar[str] = "some shapes flashed"
    query_template: ClassVar[str] = "{count} white shapes flash"

    def query(self) -> str:
        return self.query_template.format(count=COUNT_WORDS[self.count])


EVENT_TYPES: tuple[type[Event], ...] = (Appear, Move, Change, Flash)
EVENT_PHRASES = tuple(t.phrase for t in EVENT_TYPES)


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything visible in one video: background sprites and events in time order (not overlapping)."""

    background: tuple[Sprite, ...]
    events: tuple[Event, ...]

    def sprites(self) -> list[Sprite]:
        """All sprites in drawing order: background first, so event shapes are never hidden."""
        return [*self.background, *(s for e in self.events for s in e.sprites)]

    def is_unique(self, identity: tuple[str, str]) -> bool:
        """Whether exactly one sprite looks like ``(colour, shape)``, so a question can name it unambiguously."""
        rgb, shape = COLOURS[identity[0]], identity[1]
        return sum(s.rgb == rgb and s.shape == shape for s in self.sprites()) == 1
