"""Planning a whole synthetic world and writing it to a folder (what `sevila synth` runs).

Layout of the output folder::

    videos/v0000.mp4 ...        8 s, 8 fps, 64×64 H.264 videos
    qa.jsonl                    every question (QA records, dataset "synthetic")
    moments.jsonl               one moment query per event (moment records, dataset "qvhighlights")
    evidence.jsonl              per question: evidence windows (seconds) and frame indices
    qa_{train,val,test}.jsonl   the same questions split by video
    moments_{train,val,test}.jsonl

The QA records name their dataset "synthetic" (`sevila.data.records.DATASET_TABLE`: the generic multiple-choice
prompts; QA accuracy by type and, from the evidence windows, the grounded-QA metrics). Like NExT-GQA's converted
records they carry their grounding in ``extra`` (``grounding_windows``, ``fps``, ``duration``). qids are ``{question_type}_{video}_{n}`` (moment qids ``{event kind}_{video}_{n}``), so
``qid.split('_')[0]`` is the type, as the original's metrics expect.

Everything is planned from one seed before any video is rendered (the plan is cheap; rendering runs in
parallel), so the JSONL files are byte-identical and the videos decode to the same frames for a seed.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sevila.data.records import MomentRecord, QARecord, write_records
from sevila_toy.synth.evidence import Evidence, evidence_for, write_evidence
from sevila_toy.synth.questions import (
    DEFAULT_QUESTION_TYPES,
    Question,
    QuestionDecks,
    ask,
    check_question_types,
)
from sevila_toy.synth.render import render, write_mp4
from sevila_toy.synth.scene import SceneDecks, plan_scene
from sevila_toy.synth.world import DURATION, FPS, Scene

DATASET = "synthetic"
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class SynthVideo:
    """One planned video: its file name (without ``.mp4``), scene and questions."""

    name: str
    scene: Scene
    questions: list[Question]

    def qid(self, index: int) -> str:
        return f"{self.questions[index].type}_{self.name}_{index}"

    def qa_records(self) -> list[QARecord]:
        return [
            QARecord(
                self.qid(i),
                self.name,
                DATASET,
                q.text,
                q.options,
                q.answer,
                q.type,
                extra={"grounding_windows": self.evidence(i).windows, "fps": FPS, "duration": DURATION},
            )
            for i, q in enumerate(self.questions)
        ]

    def moment_records(self) -> list[MomentRecord]:
        return [
            MomentRecord(f"{e.kind}_{self.name}_{i}", self.name, e.query(), DURATION, [[e.first / FPS, e.last / FPS]])
            for i, e in enumerate(self.scene.events)
        ]

    def evidence(self, index: int) -> Evidence:
        return evidence_for(self.qid(index), self.name, self.questions[index].evidence, FPS)


def video_names(count: int) -> list[str]:
    """``v0000``, ``v0001``, … (at least 4 digits, more when needed, so names sort in order)."""
    width = max(4, len(str(count - 1)))
    return [f"v{i:0{width}d}" for i in range(count)]


def plan_world(videos: int, seed: int = 0, question_types: Sequence[str] = DEFAULT_QUESTION_TYPES) -> list[SynthVideo]:
    """Scenes and questions (of `question_types`) of `videos` videos; a pure function of its arguments.

    Scenes and questions draw from separate random streams, so a seed gives the same videos whatever types
    are asked about them."""
    if videos <= 0:
        raise ValueError(f"the number of videos must be positive, got {videos}")
    types = check_question_types(question_types)
    streams = np.random.SeedSequence(seed).spawn(3)
    rng, question_rng = np.random.default_rng(streams[0]), np.random.default_rng(streams[2])
    scene_decks, question_decks = SceneDecks.create(rng), QuestionDecks.create(question_rng)
    world = []
    for name in video_names(videos):
        scene = plan_scene(rng, scene_decks)
        world.append(SynthVideo(name, scene, ask(scene, question_rng, question_decks, types)))
    return world


def split_videos(
    names: Sequence[str], seed: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """Videos per split: a seeded shuffle cut at the rounded cumulative fractions (train, val, test).

    Drawn from its own random stream, so changing the fractions moves videos between splits without
    changing any video.
    """
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {list(fractions)}")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    order = [names[i] for i in rng.permutation(len(names))]
    cuts = [0, *(round(float(c) * len(names)) for c in np.cumsum(fractions)[:-1]), len(names)]
    return {split: sorted(order[a:b]) for split, a, b in zip(SPLITS, cuts, cuts[1:])}


@dataclass(frozen=True)
class Summary:
    """What `synthesize` wrote."""

    videos: int
    questions: dict[str, int]
    """Questions per type."""
    moments: int
    splits: dict[str, int]
    """Videos per split."""
    seconds: float


def _render_to(path: Path, scene: Scene) -> None:
    write_mp4(path, render(scene))


def synthesize(
    out: str | os.PathLike[str],
    videos: int,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    workers: int | None = None,
    question_types: Sequence[str] = DEFAULT_QUESTION_TYPES,
) -> Summary:
    """Plan `videos` videos from `seed` and write them and their records (questions of `question_types`) to the
    new or empty folder `out`.

    `workers` processes render the videos (default: one per CPU; 1 renders in this process).
    """
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder; choose a new one")
    world = plan_world(videos, seed, question_types)
    splits = split_videos([v.name for v in world], seed, fractions)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    paths = [out / "videos" / f"{v.name}.mp4" for v in world]
    scenes = [v.scene for v in world]
    if workers == 1:
        for path, scene in zip(paths, scenes):
            _render_to(path, scene)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_render_to, paths, scenes, chunksize=8))

    write_records(out / "qa.jsonl", [r for v in world for r in v.qa_records()])
    write_records(out / "moments.jsonl", [r for v in world for r in v.moment_records()])
    write_evidence(out / "evidence.jsonl", [v.evidence(i) for v in world for i in range(len(v.questions))])
    by_name = {v.name: v for v in world}
    for split, names in splits.items():
        members = [by_name[n] for n in names]
        write_records(out / f"qa_{split}.jsonl", [r for v in members for r in v.qa_records()])
        write_records(out / f"moments_{split}.jsonl", [r for v in members for r in v.moment_records()])

    return Summary(
        videos=len(world),
        questions=dict(Counter(q.type for v in world for q in v.questions)),
        moments=sum(len(v.scene.events) for v in world),
        splits={split: len(names) for split, names in splits.items()},
        seconds=time.perf_counter() - start,
    )
