"""Check a demo model on a synthetic world it never saw: QA accuracy against chance.

    python -m sevila_toy.demo.check_shipped --seed 1234 --questions 25 [--model DIR]

Generates the world of ``--seed`` (the default question types, as the demo is built on), takes the first
``--questions`` questions in video order and answers them as ``sevila demo`` does: the model's localizer picks 4
keyframes of 32 and its answerer reads them. Prints accuracy, chance (the mean of 1 / options) and their ratio.
``--model`` is ``demo`` (the shipped model, the default) or a model folder, e.g. a build's ``--ship DIR/model``.
Seeds the build itself uses are refused: the point is a world the model has never seen.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sevila_toy.demo.build import BACKBONE_SCENES_SEED, HELD_OUT_SCENES_SEED, Settings
from sevila_toy.demo.vision_pretraining import VISION_WORLD_SEED
from sevila_toy.synth import plan_world, synthesize


def seeds_used_by_the_build() -> set[int]:
    """World seeds of the default build: its seeds' worlds, the backbone's scenes, the ViT's draws."""
    return {0, 1, 2, BACKBONE_SCENES_SEED, HELD_OUT_SCENES_SEED} | set(
        range(VISION_WORLD_SEED, VISION_WORLD_SEED + 1000)
    )


def videos_for(questions: int, seed: int) -> int:
    """The fewest videos whose world (of ``seed``) asks at least ``questions`` questions."""
    videos = max(1, questions)
    while sum(len(v.questions) for v in plan_world(videos, seed)) < questions:
        videos += max(1, questions // 4)
    return videos


def check(model: str, seed: int, questions: int) -> dict:
    from sevila.data import read_records
    from sevila.inference import VideoQA

    qa = VideoQA.load(model, device="cpu", cache=False, precision="fp32")
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        synthesize(world, videos_for(questions, seed), seed=seed, fractions=(1.0, 0.0, 0.0), workers=1)
        records = read_records(world / "qa.jsonl")[:questions]
        right = 0
        for record in records:
            answer = qa.predict(world / "videos" / f"{record.video}.mp4", record.question, record.options)
            right += answer.index == record.answer
    chance = sum(1 / len(r.options) for r in records) / len(records)
    return {"questions": len(records), "correct": right, "accuracy": right / len(records), "chance": chance}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1234, help="world seed, one the build never used (default 1234)")
    parser.add_argument("--questions", type=int, default=25, help="questions to answer (default 25)")
    parser.add_argument("--model", default="demo", help="'demo' (the shipped model) or a model folder")
    args = parser.parse_args(argv)
    if args.seed in seeds_used_by_the_build():
        print(f"error: seed {args.seed} is one the demo build uses; choose another", file=sys.stderr)
        return 2
    if args.questions < 1:
        print(f"error: --questions must be positive, got {args.questions}", file=sys.stderr)
        return 2
    result = check(args.model, args.seed, args.questions)
    print(
        f"model {args.model}, world of seed {args.seed} ({', '.join(Settings().question_types)} questions): "
        f"{result['correct']}/{result['questions']} right = {100 * result['accuracy']:.1f}%; "
        f"chance {100 * result['chance']:.1f}%; {result['accuracy'] / result['chance']:.2f}x chance"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
