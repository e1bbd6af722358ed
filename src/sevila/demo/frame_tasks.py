"""Single-frame tasks of the synthetic world, to pre-train the backbone that SeViLA later keeps frozen.

BLIP-2's ViT and Flan-T5 arrive pre-trained on images and text; a toy model has to earn that first. Each
example is one rendered frame with a question about what is visible in it *now* (nothing about events or
time, which is what SeViLA's stages must learn): a caption, the colour or shape of a visible object, the
number of white shapes, the direction a moving shape's trail shows, or whether some object is there
(yes/no, so T5 learns to say the words the localizer will read).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sevila import prompts
from sevila.synth.world import COLOURS, COUNT_WORDS, DIRECTIONS, SHAPES, WHITE_RGB, Move, Scene

CAPTION_PROMPT = "Describe the frame."
YES_NO_TEMPLATE = "Is there a {colour} {shape}? Answer yes or no."
YES_NO = ("yes", "no")
EXTRA_WORDS = ("Describe", "Is", "there", "a", "Answer", "yes", "or", "no", "and", "nothing", "white",
               "What", "colour", "is", "the", "shape", "How", "many", "shapes", "are", "Which", "way", "moving",
               "one", "zero", "it")
_NAMES = {rgb: name for name, rgb in COLOURS.items()} | {WHITE_RGB: "white"}


@dataclass(frozen=True)
class FrameTask:
    prompt: str
    target: str
    choices: tuple[str, ...] = ()
    """The possible targets of a closed question (the target among them); empty for a caption."""


@dataclass(frozen=True)
class Visible:
    colour: str
    shape: str
    x: float
    direction: str | None  # for the moving shape of a Move event


def visible_objects(scene: Scene, frame: int) -> list[Visible]:
    """Named-colour shapes present at ``frame``, left to right (a moving shape's fading trail is not one)."""
    moving = {id(e.sprites[0]): e.direction for e in scene.events if isinstance(e, Move)}
    found = []
    for sprite in scene.sprites():
        if sprite.first <= frame <= sprite.last and sprite.rgb in _NAMES:
            x = float(sprite.centre(frame)[0])
            found.append(Visible(_NAMES[sprite.rgb], sprite.shape, x, moving.get(id(sprite))))
    return sorted(found, key=lambda v: v.x)


def _choice(options: list[str], answer: str, rng: np.random.Generator, size: int = 5) -> tuple[list[str], int]:
    """``size`` options including ``answer``, in random order; returns (options, answer index)."""
    others = [o for o in options if o != answer]
    picked = list(rng.choice(others, size=min(size - 1, len(others)), replace=False)) + [answer]
    order = rng.permutation(len(picked))
    shuffled = [str(picked[i]) for i in order]
    return shuffled, shuffled.index(answer)


def _multiple_choice(question: str, options: list[str], answer: str, rng: np.random.Generator) -> FrameTask:
    shuffled, index = _choice(options, answer, rng)
    letters = [prompts.answer_target(i) for i in range(len(shuffled))]
    return FrameTask(prompts.qa_prompt(question, shuffled), letters[index], tuple(letters))


def frame_tasks(scene: Scene, frame: int, rng: np.random.Generator) -> list[FrameTask]:
    """Every task this frame supports (one of each kind that applies)."""
    objects = visible_objects(scene, frame)
    caption = " and ".join(f"a {o.colour} {o.shape}" for o in objects) or "nothing"
    tasks = [FrameTask(CAPTION_PROMPT, caption)]
    colours = [c for c in COLOURS]
    by_shape = {s: [o for o in objects if o.shape == s and o.colour != "white"] for s in SHAPES}
    for shape, found in by_shape.items():
        if len(found) == 1:
            tasks.append(_multiple_choice(f"What colour is the {shape}?", colours, found[0].colour, rng))
    named = [o for o in objects if o.colour != "white"]
    if len(named) == 1:  # the single-frame form of the video questions about "the shape that appeared"
        tasks.append(_multiple_choice("What colour is the shape?", colours, named[0].colour, rng))
        tasks.append(_multiple_choice("What shape is it?", list(SHAPES), named[0].shape, rng))
    by_colour = {c: [o for o in objects if o.colour == c] for c in colours}
    for colour, found in by_colour.items():
        if len(found) == 1:
            tasks.append(_multiple_choice(f"What shape is the {colour} one?", list(SHAPES), found[0].shape, rng))
    whites = sum(o.colour == "white" for o in objects)
    if whites >= 2:
        tasks.append(_multiple_choice("How many white shapes are there?", list(COUNT_WORDS.values()),
                                      COUNT_WORDS[whites], rng))
    for o in objects:
        if o.direction is not None:
            tasks.append(_multiple_choice(f"Which way is the {o.colour} {o.shape} moving?", list(DIRECTIONS),
                                          o.direction, rng))
    # Yes/no, balanced: something present, or a look nothing in the frame has.
    present = {(o.colour, o.shape) for o in objects}
    if objects and rng.random() < 0.5:
        colour, shape = sorted(present)[rng.integers(len(present))]
        tasks.append(FrameTask(YES_NO_TEMPLATE.format(colour=colour, shape=shape), "yes", YES_NO))
    else:
        absent = [(c, s) for c in colours for s in SHAPES if (c, s) not in present]
        colour, shape = absent[rng.integers(len(absent))]
        tasks.append(FrameTask(YES_NO_TEMPLATE.format(colour=colour, shape=shape), "no", YES_NO))
    return tasks


def sample_tasks(scenes: list[Scene], frames: np.ndarray, count: int, rng: np.random.Generator
                 ) -> Iterator[tuple[np.ndarray, FrameTask]]:
    """``count`` (frame pixels, task) pairs: a random frame of a random scene, then one of its tasks.

    ``frames[i]`` are the rendered frames of ``scenes[i]``. Frames inside events are drawn as often as the
    rest, so the rare event shapes are seen enough.
    """
    for _ in range(count):
        i = int(rng.integers(len(scenes)))
        scene = scenes[i]
        if scene.events and rng.random() < 0.5:
            event = scene.events[rng.integers(len(scene.events))]
            frame = int(rng.integers(event.first, event.last + 1))
        else:
            frame = int(rng.integers(frames.shape[1]))
        tasks = frame_tasks(scene, frame, rng)
        yield frames[i, frame], tasks[rng.integers(len(tasks))]
