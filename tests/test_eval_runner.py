"""`sevila eval`'s runner: batched, resumable, shardable, failures recorded rather than substituted."""

import pytest

from sevila.data import QARecord, write_records
from sevila.evaluate.predictions import header_path, read_header, read_prediction_rows
from sevila.evaluate.runner import Shard, evaluate, shard_path
from sevila_toy.pattern_videos import write_video
from tests.support.tiny import OPTIONS, QUESTION, tiny_model

KEYS = {"qid", "prediction", "letter", "option_scores", "keyframes", "keyframe_times", "frame_scores", "frame_times"}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    (root / "videos").mkdir()
    write_video(root / "videos" / "v1.mp4", num_frames=30, fps=10)
    write_video(root / "videos" / "v2.mp4", num_frames=24, fps=8)
    records = []
    for i in range(7):
        video = ["v1", "v2", "missing"][i % 3]
        options = OPTIONS[: 4 + i % 2]
        records.append(
            QARecord(
                qid=f"CW_{video}_{i}",
                video=video,
                dataset="nextqa",
                question=f"{QUESTION} {i}",
                options=options,
                answer=i % len(options),
                question_type="CW",
            )
        )
    write_records(root / "qa.jsonl", records)
    return root


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=2)


def run(model, split, output, **kwargs):
    return evaluate(
        model, split / "qa.jsonl", split / "videos", output, num_frames=6, num_keyframes=2, progress=False, **kwargs
    )


def test_rows_in_annotation_order_with_failures_recorded(model, split, tmp_path):
    result = run(model, split, tmp_path / "pred.jsonl", batch_size=3)
    rows = read_prediction_rows(tmp_path / "pred.jsonl")
    assert [r["qid"] for r in rows] == [f"CW_{['v1', 'v2', 'missing'][i % 3]}_{i}" for i in range(7)]
    assert (result.answered, result.failed, result.resumed) == (5, 2, 0)
    for row in rows:
        if "missing" in row["qid"]:
            assert set(row) == {"qid", "error"} and "missing.mp4" in row["error"]
        else:
            assert KEYS <= set(row) and len(row["frame_scores"]) == 6 and len(row["keyframes"]) == 2
            assert row["letter"] == "ABCDE"[row["prediction"]]


def test_batch_size_does_not_change_results(model, split, tmp_path):
    run(model, split, tmp_path / "a.jsonl", batch_size=1)
    run(model, split, tmp_path / "b.jsonl", batch_size=7)
    for a, b in zip(read_prediction_rows(tmp_path / "a.jsonl"), read_prediction_rows(tmp_path / "b.jsonl")):
        assert a.get("prediction") == b.get("prediction") and a.get("keyframes") == b.get("keyframes")
        assert a.get("option_scores") == pytest.approx(b.get("option_scores"), abs=1e-4) if "error" not in a else True


def test_an_interrupted_run_resumes_without_loss_or_duplicates(model, split, tmp_path):
    full = tmp_path / "full.jsonl"
    run(model, split, full, batch_size=2)
    lines = full.read_text().splitlines(keepends=True)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(lines[:3]) + lines[3][:25])  # killed while writing the fourth row
    header_path(partial).write_text(header_path(full).read_text())
    result = run(model, split, partial, batch_size=2)
    # Rows 1-2 are kept; row 3 (a missing video) is retried, and rows 4-7 are answered.
    assert result.resumed == 2 and result.answered + result.failed == 5
    assert read_prediction_rows(partial) == read_prediction_rows(full)
    again = run(model, split, partial, batch_size=2)
    assert (again.answered, again.failed, again.resumed) == (0, 2, 5)  # the two failures are retried


def test_shards_merge_into_the_single_process_output(model, split, tmp_path):
    single = tmp_path / "single.jsonl"
    run(model, split, single, batch_size=4, compute_metrics=lambda rows, records: {"rows": len(rows)})
    merged = tmp_path / "merged.jsonl"
    run(model, split, merged, batch_size=4, shard=Shard(1, 2))  # without a process group the barrier is a no-op
    assert shard_path(merged, Shard(1, 2)).is_file() and not merged.exists()
    result = run(
        model,
        split,
        merged,
        batch_size=4,
        shard=Shard(0, 2),
        compute_metrics=lambda rows, records: {"rows": len(rows), "records": len(records)},
    )
    assert result.metrics == {"rows": 7, "records": 7}
    assert not shard_path(merged, Shard(0, 2)).exists() and not shard_path(merged, Shard(1, 2)).exists()
    assert [r["qid"] for r in read_prediction_rows(merged)] == [r["qid"] for r in read_prediction_rows(single)]
    for a, b in zip(read_prediction_rows(merged), read_prediction_rows(single)):
        assert a.get("prediction") == b.get("prediction")


def test_bad_inputs_are_named(model, split, tmp_path):
    write_records(
        tmp_path / "dup.jsonl",
        [
            QARecord(qid="CW_x_1", video="v1", dataset="nextqa", question="q?", options=["a", "b"], answer=0),
            QARecord(qid="CW_x_1", video="v2", dataset="nextqa", question="q?", options=["a", "b"], answer=1),
        ],
    )
    with pytest.raises(ValueError, match=r"dup.jsonl, line 2, field 'qid': 'CW_x_1' repeats"):
        evaluate(model, tmp_path / "dup.jsonl", split / "videos", tmp_path / "o.jsonl", progress=False)
    (tmp_path / "broken.jsonl").write_text('{"qid": "a", "prediction": 1}\n{not json\n')
    with pytest.raises(ValueError, match=r"broken.jsonl, line 2: not valid JSON"):
        read_prediction_rows(tmp_path / "broken.jsonl")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        run(model, split, tmp_path / "o.jsonl", batch_size=0)


def test_the_dataset_table_decides_whether_grounding_is_reported():
    """Grounded-QA metrics for the datasets whose row lists them (NExT-GQA, synthetic), not for any records that
    happen to carry windows."""
    from sevila.evaluate.summary import split_metrics

    def records(dataset):
        return [
            QARecord(
                qid=f"colour_v{i}_0",
                video=f"v{i}",
                dataset=dataset,
                question="q?",
                options=["a", "b"],
                answer=0,
                question_type="colour",
                extra={"grounding_windows": [[1.0, 2.0]], "duration": 8.0, "fps": 8},
            )
            for i in range(2)
        ]

    rows = [{"qid": f"colour_v{i}_0", "prediction": i, "keyframe_times": [1.25, 1.5]} for i in range(2)]
    for dataset in ("synthetic", "nextgqa"):
        metrics = split_metrics(rows, records(dataset))
        assert metrics["accuracy"] == 50.0 and metrics["grounding"]["num_questions"] == 2, dataset
    assert "grounding" not in split_metrics(rows, records("nextqa"))


def test_videos_are_decoded_in_a_background_thread_with_the_same_results(model, split, tmp_path, monkeypatch):
    """The prefetcher decodes each distinct video once, off the main thread, and the rows are those of
    decoding on the main thread (`encode_video` for every video)."""
    import threading

    import sevila.evaluate.runner as runner
    import sevila.features as features

    decoders, decode = [], features.load_video

    def watched(*args, **kwargs):
        decoders.append(threading.current_thread().name)
        return decode(*args, **kwargs)

    monkeypatch.setattr(features, "load_video", watched)
    run(model, split, tmp_path / "prefetched.jsonl", batch_size=2)
    # v1, v2 and the missing video's attempt, each once
    assert len(decoders) == 3 and all(name.startswith("sevila-decode") for name in decoders)

    class NoPrefetch(runner.VideoPrefetcher):
        def submit(self, *args, **kwargs):  # nothing queued: every video decodes on the main thread
            pass

    monkeypatch.setattr(runner, "VideoPrefetcher", NoPrefetch)
    decoders.clear()
    run(model, split, tmp_path / "plain.jsonl", batch_size=2)
    assert decoders == [threading.main_thread().name] * 3
    assert read_prediction_rows(tmp_path / "prefetched.jsonl") == read_prediction_rows(tmp_path / "plain.jsonl")


def test_frames_by_rate_each_video_its_own_count(model, split, tmp_path):
    result = evaluate(
        model, split / "qa.jsonl", split / "videos", tmp_path / "rate.jsonl", fps=2, num_keyframes=2, progress=False
    )
    rows = {r["qid"]: r for r in read_prediction_rows(tmp_path / "rate.jsonl")}
    assert len(rows["CW_v1_0"]["frame_scores"]) == 6  # 3 s at 2 frames a second
    assert len(rows["CW_v2_1"]["frame_scores"]) == 6  # 24 frames at 8 fps: 3 s too
    assert rows["CW_v1_0"]["frame_times"] == [0.2, 0.7, 1.2, 1.7, 2.2, 2.7]
    header = read_header(tmp_path / "rate.jsonl")
    assert (header["settings"]["fps"], header["settings"]["frames"]) == (2.0, None)
    assert (result.answered, result.failed) == (5, 2)
    with pytest.raises(ValueError, match="was made with --fps 2.0, this run has 1.0"):  # no silent resume
        evaluate(
            model, split / "qa.jsonl", split / "videos", tmp_path / "rate.jsonl", fps=1, num_keyframes=2, progress=False
        )

    few = evaluate(
        model, split / "qa.jsonl", split / "videos", tmp_path / "few.jsonl", fps=1, num_keyframes=4, progress=False
    )
    errors = [r["error"] for r in read_prediction_rows(tmp_path / "few.jsonl") if "missing" not in r["qid"]]
    assert few.answered == 0 and all("v1.mp4" in e or "v2.mp4" in e for e in errors)
    assert all("only 3 frames sampled, fewer than 4 keyframes (--keyframes)" in e for e in errors)
    with pytest.raises(ValueError, match="not both"):
        evaluate(model, split / "qa.jsonl", split / "videos", tmp_path / "x.jsonl", fps=1, num_frames=4)
