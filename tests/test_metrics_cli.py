"""`sevila metrics`: one JSON object on stdout; malformed input is a one-line error naming file, line, field.

Most tests drive the sub-command's own parser (`sevila.cli.metrics.register`), which keeps them fast;
one goes through the `sevila` dispatcher for the exit status and the error line.
"""

from __future__ import annotations

import argparse
import json
import re

import pytest

from sevila.cli import metrics as metrics_cli
from sevila.data import QARecord, write_records
from sevila.data.sources import DataError
from sevila.evaluate.metrics import SUMMARY_KEYS, MomentPrediction, write_submission


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    parser = argparse.ArgumentParser(prog="sevila")
    metrics_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["metrics", *argv])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def nextgqa_record(qid: str, answer: int, windows: list[list[float]]) -> QARecord:
    return QARecord(
        qid=qid,
        video=qid.split("_")[1],
        dataset="nextgqa",
        question="why?",
        options=["a.", "b.", "c.", "d.", "e."],
        answer=answer,
        question_type=qid.split("_")[0],
        extra={"grounding_windows": windows, "fps": 30, "duration": 40},
    )


def test_qa(tmp_path, capsys):
    records = tmp_path / "val.jsonl"
    write_records(records, [nextgqa_record("CW_1_0", 0, [[0, 1]]), nextgqa_record("TN_1_1", 1, [[0, 1]])])
    predictions = tmp_path / "rows.jsonl"
    predictions.write_text('{"qid": "CW_1_0", "prediction": 0}\n')
    out = run(["qa", "--predictions", str(predictions), "--annotations", str(records)], capsys)
    assert out["accuracy"] == 50.0 and out["num_missing"] == 1
    assert out["groups"] == {"Causal": 100.0, "Temporal": 0.0}
    assert list(out) == sorted(out)


def test_qvhighlights(tmp_path, capsys):
    gt = tmp_path / "gt.jsonl"
    gt.write_text(
        json.dumps(
            {
                "qid": 1,
                "query": "q",
                "duration": 10,
                "vid": "v_0.0_10.0",
                "relevant_clip_ids": [1, 2],
                "saliency_scores": [[4, 4, 4], [1, 1, 1]],
                "relevant_windows": [[2, 6]],
            }
        )
    )
    submission = tmp_path / "submission.jsonl"
    write_submission(submission, [MomentPrediction(1, "q", "v_0.0_10.0", ((2, 6, 0.9),), (0, 1, 0, 0, 0))])
    out = run(["qvhighlights", "--predictions", str(submission), "--annotations", str(gt)], capsys)
    assert set(out) == set(SUMMARY_KEYS)
    assert out["MR-full-R1@0.7"] == out["MR-full-mAP"] == out["HL-min-VeryGood-Hit1"] == 100.0
    # The only window is 4 s long: short split 100, the others have no query (null).
    assert out["MR-short-mAP"] == 100.0 and out["MR-long-mAP"] is None


def test_nextgqa_rows_and_official_files(tmp_path, capsys):
    records = tmp_path / "val.jsonl"
    write_records(records, [nextgqa_record("CW_1_0", 0, [[10, 20]]), nextgqa_record("CH_1_1", 1, [[0, 10]])])
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"qid": "CW_1_0", "prediction": 0, "keyframe_times": [12, 14, 16, 18]}\n'
        '{"qid": "CH_1_1", "prediction": 0, "keyframe_times": [30]}\n'
    )
    out = run(["nextgqa", "--predictions", str(rows), "--annotations", str(records)], capsys)
    # CW_1_0: right, span [12, 18] inside [10, 20] → IoP 1, IoU 0.6; CH_1_1: wrong, keyframe outside → 0, 0.
    assert out["Acc@QA"] == out["Acc@GQA"] == out["mIoP"] == out["IoP@0.5"] == 50.0
    assert out["mIoU"] == pytest.approx(30.0) and out["IoU@0.5"] == 50.0
    # --span-pad widens [12, 18] to [10, 20]: IoU 1.
    out = run(["nextgqa", "--predictions", str(rows), "--annotations", str(records), "--span-pad", "2"], capsys)
    assert out["mIoU"] == 50.0
    ground, results = tmp_path / "val_ground.json", tmp_path / "val-res.json"
    ground.write_text(json.dumps({"1_0": [12, 18], "1_1": [30, 30]}))
    results.write_text(json.dumps({"1_0": {"prediction": 3, "answer": 3}, "1_1": {"prediction": 0, "answer": 1}}))
    argv = ["nextgqa", "--predictions", str(ground), "--qa-results", str(results), "--annotations", str(records)]
    assert run(argv, capsys)["Acc@GQA"] == 50.0
    with pytest.raises(ValueError, match="--qa-results"):
        run(argv[:3] + argv[5:], capsys)


def test_nextgqa_converts_the_benchmarks_csv_with_its_grounding_file(tmp_path, capsys):
    """The metrics read records; the command converts the release csv + gsub JSON into them first."""
    csv = tmp_path / "val.csv"
    csv.write_text(
        "video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
        "1,1200,640,480,why,b,0,CW,a,b,c,d,e\n"
    )
    gsub = tmp_path / "gsub_val.json"
    gsub.write_text(json.dumps({"1": {"duration": 40, "location": {"0": [[10, 20]]}, "fps": 30}}))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"qid": "CW_1_0", "prediction": 1, "keyframe_times": [12, 18]}\n')
    out = run(["nextgqa", "--predictions", str(rows), "--annotations", str(csv), str(gsub)], capsys)
    assert out["Acc@QA"] == out["Acc@GQA"] == 100.0 and out["mIoU"] == pytest.approx(60.0)


def test_malformed_input_names_file_line_and_field(tmp_path, capsys):
    predictions = tmp_path / "rows.jsonl"
    predictions.write_text('{"qid": "CW_1_0", "prediction": 0, "answer": 0}\n{"qid": "CW_1_1", "prediction": "B"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl, line 2, field 'prediction'"):
        run(["qa", "--predictions", str(predictions)], capsys)


def test_dispatcher_reports_errors_in_one_line(tmp_path, capsys):
    from sevila.cli import main

    predictions = tmp_path / "rows.jsonl"
    predictions.write_text('{"qid": "CW_1_0", "prediction": 0, "answer": 0}\n{"qid": "CW_1_0", "prediction": 1}\n')
    assert main(["metrics", "qa", "--predictions", str(predictions)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "rows.jsonl, line 2, field 'qid'" in err and "repeats the qid of line 1" in err


GOOD = '{"qid": "CW_1_0", "prediction": 0, "answer": 0}\n{"qid": "TN_1_1", "prediction": 1, "answer": 0}\n'


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", r"rows\.jsonl: no prediction rows \(an empty file\?\)"),
        (b"\n\n", r"rows\.jsonl: no prediction rows"),
        (b"not json\n", r"rows\.jsonl, line 1: invalid JSON"),
        (b'{"qid": "CW_1_0", "prediction": 0, "answer": 0', r"rows\.jsonl, line 1: invalid JSON"),
        (b'"CW_1_0"\n', r"rows\.jsonl, line 1: expected a JSON object"),
        (b'{"prediction": 0}\n', r"rows\.jsonl, line 1, field 'qid': missing"),
        (b'{"qid": "CW_1_0"}\n', r"rows\.jsonl, line 1, field 'prediction': missing"),
        (b'{"qid": "CW_1_0", "prediction": "B"}\n', r"rows\.jsonl, line 1, field 'prediction'"),
        (b'{"qid": "CW_1_0", "prediction": -1}\n', r"rows\.jsonl, line 1, field 'prediction'"),
        (b'{"qid": 3.5, "prediction": 0}\n', r"rows\.jsonl, line 1, field 'qid'"),
        (b'{"qid": "CW_1_0", "prediction": 0}\n{"qid": "CW_1_0", "prediction": 1}\n', r"repeats the qid of line 1"),
        (b"\xef\xbb\xbf" + GOOD.encode(), "accuracy"),  # a BOM is accepted
        (GOOD.replace("\n", "\r\n").encode(), "accuracy"),  # so are CRLF line ends
        (b'[{"qid": "CW_1_0", "prediction": 0, "answer": 0}]', "accuracy"),  # the original's JSON result list
        (b"\xff\xfe\n", r"rows\.jsonl, line 1: not UTF-8"),
    ],
)
def test_malformed_prediction_files_fail_in_one_line(tmp_path, capsys, content, expected):
    """The prediction-file corpus through the dispatcher: exit 2 and one line naming file, line and field,
    or a score for the variants that are fine."""
    from sevila.cli import main

    predictions = tmp_path / "rows.jsonl"
    predictions.write_bytes(content)
    code = main(["metrics", "qa", "--predictions", str(predictions)])
    out, err = capsys.readouterr()
    if expected == "accuracy":
        assert code == 0 and "accuracy" in json.loads(out)
    else:
        assert code == 2 and err.strip().count("\n") == 0
        assert re.search(expected, err), err
