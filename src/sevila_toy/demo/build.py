"""Build the demo model and the toy-scale ablation table, from nothing, on a CPU.

    python -m sevila_toy.demo.build --out runs/demo --seeds 0 1 2 [--ship DIR]

First the backbone, once: the toy T5 learns to look up options in text, the ViT learns to read frames, then a
Q-Former and T5 learn, through the frozen ViT, frame tasks of the synthetic world, one frame or four at a time
(`sevila_toy.demo.text_tasks`, `sevila_toy.demo.vision_pretraining`, `sevila_toy.demo.backbone`); their accuracy is
measured on unseen scenes. Like BLIP-2 in the paper, this one backbone serves every seed. Then for each seed:
generate the synthetic world (`sevila_toy.synth`) and take SeViLA through the paper's stages with the real training
code (`sevila.train`): localizer pre-training on the moment queries, answerer fine-tuning on the localizer's
keyframes (and, for the baseline, on 4 uniform frames), localizer self-refinement with the answerer's pseudo-labels.
Every model is then measured on the test split (`sevila_toy.demo.ablations`). The table over seeds (mean ± std) is
written to ``OUT/ablations.md`` and ``OUT/ablations.json``; ``--ship DIR`` writes the model of the seed whose
`SHIPPED_STAGE` scores best on its own validation split (`best_seed`) and one of its test videos to the new or empty folder ``DIR``, in the layout of the ``demo`` model that
`sevila` ships (``sevila/assets/demo``; to re-ship, copy ``DIR`` over that folder in a checkout: docs/demo.md).
Finished steps are kept, so an interrupted build resumes. Work that does not depend on each other runs side by side,
in processes of one thread each (``--jobs``): the backbone's language and vision pre-training, then the seeds, each
logging to its own file in ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sevila.features import FeatureCache
from sevila.model import SeViLA
from sevila.train import train
from sevila.train.config import config_from_dict
from sevila_toy.demo.ablations import Scores, evaluate_choice, with_localizer
from sevila_toy.demo.backbone import (
    frame_task_accuracy,
    option_lookup_accuracy,
    pretrain_backbone,
    pretrain_language_model_with_restarts,
    render_all,
)
from sevila_toy.demo.frame_tasks import EXTRA_WORDS
from sevila_toy.demo.text_tasks import TEXT_WORDS
from sevila_toy.demo.vision_pretraining import pretrain_vision
from sevila_toy.preset import toy_config
from sevila_toy.synth import DEFAULT_QUESTION_TYPES, QUESTION_TYPES, read_evidence, synthesize, world_vocabulary
from sevila_toy.synth.generate import plan_world
from sevila_toy.synth.questions import check_question_types
from sevila_toy.tokenizer import build_toy_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class Settings:
    videos: int = 400
    question_types: tuple[str, ...] = DEFAULT_QUESTION_TYPES
    """The types the seeds' worlds ask (the backbone's frame tasks do not depend on them)."""
    language_max_steps: int = 4000
    language_batch: int = 64
    language_seeds: tuple[int, ...] = (0, 1, 2)
    """T5 initialisations tried in turn until one masters the option lookup (see
    `pretrain_language_model_with_restarts`)."""
    backbone_scenes: int = 300
    vision_steps: int = 2000
    vision_batch: int = 64
    backbone_steps: int = 2000
    backbone_batch: int = 32
    backbone_check_tasks: int = 600
    """Single-frame tasks of unseen scenes on which the backbone's accuracy is measured."""
    frame_seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the backbone's frame tasks (the Q-Former's initialisation, task order, noise), tried in turn until
    one gives a backbone that passes `min_colour_accuracy` (see `build_backbone`)."""
    min_colour_accuracy: float = 80.0
    """The backbone must answer single-frame colour questions of unseen scenes at least this well (%): below it the
    frame tasks stalled on T5's option-letter plateau, and every stage built on it would answer at chance. Such a
    backbone is set aside and the frame tasks start again from the next of `frame_seeds`; when none is left the
    build stops (`BackboneNotLearned`)."""
    epochs: dict[str, int] = field(
        default_factory=lambda: {
            "pretrain-localizer": 5,
            "finetune-answerer": 5,
            "uniform": 5,
            "refine-localizer": 3,
        }
    )
    batch_size: int = 8
    lr: dict[str, float] = field(
        default_factory=lambda: {
            "pretrain-localizer": 1e-3,
            "finetune-answerer": 1e-4,
            "uniform": 1e-4,
            "refine-localizer": 1e-4,
        }
    )
    """Per stage. The stages that fine-tune a branch which already does its job take a tenth of the localizer
    pre-training's rate, so that they keep what the backbone reads (docs/demo.md, "What it took" (d))."""
    warmup_steps: int = 20


QUICK = Settings(
    videos=12,
    language_max_steps=4,
    language_batch=4,
    language_seeds=(0,),
    backbone_scenes=12,
    vision_steps=4,
    vision_batch=4,
    backbone_steps=4,
    backbone_batch=4,
    backbone_check_tasks=100,
    frame_seeds=(0,),
    epochs={"pretrain-localizer": 1, "finetune-answerer": 1, "uniform": 1, "refine-localizer": 1},
    batch_size=2,
    warmup_steps=1,
    min_colour_accuracy=0.0,
)


def toy_tokenizer():
    return build_toy_tokenizer([*world_vocabulary(), *EXTRA_WORDS, *TEXT_WORDS])


def _stage_config(
    stage: str,
    model: str,
    out: Path,
    data: Path,
    settings: Settings,
    seed: int,
    *,
    epochs: int,
    lr: float,
    train_frames: int,
    eval_frames: int,
    uniform: bool = False,
) -> dict:
    kind = "moments" if stage == "pretrain-localizer" else "qa"
    return {
        "stage": stage,
        "model": model,
        "output_dir": str(out),
        "epochs": epochs,
        "batch_size": settings.batch_size,
        "eval_batch_size": 8,
        "seed": seed,
        "uniform_frames": uniform,
        "num_keyframes": 4,
        "checkpoint_every_steps": 0,
        "log_every_steps": 10,
        "tensorboard": False,
        # Whole frames: the world's shapes sit anywhere, and the original's crop (down to half the frame) cuts
        # the evidence out of some clips. Whole frames also repeat across epochs, so the ViT's output is kept.
        "cache_vision_states": True,
        "data": {
            "train": str(data / f"{kind}_train.jsonl"),
            "val": str(data / f"{kind}_val.jsonl"),
            "video_root": str(data / "videos"),
            "train_frames": train_frames,
            "eval_frames": eval_frames,
            "image_size": 64,
            "num_workers": 0,
            "augment": False,
        },
        "optim": {"lr": lr, "warmup_steps": settings.warmup_steps, "weight_decay": 0.05},
    }


def _run_stage(config: dict) -> Path:
    out = Path(config["output_dir"])
    if (out / "best" / "config.json").is_file():  # done by an earlier, interrupted build
        return out / "best"
    if out.exists():
        shutil.rmtree(out)
    result = train(config_from_dict(config))
    return Path(result.best_dir)


BACKBONE_SCENES_SEED = 10_000
HELD_OUT_SCENES_SEED = 20_000


COLOUR_CHECK = "colour, 1 frame"


class BackboneNotLearned(RuntimeError):
    """The backbone's frame pre-training did not take (see `Settings.min_colour_accuracy`)."""


def _fresh_toy_model(seed: int = 0) -> SeViLA:
    torch.manual_seed(seed)
    return SeViLA(toy_config(), tokenizer=toy_tokenizer())


def pretrain_language_part(settings: Settings, progress: bool = True) -> tuple[dict, dict]:
    """Step 0 of the backbone: T5 alone on the text option lookups. Returns T5's weights and what happened."""
    model = _fresh_toy_model()
    began = time.perf_counter()
    tried = pretrain_language_model_with_restarts(
        model, settings.language_seeds, settings.language_max_steps, settings.language_batch, progress=progress
    )
    lookup = option_lookup_accuracy(model, count=settings.backbone_check_tasks // 2)
    minutes = (time.perf_counter() - began) / 60
    logger.info(
        "language model: %.1f min; seeds tried %s; lookup among five %.1f%% on fresh tasks", minutes, tried, lookup
    )
    return model.language_model.state_dict(), {
        "seeds_tried": tried,
        "minutes": round(minutes, 1),
        "lookup_among_five": lookup,
    }


def pretrain_vision_part(settings: Settings, progress: bool = True) -> tuple[dict, dict]:
    """Step 1 of the backbone: the ViT alone reads frames. Returns the ViT's weights and what its probes read."""
    model = _fresh_toy_model()
    began = time.perf_counter()
    held_out = _held_out_scenes(settings)
    _, facts_read = pretrain_vision(
        model,
        settings.vision_steps,
        settings.vision_batch,
        progress=progress,
        scenes_per_draw=settings.backbone_scenes,
        held_out=(held_out, render_all(held_out)),
    )
    minutes = (time.perf_counter() - began) / 60
    logger.info("vision: %.1f min; facts read by the probes on frames of unseen scenes: %s", minutes, facts_read)
    return model.vision.state_dict(), {
        "steps": settings.vision_steps,
        "minutes": round(minutes, 1),
        "facts_read_on_unseen_frames": facts_read,
    }


def _held_out_scenes(settings: Settings) -> list:
    return [v.scene for v in plan_world(max(8, settings.backbone_scenes // 3), seed=HELD_OUT_SCENES_SEED)]


def _in_worker(log: Path, function, *args):
    """``function(*args)`` in a worker process of one thread, its log and progress bars appended to ``log``.

    One thread each: models this small gain less from a second thread than from a second process, which runs a
    second job at nearly full speed on the second core."""
    torch.set_num_threads(1)
    stream = open(log, "a", buffering=1)  # noqa: SIM115 - open for the worker's life
    os.dup2(stream.fileno(), sys.stdout.fileno())
    os.dup2(stream.fileno(), sys.stderr.fileno())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    return function(*args)


def _worker_pool(jobs: int) -> ProcessPoolExecutor:
    # spawn, not fork: no fork of a process holding torch's thread pools
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def _language_and_vision_parts(
    out: Path, settings: Settings, progress: bool, parallel: bool
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """T5's and the ViT's weights after their own pre-training, and what was measured of them; kept in
    ``OUT/backbone-parts`` so that a resumed build, or another try at the frame tasks, starts from them.

    The two train disjoint weights, each from its own seed, so with ``parallel`` they run side by side in two
    one-thread processes (logs: ``OUT/backbone-language.log`` and ``OUT/backbone-vision.log``)."""
    parts = out / "backbone-parts"
    if (parts / "facts.json").is_file():
        return (
            load_file(parts / "language.safetensors"),
            load_file(parts / "vision.safetensors"),
            json.loads((parts / "facts.json").read_text()),
        )
    began = time.perf_counter()
    if parallel:
        logger.info(
            "language and vision pre-training side by side; logs: %s, %s",
            out / "backbone-language.log",
            out / "backbone-vision.log",
        )
        with _worker_pool(2) as pool:
            language = pool.submit(
                _in_worker, out / "backbone-language.log", pretrain_language_part, settings, progress
            )
            vision = pool.submit(_in_worker, out / "backbone-vision.log", pretrain_vision_part, settings, progress)
            (t5_weights, language_facts), (vit_weights, vision_facts) = language.result(), vision.result()
    else:
        t5_weights, language_facts = pretrain_language_part(settings, progress)
        vit_weights, vision_facts = pretrain_vision_part(settings, progress)
    facts = {
        "language_model": language_facts,
        "vision": vision_facts,
        "minutes": round((time.perf_counter() - began) / 60, 1),
    }
    logger.info("language and vision pre-training: %.1f min", facts["minutes"])
    parts.mkdir(parents=True, exist_ok=True)
    # Cloned one by one: T5 ties its embeddings, and safetensors stores no tensors that share memory.
    save_file({k: v.clone() for k, v in t5_weights.items()}, parts / "language.safetensors")
    save_file({k: v.clone() for k, v in vit_weights.items()}, parts / "vision.safetensors")
    (parts / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    return t5_weights, vit_weights, facts


def build_backbone(out: Path, settings: Settings, progress: bool = True, parallel: bool = True) -> Path:
    """The pre-trained backbone shared by every seed (``OUT/backbone``) and its accuracy
    (``OUT/backbone_accuracy.json``).

    After T5's and the ViT's own pre-training (`_language_and_vision_parts`), a Q-Former and T5 learn the frame
    tasks. Whether they get past T5's option-letter plateau on frames depends on the run, even under identical
    settings (docs/demo.md, "What it took" (h)). So a run whose backbone answers single-frame colour questions of
    unseen scenes below
    `Settings.min_colour_accuracy` is set aside (``OUT/backbone-rejected``, the last such; every one is listed in
    ``OUT/backbone_rejections.json``, which a resumed build skips) and the frame tasks start again from the next
    of `Settings.frame_seeds`; when none is left, `BackboneNotLearned`."""
    backbone, report = out / "backbone", out / "backbone_accuracy.json"
    if (backbone / "config.json").is_file() and report.is_file():
        return backbone
    out.mkdir(parents=True, exist_ok=True)
    t5_weights, vit_weights, facts = _language_and_vision_parts(out, settings, progress, parallel)
    scenes = [v.scene for v in plan_world(settings.backbone_scenes, seed=BACKBONE_SCENES_SEED)]
    frames = render_all(scenes)
    held_out = _held_out_scenes(settings)
    rejections_file, rejected = out / "backbone_rejections.json", out / "backbone-rejected"
    rejections = json.loads(rejections_file.read_text()) if rejections_file.is_file() else {}
    for seed in settings.frame_seeds:
        if str(seed) in rejections:
            logger.info("frame tasks from seed %d: set aside by an earlier run (%s)", seed, rejections_file)
            continue
        began = time.perf_counter()
        model = _fresh_toy_model(seed)
        model.language_model.load_state_dict(t5_weights)
        model.vision.load_state_dict(vit_weights)
        losses = pretrain_backbone(
            model, scenes, frames, settings.backbone_steps, settings.backbone_batch, seed=seed, progress=progress
        )
        accuracy = frame_task_accuracy(model, held_out, count=settings.backbone_check_tasks)
        accuracy["text option lookup"] = option_lookup_accuracy(model, count=settings.backbone_check_tasks // 2)
        minutes = (time.perf_counter() - began) / 60
        logger.info(
            "backbone, frame tasks from seed %d: loss %.3f -> %.3f in %.1f min; accuracy (frames of unseen "
            "scenes; text) %s",
            seed,
            losses[0],
            sum(losses[-20:]) / len(losses[-20:]),
            minutes,
            accuracy,
        )
        colour = accuracy.get(COLOUR_CHECK, 0.0)
        if colour >= settings.min_colour_accuracy:
            facts.update(
                frame_steps=settings.backbone_steps,
                frame_seed=seed,
                frame_minutes=round(minutes, 1),
                rejected_frame_seeds=rejections,
                accuracy=accuracy,
            )
            model.save_pretrained(backbone)
            report.write_text(json.dumps(facts, indent=2) + "\n")
            return backbone
        logger.warning(
            "backbone, frame tasks from seed %d: single-frame colour questions %.1f%% right, below "
            "%.0f%%; set aside as %s",
            seed,
            colour,
            settings.min_colour_accuracy,
            rejected,
        )
        model.save_pretrained(rejected)  # kept for inspection, never used by a stage
        (out / "backbone-rejected_accuracy.json").write_text(
            json.dumps({**facts, "accuracy": accuracy}, indent=2) + "\n"
        )
        rejections[str(seed)] = {"minutes": round(minutes, 1), "accuracy": accuracy}
        rejections_file.write_text(json.dumps(rejections, indent=2) + "\n")
    raise BackboneNotLearned(
        f"{rejected}: the pre-trained backbone answers single-frame colour questions of unseen scenes below "
        f"Settings.min_colour_accuracy ({settings.min_colour_accuracy:.0f}%) with the frame tasks from every seed "
        f"of Settings.frame_seeds ({', '.join(rejections)}); every stage built on it would answer at chance, so the "
        f"build stops here (accuracy by kind of each: {rejections_file}; more seeds or changed Settings give "
        f"another)"
    )


def build_seed(out: Path, seed: int, settings: Settings, backbone: Path) -> dict[str, Scores]:
    """Everything for one seed on top of the shared `backbone`; returns the scores of every row of the table."""
    scores = out / "scores.json"
    if scores.is_file():  # measured by an earlier (or a parallel) build
        return {name: Scores(**values) for name, values in json.loads(scores.read_text()).items()}
    data = out / "data"
    if not (data / "qa_test.jsonl").is_file():
        if data.exists():
            shutil.rmtree(data)
        synthesize(data, settings.videos, seed=seed, question_types=settings.question_types)

    def stage(name: str, stage_name: str, start: Path, **kw) -> Path:
        began = time.perf_counter()
        best = _run_stage(
            _stage_config(
                stage_name,
                str(start),
                out / name,
                data,
                settings,
                seed,
                epochs=settings.epochs[name],
                lr=settings.lr[name],
                **kw,
            )
        )
        logger.info("seed %d: %s done in %.1f min", seed, name, (time.perf_counter() - began) / 60)
        return best

    pretrained = stage("pretrain-localizer", "pretrain-localizer", backbone, train_frames=4, eval_frames=32)
    answerer = stage("finetune-answerer", "finetune-answerer", pretrained, train_frames=32, eval_frames=32)
    uniform = stage("uniform", "finetune-answerer", pretrained, train_frames=4, eval_frames=4, uniform=True)
    refined = stage("refine-localizer", "refine-localizer", answerer, train_frames=8, eval_frames=32)

    test, evidence, videos = data / "qa_test.jsonl", data / "evidence.jsonl", data / "videos"

    # A video's questions (and rows sharing a model) reuse its encoded frames instead of decoding again.
    cache = FeatureCache(out / "features")

    def measure(model: SeViLA, choice: str) -> Scores:
        return evaluate_choice(model, test, evidence, videos, choice, cache=cache)

    load = SeViLA.from_pretrained
    rows = {
        "answerer on 4 uniform frames": measure(load(uniform), "uniform"),
        "4 keyframes of 32, untrained localizer": measure(with_localizer(load(answerer), load(backbone)), "localizer"),
        "4 keyframes of 32, pre-trained localizer": measure(load(answerer), "localizer"),
        "4 keyframes of 32, self-refined localizer": measure(load(refined), "localizer"),
        "4 oracle keyframes of 32": measure(load(answerer), "oracle"),
    }
    scores.write_text(json.dumps({k: asdict(v) for k, v in rows.items()}, indent=2) + "\n")
    return rows


def build_seeds(
    out: Path, seeds: list[int], settings: Settings, backbone: Path, jobs: int, progress: bool = True
) -> dict[int, dict[str, Scores]]:
    """`build_seed` for every seed, ``jobs`` at a time in worker processes (in this one when ``jobs`` is 1)."""
    if jobs <= 1:
        return {seed: build_seed(out / f"seed{seed}", seed, settings, backbone) for seed in seeds}
    logger.info("building seeds %s, %d at a time; each one's log: %s", seeds, jobs, out / "seed<N>.log")
    with _worker_pool(jobs) as pool:
        futures = {
            pool.submit(
                _in_worker, out / f"seed{seed}.log", build_seed, out / f"seed{seed}", seed, settings, backbone
            ): seed
            for seed in seeds
        }
        for future in tqdm(as_completed(futures), total=len(futures), desc="seeds", unit="seed", disable=not progress):
            future.result()  # a failed seed stops the build with its own error
    return {seed: future.result() for future, seed in futures.items()}  # in the order of ``seeds``


def _mean_std(values: list[float | None], with_std: bool = True) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if not with_std:
        return f"{statistics.mean(values):.1f}"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {std:.1f}"


def table(per_seed: dict[int, dict[str, Scores]]) -> str:
    names = list(next(iter(per_seed.values())))
    lines = [
        f"| setting ({len(per_seed)} seeds: {', '.join(map(str, per_seed))}) | QA accuracy (%) | evidence hit (%) | keyframe precision (%) |",
        "|---|---|---|---|",
    ]
    for name in names:
        cells = [
            _mean_std([getattr(s[name], f) for s in per_seed.values()])
            for f in ("accuracy", "evidence_hit", "keyframe_precision")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def type_table(per_seed: dict[int, dict[str, Scores]]) -> str:
    """QA accuracy by question type, mean over seeds (each type has only a dozen or so test questions a seed)."""
    rows = next(iter(per_seed.values()))
    types = sorted({t for scores in per_seed.values() for s in scores.values() for t in s.accuracy_by_type})
    lines = ["| setting | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for name in rows:
        cells = [_mean_std([s[name].accuracy_by_type.get(t) for s in per_seed.values()], with_std=False) for t in types]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SHIPPED_STAGE = "finetune-answerer"
"""The shipped model: the pre-trained localizer with the answerer fine-tuned on its keyframes. Self-refinement
("refine-localizer") would be the paper's final model, but at toy scale its localizer finds the evidence less
often (its pseudo-labels are mostly noise: docs/demo.md), so the demo keeps the better localizer."""


def _check_ship_folder(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"--ship {dest}: exists and is not an empty folder; choose a new one")


def best_seed(out: Path, seeds: list[int]) -> int:
    """The seed whose `SHIPPED_STAGE` reached the best validation QA accuracy (its run's ``summary.json``; the
    first seed on a tie). Chosen on validation questions only, so the test split's table stays an honest measure
    of every seed, the shipped one included."""
    best = {seed: json.loads((out / f"seed{seed}" / SHIPPED_STAGE / "summary.json").read_text()) for seed in seeds}
    return max(seeds, key=lambda seed: (best[seed]["best_metric"], -seeds.index(seed)))


def ship(run: Path, dest: Path) -> Path:
    """Write a seed's `SHIPPED_STAGE` model and one test video to ``dest`` (a new or empty folder) in the layout
    of `sevila`'s ``demo`` model: ``model/``, ``example.mp4`` and ``example.json``. Returns ``dest``.

    Nothing is written into an installed package: a maintainer re-ships by copying ``dest`` over
    ``src/sevila/assets/demo`` in a checkout (docs/demo.md)."""
    from sevila.data import read_records

    _check_ship_folder(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # Stored in bfloat16 (half the bytes; loading casts back to the parameters' float32).
    SeViLA.from_pretrained(run / SHIPPED_STAGE / "best").to(torch.bfloat16).save_pretrained(dest / "model")
    # The example is the test split's first question, not a pick among many (docs/demo.md).
    record = read_records(run / "data" / "qa_test.jsonl")[0]
    shutil.copy(run / "data" / "videos" / f"{record.video}.mp4", dest / "example.mp4")
    example = {
        "video": "example.mp4",
        "question": record.question,
        "options": record.options,
        "answer": record.answer,
        "question_type": record.question_type,
        "evidence_windows": read_evidence(run / "data" / "evidence.jsonl")[record.qid].windows,
    }
    (dest / "example.json").write_text(json.dumps(example, indent=2) + "\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder (resumable: finished steps are kept)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke version (tests, CI)")
    parser.add_argument(
        "--ship",
        type=Path,
        metavar="DIR",
        help="write the model of the seed best on its validation split and an example video to this new "
        "or empty folder, in the layout of the shipped 'demo' model (to re-ship it, copy DIR over src/sevila/assets/demo "
        "in a checkout)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="seeds built at once, as processes of one thread each (default: one per seed; 1: "
        "everything in this process, one step after another, with its log on the terminal; "
        "otherwise the backbone's language and vision pre-training also run side by side)",
    )
    parser.add_argument(
        "--question-types",
        nargs="+",
        metavar="TYPE",
        help=f"question types of the seeds' worlds (default: {' '.join(DEFAULT_QUESTION_TYPES)}; all: "
        f"{' '.join(QUESTION_TYPES)})",
    )
    args = parser.parse_args(argv)
    if args.ship:
        try:
            _check_ship_folder(args.ship)  # before hours of building, not after
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = QUICK if args.quick else Settings()
    if args.question_types:
        try:
            settings = replace(settings, question_types=check_question_types(args.question_types))
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    try:
        backbone = build_backbone(args.out, settings, progress=not args.quick, parallel=args.jobs != 1)
    except BackboneNotLearned as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    per_seed = build_seeds(
        args.out, args.seeds, settings, backbone, jobs=args.jobs or len(args.seeds), progress=not args.quick
    )
    accuracy = json.loads((args.out / "backbone_accuracy.json").read_text())["accuracy"]
    text = table(per_seed) + "\nQA accuracy (%) by question type, mean over seeds:\n\n" + type_table(per_seed)
    text += (
        "\nBackbone accuracy (frame tasks of unseen scenes, by kind and number of frames; text-only option lookup): "
    )
    text += ", ".join(f"{kind} {value:.1f}%" for kind, value in accuracy.items()) + ".\n"
    minutes = (time.perf_counter() - started) / 60
    (args.out / "ablations.md").write_text(
        text + f"\n{minutes:.1f} minutes on this machine for this run (steps finished earlier are reused).\n"
    )
    (args.out / "ablations.json").write_text(
        json.dumps({seed: {k: asdict(v) for k, v in rows.items()} for seed, rows in per_seed.items()}, indent=2) + "\n"
    )
    print(text)
    if args.ship:
        seed = best_seed(args.out, args.seeds)
        shipped = ship(args.out / f"seed{seed}", args.ship)
        print(f"wrote seed {seed}'s model (best validation accuracy of {SHIPPED_STAGE}) and its example to {shipped}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
