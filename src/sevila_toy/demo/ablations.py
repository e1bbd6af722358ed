"""Measuring a model of the synthetic world: QA accuracy under different frame choices, and localization.

Frame choices for the answerer (all 4 frames, in time order):
* ``uniform``: 4 uniformly sampled frames (the answerer trained on uniform frames, the paper's baseline);
* ``localizer``: the 4 best of 32 uniformly sampled frames by the localizer's "yes" logit (SeViLA);
* ``oracle``: 4 of the 32 chosen from the known evidence windows (an upper bound for any localizer).

Localization is scored against the evidence windows on the same 32 candidates: ``evidence_hit`` is the
share of questions whose every evidence window contains at least one keyframe (what the answerer needs),
``keyframe_precision`` the share of keyframes that lie in an evidence window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sevila.data import QARecord, read_records
from sevila.data.paths import video_file
from sevila.data.targets import record_prompts
from sevila.features import FeatureCache, encode_video
from sevila.model import SeViLA
from sevila_toy.synth.evidence import Evidence, read_evidence


@dataclass
class Scores:
    accuracy: float  # percent of questions answered correctly
    evidence_hit: float | None = None  # percent of questions whose evidence the keyframes cover
    keyframe_precision: float | None = None  # percent of keyframes inside an evidence window
    accuracy_by_type: dict[str, float] = field(default_factory=dict)  # percent correct per question type


def oracle_positions(evidence: Evidence, times: list[float], k: int) -> list[int]:
    """``k`` of the sampled frames (positions into ``times``) that show the evidence: frames inside the
    windows, spread over every window, topped up with the frames nearest to a window; in time order."""
    inside = [[j for j, t in enumerate(times) if start <= t <= end] for start, end in evidence.windows]
    chosen: list[int] = []
    round_robin = [list(w) for w in inside]
    while len(chosen) < k and any(round_robin):
        for window in round_robin:
            if window and len(chosen) < k:
                chosen.append(window.pop(len(window) // 2))
    if len(chosen) < k:
        centres = [(s + e) / 2 for s, e in evidence.windows]
        rest = sorted(
            (j for j in range(len(times)) if j not in chosen), key=lambda j: min(abs(times[j] - c) for c in centres)
        )
        chosen += rest[: k - len(chosen)]
    return sorted(chosen)


def evaluate_choice(
    model: SeViLA,
    records_path: Path,
    evidence_path: Path,
    video_root: Path,
    choice: str,
    num_frames: int = 32,
    k: int = 4,
    cache: FeatureCache | None = None,
) -> Scores:
    """QA accuracy of ``model`` answering from the frames ``choice`` picks (see the module docstring)."""
    records = [r for r in read_records(records_path) if isinstance(r, QARecord)]
    evidence = read_evidence(evidence_path)
    hits = in_window = total_keyframes = 0
    by_type: dict[str, list[bool]] = defaultdict(list)
    model.eval()
    for record in records:
        frames = k if choice == "uniform" else num_frames
        video = encode_video(model, video_file(record, video_root), frames, record.clip, cache=cache)
        qa_prompt, loc_prompt = record_prompts(record)
        with torch.no_grad():
            if choice == "uniform":
                positions = list(range(k))
            elif choice == "localizer":
                scores = model.frame_scores(video.features.localizer.to(model.device), [loc_prompt])[0]
                positions = scores.topk(k).indices.sort().values.tolist()
            elif choice == "oracle":
                positions = oracle_positions(evidence[record.qid], video.timestamps, k)
            else:
                raise ValueError(f"unknown frame choice {choice!r}")
            tokens = video.features.answerer[:, positions].to(model.device)
            answer = model.answer(tokens, [qa_prompt], len(record.options))
        by_type[record.question_type or "untyped"].append(int(answer.prediction[0]) == record.answer)
        times = [video.timestamps[p] for p in positions]
        windows = evidence[record.qid].windows
        hits += all(any(s <= t <= e for t in times) for s, e in windows)
        in_window += sum(any(s <= t <= e for s, e in windows) for t in times)
        total_keyframes += len(times)
    n = max(len(records), 1)
    correct = sum(sum(v) for v in by_type.values())
    return Scores(
        100 * correct / n,
        100 * hits / n,
        100 * in_window / max(total_keyframes, 1),
        {kind: 100 * sum(v) / len(v) for kind, v in sorted(by_type.items())},
    )


def with_localizer(answerer_model: SeViLA, localizer_model: SeViLA) -> SeViLA:
    """``answerer_model`` with its localizer branch replaced by ``localizer_model``'s (in place)."""
    answerer_model.localizer.load_state_dict(localizer_model.localizer.state_dict())
    return answerer_model
