"""The predict API, the feature cache and `sevila answer` on tiny models and videos made here."""

import json

import pytest
import torch

from sevila import cli
from sevila.features import FeatureCache, encode_video, model_fingerprint
from sevila.inference import VideoQA
from sevila.video import VideoError
from sevila_toy.pattern_videos import write_video
from tests.support.tiny import OPTIONS, QUESTION, tiny_model


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=40, fps=10)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_model(seed=1).save_pretrained(path)
    return path


def test_predict_reports_answer_scores_frames_and_keyframes(video):
    qa = VideoQA(tiny_model(seed=1), num_frames=8, num_keyframes=3)
    answer = qa.predict(video, QUESTION, OPTIONS[:4])
    assert answer.text == OPTIONS[answer.index] and answer.letter == "ABCD"[answer.index]
    assert len(answer.option_scores) == 4 and answer.index == max(range(4), key=answer.option_scores.__getitem__)
    assert len(answer.frame_scores) == len(answer.frame_times) == len(answer.frame_indices) == 8
    assert answer.frame_indices == [2, 7, 12, 17, 22, 27, 32, 37]  # segment midpoints of 40 frames
    assert answer.frame_times == [i / 10 for i in answer.frame_indices]
    top3 = sorted(sorted(range(8), key=lambda i: -answer.frame_scores[i])[:3])
    assert answer.keyframes == top3
    assert answer.keyframe_times == [answer.frame_times[i] for i in top3]


def test_many_questions_match_one_at_a_time(video):
    qa = VideoQA(tiny_model(seed=1), num_frames=6, num_keyframes=2)
    questions = [(QUESTION, OPTIONS[:3]), ("what colour is the band?", OPTIONS[:5]), (QUESTION, OPTIONS[1:3])]
    together = qa.predict_many(video, questions)
    for (question, options), answer in zip(questions, together):
        alone = qa.predict(video, question, options)
        assert alone.index == answer.index and alone.keyframes == answer.keyframes
        assert alone.option_scores == pytest.approx(answer.option_scores, abs=1e-5)


def test_uniform_mode_uses_every_sampled_frame(video):
    qa = VideoQA(tiny_model(seed=1), num_frames=4)
    answer = qa.predict(video, QUESTION, OPTIONS, use_localizer=False)
    assert answer.frame_scores is None and answer.keyframes == [0, 1, 2, 3]


def test_bad_questions_and_videos_get_clear_errors(video, tmp_path):
    qa = VideoQA(tiny_model(seed=1), num_frames=4, num_keyframes=2)
    with pytest.raises(ValueError, match="needs 2 to 5 options, got 1"):
        qa.predict(video, QUESTION, OPTIONS[:1])
    with pytest.raises(ValueError, match="option 2 is empty"):
        qa.predict(video, QUESTION, ["yes", " "])
    with pytest.raises(ValueError, match="the question is empty"):
        qa.predict(video, "", OPTIONS[:2])
    with pytest.raises(VideoError, match="missing.mp4"):
        qa.predict(tmp_path / "missing.mp4", QUESTION, OPTIONS[:2])
    qa.cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(VideoError, match="missing.mp4.*file not found"):
        qa.predict(tmp_path / "missing.mp4", QUESTION, OPTIONS[:2])


def test_cache_reuses_features_and_invalidates_on_any_change(video, tmp_path):
    model = tiny_model(seed=1)
    cache = FeatureCache(tmp_path / "cache")
    first = encode_video(model, video, 6, cache=cache)
    again = encode_video(model, video, 6, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(first.features.localizer, again.features.localizer) and first.indices == again.indices
    encode_video(model, video, 5, cache=cache)  # other sampling
    encode_video(model, video, 6, clip=(0.5, 3.0), cache=cache)  # other window
    assert cache.misses == 3
    edited = write_video(tmp_path / "edited.mp4", num_frames=40, fps=10, gop=5)  # same frames, other bytes
    encode_video(model, edited, 6, cache=cache)
    assert cache.misses == 4
    before = model_fingerprint(model)
    with torch.no_grad():
        model.localizer.projection.bias.add_(1.0)  # weights changed in place
    assert model_fingerprint(model) != before
    from dataclasses import replace

    weights_changed = model_fingerprint(model)
    model.precision = replace(model.precision, vision_autocast=torch.bfloat16)  # same weights, other compute
    assert model_fingerprint(model) != weights_changed
    model.precision = replace(model.precision, vision_autocast=None)
    assert model_fingerprint(model) == weights_changed
    changed = encode_video(model, video, 6, cache=cache)
    assert cache.misses == 5 and not torch.equal(changed.features.localizer, first.features.localizer)
    assert len(cache.entries()) == 5
    # A fresh process reads the same entries: a new cache object on the same folder hits.
    assert FeatureCache(tmp_path / "cache").get(cache.key("x", {}, "y")) is None


def test_cache_size_limit_evicts_least_recently_used(video, tmp_path):
    model = tiny_model(seed=1)
    probe = FeatureCache(tmp_path / "probe")
    encode_video(model, video, 4, cache=probe)
    entry = probe.size_bytes()
    cache = FeatureCache(tmp_path / "cache", max_bytes=int(entry * 2.5))
    for window in ((0.0, 3.0), (1.0, 3.5), (0.5, 2.0)):  # equal-sized entries
        encode_video(model, video, 4, clip=window, cache=cache)
    assert len(cache.entries()) == 2 and cache.size_bytes() <= cache.max_bytes
    encode_video(model, video, 4, clip=(0.5, 2.0), cache=cache)
    assert cache.hits == 1, "the newest entry survived"
    cache.clear()
    assert cache.entries() == []


def test_corrupt_cache_entry_is_recomputed(video, tmp_path):
    model = tiny_model(seed=1)
    cache = FeatureCache(tmp_path / "cache")
    encode_video(model, video, 4, cache=cache)
    cache.entries()[0].write_bytes(b"broken")
    again = encode_video(model, video, 4, cache=cache)
    assert cache.misses == 2 and again.features.answerer.shape[1] == 4


def test_answer_command_prints_answer_keyframes_and_scores(video, model_dir, tmp_path, capsys):
    args = [
        "answer",
        str(video),
        "-q",
        QUESTION,
        "-o",
        OPTIONS[0],
        "-o",
        OPTIONS[1],
        "-o",
        OPTIONS[2],
        "--model",
        str(model_dir),
        "--frames",
        "8",
        "--keyframes",
        "2",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("Answer: (") and "Keyframes: " in text and "Frame scores" in text and "^" in text
    assert cli.main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["text"] in OPTIONS[:3] and len(result["keyframes"]) == 2 and len(result["frame_scores"]) == 8
    assert (
        cli.main(
            [
                "answer",
                str(tmp_path / "none.mp4"),
                "-q",
                QUESTION,
                "-o",
                "a",
                "-o",
                "b",
                "--model",
                str(model_dir),
                "--no-cache",
            ]
        )
        == 2
    )
    assert "none.mp4" in capsys.readouterr().err


def test_localize_scores_frames_and_merges_moments(video):
    qa = VideoQA(tiny_model(seed=1), num_frames=8)
    found = qa.localize(video, "a man walks his dog", threshold=0.0)
    assert len(found.frame_scores) == len(found.frame_probabilities) == len(found.frame_times) == 8
    assert all(0.0 <= p <= 1.0 for p in found.frame_probabilities)
    assert found.moments == [(0.0, 4.0, pytest.approx(sum(found.frame_probabilities) / 8))]
    strict = qa.localize(video, "a man walks his dog", threshold=1.1)  # nothing passes: best frame's cell
    best = max(range(8), key=found.frame_probabilities.__getitem__)
    assert len(strict.moments) == 1 and strict.moments[0][0] <= found.frame_times[best] <= strict.moments[0][1]
    with pytest.raises(ValueError, match="the query is empty"):
        qa.localize(video, " ")


def test_predict_videos_decodes_ahead_and_matches_predict_many(video, tmp_path):
    import threading

    import sevila.features as features
    from sevila.features import VideoPrefetcher, finish_video

    second = write_video(tmp_path / "second.mp4", num_frames=30, fps=10)
    qa = VideoQA(tiny_model(seed=1), num_frames=6, num_keyframes=2, cache=FeatureCache(tmp_path / "cache"))
    questions = [(QUESTION, OPTIONS[:3]), ("what colour is the band?", OPTIONS[:5])]
    threads = []
    decode = features.load_video

    def watched(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return decode(*args, **kwargs)

    features.load_video = watched
    try:
        ahead = list(qa.predict_videos([(video, questions), (second, questions)]))
    finally:
        features.load_video = decode
    assert len(threads) == 2 and all(name.startswith("sevila-decode") for name in threads)
    for path, answers in zip((video, second), ahead):
        alone = VideoQA(qa.model, num_frames=6, num_keyframes=2).predict_many(path, questions)
        assert [a.to_dict() for a in answers] == [a.to_dict() for a in alone]
    # Features from the prefetcher are those of encode_video; a bad video fails at its own turn.
    with VideoPrefetcher(qa.model) as prefetcher:
        prefetcher.submit("v", video, 6)
        prefetcher.submit("missing", tmp_path / "missing.mp4", 6)
        prepared = finish_video(qa.model, prefetcher.take("v"))
        with pytest.raises(VideoError, match="missing.mp4"):
            prefetcher.take("missing")
    direct = encode_video(qa.model, video, 6)
    assert torch.equal(prepared.features.answerer, direct.features.answerer) and prepared.indices == direct.indices
    jobs = qa.predict_videos([(video, questions), (tmp_path / "missing.mp4", questions)])
    assert len(next(jobs)) == 2
    with pytest.raises(VideoError, match="file not found"):
        next(jobs)
