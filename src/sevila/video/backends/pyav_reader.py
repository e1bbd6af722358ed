"""The default backend: PyAV (whose wheels bundle FFmpeg), frame-exact and decord-compatible.

Frame numbering follows decord, which the original SeViLA used: the video has one frame per packet of its
video stream, and frame ``i`` is the packet with the ``i``-th smallest presentation timestamp (pts), i.e.
the ``i``-th frame the decoder outputs. Packets flagged "discard" (samples an MP4 edit list cuts away) are
not counted: the decoder drops them too, so counting them would shift every later index.

To fetch frames we index all packets once (demuxing only, no decoding: a few milliseconds), then for each
wanted frame seek to the last keyframe at or before it and decode forward, identifying frames by pts.
Consecutive wanted frames in the same group of pictures share one decoding run, so a sparse sample of a long
video decodes only the GOPs it touches. If the stream's timestamps cannot identify frames (missing or
duplicate pts) we decode from the start and count frames in output order instead.

Resizing uses FFmpeg's ``scale`` filter with ``flags=bilinear`` and an ``rgb24`` sink, which is exactly
decord's filter graph (``scale=W:H`` with the FFmpeg 4 default flags, bilinear): on the shared demo videos
our frames are bit-identical to decord's (and to the parity fixture's frames). ``VideoFrame.reformat`` does
worse with every interpolation; its best, ``BILINEAR``, differs on demo1 by mean 0.16 / max 5 levels at
56 px and 0.31 / 15 at 224 px, because it converts colour and scales in one step with different rounding.
One known difference remains: when a dimension is not rescaled (e.g. a 224-pixel-high video), this FFmpeg
and decord's older one round colour edges differently. Rotation metadata is applied the way decord does
it, by ``transpose`` filters before scaling.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import cast

import av
import av.filter
import numpy as np

from sevila.video.backends.base import FrameReader
from sevila.video.errors import VideoError

# FFmpeg filters that turn a frame stored with a clockwise display rotation of this many degrees upright.
# decord's choice, 180 included: two transposes, not hflip+vflip, which scale differently at colour edges.
_UPRIGHT_FILTERS: dict[int, tuple[tuple[str, str], ...]] = {
    0: (),
    90: (("transpose", "clock"),),
    180: (("transpose", "clock"), ("transpose", "clock")),
    270: (("transpose", "cclock"),),
}
_LIBRARY_ERRORS = (av.error.FFmpegError, OSError)  # OSError: e.g. permission denied


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class PyAVReader(FrameReader):
    """Frame-exact reader over one PyAV container (see the module docstring for the method)."""

    def __init__(self, path: str | Path, image_size: int) -> None:
        self.path = Path(path)
        self._size = image_size
        self._container = self._open()
        try:
            if not self._container.streams.video:
                raise VideoError(self.path, "the file has no video stream")
            self._stream = self._container.streams.video[0]
            self._rotate_tag = self._stream.metadata.get("rotate")
            self.fps = self._average_fps()
            self._index_packets()
        except BaseException:
            self._container.close()
            raise
        self._graphs: dict[tuple[int, int, str, int], av.filter.Graph] = {}

    # ------------------------------------------------------------------ opening and indexing
    def _open(self) -> av.container.InputContainer:
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except _LIBRARY_ERRORS as exc:
            raise VideoError(self.path, f"cannot be opened as a video ({_describe(exc)})") from None
        if container.streams.video:
            # Frame and slice threads: decoding dominates the cost and is identical with or without them.
            container.streams.video[0].thread_type = "AUTO"
        return container

    def _average_fps(self) -> float:
        """FFmpeg's average frame rate (decord's ``get_avg_fps``), falling back to its guessed rate."""
        stream = self._stream
        for rate in (stream.average_rate, stream.guessed_rate):
            if rate is not None and rate > 0:
                return float(rate)
        raise VideoError(self.path, "the video stream has no known frame rate")

    def _index_packets(self) -> None:
        """Demux every packet once: frame count, pts order and keyframe positions."""
        pts: list[int] = []
        keyframe_pts: list[int] = []
        packets = timeless = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the empty packet that signals the end of the stream
                    continue
                packets += 1
                if packet.is_discard:
                    continue
                if packet.pts is None:
                    timeless += 1
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keyframe_pts.append(packet.pts)
        except _LIBRARY_ERRORS as exc:
            raise VideoError(self.path, f"corrupt video data ({_describe(exc)})") from None
        declared = self._stream.frames
        if declared > 0 and packets < declared:
            raise VideoError(
                self.path, f"truncated file: the container declares {declared} frames but only {packets} are present"
            )
        self.num_frames = len(pts) + timeless
        if self.num_frames == 0:
            raise VideoError(self.path, "the video stream has no frames")
        # Frames are identified by pts when every packet has a distinct one; otherwise by output order.
        self._frame_of_pts: dict[int, int] | None = None
        self._keyframes: list[int] = []  # frame indices of the keyframes, ascending
        self._keyframe_pts: list[int] = []
        if not timeless and len(set(pts)) == len(pts):
            self._frame_of_pts = {p: i for i, p in enumerate(sorted(pts))}
            self._keyframe_pts = sorted(keyframe_pts)
            self._keyframes = [self._frame_of_pts[p] for p in self._keyframe_pts]

    # ------------------------------------------------------------------ reading
    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = sorted({int(i) for i in indices})
        if not wanted:
            return np.zeros((0, self._size, self._size, 3), dtype=np.uint8)
        if wanted[0] < 0 or wanted[-1] >= self.num_frames:
            raise IndexError(f"frame indices must lie in [0, {self.num_frames}), got {wanted[0]}..{wanted[-1]}")
        try:
            got = self._read_by_pts(wanted) if self._frame_of_pts is not None else None
            if got is None:  # decoded frames do not carry the packets' pts: count them instead
                self._frame_of_pts = None
                got = self._read_in_output_order(wanted)
        except _LIBRARY_ERRORS as exc:
            raise VideoError(self.path, f"corrupt video data ({_describe(exc)})") from None
        missing = [i for i in wanted if i not in got]
        if missing:
            raise VideoError(
                self.path, f"frames {missing[:8]} of {self.num_frames} could not be decoded (corrupt or truncated data)"
            )
        return np.stack([got[int(i)] for i in indices])

    def _identify(self, frame: av.VideoFrame) -> int | None:
        assert self._frame_of_pts is not None
        return None if frame.pts is None else self._frame_of_pts.get(frame.pts)

    def _read_by_pts(self, wanted: list[int]) -> dict[int, np.ndarray] | None:
        """Seek to the keyframe before each wanted frame unless decoding on reaches it sooner.

        Frames the seeks did not deliver (a demuxer that lands after the requested keyframe, frames before
        the first keyframe) are looked for in one plain pass from the start. Returns None as soon as a decoded
        frame cannot be identified by its pts.
        """
        wanted_set = set(wanted)
        got: dict[int, np.ndarray] = {}
        frames: Iterator[av.VideoFrame] = iter(())
        run_start = position = -1  # first frame trusted in the current run; last frame it produced
        at_end = True  # no decoding run to continue
        for target in wanted if self._keyframes else ():
            if target in got:
                continue
            k = max(bisect.bisect_right(self._keyframes, target) - 1, 0)
            if at_end or target <= position or self._keyframes[k] > position:
                # By pts, as decord does: FFmpeg then lands on this keyframe (MP4 included, whose index is in
                # decode time) or, in rare layouts, on a later one: the plain pass below finds what that skips.
                self._container.seek(self._keyframe_pts[k], stream=self._stream, backward=True)
                frames, at_end = self._decode(), False
                run_start = position = self._keyframes[k]
                position -= 1
            for frame in frames:
                index = self._identify(frame)
                if index is None:
                    return None
                if index < run_start:  # leading frames of an open GOP reference data before the seek point
                    continue
                position = index
                if index in wanted_set and index not in got:
                    got[index] = self._to_rgb(frame)
                if index >= target:
                    break
            else:
                at_end = True
        missing = wanted_set.difference(got)
        if missing:
            for frame in self._decode_from_start():
                index = self._identify(frame)
                if index is None:
                    return None
                if index in missing:
                    got[index] = self._to_rgb(frame)
                    missing.discard(index)
                    if not missing:
                        break
        return got

    def _read_in_output_order(self, wanted: list[int]) -> dict[int, np.ndarray]:
        wanted_set = set(wanted)
        got: dict[int, np.ndarray] = {}
        for index, frame in enumerate(self._decode_from_start()):
            if index in wanted_set:
                got[index] = self._to_rgb(frame)
            if index >= wanted[-1]:
                break
        return got

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Decoded frames from the container's current position."""
        return cast(Iterator[av.VideoFrame], self._container.decode(self._stream))

    def _decode_from_start(self) -> Iterator[av.VideoFrame]:
        """Decode from a freshly opened container (more robust than seeking to 0 in odd files)."""
        self._container.close()
        self._container = self._open()
        self._stream = self._container.streams.video[0]
        return self._decode()

    # ------------------------------------------------------------------ conversion
    def _clockwise_rotation(self, frame: av.VideoFrame) -> int:
        """Display rotation in clockwise degrees, snapped to a right angle (others are ignored, as decord does).

        Newer FFmpeg attaches the container's display matrix to each decoded frame (``frame.rotation``,
        counter-clockwise); older builds exported it as the stream's ``rotate`` tag (clockwise).
        """
        if self._rotate_tag is not None:
            try:
                degrees = float(self._rotate_tag)
            except ValueError:  # a malformed tag: treat the video as upright
                return 0
        else:
            degrees = -float(getattr(frame, "rotation", 0) or 0)
        snapped = round(degrees / 90) * 90 % 360
        off_by = (degrees - snapped + 180) % 360 - 180
        return snapped if abs(off_by) < 1 else 0

    def _graph(self, frame: av.VideoFrame) -> av.filter.Graph:
        rotation = self._clockwise_rotation(frame)
        key = (frame.width, frame.height, frame.format.name, rotation)
        graph = self._graphs.get(key)
        if graph is None:
            graph = av.filter.Graph()
            nodes = [
                graph.add_buffer(
                    width=frame.width,
                    height=frame.height,
                    format=frame.format,
                    time_base=self._stream.time_base or Fraction(1, 1000),
                )
            ]
            nodes += [graph.add(name, args) for name, args in _UPRIGHT_FILTERS[rotation]]
            nodes.append(graph.add("scale", f"{self._size}:{self._size}:flags=bilinear"))
            nodes.append(graph.add("format", "rgb24"))
            nodes.append(graph.add("buffersink"))
            for upstream, downstream in pairwise(nodes):
                upstream.link_to(downstream)
            graph.configure()
            self._graphs[key] = graph
        return graph

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        graph = self._graph(frame)
        graph.push(frame)
        return graph.pull().to_ndarray()

    def close(self) -> None:
        self._container.close()
