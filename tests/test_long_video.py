"""Long videos: sampling by rate, chunked decoding, encoding and scoring equal to all-at-once, per-chunk cache
entries reused by a second question, bounded state, and a corrupt tail that costs only its own frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sevila import streaming
from sevila.features import FeatureCache, TruncatedVideo, encode_chunks
from sevila.inference import VideoQA
from sevila.video import VideoError, frames_at_rate
from sevila.video.encode import write_mp4
from tests.support.tiny import OPTIONS, QUESTION, tiny_model

SECONDS, FPS = 180, 2  # a three-minute video


def _frames(count: int, seed: int = 0):
    """Slowly drifting colours with a bright square now and then, so frames (and their scores) differ."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 220, size=(count // 20 + 2, 3))
    for i in range(count):
        frame = np.empty((48, 48, 3), np.uint8)
        frame[:] = colours[i // 20] + (colours[i // 20 + 1] - colours[i // 20]) * (i % 20) // 20
        if i % 37 < 3:
            frame[12:36, 12:36] = 255
        yield frame


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("long") / "three_minutes.mp4", _frames(SECONDS * FPS), fps=FPS)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3).eval()


QUESTIONS = [
    (QUESTION, OPTIONS[:4]),
    ("what colour is the square?", OPTIONS[1:5]),
    ("when does the square appear?", OPTIONS[:3]),  # another option count: another T5 group
]


def test_rate_gives_one_frame_per_segment_of_that_length():
    assert frames_at_rate(18000, 30.0, 1.0) == 600
    assert frames_at_rate(17982, 29.97, 1.0) == 600  # 600 s at NTSC's rate, not 599
    assert frames_at_rate(360, 2.0, 0.5, clip=(10, 70)) == 30
    assert frames_at_rate(10, 2.0, 100.0) == 10  # never more than the frames there are
    assert frames_at_rate(10, 2.0, 0.01) == 1
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="--fps"):
            frames_at_rate(10, 2.0, bad)


def test_chunked_answers_and_moments_equal_all_frames_at_once(model, long_video):
    whole = VideoQA(model, fps=1, num_keyframes=4, chunk_frames=10_000)  # one chunk: every frame in memory
    together = whole.predict_many(long_video, QUESTIONS)
    assert len(together[0].frame_indices) == SECONDS  # 1 frame a second
    assert together[0].frame_indices[:3] == [1, 3, 5]  # the middle frame of each second
    for chunk in (7, 32, 45):
        chunked = VideoQA(model, fps=1, num_keyframes=4, chunk_frames=chunk).predict_many(long_video, QUESTIONS)
        assert [a.to_dict() for a in chunked] == [a.to_dict() for a in together], chunk  # exactly, floats too
    query = "a white square"
    at_once = whole.localize(long_video, query).to_dict()
    assert VideoQA(model, fps=1, chunk_frames=7).localize(long_video, query).to_dict() == at_once
    assert at_once["duration"] == SECONDS


def test_a_frame_count_above_one_chunk_streams_too(model, long_video):
    expected = VideoQA(model, num_frames=100, chunk_frames=10_000).predict(long_video, QUESTION, OPTIONS[:4])
    streamed = VideoQA(model, num_frames=100, chunk_frames=16).predict(long_video, QUESTION, OPTIONS[:4])
    assert streamed.to_dict() == expected.to_dict() and len(streamed.frame_scores) == 100


def test_state_stays_bounded_while_scanning(model, long_video):
    qa = VideoQA(model, fps=1, chunk_frames=10)
    plan, _ = streaming.plan_video(long_video, rate=1.0, image_size=model.config.vision.image_size)
    sizes = []
    chunks = encode_chunks(model, plan, 10, progress=False)
    found = streaming.scan(model, (sizes.append(c.features.answerer.shape[1]) or c for c in chunks), [["q"] * 2], 4)
    assert max(sizes) == 10 and sum(sizes) == SECONDS
    assert 4 <= len(found.answerer_tokens) <= 2 * 4 + 2  # the candidates, not 180 frames' tokens
    assert found.scores[0].shape == (2, SECONDS)
    assert qa.chunk_frames == 10


def test_a_second_question_reads_the_chunks_from_the_cache(model, long_video, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    qa = VideoQA(model, fps=1, chunk_frames=32, cache=cache)
    first = qa.predict(long_video, *QUESTIONS[0])
    chunks = -(-SECONDS // 32)
    assert (cache.misses, cache.hits, len(cache.entries())) == (chunks, 0, chunks)

    import sevila.features

    def no_decoding(*args):
        raise AssertionError("a cached chunk was decoded again")

    monkeypatch.setattr(sevila.features, "_decode_what_decodes", no_decoding)
    second = qa.predict(long_video, *QUESTIONS[1])
    assert (cache.misses, cache.hits) == (chunks, chunks)
    monkeypatch.undo()
    uncached = VideoQA(model, fps=1, chunk_frames=32)
    assert [first.to_dict(), second.to_dict()] == [uncached.predict(long_video, *q).to_dict() for q in QUESTIONS[:2]]


def test_a_corrupt_tail_keeps_the_frames_before_it_and_names_the_rest(model, tmp_path):
    source = write_mp4(tmp_path / "whole.mp4", _frames(240), fps=FPS, container_options={"movflags": "faststart"})
    data = source.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: int(len(data) * 0.6)] + bytes(len(data) - int(len(data) * 0.6)))  # a zeroed tail
    qa = VideoQA(model, fps=1, chunk_frames=16)
    with pytest.warns(TruncatedVideo, match=r"broken\.mp4: frames from \d+ \(\d+\.\ds\) on do not decode") as caught:
        answer = qa.predict(broken, QUESTION, OPTIONS[:4])
    kept = len(answer.frame_indices)
    assert 16 <= kept < 120 and f"not the last {120 - kept}" in str(caught[0].message)
    assert answer.frame_indices == VideoQA(model, fps=1).predict(source, QUESTION, OPTIONS[:4]).frame_indices[:kept]

    frames_start = data.index(b"mdat") + 4
    broken.write_bytes(data[:frames_start] + bytes(len(data) - frames_start))  # the index survives, no frame does
    with pytest.raises(VideoError, match=r"broken\.mp4: corrupt video data"):
        qa.predict(broken, QUESTION, OPTIONS[:4])
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # a file cut short: refused at once, as a short video is
    with pytest.raises(VideoError, match=r"cut\.mp4: truncated file"):
        qa.predict(cut, QUESTION, OPTIONS[:4])


def test_one_line_refusals(model, long_video):
    with pytest.raises(ValueError, match=r"--frames\) or fps \(--fps\), not both"):
        VideoQA(model, num_frames=8, fps=1)
    qa = VideoQA(model, chunk_frames=16)
    with pytest.raises(ValueError, match="not both"):
        qa.predict(long_video, QUESTION, OPTIONS[:4], num_frames=8, fps=1)
    with pytest.raises(ValueError, match="answerer reads every sampled frame"):
        qa.predict(long_video, QUESTION, OPTIONS[:4], fps=1, use_localizer=False)
    with pytest.raises(ValueError, match="--fps"):
        qa.localize(long_video, "a square", fps=0)
    with pytest.raises(ValueError, match=r"chunk_frames \(--chunk-frames\) must be at least 1, got 0"):
        VideoQA(model, chunk_frames=0)


def test_the_command_line_samples_by_rate_and_streams(model, long_video, tmp_path, capsys):
    from sevila import cli

    model.save_pretrained(tmp_path / "tiny")
    common = ["--model", str(tmp_path / "tiny"), "--device", "cpu", "--no-cache", "--fps", "1", "--chunk-frames", "16"]
    assert (
        cli.main(["answer", str(long_video), "-q", QUESTION, *sum((["-o", o] for o in OPTIONS[:4]), []), *common]) == 0
    )
    shown = capsys.readouterr().out
    assert "180 frames, 1.8 per bar" in shown  # a long video's strip keeps to 100 columns
    expected = VideoQA(model, fps=1).predict(long_video, QUESTION, OPTIONS[:4])
    assert f"Answer: ({expected.letter}) {expected.text}" in shown
    for threshold, span in ((0.5, 6), (0.52, 0)):
        flags = ["--threshold", str(threshold), "--span-threshold", str(span)]
        assert cli.main(["localize", str(long_video), "-q", "a white square", "--json", *flags, *common]) == 0
        row = json.loads(capsys.readouterr().out)
        windows = VideoQA(model, fps=1).localize(long_video, "a white square", threshold=threshold, span_threshold=span)
        assert [w[:2] for w in row["pred_relevant_windows"]] == [[s, e] for s, e, _ in windows.moments]
    with pytest.raises(SystemExit):
        cli.main(["answer", str(long_video), "-q", "x", "-o", "a", "-o", "b", *common, "--frames", "8"])
    assert "not allowed with argument --fps" in capsys.readouterr().err
