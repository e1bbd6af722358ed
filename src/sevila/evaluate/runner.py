"""``sevila eval``: run chained inference over an annotation file — batched, resumable, shardable.

* **Batched:** questions are taken ``batch_size`` at a time; each distinct video in a batch is decoded and
  encoded once (and through the feature cache, once across runs), and its questions share those tokens.
* **Resumable:** every finished batch is appended to the output and flushed; a rerun skips the questions
  already there, so an interrupted run loses at most the batch in flight.
* **Shardable:** under ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1; Accelerate sets up the
  processes, their devices and barriers) rank r takes every world-th question and appends its rows to its own
  shard file, flushed per batch so that a killed run resumes; when all ranks are done, rank 0 merges the shards
  into the output once, in annotation order, without the duplicates a padded distributed sampler would add.
* **Failures are recorded, never substituted:** a question whose video cannot be read gets a row with
  ``error`` (and no prediction); every other question is still answered.

Multiple-choice records give rows ``qid``, ``prediction`` (0-based), ``letter``, ``option_scores``,
``keyframes``, ``keyframe_times``, ``frame_scores``, ``frame_times`` (+ ``answer`` when the record has one).
Moment records (QVHighlights) give rows in the Moment-DETR submission format — ``qid`` (the integer),
``query``, ``vid``, ``pred_relevant_windows``, ``pred_saliency_scores`` — from the localizer's frame scores
(`sevila.moments` documents the merging rule), plus ``frame_scores`` and ``frame_times``.
A failed question's row is ``qid`` and ``error``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sevila.data.paths import VideoPath, video_file
from sevila.data.records import MomentRecord, QARecord, Record, read_records
from sevila.data.targets import record_prompts
from sevila.evaluate.metrics.qvhighlights_io import moment_prediction, prediction_to_dict, qvhighlights_qid
from sevila.evaluate.predictions import (
    OutputLock,
    PredictionWriter,
    best_rows,
    header_path,
    make_header,
    metrics_path,
    package_version,
    read_header,
    read_prediction_rows,
    settings_difference,
    write_header,
    write_predictions_atomic,
)
from sevila.features import (
    FeatureCache,
    VideoFeatures,
    VideoPrefetcher,
    encode_video,
    finish_video,
    model_fingerprint,
)
from sevila.inference import QuestionItem, answer_batch, localize_features
from sevila.model import SeViLA
from sevila.moments import DEFAULT_SPAN_THRESHOLD, DEFAULT_THRESHOLD
from sevila.video import VideoError, check_count_or_rate, check_rate

logger = logging.getLogger(__name__)


@dataclass
class Shard:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> Shard:
        """This process's share under ``accelerate launch`` or ``torchrun``: Accelerate's `PartialState` reads
        either launcher's environment, joins the process group (NCCL on GPUs, gloo on CPUs) and picks the
        device (`device`). One process: rank 0 of 1, without touching Accelerate."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # as training's Accelerator: gloo without CUDA
        return cls(state.process_index, state.num_processes)

    @property
    def device(self) -> torch.device | None:
        """The device Accelerate gives this process (one GPU per rank, in ``LOCAL_RANK`` order), or None alone."""
        if self.world_size == 1:
            return None
        from accelerate import PartialState

        return PartialState().device

    def barrier(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            from accelerate import PartialState

            PartialState().wait_for_everyone()


@dataclass(frozen=True)
class MomentOptions:
    """How moment records' frame probabilities of "yes" become moments (see `frame_scores_to_moments`)."""

    threshold: float = DEFAULT_THRESHOLD
    span_threshold: int = DEFAULT_SPAN_THRESHOLD


@dataclass
class EvalResult:
    output: Path
    answered: int = 0  # questions answered by this run (this rank)
    failed: int = 0  # questions whose video failed in this run (this rank)
    resumed: int = 0  # questions skipped because an earlier run had answered them
    metrics: dict[str, Any] | None = None  # None also when every question failed
    failures: list[dict[str, str]] = field(default_factory=list)
    # The output as a whole, after this run (rank 0 only): questions, failed rows, questions without a row.
    num_questions: int = 0
    num_failed_total: int = 0
    num_missing: int = 0
    first_failure: str | None = None

    @property
    def all_failed(self) -> bool:
        """Every question of the split failed (there is no answer to score)."""
        return self.num_questions > 0 and self.num_failed_total + self.num_missing == self.num_questions


def shard_path(output: Path, shard: Shard) -> Path:
    return (
        output if shard.world_size == 1 else output.with_name(f"{output.name}.rank{shard.rank}-of-{shard.world_size}")
    )


def evaluate(
    model: SeViLA,
    annotations: str | Path,
    video_root: str | Path,
    output: str | Path,
    *,
    num_frames: int | None = None,
    num_keyframes: int | None = None,
    fps: float | None = None,
    batch_size: int = 8,
    use_localizer: bool = True,
    video_path: VideoPath = "{video}.mp4",
    backend: str = "pyav",
    cache: FeatureCache | None = None,
    shard: Shard | None = None,
    compute_metrics: Callable[[list[dict], list[Record]], dict[str, Any]] | None = None,
    progress: bool = True,
    moments: MomentOptions | None = None,
    overwrite: bool = False,
    model_name: str | None = None,
) -> EvalResult:
    """Answer every record of ``annotations`` (all multiple-choice, or all moment queries); see the module
    docstring for the guarantees. ``moments`` sets how moment records' frame scores become moments.

    ``overwrite`` discards an earlier output (and its header, metrics and shards) instead of resuming it;
    ``model_name`` is recorded in the output's header (the weights are recorded by their fingerprint).
    ``fps`` samples that many frames a second of each video (or clip window) instead of ``num_frames``; each
    video's sampled frames are held in memory while its questions are answered."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for name, value in (("num_frames", num_frames), ("num_keyframes", num_keyframes)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    shard = shard or Shard()
    output = Path(output)
    records = read_records(annotations)
    kinds = {r.kind for r in records}
    if len(kinds) > 1:
        raise ValueError(f"{annotations}: mixes multiple-choice and moment records; evaluate them separately")
    is_moments = kinds == {"moment"}
    check_count_or_rate(num_frames, fps)
    if fps is not None:
        fps = check_rate(fps)
    else:
        num_frames = num_frames or model.config.num_frames
    num_keyframes = num_keyframes or model.config.num_keyframes
    moments = moments or MomentOptions()
    settings = run_settings(model, annotations, num_frames, num_keyframes, use_localizer, backend, is_moments, moments)
    if fps is not None:
        settings.update(frames=None, fps=fps)
    info = {
        "model": {"name": str(model_name) if model_name is not None else None, "fingerprint": settings["model"]},
        "annotations": str(annotations),
        "videos": str(video_root),
        "video_path": video_path if isinstance(video_path, str) else repr(video_path),
        "batch_size": batch_size,
        "device": str(model.device),
        "num_questions": len(records),
        "world_size": shard.world_size,
    }

    mine = records[shard.rank :: shard.world_size]
    order = [row_key(r) for r in records]
    path = shard_path(output, shard)
    all_shards = [shard_path(output, Shard(rank, shard.world_size)) for rank in range(shard.world_size)]
    result = EvalResult(output=output)
    # Rank 0 holds the output's lock (it merges into the output), every other rank its shard's.
    with OutputLock(output if shard.rank == 0 else path):
        if overwrite:
            for stale in [path] + ([output, header_path(output), metrics_path(output)] if shard.rank == 0 else []):
                stale.unlink(missing_ok=True)
        else:
            _check_settings(output, settings, [output, *all_shards])
        shard.barrier()  # every rank has checked (or cleared) before any writes

        own = read_prediction_rows(path)
        kept = list(best_rows(own, set(order), keep_failed=False).values())
        if kept != own:
            # Failed rows are retried (and replaced), duplicates and strangers dropped: rewrite before appending.
            write_predictions_atomic(path, kept)
        done = {str(row["qid"]) for row in kept}
        if shard.world_size > 1:  # a finished earlier run, merged
            done |= set(best_rows(read_prediction_rows(output), set(order), keep_failed=False))
        todo = [r for r in mine if row_key(r) not in done]
        result.resumed = len(mine) - len(todo)

        def write_header_once() -> None:
            recorded = read_header(output)
            if recorded is None or recorded.get("settings") != settings:
                write_header(output, make_header(settings, info))

        bar = tqdm(
            total=len(todo),
            desc=f"eval rank {shard.rank}" if shard.world_size > 1 else "eval",
            disable=not progress or None,
            unit="q",
        )
        # Videos encoded in the last two batches stay in memory: annotation files usually list a video's
        # questions together, and a batch boundary should not cost a second decode.
        recent: OrderedDict[tuple, VideoFeatures | VideoError] = OrderedDict()
        # One thread decodes this batch's and the next batch's videos while the model works.
        with (
            PredictionWriter(path, before_first_write=write_header_once) as writer,
            VideoPrefetcher(model, backend, cache) as prefetcher,
        ):
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                for record in todo[start : start + 2 * batch_size]:
                    key = _video_key(record, video_root, video_path)
                    if key not in recent:
                        prefetcher.submit(key, key[0], num_frames, key[1], fps)
                features = _encode_batch(
                    model,
                    batch,
                    video_root,
                    video_path,
                    num_frames,
                    backend,
                    cache,
                    result,
                    recent,
                    prefetcher,
                    fps,
                    min_frames=num_keyframes if use_localizer and not is_moments else 1,
                )
                if is_moments:
                    rows = _moment_rows(model, batch, features, moments)
                else:
                    rows = _answer_rows(model, batch, features, num_keyframes, use_localizer)
                while len(recent) > 2 * batch_size:
                    recent.popitem(last=False)
                writer.write(rows)
                bar.update(len(batch))
        bar.close()
        if shard.world_size == 1 and todo and result.resumed:
            _put_in_order(path, order)  # retried rows were appended after the rows kept: annotation order again

        shard.barrier()
        if shard.rank == 0:
            if shard.world_size > 1:
                _merge_shards(output, shard.world_size, order)
            final = read_prediction_rows(output)
            result.num_questions = len(records)
            result.num_failed_total = sum("error" in row for row in final)
            result.num_missing = len(records) - len(final)
            failed = [row for row in final if "error" in row]
            if failed:
                result.first_failure = f"{failed[0]['qid']}: {failed[0]['error']}"
            if compute_metrics is not None and not result.all_failed:
                result.metrics = compute_metrics(final, records)
        shard.barrier()
    return result


def run_settings(
    model: SeViLA,
    annotations: str | Path,
    num_frames: int | None,
    num_keyframes: int,
    use_localizer: bool,
    backend: str,
    is_moments: bool,
    moments: MomentOptions,
) -> dict[str, Any]:
    """What decides a run's predictions, in the order a difference is reported: a resumed run must agree on
    all of them (`sevila.evaluate.predictions.settings_difference`). The model is its weights' fingerprint
    (`sevila.features.model_fingerprint`: weights, config and precision), so the same weights under another
    path or name resume."""
    settings: dict[str, Any] = {
        "frames": num_frames,
        "sampling": "uniform",
        "image_size": model.config.vision.image_size,
        "backend": backend,
        "precision": model.precision.name,
    }
    if is_moments:
        settings.update(threshold=moments.threshold, span_threshold=moments.span_threshold)
    else:
        settings.update(mode="localizer" if use_localizer else "uniform", keyframes=num_keyframes)
    settings.update(
        annotations=_file_sha256(Path(annotations)),
        sevila_version=package_version(),
        model=model_fingerprint(model),
    )
    return settings


SETTING_NAMES = {
    "frames": "--frames",
    "fps": "--fps",
    "keyframes": "--keyframes",
    "mode": "mode (--uniform)",
    "sampling": "frame sampling",
    "image_size": "the model's image size",
    "backend": "--backend",
    "precision": "--precision",
    "threshold": "--threshold",
    "span_threshold": "--span-threshold",
    "annotations": "--annotations (file content, sha256)",
    "sevila_version": "sevila version",
    "model": "--model (weights fingerprint)",
}


def _short(key: str, value: Any) -> str:
    if key in ("model", "annotations") and isinstance(value, str) and len(value) > 12:
        return value[:12]
    return json.dumps(value) if not isinstance(value, str) else value


def _check_settings(output: Path, settings: dict[str, Any], paths: list[Path]) -> None:
    """Refuse to resume rows made with other settings (or with settings nobody recorded)."""
    if not any(read_prediction_rows(p) for p in paths):
        return  # nothing to resume: the header (if any) is rewritten with the first rows
    header = read_header(output)
    if header is None:
        raise ValueError(
            f"{output} holds predictions but no record of the settings that made them ({header_path(output).name} "
            "is missing): --overwrite to start again, or choose another --output"
        )
    difference = settings_difference(header["settings"], settings)
    if difference is not None:
        key, old, new = difference
        raise ValueError(
            f"{output} was made with {SETTING_NAMES.get(key, key)} {_short(key, old)}, this run has "
            f"{_short(key, new)}: rerun with the same settings, --overwrite to start again, or choose another --output"
        )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _put_in_order(path: Path, order: list[str]) -> None:
    rows = best_rows(read_prediction_rows(path), set(order), keep_failed=True)
    if list(rows) != [q for q in order if q in rows]:
        write_predictions_atomic(path, [rows[q] for q in order if q in rows])


def row_key(record: Record) -> str:
    """The qid a record's output row carries, as text (moment rows use QVHighlights' integer qid when the
    record has one, as the submission format requires)."""
    if isinstance(record, MomentRecord):
        try:
            return str(qvhighlights_qid(record.qid))
        except ValueError:
            return record.qid
    return record.qid


def _row_qid(record: Record) -> str | int:
    key = row_key(record)
    return int(key) if isinstance(record, MomentRecord) and key.isdigit() else key


def _video_key(record: Record, video_root, video_path) -> tuple:
    return (video_file(record, video_root, video_path), record.clip if isinstance(record, QARecord) else None)


def _encode_batch(
    model,
    batch,
    video_root,
    video_path,
    num_frames,
    backend,
    cache,
    result: EvalResult,
    encoded: OrderedDict,
    prefetcher: VideoPrefetcher | None = None,
    fps: float | None = None,
    min_frames: int = 1,
) -> list[VideoFeatures | VideoError]:
    """Features of each record's video (each distinct video and window encoded once); a failure is recorded
    and returned in place of the features. Videos the prefetcher holds are taken from it (decoded already,
    or cached features read). Fewer than ``min_frames`` sampled frames (a short clip sampled by rate, with
    more keyframes asked for) is a failure too."""
    out = []
    for record in batch:
        key = _video_key(record, video_root, video_path)
        path, clip = key
        if key not in encoded:
            try:
                if prefetcher is not None and key in prefetcher:
                    encoded[key] = finish_video(model, prefetcher.take(key), cache)
                else:
                    encoded[key] = encode_video(model, path, num_frames, clip, backend, cache, fps)
            except VideoError as err:
                encoded[key] = err
        encoded.move_to_end(key)
        features = encoded[key]
        if not isinstance(features, VideoError) and len(features.indices) < min_frames:
            features = VideoError(
                path, f"only {len(features.indices)} frames sampled, fewer than {min_frames} keyframes (--keyframes)"
            )
        if isinstance(features, VideoError):
            result.failed += 1
            result.failures.append({"qid": record.qid, "video": path, "error": str(features)})
            logger.warning("%s: %s", record.qid, features)
        else:
            result.answered += 1
        out.append(features)
    return out


def _answer_rows(model, batch, features, num_keyframes, use_localizer) -> list[dict[str, Any]]:
    items = []
    for record, video in zip(batch, features):
        if not isinstance(video, VideoError):
            qa_prompt, loc_prompt = record_prompts(record)
            items.append(QuestionItem(video, record.question, record.options, qa_prompt, loc_prompt))
    answers = iter(answer_batch(model, items, num_keyframes, use_localizer) if items else [])
    rows = []
    for record, video in zip(batch, features):
        if isinstance(video, VideoError):
            rows.append({"qid": record.qid, "error": str(video)})
            continue
        answer = next(answers)
        row = {
            "qid": record.qid,
            "prediction": answer.index,
            "letter": answer.letter,
            "option_scores": answer.option_scores,
            "keyframes": answer.keyframes,
            "keyframe_times": answer.keyframe_times,
            "frame_scores": answer.frame_scores,
            "frame_times": answer.frame_times,
        }
        if record.answer is not None:
            row["answer"] = record.answer
        rows.append(row)
    return rows


def _moment_rows(model, batch, features, options: MomentOptions) -> list[dict[str, Any]]:
    rows = []
    for record, video in zip(batch, features):
        if isinstance(video, VideoError):
            rows.append({"qid": _row_qid(record), "error": str(video)})
            continue
        scores = localize_features(model, video, record.query)
        qid = _row_qid(record)
        prediction = moment_prediction(
            qid if isinstance(qid, int) else 0,  # a qid of another benchmark (synth's) is kept as it is below
            record.query,
            record.video,
            video.timestamps,
            scores.probabilities,
            record.duration,
            threshold=options.threshold,
            span_threshold=options.span_threshold,
        )
        row = prediction_to_dict(prediction)
        row["qid"] = qid
        row.update(frame_scores=scores.logits, frame_times=list(video.timestamps))
        rows.append(row)
    return rows


def _merge_shards(output: Path, world_size: int, order: list[str]) -> None:
    shards = [shard_path(output, Shard(rank, world_size)) for rank in range(world_size)]
    rows = read_prediction_rows(output)
    for path in shards:
        rows += read_prediction_rows(path)
    best = best_rows(rows, set(order), keep_failed=True)  # a retried question's answer replaces its failure
    write_predictions_atomic(output, [best[q] for q in order if q in best])
    for path in shards:
        path.unlink(missing_ok=True)
