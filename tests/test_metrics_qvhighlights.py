"""QVHighlights: frame scores → moments, the submission format, and the official metrics.

Hand-computed cases are worked out in the comments. The real-annotation cases hard-code numbers
produced by Moment-DETR's official ``standalone_eval/eval.py`` on the very same prediction files (run
outside this repository); this implementation must reproduce them exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sevila.data.sources import DataError
from sevila.evaluate.metrics import (
    SUMMARY_KEYS,
    MomentAnnotation,
    MomentPrediction,
    evaluate_qvhighlights,
    moment_prediction,
    read_qvhighlights_annotations,
    read_submission,
    write_submission,
)
from sevila.evaluate.metrics.average_precision import detection_average_precision, highlight_average_precision
from sevila.evaluate.metrics.qvhighlights import IOU_THRESHOLDS
from sevila.moments import Moment, frame_scores_to_moments, frame_scores_to_saliency
from tests.support.paths import shared_dir

VAL = shared_dir() / "datasets" / "qvhighlights" / "highlight_val_release.jsonl"
needs_val = pytest.mark.skipif(not VAL.is_file(), reason=f"QVHighlights val annotations not found at {VAL}")


def approx_list(expected: list[tuple[float, ...]]) -> list:
    """Element-wise `pytest.approx` for a list of tuples (approx itself does not nest)."""
    return [pytest.approx(e) for e in expected]


# ------------------------------------------------------------------------------ frame scores → moments

# Ten frames at the centres of the 2-s clips of a 20-s video: cells are exactly the clips [2i, 2i + 2].
TIMES = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
SCORES = [0.9, 0.8, 0.1, 0.1, 0.7, 0.2, 0.2, 0.2, 0.6, 0.1]  # positive at 0.5: frames 0, 1, 4, 8


def test_adjacent_positive_frames_merge_and_spans_rank_by_mean_score():
    # span_threshold 0: {0, 1} → [0, 4] mean(.9, .8) = .85; {4} → [8, 10] .7; {8} → [16, 18] .6.
    moments = frame_scores_to_moments(TIMES, SCORES, 20, threshold=0.5, span_threshold=0)
    assert moments == approx_list([Moment(0, 4, 0.85), Moment(8, 10, 0.7), Moment(16, 18, 0.6)])


def test_gaps_up_to_span_threshold_are_bridged():
    # span_threshold 2: frames 1 → 4 have 2 frames between (bridged); 4 → 8 have 3 (not).
    # [0, 10] scores mean(.9, .8, .1, .1, .7) = .52 and ranks below [16, 18] (.6).
    moments = frame_scores_to_moments(TIMES, SCORES, 20, threshold=0.5, span_threshold=2)
    assert moments == approx_list([Moment(16, 18, 0.6), Moment(0, 10, 0.52)])
    # span_threshold 3 (and the default 6) bridge everything: one span [0, 18], mean of frames 0..8 = 3.8 / 9.
    for kwargs in ({"span_threshold": 3}, {}):
        moments = frame_scores_to_moments(TIMES, SCORES, 20, threshold=0.5, **kwargs)
        assert moments == approx_list([Moment(0, 18, 3.8 / 9)])


def test_threshold_is_inclusive():
    # At 0.7 the positives are frames 0, 1 and 4 (0.7 itself passes); frame 8 (0.6) does not.
    moments = frame_scores_to_moments(TIMES, SCORES, 20, threshold=0.7, span_threshold=0)
    assert moments == approx_list([Moment(0, 4, 0.85), Moment(8, 10, 0.7)])


def test_no_positive_frame_falls_back_to_the_best_frame_cell():
    assert frame_scores_to_moments(TIMES, SCORES, 20, threshold=0.95) == approx_list([Moment(0, 2, 0.9)])
    # Equal best scores: the earliest frame.
    assert frame_scores_to_moments([1, 3], [0.2, 0.2], 4, threshold=0.5) == approx_list([Moment(0, 2, 0.2)])


def test_cells_of_irregular_frames_are_midpoints_and_clip_edges():
    # Times 1, 2, 6 in an 8-s video: cells [0, 1.5], [1.5, 4], [4, 8].
    assert frame_scores_to_moments([1, 2, 6], [0.1, 0.9, 0.1], 8) == approx_list([Moment(1.5, 4, 0.9)])
    assert frame_scores_to_moments([1, 2, 6], [0.1, 0.2, 0.9], 8) == approx_list([Moment(4, 8, 0.9)])
    assert frame_scores_to_moments([1, 2, 6], [0.9, 0.9, 0.1], 8) == approx_list([Moment(0, 4, 0.9)])


def test_equal_span_scores_rank_by_start():
    moments = frame_scores_to_moments(TIMES, [0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1], 20, span_threshold=0)
    assert moments == approx_list([Moment(2, 4, 0.9), Moment(16, 18, 0.9)])


@pytest.mark.parametrize(
    ("times", "scores", "duration", "kwargs"),
    [
        ([1, 3], [0.5], 4, {}),  # one score per time
        ([3, 1], [0.5, 0.5], 4, {}),  # increasing times
        ([1, 5], [0.5, 0.5], 4, {}),  # inside the video
        ([1, 3], [0.5, float("nan")], 4, {}),  # finite
        ([], [], 4, {}),  # at least one frame
        ([1, 3], [0.5, 0.5], 4, {"span_threshold": -1}),
        ([1, 3], [0.5, 0.5], 0, {}),
    ],
)
def test_frame_input_is_validated(times, scores, duration, kwargs):
    with pytest.raises(ValueError):
        frame_scores_to_moments(times, scores, duration, **kwargs)


def test_saliency_is_the_nearest_frame_score_per_clip():
    # One frame per clip centre: the scores themselves (75 clips for 150 s).
    times = [2 * i + 1 for i in range(75)]
    scores = list(np.linspace(0, 1, 75))
    assert frame_scores_to_saliency(times, scores, 150) == pytest.approx(scores)
    # Frames at 0.5 s and 3.5 s, clips centred at 1, 3, 5: nearest frames 0, 1, 1.
    assert frame_scores_to_saliency([0.5, 3.5], [0.1, 0.7], 6) == [0.1, 0.7, 0.7]
    # A frame at 0 and at 2 are equally near to the centre 1: the earlier wins.
    assert frame_scores_to_saliency([0, 2], [0.3, 0.8], 2) == [0.3]


def test_moment_prediction_builds_a_submission_row():
    row = moment_prediction("QVHighlight_7", "a query", "vid_0.0_20.0", TIMES, SCORES, 20, span_threshold=0)
    assert row.qid == 7 and row.query == "a query" and row.vid == "vid_0.0_20.0"
    assert list(row.windows) == approx_list([(0, 4, 0.85), (8, 10, 0.7), (16, 18, 0.6)])
    assert row.saliency == pytest.approx(SCORES)


# ------------------------------------------------------------------------------ average precision


def test_detection_ap_matches_each_ground_truth_window_once():
    gts = np.array([[0, 10], [20, 30]])
    # By score: [0, 10] (IoU 1 with the first window: TP), [0, 10] again (that window is taken and the
    # other has IoU 0: FP), [20, 25] (IoU 0.5 with the second: TP only at threshold 0.5).
    preds = np.array([[0, 10, 0.9], [0, 10, 0.8], [20, 25, 0.7]])
    ap = detection_average_precision(gts, preds, IOU_THRESHOLDS)
    # At 0.5: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 → envelope area 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # Above 0.5: only the first is a TP: recall stops at 1/2 with precision 1 → 1/2.
    assert ap == pytest.approx([5 / 6] + [0.5] * 9)
    assert detection_average_precision(gts, np.zeros((0, 3)), IOU_THRESHOLDS) == pytest.approx([0] * 10)


def test_highlight_ap_is_the_mean_over_recall_levels():
    # Ranked: two tied positives (one cut: precision 1, recall 2/3), a negative (2/3, 2/3), a positive
    # (3/4, 1). Mean of the interpolated precision at the recall levels 2/3 and 1: (1 + 3/4) / 2 = 7/8
    # (the recall-weighted AP would be 2/3 * 1 + 1/3 * 3/4 = 11/12).
    assert highlight_average_precision(np.array([1, 1, 0, 1]), np.array([0.9, 0.9, 0.8, 0.1])) == 0.875
    assert highlight_average_precision(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3])) == 0.0
    assert highlight_average_precision(np.array([1, 1]), np.array([0.1, 0.2])) == 1.0


# ------------------------------------------------------------------------------ the summary metrics


def hand_case() -> tuple[list[MomentPrediction], list[MomentAnnotation]]:
    annotations = [
        # qid 1: two 10-s windows (short); qid 2: one 40-s window (long); qid 3: one 20-s window (middle).
        MomentAnnotation(1, 30, ((0, 10), (20, 30)), (1, 2, 3), ((4, 2, 0), (2, 2, 2), (0, 3, 1))),
        MomentAnnotation(2, 90, ((40, 80),), (0,), ((3, 3, 3),)),
        MomentAnnotation(3, 150, ((10, 30),), (5,), ((1, 1, 1),)),
    ]
    predictions = [
        MomentPrediction(
            1, "q1", "v1", ((0, 10, 0.9), (0, 10, 0.8), (20, 25, 0.7)), (0.1, 0.9, 0.5, 0.3) + (0.0,) * 11
        ),
        # The top-1 for R1 is the first listed window ([60, 80], IoU 0.5), though [40, 80] is exact.
        # 46 saliency scores for 45 clips: the best (index 45) lies past the video.
        MomentPrediction(2, "q2", "v2", ((60, 80, 0.9), (40, 80, 0.5)), (0.5, 0.5, 0.2) + (0.0,) * 42 + (0.9,)),
        MomentPrediction(3, "q3", "v3", ((0, 10, 0.9),), (0.0,) * 75),
    ]
    return predictions, annotations


def test_moment_retrieval_by_hand():
    predictions, annotations = hand_case()
    metrics = evaluate_qvhighlights(predictions, annotations)
    # Per-query AP at thresholds 0.5 .. 0.95 (see test_detection_ap_... for qid 1):
    #   qid 1: [5/6, 1/2 x 9]                                  mean 0.5333
    #   qid 2: [60, 80] (IoU .5) then [40, 80] (IoU 1): at 0.5 TP, FP → 1; above, FP, TP → 1/2
    #          [1, 1/2 x 9]                                     mean 0.55
    #   qid 3: [0, 10] misses [10, 30]: 0
    # R1@0.5: qid 1 (IoU 1), qid 2 (IoU 0.5) → 2/3; R1@0.7: qid 1 only → 1/3.
    assert metrics["MR-full-R1@0.5"] == 66.67
    assert metrics["MR-full-R1@0.7"] == 33.33
    assert metrics["MR-full-mAP@0.5"] == 61.11  # (5/6 + 1 + 0) / 3
    assert metrics["MR-full-mAP@0.75"] == 33.33  # (1/2 + 1/2 + 0) / 3
    assert metrics["MR-full-mAP"] == 36.11  # (0.5333 + 0.55 + 0) / 3
    # Length splits: each query falls in one, with all its windows.
    assert metrics["MR-short-mAP"] == 53.33
    assert metrics["MR-middle-mAP"] == 0.0
    assert metrics["MR-long-mAP"] == 55.0


def test_highlight_detection_by_hand():
    predictions, annotations = hand_case()
    metrics = evaluate_qvhighlights(predictions[:2], annotations[:2])
    # qid 1, 15 clips, annotator scores: clip 1 (4, 2, 0), clip 2 (2, 2, 2), clip 3 (0, 3, 1), others 0.
    #   Predicted ranking: clips 1, 2, 3, 0, then the rest tied at 0 (all negatives, they change nothing).
    #   Fair (>= 2): annotator labels by rank (1,1,0,..), (1,1,1,0,..), (0,1,0,..) → AP 1, 1, 1/2; top clip
    #     1 is a hit (annotators 1 and 2).
    #   Good (>= 3): (1,0,..), (0,0,1,0,..), none → AP 1, 1/3, 0; hit (annotator 1 gave 4).
    #   VeryGood (>= 4): (1,0,..), none, none → AP 1, 0, 0; hit.
    # qid 2, 45 clips, clip 0 scored (3, 3, 3); scores cut to the 45 clips: clips 0 and 1 tie at 0.5, so the
    #   first cut has precision 1/2 at recall 1 → AP 1/2 per annotator at Fair and Good, 0 at VeryGood (no
    #   positive). Its top score is at index 45, past the 45 clips: a miss at every level.
    assert metrics["HL-min-Fair-mAP"] == 66.67  # (1 + 1 + 1/2 + 3 * 1/2) / 6
    assert metrics["HL-min-Good-mAP"] == 47.22  # (1 + 1/3 + 0 + 3 * 1/2) / 6
    assert metrics["HL-min-VeryGood-mAP"] == 16.67  # (1 + 0 + 0 + 0) / 6
    for level in ("Fair", "Good", "VeryGood"):
        assert metrics[f"HL-min-{level}-Hit1"] == 50.0


def test_summary_keys_and_partial_predictions():
    predictions, annotations = hand_case()
    assert list(evaluate_qvhighlights(predictions, annotations)) == list(SUMMARY_KEYS)
    # Without saliency only MR keys; without windows only HL keys.
    no_saliency = [MomentPrediction(p.qid, p.query, p.vid, p.windows) for p in predictions]
    assert all(k.startswith("MR-") for k in evaluate_qvhighlights(no_saliency, annotations))
    no_windows = [MomentPrediction(p.qid, p.query, p.vid, saliency=p.saliency) for p in predictions]
    assert all(k.startswith("HL-") for k in evaluate_qvhighlights(no_windows, annotations))
    # A split no query falls into is None (the official script crashes on it).
    assert evaluate_qvhighlights(predictions[:1], annotations[:1])["MR-long-mAP"] is None


def test_queries_must_match_unless_partial():
    predictions, annotations = hand_case()
    with pytest.raises(ValueError, match="same queries"):
        evaluate_qvhighlights(predictions[:2], annotations)
    assert evaluate_qvhighlights(predictions[:2], annotations, require_all=False)["MR-full-R1@0.7"] == 50.0
    with pytest.raises(ValueError, match="qid 1 occurs twice"):
        evaluate_qvhighlights(predictions + predictions[:1], annotations)
    mixed = [predictions[0], MomentPrediction(2, "q2", "v2", predictions[1].windows), predictions[2]]
    with pytest.raises(ValueError, match="qid 2 has no pred_saliency_scores"):
        evaluate_qvhighlights(mixed, annotations)


# ------------------------------------------------------------------------------ files


def test_submission_round_trip(tmp_path):
    predictions, _ = hand_case()
    path = tmp_path / "submission.jsonl"
    write_submission(path, predictions)
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "qid": 1,
        "query": "q1",
        "vid": "v1",
        "pred_relevant_windows": [[0, 10, 0.9], [0, 10, 0.8], [20, 25, 0.7]],
        "pred_saliency_scores": [0.1, 0.9, 0.5, 0.3] + [0.0] * 11,
    }
    assert read_submission(path) == predictions


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"qid": "1", "pred_relevant_windows": [[0, 2, 1]]}', "qid"),
        ('{"qid": 1, "pred_relevant_windows": []}', "pred_relevant_windows"),
        ('{"qid": 1, "pred_relevant_windows": [[0, 2]]}', "pred_relevant_windows[0]"),
        ('{"qid": 1, "pred_relevant_windows": [[0, 2, 1], [4, 2, 1]]}', "pred_relevant_windows[1]"),
        ('{"qid": 1, "pred_saliency_scores": [0.5, "x"]}', "pred_saliency_scores[1]"),
    ],
)
def test_malformed_submission_names_line_and_field(tmp_path, line, field):
    path = tmp_path / "submission.jsonl"
    path.write_text('{"qid": 0, "pred_relevant_windows": [[0, 2, 1]]}\n' + line + "\n")
    with pytest.raises(DataError) as err:
        read_submission(path)
    assert (err.value.position, err.value.field) == ("line 2", field)


def test_repeated_qid_in_submission(tmp_path):
    path = tmp_path / "submission.jsonl"
    path.write_text('{"qid": 5, "pred_saliency_scores": [1]}\n{"qid": 5, "pred_saliency_scores": [1]}\n')
    with pytest.raises(DataError, match="line 1"):
        read_submission(path)


def test_ground_truth_from_release_rows_and_records(tmp_path):
    release = {
        "qid": 9,
        "query": "q",
        "duration": 10,
        "vid": "v_0.0_10.0",
        "relevant_clip_ids": [1, 2],
        "saliency_scores": [[1, 2, 3], [4, 4, 4]],
        "relevant_windows": [[2, 6]],
    }
    record = {
        "kind": "moment",
        "dataset": "qvhighlights",
        "qid": "QVHighlight_9",
        "video": "v_0.0_10.0",
        "query": "q",
        "duration": 10,
        "relevant_windows": [[2, 6]],
        "relevant_clip_ids": [1, 2],
        "saliency_scores": [[1, 2, 3], [4, 4, 4]],
    }
    for data in (release, record):
        path = tmp_path / "gt.jsonl"
        path.write_text(json.dumps(data))
        assert read_qvhighlights_annotations(path) == [
            MomentAnnotation(9, 10.0, ((2.0, 6.0),), (1, 2), ((1, 2, 3), (4, 4, 4)))
        ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"relevant_windows": []}, "relevant_windows"),
        ({"relevant_clip_ids": [1, 5]}, "relevant_clip_ids[1]"),  # 10 s = clips 0..4
        ({"saliency_scores": [[1, 2, 3], [4, 4]]}, "saliency_scores[1]"),
        ({"saliency_scores": [[1, 2, 3]]}, "saliency_scores"),
        ({"duration": "10"}, "duration"),
    ],
)
def test_malformed_ground_truth(tmp_path, change, field):
    data = {"qid": 9, "duration": 10, "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 4]]}
    data["relevant_windows"] = [[2, 6]]
    path = tmp_path / "gt.jsonl"
    path.write_text(json.dumps({**data, **change}) + "\n")
    with pytest.raises(DataError) as err:
        read_qvhighlights_annotations(path)
    assert (err.value.position, err.value.field) == ("line 1", field)


# ------------------------------------------------------------------------------ the real val split


def _clip_means(row: dict) -> list[float]:
    """Per 2-s clip, the mean of the three annotators' scores divided by 4 (0 outside relevant clips)."""
    scores = [0.0] * int(row["duration"] / 2)
    for clip, triple in zip(row["relevant_clip_ids"], row["saliency_scores"], strict=True):
        scores[clip] = sum(triple) / 12
    return scores


@pytest.fixture(scope="module")
def val_rows() -> list[dict]:
    return [json.loads(line) for line in VAL.read_text().splitlines()]


@needs_val
def test_val_ground_truth_as_predictions(val_rows):
    # The annotated windows, listed with decreasing scores, and the mean annotator score per clip.
    predictions = [
        MomentPrediction(
            d["qid"],
            d["query"],
            d["vid"],
            tuple((s, e, 1.0 - 0.01 * i) for i, (s, e) in enumerate(d["relevant_windows"])),
            tuple(_clip_means(d)),
        )
        for d in val_rows
    ]
    metrics = evaluate_qvhighlights(predictions, read_qvhighlights_annotations(VAL))
    # Computed with the official standalone_eval/eval.py on the same predictions. mAP is below 100
    # because only the first 10 windows count and some queries have more; the length splits are lower
    # still because every predicted window stays while only the ground truth of that length is kept.
    assert metrics == {
        "MR-full-R1@0.5": 100.0,
        "MR-full-R1@0.7": 100.0,
        "MR-full-mAP": 99.76,
        "MR-full-mAP@0.5": 99.76,
        "MR-full-mAP@0.75": 99.76,
        "MR-short-mAP": 79.75,
        "MR-middle-mAP": 89.8,
        "MR-long-mAP": 92.73,
        "HL-min-Fair-mAP": 97.14,
        "HL-min-Fair-Hit1": 100.0,
        "HL-min-Good-mAP": 88.27,
        "HL-min-Good-Hit1": 99.87,
        "HL-min-VeryGood-mAP": 60.81,
        "HL-min-VeryGood-Hit1": 95.68,
    }


@needs_val
def test_val_shifted_windows(val_rows):
    # Every annotated window moved 4 s later (end clipped to the duration); no saliency, so MR only.
    predictions = [
        MomentPrediction(
            d["qid"],
            d["query"],
            d["vid"],
            tuple(
                (min(s + 4, d["duration"]), min(e + 4, d["duration"]), 1.0 - 0.01 * i)
                for i, (s, e) in enumerate(d["relevant_windows"])
            ),
        )
        for d in val_rows
    ]
    metrics = evaluate_qvhighlights(predictions, read_qvhighlights_annotations(VAL))
    # Computed with the official standalone_eval/eval.py on the same predictions.
    assert metrics == {
        "MR-full-R1@0.5": 83.61,
        "MR-full-R1@0.7": 52.39,
        "MR-full-mAP": 44.28,
        "MR-full-mAP@0.5": 79.73,
        "MR-full-mAP@0.75": 41.61,
        "MR-short-mAP": 0.31,
        "MR-middle-mAP": 35.74,
        "MR-long-mAP": 72.72,
    }


@needs_val
def test_val_frame_score_pipeline(val_rows, tmp_path):
    # A "localizer" scoring one frame per clip centre with the clip's mean annotator score / 4, turned
    # into moments (threshold 0.25, span threshold 6) and written as a submission file.
    path = tmp_path / "submission.jsonl"
    write_submission(
        path,
        (
            moment_prediction(
                d["qid"],
                d["query"],
                d["vid"],
                [2 * i + 1 for i in range(int(d["duration"] / 2))],
                _clip_means(d),
                d["duration"],
                threshold=0.25,
            )
            for d in val_rows
        ),
    )
    metrics = evaluate_qvhighlights(read_submission(path), read_qvhighlights_annotations(VAL))
    # Computed with the official standalone_eval/eval.py on the file written here.
    assert metrics == {
        "MR-full-R1@0.5": 92.13,
        "MR-full-R1@0.7": 81.81,
        "MR-full-mAP": 74.81,
        "MR-full-mAP@0.5": 80.28,
        "MR-full-mAP@0.75": 73.91,
        "MR-short-mAP": 15.21,
        "MR-middle-mAP": 74.34,
        "MR-long-mAP": 83.85,
        "HL-min-Fair-mAP": 97.14,
        "HL-min-Fair-Hit1": 100.0,
        "HL-min-Good-mAP": 88.27,
        "HL-min-Good-Hit1": 99.87,
        "HL-min-VeryGood-mAP": 60.81,
        "HL-min-VeryGood-Hit1": 95.68,
    }
