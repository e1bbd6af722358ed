"""`sevila eval` end to end: predictions, metrics (QA and grounding), resume, failures."""

import json

import pytest

from sevila import cli
from sevila.data import QARecord, write_records
from sevila.evaluate.predictions import read_prediction_rows
from sevila_toy.pattern_videos import write_video
from tests.support.tiny import grounded_qa_records, tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    (root / "videos").mkdir()
    write_video(root / "videos" / "a.mp4", num_frames=32, fps=8)
    write_video(root / "videos" / "b.mp4", num_frames=24, fps=8)
    records = grounded_qa_records([("CW", "a"), ("TN", "a"), ("DL", "b"), ("CH", "b"), ("TC", "gone")])
    write_records(root / "qa.jsonl", records)
    tiny_model(seed=4).save_pretrained(root / "model")
    return root


def eval_args(root, output):
    return [
        "eval",
        "--model",
        str(root / "model"),
        "--annotations",
        str(root / "qa.jsonl"),
        "--videos",
        str(root / "videos"),
        "--output",
        str(output),
        "--frames",
        "6",
        "--keyframes",
        "2",
        "--batch-size",
        "2",
        "--no-progress",
        "--cache-dir",
        str(root / "cache"),
    ]


def test_eval_writes_predictions_and_metrics(setup, tmp_path, capsys):
    output = tmp_path / "pred.jsonl"
    assert cli.main(eval_args(setup, output)) == 0
    printed = json.loads(capsys.readouterr().out)
    rows = read_prediction_rows(output)
    assert len(rows) == 5 and "error" in rows[-1] and "gone.mp4" in rows[-1]["error"]
    metrics = json.loads((tmp_path / "pred.jsonl.metrics.json").read_text())
    provenance = metrics.pop("provenance")
    assert metrics == printed
    assert provenance["settings"]["frames"] == 6 and provenance["model"]["name"] == str(setup / "model")
    assert provenance["computed"] and provenance["versions"]["sevila"]
    correct = sum(row.get("prediction") == row.get("answer") for row in rows if "error" not in row)
    assert metrics["accuracy"] == pytest.approx(100 * correct / 5)
    assert metrics["num_failed"] == 1 and metrics["num_questions"] == 5
    assert set(metrics["groups"]) >= {"Causal", "Temporal", "Descriptive"}
    grounding = metrics["grounding"]
    assert grounding["num_questions"] == 5 and 0 <= grounding["mIoP"] <= 100
    # Rerun: the answered questions are kept, the failed one is retried (and fails again), nothing duplicated.
    assert cli.main(eval_args(setup, output)) == 0
    assert "answered 0, failed 1, already done 4" in capsys.readouterr().err
    assert len(read_prediction_rows(output)) == 5


def test_eval_reports_bad_annotation_files(setup, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"kind": "qa", "qid": "x"}\n')
    args = eval_args(setup, tmp_path / "out.jsonl")
    args[args.index("--annotations") + 1] = str(tmp_path / "bad.jsonl")
    assert cli.main(args) == 2
    assert "bad.jsonl, line 1" in capsys.readouterr().err


def test_eval_of_moment_queries_writes_a_submission_and_official_metrics(setup, tmp_path, capsys):
    from sevila.data import MomentRecord
    from sevila.evaluate.metrics import read_submission

    records = [
        MomentRecord(
            qid="QVHighlight_11",
            video="a",
            query="a red cup on a table",
            duration=4.0,
            relevant_windows=[[0.0, 2.0]],
            relevant_clip_ids=[0],
            saliency_scores=[[2, 3, 4]],
        ),
        MomentRecord(
            qid="QVHighlight_12",
            video="b",
            query="a man walks his dog",
            duration=4.0,
            relevant_windows=[[2.0, 3.0]],
            relevant_clip_ids=[1],
            saliency_scores=[[1, 1, 4]],
        ),
        MomentRecord(
            qid="QVHighlight_13", video="gone", query="a man walks his dog", duration=3.0, relevant_windows=[[0.0, 1.0]]
        ),
    ]
    write_records(tmp_path / "moments.jsonl", records)
    args = eval_args(setup, tmp_path / "sub.jsonl")
    args[args.index("--annotations") + 1] = str(tmp_path / "moments.jsonl")
    assert cli.main(args + ["--threshold", "0.0"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_failed"] == 1 and metrics["num_predicted"] == 2
    assert {"MR-full-R1@0.5", "MR-full-mAP", "HL-min-VeryGood-Hit1"} <= set(metrics)
    rows = read_prediction_rows(tmp_path / "sub.jsonl")
    assert [r["qid"] for r in rows] == [11, 12, 13] and "error" in rows[2]
    (tmp_path / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    submission = read_submission(tmp_path / "clean.jsonl")
    assert all(p.windows and p.saliency for p in submission)
    # threshold 0: every frame positive, one span covering the whole video
    assert submission[0].windows[0][:2] == (0.0, 4.0)


def test_unlabeled_and_mixed_splits(setup, tmp_path, capsys):
    from sevila.data import MomentRecord

    unlabeled = [QARecord(qid="CW_a_1", video="a", dataset="nextqa", question="q?", options=["x", "y"], answer=None)]
    write_records(tmp_path / "test.jsonl", unlabeled)
    args = eval_args(setup, tmp_path / "out.jsonl")
    args[args.index("--annotations") + 1] = str(tmp_path / "test.jsonl")
    assert cli.main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_predicted"] == 1 and "unlabeled" in metrics["note"]
    mixed = unlabeled + [MomentRecord(qid="QVHighlight_1", video="a", query="a cup", duration=4.0)]
    write_records(tmp_path / "mixed.jsonl", mixed)
    args[args.index("--annotations") + 1] = str(tmp_path / "mixed.jsonl")
    args[args.index("--output") + 1] = str(tmp_path / "mixed-out.jsonl")
    assert cli.main(args) == 2
    assert "mixed.jsonl: mixes multiple-choice and moment records" in capsys.readouterr().err


def test_eval_without_a_model_says_how_to_name_one(setup, tmp_path, capsys):
    args = eval_args(setup, tmp_path / "out.jsonl")
    del args[1:3]  # "--model", its value
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no model given: name one with --model" in err and "'demo'" in err
    assert not (tmp_path / "out.jsonl").exists()
