"""The torch `Dataset` over records: frames, prompts and targets for SeViLA's training and evaluation.

An item is one record with its video sampled by `sevila.video.load_video` — uniform segment midpoints for
evaluation; for training a random frame per segment and one random-resized crop shared by all frames (the
original's ``blip2_video_train``) — normalised to float32 ``(T, 3, H, W)``, plus the localizer and answerer
prompts of the record's dataset and its targets.

Videos that cannot be read raise by default, naming the file and the qid. With ``on_error="skip"`` the
item is None instead, the reason is kept in `VideoRecordDataset.failures` (and logged), and `collate` drops
it. The original instead retried with a random other record, even at evaluation, which silently scored a
different question under the wrong qid; no sample is ever substituted here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from sevila import prompts
from sevila.data.paths import VideoPath, video_file
from sevila.data.records import MomentRecord, Record, read_records
from sevila.data.targets import answer_text, frame_labels, record_prompts
from sevila.video import VideoError, load_video
from sevila.video.transforms import normalize, train_augment

logger = logging.getLogger(__name__)

Item = dict[str, Any]


@dataclass(frozen=True)
class LoadFailure:
    """A record whose video could not be used, and why."""

    qid: str
    path: str
    message: str


class VideoRecordDataset(Dataset):
    """Records → items ``{frames, frame_indices, timestamps, prompts, targets}``; see `__getitem__`.

    Args:
        records: the records, or a JSONL file of them.
        video_root: folder the video paths are relative to.
        num_frames: frames sampled per video (``n_frms`` of the original).
        train: random sampling and the training crop instead of uniform sampling.
        augment: in training, the random-resized crop (the original's); False keeps the whole frame, only
            resized and normalised as in evaluation (for footage whose subject may sit anywhere in the frame,
            where a crop can cut out the evidence).
        image_size: side of the square frames the decoder produces.
        video_path: how a record names its file below `video_root`: a format string over the record's
            ``video``, ``qid`` and ``dataset`` (default ``"{video}.mp4"``, the original's rule), or a callable
            of the record (e.g. to strip VLEP's ``_ep`` suffix). An absolute result ignores `video_root`.
        backend: decoder of `sevila.video` (``"pyav"``, ``"decord"``, ``"torchcodec"``).
        on_error: ``"raise"`` (default) or ``"skip"`` for unreadable videos.

    Randomness in training comes from the global `random` and torch generators, which the DataLoader seeds
    differently in every worker. With ``num_workers > 0`` each worker keeps its own `failures` list (the
    main process's stays empty); the logged warnings, or the qids missing from the results, tell which
    items were skipped.
    """

    def __init__(
        self,
        records: Sequence[Record] | str | os.PathLike[str],
        video_root: str | os.PathLike[str],
        num_frames: int,
        *,
        train: bool = False,
        augment: bool = True,
        image_size: int = 224,
        video_path: VideoPath = "{video}.mp4",
        backend: str = "pyav",
        on_error: Literal["raise", "skip"] = "raise",
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.records: list[Record] = read_records(records) if isinstance(records, (str, os.PathLike)) else list(records)
        self.video_root = os.fspath(video_root)
        self.num_frames = num_frames
        self.train = train
        self.augment = augment
        self.image_size = image_size
        self.video_path_rule = video_path
        self.backend = backend
        self.on_error = on_error
        self.failures: list[LoadFailure] = []

    def __len__(self) -> int:
        return len(self.records)

    def video_path(self, record: Record) -> str:
        """The file of a record: ``os.path.join(video_root, rule(record))``."""
        return video_file(record, self.video_root, self.video_path_rule)

    def __getitem__(self, index: int) -> Item | None:
        """One item, or None for an unreadable video with ``on_error="skip"``.

        Keys: ``qid``, ``dataset``, ``video_path``; ``frames`` float32 ``(T, 3, H, W)``; ``frame_indices``
        int64 ``(T,)`` and ``timestamps`` float64 ``(T,)`` seconds (``index / fps``) of the sampled frames;
        ``qa_prompt`` and ``loc_prompt`` (answerer, localizer); ``labeled``; ``answer`` (index, -1 when
        unlabeled or for moment records); ``target`` (``"Option X"``; for moment records the per-frame
        ``yes``/``no`` labels joined by ``_``; None for an unlabeled QA record); ``frame_labels`` (bool
        ``(T,)`` for moment records, None for QA records).
        """
        record = self.records[index]
        path = self.video_path(record)
        clip = record.clip if not isinstance(record, MomentRecord) else None
        try:
            video = load_video(
                path,
                self.num_frames,
                sampling="random" if self.train else "uniform",
                clip=clip,
                image_size=self.image_size,
                backend=self.backend,
            )
        except VideoError as err:
            if self.on_error == "raise":
                raise VideoError(path, f"{err.reason} (qid {record.qid})") from err
            failure = LoadFailure(record.qid, path, str(err))
            self.failures.append(failure)
            logger.warning("skipping qid %s: %s", failure.qid, failure.message)
            return None
        qa_prompt, loc_prompt = record_prompts(record)
        item: Item = {
            "qid": record.qid,
            "dataset": record.dataset,
            "video_path": path,
            "frames": train_augment(video.frames) if self.train and self.augment else normalize(video.frames),
            "frame_indices": torch.tensor(video.indices, dtype=torch.int64),
            "timestamps": torch.tensor(video.timestamps, dtype=torch.float64),
            "qa_prompt": qa_prompt,
            "loc_prompt": loc_prompt,
            "labeled": record.labeled,
        }
        if isinstance(record, MomentRecord):
            labels = frame_labels(video.timestamps, record.relevant_windows)
            item.update(
                answer=-1,
                target=prompts.frame_labels_target(labels),
                frame_labels=torch.tensor(labels, dtype=torch.bool),
            )
        else:
            item.update(
                answer=-1 if record.answer is None else record.answer,
                target=answer_text(record),
                frame_labels=None,
            )
        return item


def collate(items: Sequence[Item | None]) -> dict[str, Any] | None:
    """Batch items: tensors stacked (``frames`` → ``(B, T, 3, H, W)``), ``answer`` → int64 ``(B,)``, the rest
    (strings, flags, Nones) as lists. Items that are None (skipped videos) are dropped; a batch with no item
    left is None.
    """
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    batch: dict[str, Any] = {}
    for key in kept[0]:
        values = [item[key] for item in kept]
        if all(isinstance(v, torch.Tensor) for v in values):
            batch[key] = torch.stack(values)
        elif key == "answer":
            batch[key] = torch.tensor(values, dtype=torch.int64)
        else:
            batch[key] = values
    return batch


__all__ = ["LoadFailure", "VideoRecordDataset", "collate"]
