"""Decoding (`sevila.video.load_video` and its backends) on videos we encode ourselves and on the shared demos.

The synthetic videos number their frames (grey level, `sevila_toy.pattern_videos`), so every test can check that
the frame returned for index ``i`` really is frame ``i``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest

from sevila.video import BACKENDS, VideoError, load_video, open_video
from sevila_toy.pattern_videos import (
    MAX_FRAMES,
    frame_number,
    red_band_side,
    write_audio_only,
    write_empty_video,
    write_video,
)
from tests.support.paths import shared_dir

CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
# PyAV's frames of the shared demos, measured against decord 0.6 (FFmpeg 4 build) and the parity fixture:
# identical (mean 0, max 0). The margin allows another FFmpeg build's rounding, not another filter.
DECORD_MAX_MEAN_DIFF, DECORD_MAX_DIFF = 0.05, 2


def shared_file(*parts: str) -> Path:
    path = shared_dir().joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} not found (shared data absent; set SEVILA_SHARED_DIR)")
    return path


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


needs_decord = pytest.mark.skipif(
    not decord_available(), reason="decord is not installed (pip install 'sevila[decord]')"
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One of each kind, encoded once for the module."""
    root = tmp_path_factory.mktemp("videos")
    made = {
        "gop": write_video(root / "gop.mp4", MAX_FRAMES, codec=CODEC, gop=10, b_frames=2),
        "faststart": write_video(root / "faststart.mp4", 40, codec=CODEC, faststart=True),
        "short": write_video(root / "short.mp4", 5, codec=CODEC),
        "mkv": write_video(root / "stream.mkv", 30, codec=CODEC),
        "avi": write_video(root / "old.avi", 30, codec="mpeg4", b_frames=0),
        "vfr": write_video(
            root / "vfr.mp4", 40, codec=CODEC, frame_times=np.cumsum([0.0] + [0.02, 0.05, 0.1, 0.03] * 10)[:40].tolist()
        ),
        "audio": write_audio_only(root / "audio.m4a"),
        "empty": write_empty_video(root / "empty.avi"),
    }
    text = root / "notes.mp4"
    text.write_text("this is not a video\n")
    made["text"] = text
    for name, source in (("truncated", "gop"), ("truncated_faststart", "faststart")):
        data = made[source].read_bytes()
        made[name] = root / f"{name}.mp4"
        made[name].write_bytes(data[: len(data) // 2])
    return made


def numbers(frames: np.ndarray) -> list[int]:
    return [frame_number(f) for f in frames]


# ---------------------------------------------------------------------------- frame exactness
@pytest.mark.parametrize("kind", ["gop", "faststart", "mkv", "avi"])
def test_every_index_is_the_right_frame(videos: dict[str, Path], kind: str) -> None:
    reader = open_video(videos[kind], image_size=32)
    try:
        everything = list(range(reader.num_frames))
        assert numbers(reader.read(everything)) == everything
        scattered = [reader.num_frames - 1, 3, 17, 3, 0, 11, reader.num_frames // 2]
        assert numbers(reader.read(scattered)) == scattered  # any order, repeats kept
    finally:
        reader.close()


def test_load_video_returns_a_complete_clip(videos: dict[str, Path]) -> None:
    clip = load_video(videos["gop"], 8, image_size=40)
    assert clip.frames.shape == (8, 40, 40, 3) and clip.frames.dtype == np.uint8
    assert clip.num_video_frames == MAX_FRAMES and clip.fps == pytest.approx(25.0)
    assert clip.indices == [3, 9, 15, 21, 27, 33, 39, 45]
    assert numbers(clip.frames) == clip.indices
    assert clip.timestamps == pytest.approx([i / 25.0 for i in clip.indices])
    assert clip.duration == pytest.approx(MAX_FRAMES / 25.0)
    assert clip.path == videos["gop"]


def test_sparse_reads_seek_instead_of_decoding_everything(videos: dict[str, Path]) -> None:
    reader = open_video(videos["gop"], image_size=16)
    decoded: list[int] = []
    identify = reader._identify  # type: ignore[attr-defined]

    def counting(frame: av.VideoFrame) -> int | None:
        decoded.append(1)
        return identify(frame)

    reader._identify = counting  # type: ignore[attr-defined]
    try:
        assert numbers(reader.read([45])) == [45]
        assert len(decoded) <= 10  # the GOP of frame 45 starts at keyframe 40
    finally:
        reader.close()


def test_frames_missed_by_seeking_are_found_from_the_start(videos: dict[str, Path]) -> None:
    reader = open_video(videos["gop"], image_size=16)
    try:
        # Make every seek land on the last keyframe, as a demuxer with an odd index might.
        reader._keyframe_pts = [reader._keyframe_pts[-1]] * len(reader._keyframe_pts)  # type: ignore[attr-defined]
        assert numbers(reader.read([2, 25, 44])) == [2, 25, 44]
    finally:
        reader.close()


def test_frames_without_usable_timestamps_are_counted_in_output_order(videos: dict[str, Path]) -> None:
    reader = open_video(videos["gop"], image_size=16)
    try:
        reader._frame_of_pts = None  # type: ignore[attr-defined]  # as for a stream without pts
        assert numbers(reader.read([0, 13, 29, 47])) == [0, 13, 29, 47]
    finally:
        reader.close()


def test_short_video_still_yields_n_frames(videos: dict[str, Path]) -> None:
    clip = load_video(videos["short"], 8, image_size=16)
    assert clip.frames.shape[0] == 8 and clip.num_video_frames == 5
    assert numbers(clip.frames) == clip.indices == [0, 0, 1, 1, 2, 3, 3, 4]


def test_clip_window(videos: dict[str, Path]) -> None:
    clip = load_video(videos["gop"], 4, clip=(0.4, 1.2), image_size=16)  # frames [10, 30) at 25 fps
    assert clip.indices == [12, 17, 22, 27]
    assert numbers(clip.frames) == clip.indices
    random_clip = load_video(videos["gop"], 4, "random", clip=(0.4, 1.2), image_size=16, rng=np.random.default_rng(0))
    assert all(10 <= i < 30 for i in random_clip.indices)
    assert numbers(random_clip.frames) == random_clip.indices


def test_clip_window_outside_the_video(videos: dict[str, Path]) -> None:
    with pytest.raises(VideoError) as info:
        load_video(videos["gop"], 4, clip=(5.0, 9.0))
    assert str(videos["gop"]) in str(info.value) and "5s" in str(info.value)


def test_variable_frame_rate(videos: dict[str, Path]) -> None:
    container = av.open(str(videos["vfr"]))
    average = float(container.streams.video[0].average_rate)
    container.close()
    clip = load_video(videos["vfr"], 40, image_size=16)
    assert clip.num_video_frames == 40
    assert clip.fps == pytest.approx(average) and clip.fps != pytest.approx(25.0)
    assert numbers(clip.frames) == clip.indices == list(range(40))  # decode order, not time
    assert clip.timestamps == pytest.approx([i / average for i in range(40)])  # the original's convention


@pytest.mark.parametrize(("ccw_degrees", "band"), [(90, "left"), (-90, "right"), (180, "bottom"), (0, "top")])
def test_rotation_metadata_is_applied(tmp_path: Path, ccw_degrees: int, band: str) -> None:
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix (needs PyAV >= 15)")
    path = write_video(tmp_path / "rotated.mp4", 12, codec=CODEC, rotation=ccw_degrees)
    clip = load_video(path, 3, image_size=32)
    assert [red_band_side(f) for f in clip.frames] == [band] * 3  # stored on top, displayed rotated
    assert numbers(clip.frames) == clip.indices
    if decord_available():
        assert np.array_equal(clip.frames, load_video(path, 3, image_size=32, backend="decord").frames)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("text", "cannot be opened"),
        ("audio", "no video stream"),
        ("empty", "no frames"),
        ("truncated", "cannot be opened"),  # index (moov) at the end: lost
        ("truncated_faststart", "truncated"),  # index first: frames missing
    ],
)
def test_bad_videos_raise_video_error_naming_the_file(videos: dict[str, Path], kind: str, reason: str) -> None:
    with pytest.raises(VideoError, match=reason) as info:
        load_video(videos[kind], 4)
    assert str(videos[kind]) in str(info.value)
    assert info.value.path == str(videos[kind])
    assert info.value.__cause__ is None  # no library traceback attached


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="file not found") as info:
        load_video(tmp_path / "nope.mp4", 4)
    assert "nope.mp4" in str(info.value)
    with pytest.raises(VideoError, match="not a regular file"):
        load_video(tmp_path, 4)


def test_truncated_shared_demo(tmp_path: Path) -> None:
    demo = shared_file("videos", "demo1.mp4")
    cut = tmp_path / "demo1_half.mp4"
    data = demo.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated") as info:
        load_video(cut, 8)
    assert str(cut) in str(info.value)


def test_argument_errors(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown video backend"):
        load_video(videos["gop"], 4, backend="opencv")
    with pytest.raises(ValueError, match="num_frames"):
        load_video(videos["gop"], 0)
    with pytest.raises(ValueError, match="image_size"):
        load_video(videos["gop"], 4, image_size=0)


def test_missing_optional_backend_says_which_extra_to_install(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    with pytest.raises(ImportError, match=r"pip install 'sevila\[decord\]'"):
        load_video(videos["gop"], 4, backend="decord")


def torchcodec_usable() -> bool:
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@pytest.mark.skipif(torchcodec_usable(), reason="torchcodec is installed")
def test_torchcodec_missing_says_which_extra_to_install(videos: dict[str, Path]) -> None:
    with pytest.raises(ImportError, match=r"pip install 'sevila\[torchcodec\]'"):
        load_video(videos["gop"], 4, backend="torchcodec")


@pytest.mark.skipif(
    not torchcodec_usable(), reason="torchcodec is not installed or cannot load (pip install 'sevila[torchcodec]')"
)
def test_torchcodec_gives_the_same_frames(videos: dict[str, Path]) -> None:
    ours = load_video(videos["gop"], 8, image_size=32)
    theirs = load_video(videos["gop"], 8, image_size=32, backend="torchcodec")
    assert (theirs.indices, theirs.num_video_frames) == (ours.indices, ours.num_video_frames)
    assert numbers(theirs.frames) == ours.indices


# ---------------------------------------------------------------------------- shared demos and other backends
@pytest.mark.parity
def test_parity_raw_frames_of_demo1() -> None:
    from safetensors.numpy import load_file

    demo = shared_file("videos", "demo1.mp4")
    inputs = load_file(str(shared_file("parity", "inputs.safetensors")))
    for n in (8, 4):
        clip = load_video(demo, n, image_size=56)
        raw = inputs[f"inputs.raw_frames_{n}"]  # decoded by decord in the original
        diff = np.abs(clip.frames.astype(np.int16) - raw.astype(np.int16))
        assert diff.mean() <= DECORD_MAX_MEAN_DIFF and diff.max() <= DECORD_MAX_DIFF


@needs_decord
@pytest.mark.parametrize("name", ["demo1.mp4", "demo3.mp4"])
def test_pyav_matches_decord_on_shared_videos(name: str) -> None:
    demo = shared_file("videos", name)
    ours = load_video(demo, 32)
    theirs = load_video(demo, 32, backend="decord")
    assert (ours.indices, ours.num_video_frames) == (theirs.indices, theirs.num_video_frames)
    assert ours.fps == pytest.approx(theirs.fps)
    diff = np.abs(ours.frames.astype(np.int16) - theirs.frames.astype(np.int16))
    assert diff.mean() <= DECORD_MAX_MEAN_DIFF and diff.max() <= DECORD_MAX_DIFF


@needs_decord
@pytest.mark.parametrize("kind", ["gop", "mkv", "vfr", "short"])
def test_backends_agree_on_synthetic_videos(videos: dict[str, Path], kind: str) -> None:
    ours = load_video(videos[kind], 8, image_size=32)  # decord fails on sizes with padded RGB rows (e.g. 24)
    theirs = load_video(videos[kind], 8, image_size=32, backend="decord")
    assert (ours.indices, ours.num_video_frames, ours.fps) == (theirs.indices, theirs.num_video_frames, theirs.fps)
    assert numbers(theirs.frames) == numbers(ours.frames) == ours.indices


def test_demo1_metadata() -> None:
    clip = load_video(shared_file("videos", "demo1.mp4"), 8, image_size=56)
    assert clip.num_video_frames == 919
    assert clip.fps == pytest.approx(29.97002997002997, abs=1e-12)
    assert clip.indices == [57, 171, 286, 401, 516, 631, 746, 861]


def test_every_backend_is_registered() -> None:
    assert set(BACKENDS) == {"pyav", "decord", "torchcodec"}
