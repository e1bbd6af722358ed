"""Frame-index sampling (`sevila.video.sampling`): the original's arithmetic, our fixes, clip windows."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from sevila.video import VideoError, frame_range, sample_indices, segment_bounds
from tests.support.paths import shared_dir

DEMO1_FRAMES = 919
DEMO1_FPS = 30000 / 1001


def test_parity_indices_of_demo1() -> None:
    # Recorded from the original on demo1.mp4 (parity fixture, summary.json -> video).
    assert sample_indices(DEMO1_FRAMES, DEMO1_FPS, 8) == [57, 171, 286, 401, 516, 631, 746, 861]
    assert sample_indices(DEMO1_FRAMES, DEMO1_FPS, 4) == [114, 344, 574, 804]


@pytest.mark.parity
def test_parity_indices_from_fixture_summary() -> None:
    summary = shared_dir() / "parity" / "summary.json"
    if not summary.is_file():
        pytest.skip(f"parity summary not found at {summary} (set SEVILA_SHARED_DIR)")
    video = json.loads(summary.read_text())["video"]
    for key, n in (("n_frms_8", 8), ("n_frms_4", 4)):
        rec = video[key]
        assert sample_indices(rec["num_frames"], rec["fps"], n) == rec["indices"]
        assert [i / rec["fps"] for i in rec["indices"]] == pytest.approx(rec["timestamps_s"], abs=1e-9)


def test_uniform_is_the_integer_midpoint_of_linspace_segments() -> None:
    for num_frames, n in ((100, 7), (31, 32), (1000, 32), (5, 5)):
        bounds = np.linspace(0, num_frames, n + 1).astype(int)
        expected = [int((bounds[j] + bounds[j + 1]) // 2) for j in range(n)]
        assert sample_indices(num_frames, 25.0, n) == expected
        assert segment_bounds(0, num_frames, n).tolist() == bounds.tolist()


def test_short_video_still_yields_n_indices() -> None:
    indices = sample_indices(3, 30.0, 8)
    assert len(indices) == 8
    assert indices == sorted(indices) and set(indices) == {0, 1, 2}
    assert sample_indices(1, 30.0, 4) == [0, 0, 0, 0]
    rnd = sample_indices(3, 30.0, 8, "random", rng=random.Random(0))
    assert len(rnd) == 8 and all(0 <= i < 3 for i in rnd)


@pytest.mark.parametrize("sampling", ["uniform", "random"])
def test_indices_always_inside_the_video(sampling: str) -> None:
    rng = np.random.default_rng(0)
    for num_frames in (1, 2, 7, 8, 9, 33, 250):
        for n in (1, 4, 8, 32, 100):
            indices = sample_indices(num_frames, 10.0, n, sampling, rng=rng)  # type: ignore[arg-type]
            assert len(indices) == n
            assert all(0 <= i < num_frames for i in indices)
            assert indices == sorted(indices)


def test_clip_window_converts_seconds_like_the_original() -> None:
    fps = 29.97
    assert frame_range(1000, fps, (2.0, 5.0)) == (int(2.0 * fps), int(5.0 * fps))  # truncation
    assert frame_range(1000, fps, None) == (0, 1000)
    assert frame_range(100, 10.0, (-3.0, 50.0)) == (0, 100)  # clamped to the video
    indices = sample_indices(1000, 10.0, 4, clip=(10.0, 20.0))
    assert indices == [112, 137, 162, 187]  # segments of [100, 200)


@pytest.mark.parametrize("clip", [(100.0, 120.0), (10.0, 10.0), (5.0, 2.0), (-5.0, -1.0)])
def test_clip_window_outside_the_video_names_file_and_window(clip: tuple[float, float]) -> None:
    with pytest.raises(VideoError) as info:
        sample_indices(250, 25.0, 8, clip=clip, source="videos/abc.mp4")
    message = str(info.value)
    assert "videos/abc.mp4" in message
    assert f"{clip[0]:g}s" in message and f"{clip[1]:g}s" in message
    assert info.value.path == "videos/abc.mp4"


def test_zero_frames_is_a_video_error() -> None:
    with pytest.raises(VideoError, match="no frames"):
        sample_indices(0, 25.0, 4, source="empty.avi")


def test_random_sampling_stays_in_its_segment_and_is_seedable() -> None:
    num_frames, n = 300, 8
    bounds = segment_bounds(0, num_frames, n)
    draws = [sample_indices(num_frames, 30.0, n, "random", rng=random.Random(seed)) for seed in range(50)]
    for indices in draws:
        for j, index in enumerate(indices):
            assert bounds[j] <= index < bounds[j + 1]
    assert len({tuple(d) for d in draws}) > 40  # actually random
    assert draws[7] == sample_indices(num_frames, 30.0, n, "random", rng=random.Random(7))
    gen_a = sample_indices(num_frames, 30.0, n, "random", rng=np.random.default_rng(3))
    gen_b = sample_indices(num_frames, 30.0, n, "random", rng=np.random.default_rng(3))
    assert gen_a == gen_b


def test_random_without_rng_follows_the_global_random_state() -> None:
    random.seed(123)
    first = sample_indices(300, 30.0, 8, "random")
    random.seed(123)
    assert sample_indices(300, 30.0, 8, "random") == first


def test_random_empty_segment_takes_its_start() -> None:
    # linspace(0, 3, 9) -> [0, 0, 0, 1, 1, 1, 2, 2, 3]: empty segments give their (repeated) start.
    assert sample_indices(3, 30.0, 8, "random", rng=random.Random(0))[:2] == [0, 0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sampling"):
        sample_indices(10, 25.0, 4, "headtail")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        sample_indices(10, 25.0, 0)


def test_video_error_formats_and_pickles() -> None:
    err = VideoError("/data/v.mp4", "truncated file")
    assert str(err) == "/data/v.mp4: truncated file"
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))
    assert str(VideoError(None, "no frames")) == "no frames"
