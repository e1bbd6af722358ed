"""Long videos: score every sampled frame chunk by chunk, keeping only what the answer needs.

SeViLA's localizer scores each frame on its own, so it can scan far more than 32 frames: minutes at one frame
a second, or an hour. `VideoQA` sends a video here when it samples more frames than one chunk holds. Frames are
decoded and encoded (ViT and both Q-Formers) a chunk at a time (`sevila.features.encode_chunks`, one cache entry
per chunk), the localizer's tokens of each chunk are scored for every question in blocks of
`SCORE_BLOCK_FRAMES` and then dropped, and of the answerer's tokens only those of frames that can still be among
a question's top k are kept. Memory therefore follows the chunk size and the number of questions, not the
video's length; what grows with the length is one score per frame and question.

The results equal those of scoring all frames at once (`SeViLA.predict` on the whole video's features): the
same blocks go through T5 with the same rows, and a frame is dropped only when k frames already score above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sevila.features import VideoFeatures, VideoPlan, file_version
from sevila.model import FrameFeatures, Prediction, SeViLA, select_keyframes
from sevila.model.sevila import SCORE_BLOCK_FRAMES
from sevila.video import frames_at_rate, open_video, sample_indices


def plan_video(
    path: str | Path,
    *,
    num_frames: int | None = None,
    rate: float | None = None,
    clip: tuple[float, float] | None = None,
    image_size: int = 224,
    backend: str = "pyav",
) -> tuple[VideoPlan, int]:
    """Which frames to sample: ``num_frames`` by the uniform rule, or as many as ``rate`` frames a second gives
    (`sevila.video.frames_at_rate`), within ``clip``. Each frame once, in time order; also returns how many
    frames the rule asked for (more than the plan holds when the video or window is shorter than that)."""
    if (num_frames is None) == (rate is None):
        raise ValueError("give exactly one of num_frames and rate")
    video_frames, fps = _frame_count_and_rate(Path(path), image_size, backend)
    if rate is not None:
        num_frames = frames_at_rate(video_frames, fps, rate, clip, source=path)
    indices = sample_indices(video_frames, fps, num_frames, "uniform", clip, source=path)
    return VideoPlan(Path(path), sorted(set(indices)), fps, video_frames / fps), num_frames


_frame_counts: dict[tuple, tuple[int, float]] = {}


def _frame_count_and_rate(path: Path, image_size: int, backend: str) -> tuple[int, float]:
    """The video's frame count and average rate, memoised per file version within a process: opening a long
    video demuxes every packet (about a second an hour), which a second question need not repeat."""
    memo = (*file_version(path), backend)
    if memo not in _frame_counts:
        with open_video(path, image_size, backend) as reader:
            _frame_counts[memo] = (reader.num_frames, reader.fps)
    return _frame_counts[memo]


@dataclass
class Scan:
    """What a pass over a long video keeps: every frame's scores and the answerer's tokens of the candidates."""

    indices: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    fps: float = 0.0
    duration: float = 0.0
    scores: list[torch.Tensor] = field(default_factory=list)  # per group: (prompts, frames) or (prompts, frames, 2)
    answerer_tokens: dict[int, torch.Tensor] = field(default_factory=dict)  # frame position -> (Q, D)

    def keyframe_tokens(self, keyframes: torch.Tensor) -> torch.Tensor:
        """(rows, k) frame positions -> the answerer's tokens (rows, k, Q, D)."""
        return torch.stack([torch.stack([self.answerer_tokens[int(p)] for p in row]) for row in keyframes])


def scan(
    model: SeViLA,
    chunks: Iterable[VideoFeatures],
    prompt_groups: Sequence[Sequence[str]],
    keep: int,
    with_no: bool = False,
) -> Scan:
    """Score every frame of ``chunks`` for each group of localizer prompts (one T5 call per group and block, as
    `SeViLA.predict` makes one per option count) and keep the answerer's tokens of each prompt's ``keep`` best
    frames so far (ties included, so the final top k is among them whatever the order of ties)."""
    result = Scan(scores=[[] for _ in prompt_groups])
    pending: torch.Tensor | None = None  # localizer tokens (frames, Q, D) not yet scored: less than one block
    scored = 0

    def score(block: torch.Tensor) -> None:
        nonlocal scored
        for group, prompts in enumerate(prompt_groups):
            tokens = block[None].expand(len(prompts), *block.shape)
            with torch.no_grad():
                result.scores[group].append(model.frame_scores(tokens, list(prompts), with_no=with_no))
        scored += block.shape[0]
        if keep:
            _keep_candidates(result, keep, scored, with_no)

    for chunk in chunks:
        if not result.indices:
            result.fps, result.duration = chunk.fps, chunk.duration
        offset = len(result.indices)
        result.indices += chunk.indices
        result.timestamps += chunk.timestamps
        if keep:
            for j, tokens in enumerate(chunk.features.answerer[0]):
                result.answerer_tokens[offset + j] = tokens
        tokens = chunk.features.localizer[0]
        pending = tokens if pending is None else torch.cat([pending, tokens])
        while pending.shape[0] >= SCORE_BLOCK_FRAMES:
            score(pending[:SCORE_BLOCK_FRAMES])
            pending = pending[SCORE_BLOCK_FRAMES:]
    if pending is not None and pending.shape[0]:
        score(pending)
    result.scores = [torch.cat(parts, dim=1) for parts in result.scores]
    return result


def _keep_candidates(result: Scan, keep: int, scored: int, with_no: bool) -> None:
    """Drop the answerer's tokens of scored frames that k frames of every prompt beat already."""
    wanted: set[int] = set(range(scored, len(result.indices)))  # not yet scored
    for parts in result.scores:
        scores = torch.cat(parts, dim=1)
        scores = scores[..., 0] if with_no else scores
        if scores.shape[1] <= keep:
            return
        threshold = scores.topk(keep, dim=1).values[:, -1:]
        wanted.update(torch.nonzero(scores >= threshold)[:, 1].tolist())
    for position in [p for p in result.answerer_tokens if p not in wanted]:
        del result.answerer_tokens[position]


def predict_scanned(
    model: SeViLA, found: Scan, group: int, qa_prompts: Sequence[str], num_options: int, num_keyframes: int
) -> Prediction:
    """`SeViLA.predict` for one prompt group of a scan: the top ``num_keyframes`` frames (time order) answer."""
    frame_scores = found.scores[group]
    keyframes = select_keyframes(frame_scores, num_keyframes)
    tokens = found.keyframe_tokens(keyframes).to(model.device)
    with torch.no_grad():
        return model.answer(tokens, list(qa_prompts), num_options).chained(keyframes, frame_scores)


def concatenate(chunks: Iterable[VideoFeatures]) -> VideoFeatures:
    """All chunks as one `VideoFeatures` (in memory: its size grows with the video)."""
    parts = list(chunks)
    features = FrameFeatures(
        torch.cat([p.features.answerer for p in parts], dim=1), torch.cat([p.features.localizer for p in parts], dim=1)
    )
    indices = [i for p in parts for i in p.indices]
    timestamps = [t for p in parts for t in p.timestamps]
    return VideoFeatures(features, indices, timestamps, parts[0].fps, parts[0].duration)
