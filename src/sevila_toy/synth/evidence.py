"""The ground truth of localization: for each question, where in the video its answer can be seen.

``evidence.jsonl`` holds one object per question::

    {"qid": "colour_v0007_0", "video": "v0007", "windows": [[2.5, 3.25]], "frames": [[20, 21, ..., 26]]}

``windows`` are inclusive ``[start, end]`` seconds with ``start = first / fps`` and ``end = last / fps``, so
a frame at ``index / fps`` lies in a window exactly when it shows the evidence (the rule of
`sevila.data.targets.frame_labels`); ``frames`` lists those frame indices. A question with several windows
(temporal questions: the named shape and the event next to it) needs a frame from each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from sevila.data.sources import atomic_write_text, read_jsonl


@dataclass(frozen=True)
class Evidence:
    """One question's evidence: windows in seconds and the frame indices inside each."""

    qid: str
    video: str
    windows: list[list[float]]
    frames: list[list[int]]

    def covered(self, indices: Iterable[int]) -> bool:
        """Whether frames `indices` (e.g. the keyframes) include at least one frame of every window."""
        chosen = set(indices)
        return all(chosen.intersection(window) for window in self.frames)


def evidence_for(qid: str, video: str, spans: Sequence[tuple[int, int]], fps: float) -> Evidence:
    """Evidence from inclusive frame spans."""
    return Evidence(
        qid, video, [[first / fps, last / fps] for first, last in spans], [list(range(a, b + 1)) for a, b in spans]
    )


def write_evidence(path: str | os.PathLike[str], items: Iterable[Evidence]) -> None:
    atomic_write_text(path, "".join(json.dumps(asdict(e)) + "\n" for e in items))


def read_evidence(path: str | os.PathLike[str]) -> dict[str, Evidence]:
    """qid → `Evidence` of an ``evidence.jsonl`` file."""
    out = {}
    for row in read_jsonl(path):
        out[row.str("qid")] = Evidence(row.str("qid"), row.str("video"), row.list("windows"), row.list("frames"))
    return out
