"""``sevila eval``: run chained inference over an annotation file — batched, resumable, shardable.

* **Batched:** questions are taken ``batch_size`` at a time; each distinct video in a batch is decoded and
  encoded once (and through the feature cache, once across runs), and its questions share those tokens.
* **Resumable:** every finished batch is appended to the output and flushed; a rerun skips the questions
  already there, so an interrupted run loses at most the batch in flight.
* **Shardable:** under ``torchrun`` (``WORLD_SIZE`` > 1) rank r takes every world-th question and writes its
  own shard file; when all ranks are done, rank 0 merges the shards into the output once, in annotation
  order, without the duplicates a padded distributed sampler would add.
* **Failures are recorded, never substituted:** a question whose video cannot be read gets a row with
  ``error`` (and no prediction); every other question is still answered.

Output rows: ``qid``, ``prediction`` (0-based), ``letter``, ``option_scores``, ``keyframes``,
``keyframe_times``, ``frame_scores``, ``frame_times`` (+ ``answer`` when the record has one), or ``qid`` and
``error``. Metrics go next to the output as ``<output>.metrics.json``.
"""

from __future__ import annotations

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
from sevila.data.records import QARecord, read_records
from sevila.data.targets import record_prompts
from sevila.evaluate.predictions import PredictionWriter, read_predictions, write_predictions_atomic
from sevila.features import FeatureCache, VideoFeatures, encode_video
from sevila.inference import QuestionItem, answer_batch
from sevila.model import SeViLA
from sevila.video import VideoError

logger = logging.getLogger(__name__)


@dataclass
class Shard:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> Shard:
        """torchrun's ``RANK``/``WORLD_SIZE``; joins the process group when there are several ranks."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(rank, world)

    def barrier(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()


@dataclass
class EvalResult:
    output: Path
    answered: int = 0  # questions answered by this run (this rank)
    failed: int = 0  # questions whose video failed in this run (this rank)
    resumed: int = 0  # questions skipped because an earlier run had done them
    metrics: dict[str, Any] | None = None
    failures: list[dict[str, str]] = field(default_factory=list)


def shard_path(output: Path, shard: Shard) -> Path:
    return output if shard.world_size == 1 else output.with_name(f"{output.name}.rank{shard.rank}-of-{shard.world_size}")


def evaluate(
    model: SeViLA,
    annotations: str | Path,
    video_root: str | Path,
    output: str | Path,
    *,
    num_frames: int | None = None,
    num_keyframes: int | None = None,
    batch_size: int = 8,
    use_localizer: bool = True,
    video_path: VideoPath = "{video}.mp4",
    backend: str = "pyav",
    cache: FeatureCache | None = None,
    shard: Shard | None = None,
    compute_metrics: Callable[[list[dict], list[QARecord]], dict[str, Any]] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Answer every multiple-choice record of ``annotations``; see the module docstring for the guarantees."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    shard = shard or Shard()
    output = Path(output)
    records = read_records(annotations)
    qa_records = [r for r in records if isinstance(r, QARecord)]
    if len(qa_records) != len(records):
        raise ValueError(f"{annotations}: sevila eval answers multiple-choice records; this file has "
                         f"{len(records) - len(qa_records)} moment records (use the localizer evaluation for them)")
    num_frames = num_frames or model.config.num_frames
    num_keyframes = num_keyframes or model.config.num_keyframes

    mine = qa_records[shard.rank :: shard.world_size]
    path = shard_path(output, shard)
    done = {row["qid"] for row in read_predictions(path)}
    if shard.world_size > 1:
        done |= {row["qid"] for row in read_predictions(output)}  # a finished earlier run, merged
    todo = [r for r in mine if r.qid not in done]
    result = EvalResult(output=output, resumed=len(mine) - len(todo))

    bar = tqdm(total=len(todo), desc=f"eval rank {shard.rank}" if shard.world_size > 1 else "eval",
               disable=not progress or None, unit="q")
    # Videos encoded in the last two batches stay in memory: annotation files usually list a video's
    # questions together, and a batch boundary should not cost a second decode.
    recent: OrderedDict[tuple, VideoFeatures | VideoError] = OrderedDict()
    with PredictionWriter(path) as writer:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            rows = _run_batch(model, batch, video_root, video_path, num_frames, num_keyframes, use_localizer,
                              backend, cache, result, recent)
            while len(recent) > 2 * batch_size:
                recent.popitem(last=False)
            writer.write(rows)
            bar.update(len(batch))
    bar.close()

    shard.barrier()
    if shard.rank == 0:
        if shard.world_size > 1:
            _merge_shards(output, shard.world_size, [r.qid for r in qa_records])
        if compute_metrics is not None:
            result.metrics = compute_metrics(read_predictions(output), qa_records)
    shard.barrier()
    return result


def _run_batch(model, batch, video_root, video_path, num_frames, num_keyframes, use_localizer, backend, cache,
               result: EvalResult, encoded: OrderedDict) -> list[dict[str, Any]]:
    items, rows_by_qid = [], {}
    for record in batch:
        path = video_file(record, video_root, video_path)
        key = (path, record.clip)
        if key not in encoded:
            try:
                encoded[key] = encode_video(model, path, num_frames, record.clip, backend, cache)
            except VideoError as err:
                encoded[key] = err
        encoded.move_to_end(key)
        features = encoded[key]
        if isinstance(features, VideoError):
            rows_by_qid[record.qid] = {"qid": record.qid, "error": str(features)}
            result.failed += 1
            result.failures.append({"qid": record.qid, "video": path, "error": str(features)})
            logger.warning("%s: %s", record.qid, features)
            continue
        qa_prompt, loc_prompt = record_prompts(record)
        items.append((record, QuestionItem(features, record.question, record.options, qa_prompt, loc_prompt)))
    if items:
        answers = answer_batch(model, [item for _, item in items], num_keyframes, use_localizer)
        for (record, _), answer in zip(items, answers):
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
            rows_by_qid[record.qid] = row
            result.answered += 1
    return [rows_by_qid[r.qid] for r in batch]  # annotation order within the batch


def _merge_shards(output: Path, world_size: int, order: list[str]) -> None:
    rows: dict[str, dict] = {row["qid"]: row for row in read_predictions(output)}
    shards = [shard_path(output, Shard(rank, world_size)) for rank in range(world_size)]
    for path in shards:
        for row in read_predictions(path):
            rows.setdefault(row["qid"], row)
    write_predictions_atomic(output, [rows[q] for q in order if q in rows])
    for path in shards:
        path.unlink(missing_ok=True)
