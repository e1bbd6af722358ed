"""Why self-refinement does not improve the demo's localizer: what its pseudo-labels say, and what perfect ones do.

Runs on one finished seed of a demo build (``python -m sevila_toy.demo.build``), in that seed's synthetic world:

1. **Pseudo-label quality.** The seed's fine-tuned answerer labels each of 32 frames of every training question
   "yes" when, seeing that frame alone, it picks the right option (the reverse chain, as the refinement stage
   does). Per question type: the share of frames labelled "yes"; their precision (the share inside an evidence
   window), against the base rate (the share of all frames inside one); their recall.
2. **Refinement with those labels and with perfect ones.** The build's refinement stage and settings, from the
   pre-trained localizer (as the build) and from the untrained one (the backbone's copy, where the original's
   released refinement script starts), once on those pseudo-labels and once on perfect ones ("yes" exactly on
   the frames inside an evidence window: the best any answerer could give), at each learning rate of ``--lrs``.
   Each localizer's QA accuracy, evidence hit and keyframe precision on the test split, against the two
   starting points'.

Usage: python -m benchmarks.diagnose_self_refinement RUN/seed0 [--out DIR] [--lrs 1e-4 1e-3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from sevila.data import QARecord, read_records
from sevila.data.paths import video_file
from sevila.data.targets import frame_labels, record_prompts
from sevila.features import FeatureCache, encode_video
from sevila.model import SeViLA
from sevila.train import recipes
from sevila_toy.demo.ablations import Scores, evaluate_choice, with_localizer
from sevila_toy.demo.build import Settings, _run_stage, _stage_config
from sevila_toy.synth.evidence import Evidence, read_evidence


def pseudo_label_quality(
    answerer: SeViLA, data: Path, evidence: dict[str, Evidence], cache: FeatureCache
) -> dict[str, list[int]]:
    """Per question type (and "all"): [frames labelled yes, yes frames inside evidence, frames inside, frames].
    A video's frames are encoded once for all its questions (``cache``)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    answerer.eval()
    for record in read_records(data / "qa_train.jsonl"):
        if not isinstance(record, QARecord):
            continue
        video = encode_video(answerer, video_file(record, data / "videos"), 32, record.clip, cache=cache)
        qa_prompt, _ = record_prompts(record)
        with torch.no_grad():
            labels, _ = answerer.pseudo_labels(
                video.features.answerer, [qa_prompt], torch.tensor([record.answer]), len(record.options)
            )
        inside = frame_labels(video.timestamps, evidence[record.qid].windows)
        for kind in (record.question_type or "untyped", "all"):
            row = counts[kind]
            for yes, within in zip(labels[0].tolist(), inside):
                row[0] += yes
                row[1] += yes and within
                row[2] += within
                row[3] += 1
    return counts


@contextmanager
def refining_on_evidence(evidence: dict[str, Evidence]) -> Iterator[None]:
    """The refinement stage with a perfect answerer while inside: a frame is "yes" exactly when it lies in an
    evidence window."""

    class RefineOnEvidence(recipes.RefineLocalizer):
        def loss(self, model: SeViLA, batch: recipes.Batch) -> torch.Tensor:
            labels = torch.tensor(
                [
                    frame_labels(times.tolist(), evidence[qid].windows)
                    for qid, times in zip(batch["qid"], batch["timestamps"])
                ]
            )
            return model.pretrain_localizer_loss(batch["frames"], batch["loc_prompt"], labels).loss

    original = recipes.RECIPES["refine-localizer"]
    recipes.RECIPES["refine-localizer"] = RefineOnEvidence
    try:
        yield
    finally:
        recipes.RECIPES["refine-localizer"] = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed_dir", type=Path, help="a finished seed of a demo build, e.g. runs/demo/seed0")
    parser.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[Settings().lr["refine-localizer"], 1e-3])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run, settings = args.seed_dir, Settings()
    seed = int(run.name.removeprefix("seed")) if run.name.startswith("seed") else 0
    data, answerer_dir = run / "data", run / "finetune-answerer" / "best"
    evidence = read_evidence(data / "evidence.jsonl")
    out = args.out or Path(tempfile.mkdtemp(prefix="diagnose-refinement-"))
    cache = FeatureCache(out / "features")

    print("1. Pseudo-labels of the fine-tuned answerer, 32 frames of each training question:")
    for kind, (yes, hits, inside, frames) in sorted(
        pseudo_label_quality(SeViLA.from_pretrained(answerer_dir), data, evidence, cache).items()
    ):
        print(
            f"   {kind:>9}: yes {100 * yes / frames:5.1f}% of frames, precision {100 * hits / max(yes, 1):5.1f}% "
            f"(base rate {100 * inside / frames:5.1f}%), recall {100 * hits / max(inside, 1):5.1f}%"
        )

    untrained = out / "untrained-localizer"
    if not (untrained / "config.json").is_file():
        with_localizer(
            SeViLA.from_pretrained(answerer_dir), SeViLA.from_pretrained(run.parent / "backbone")
        ).save_pretrained(untrained)

    def measure(model_dir: Path) -> Scores:
        return evaluate_choice(
            SeViLA.from_pretrained(model_dir),
            data / "qa_test.jsonl",
            data / "evidence.jsonl",
            data / "videos",
            "localizer",
            cache=cache,
        )

    starts = {"untrained": untrained, "pre-trained": answerer_dir}
    rows = {f"{name} localizer": measure(path) for name, path in starts.items()}
    for name, path in starts.items():
        for labels in ("pseudo-labels", "perfect labels"):
            for lr in args.lrs:
                config = _stage_config(
                    "refine-localizer",
                    str(path),
                    out / f"{name}-{labels.split()[0]}-{lr:g}",
                    data,
                    settings,
                    seed,
                    epochs=settings.epochs["refine-localizer"],
                    lr=lr,
                    train_frames=8,
                    eval_frames=32,
                )
                with refining_on_evidence(evidence) if labels == "perfect labels" else nullcontext():
                    best = _run_stage(config)
                rows[f"{name}, refined on {labels}, lr {lr:g}"] = measure(best)

    print(f"\n2. Localizers on the test split ({run}):")
    print(f"   {'localizer':<46} {'QA acc':>7} {'evidence hit':>13} {'keyframe precision':>19}")
    for name, s in rows.items():
        print(f"   {name:<46} {s.accuracy:7.1f} {s.evidence_hit:13.1f} {s.keyframe_precision:19.1f}")


if __name__ == "__main__":
    main()
