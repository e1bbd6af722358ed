"""Frame tasks of the synthetic world, to pre-train the backbone that SeViLA later keeps frozen.

BLIP-2's ViT and Flan-T5 arrive pre-trained on images and text; a toy model has to earn that first. Each
example is one rendered frame, or a few frames of one video, with a question about what is visible in them
(nothing about events or time, which is what SeViLA's stages must learn): a caption, the colour or shape of a
visible object, the number of white shapes, the direction a moving shape's trail shows, or whether some object
is there (yes/no, so T5 learns to say the words the localizer will read). Asked of several frames at once (the
answerer's "Frame i:" layout), the facts are those of everything the frames show together, so T5 learns to
find the frame that has them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from sevila import prompts
from sevila_toy.synth.world import COLOURS, COUNT_WORDS, DIRECTIONS, SHAPES, WHITE_RGB, Move, Scene

CAPTION_PROMPT = "Describe the frame."
YES_NO_TEMPLATE = "Is there a {colour} {shape}? Answer yes or no."
YES_NO = ("yes", "no")
EXTRA_WORDS = (
    "Describe",
    "Is",
    "there",
    "a",
    "Answer",
    "yes",
    "or",
    "no",
    "and",
    "nothing",
    "white",
    "What",
    "colour",
    "is",
    "the",
    "shape",
    "How",
    "many",
    "shapes",
    "are",
    "Which",
    "way",
    "moving",
    "one",
    "zero",
    "it",
)
_NAMES = {rgb: name for name, rgb in COLOURS.items()} | {WHITE_RGB: "white"}


@dataclass(frozen=True)
class FrameTask:
    prompt: str
    target: str
    choices: tuple[str, ...] = ()
    """The possible targets of a closed question (the target among them); empty for a caption."""
    kind: str = ""
    """What the task asks about ("colour", "shape", "count", "direction", "yes/no", ...), for reports."""
    option_texts: tuple[str, ...] = ()
    """A multiple-choice task's options, in the order of its ``choices`` (the letters)."""


@dataclass(frozen=True)
class Visible:
    colour: str
    shape: str
    x: float
    direction: str | None  # for the moving shape of a Move event


def visible_objects(scene: Scene, frames: int | Sequence[int]) -> list[Visible]:
    """Named-colour shapes present at ``frames`` (one frame or several), left to right where first seen; a
    shape seen in several frames counts once, and a moving shape's fading trail is not one."""
    frames = [frames] if isinstance(frames, int) else list(frames)
    # A Move's last sprite is the shape itself; the ones before it are its trail (sevila_toy.synth.scene).
    moving = {id(e.sprites[-1]): e.direction for e in scene.events if isinstance(e, Move)}
    found = []
    for sprite in scene.sprites():
        seen = [f for f in frames if sprite.first <= f <= sprite.last]
        if seen and sprite.rgb in _NAMES:
            x = float(sprite.centre(seen[0])[0])
            found.append(Visible(_NAMES[sprite.rgb], sprite.shape, x, moving.get(id(sprite))))
    return sorted(found, key=lambda v: v.x)


def _choice(options: list[str], answer: str, rng: np.random.Generator, size: int = 5) -> tuple[list[str], int]:
    """``size`` options including ``answer``, in random order; returns (options, answer index)."""
    others = [o for o in options if o != answer]
    picked = list(rng.choice(others, size=min(size - 1, len(others)), replace=False)) + [answer]
    order = rng.permutation(len(picked))
    shuffled = [str(picked[i]) for i in order]
    return shuffled, shuffled.index(answer)


def _multiple_choice(kind: str, question: str, options: list[str], answer: str, rng: np.random.Generator) -> FrameTask:
    shuffled, index = _choice(options, answer, rng)
    letters = [prompts.answer_target(i) for i in range(len(shuffled))]
    return FrameTask(prompts.qa_prompt(question, shuffled), letters[index], tuple(letters), kind, tuple(shuffled))


def frame_tasks(scene: Scene, frames: int | Sequence[int], rng: np.random.Generator) -> list[FrameTask]:
    """Every task these frames (one or several) support together, one of each kind that applies."""
    objects = visible_objects(scene, frames)
    caption = " and ".join(f"a {o.colour} {o.shape}" for o in objects) or "nothing"
    tasks = [FrameTask(CAPTION_PROMPT, caption, kind="caption")]
    colours = [c for c in COLOURS]
    by_shape = {s: [o for o in objects if o.shape == s and o.colour != "white"] for s in SHAPES}
    for shape, found in by_shape.items():
        if len(found) == 1:
            tasks.append(_multiple_choice("colour", f"What colour is the {shape}?", colours, found[0].colour, rng))
    named = [o for o in objects if o.colour != "white"]
    if len(named) == 1:  # the single-frame form of the video questions about "the shape that appeared"
        tasks.append(_multiple_choice("colour", "What colour is the shape?", colours, named[0].colour, rng))
        tasks.append(_multiple_choice("shape", "What shape is it?", list(SHAPES), named[0].shape, rng))
    by_colour = {c: [o for o in objects if o.colour == c] for c in colours}
    for colour, found in by_colour.items():
        if len(found) == 1:
            tasks.append(
                _multiple_choice("shape", f"What shape is the {colour} one?", list(SHAPES), found[0].shape, rng)
            )
    whites = sum(o.colour == "white" for o in objects)
    if whites >= 2:
        tasks.append(
            _multiple_choice(
                "count", "How many white shapes are there?", list(COUNT_WORDS.values()), COUNT_WORDS[whites], rng
            )
        )
    for o in objects:
        if o.direction is not None:
            tasks.append(
                _multiple_choice(
                    "direction", f"Which way is the {o.colour} {o.shape} moving?", list(DIRECTIONS), o.direction, rng
                )
            )
    # Yes/no, balanced: something present, or a look nothing in the frame has.
    present = {(o.colour, o.shape) for o in objects}
    if objects and rng.random() < 0.5:
        colour, shape = sorted(present)[rng.integers(len(present))]
        tasks.append(FrameTask(YES_NO_TEMPLATE.format(colour=colour, shape=shape), "yes", YES_NO, "yes/no"))
    else:
        # Half of the "no"s name a colour that is there on a shape that is not: colour alone answers the
        # others, and a backbone trained only on those learned to see colours but not shapes.
        near = sorted((c, s) for c in {o.colour for o in objects} for s in SHAPES if (c, s) not in present)
        far = [(c, s) for c in colours for s in SHAPES if (c, s) not in present]
        absent = near if near and rng.random() < 0.5 else far
        colour, shape = absent[rng.integers(len(absent))]
        tasks.append(FrameTask(YES_NO_TEMPLATE.format(colour=colour, shape=shape), "no", YES_NO, "yes/no"))
    return tasks


def pick_frames(scene: Scene, num_frames: int, frames_per_task: int, rng: np.random.Generator) -> list[int]:
    """A frame inside one of the scene's events half of the time (so the rare event shapes are seen enough),
    else any frame; with ``frames_per_task`` > 1, other distinct frames of the video join it, in time order."""
    if scene.events and rng.random() < 0.5:
        event = scene.events[rng.integers(len(scene.events))]
        first = int(rng.integers(event.first, event.last + 1))
    else:
        first = int(rng.integers(num_frames))
    if frames_per_task == 1:
        return [first]
    others = rng.choice([f for f in range(num_frames) if f != first], size=frames_per_task - 1, replace=False)
    return sorted([first, *(int(f) for f in others)])


def sample_tasks(
    scenes: list[Scene], frames: np.ndarray, count: int, rng: np.random.Generator, frames_per_task: int = 1
) -> Iterator[tuple[np.ndarray, FrameTask]]:
    """``count`` (pixels, task) pairs: ``frames_per_task`` frames of a random scene, as an array
    ``(frames_per_task, H, W, 3)``, and one of the tasks they support.

    ``frames[i]`` are the rendered frames of ``scenes[i]``.
    """
    for _ in range(count):
        i = int(rng.integers(len(scenes)))
        chosen = pick_frames(scenes[i], frames.shape[1], frames_per_task, rng)
        tasks = frame_tasks(scenes[i], chosen, rng)
        yield frames[i, chosen], tasks[rng.integers(len(tasks))]
