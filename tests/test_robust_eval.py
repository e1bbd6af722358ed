"""`sevila eval` and `sevila metrics` under faults (issue 17): resume that retries failures and refuses changed
settings, a lock against a second writer, provenance in the outputs, exit codes that mean something, commands
that read what the others write, and resuming after SIGKILL at random points."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sevila import cli
from sevila.data import MomentRecord, QARecord, write_records
from sevila.evaluate.predictions import OutputLock, header_path, lock_path, metrics_path, read_prediction_rows
from sevila.evaluate.runner import Shard, evaluate, shard_path
from sevila_toy.pattern_videos import write_video
from tests.support.tiny import OPTIONS, QUESTION, grounded_qa_records, tiny_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    (root / "videos").mkdir()
    for name, frames in (("a", 32), ("b", 24), ("c", 24)):
        write_video(root / "videos" / f"{name}.mp4", num_frames=frames, fps=8)
    (root / "some").mkdir()  # the same folder without c.mp4
    for name in ("a", "b"):
        shutil.copy(root / "videos" / f"{name}.mp4", root / "some" / f"{name}.mp4")
    (root / "empty").mkdir()
    records = grounded_qa_records([("CW", "a"), ("TN", "c"), ("DL", "b"), ("CH", "c"), ("TC", "a")])
    write_records(root / "qa.jsonl", records)
    moments = [
        MomentRecord(
            qid="QVHighlight_11", video="a", query="a man walks his dog", duration=4.0, relevant_windows=[[0, 2]]
        ),
        MomentRecord(
            qid="QVHighlight_12", video="b", query="a man walks his dog", duration=3.0, relevant_windows=[[1, 2]]
        ),
        MomentRecord(
            qid="QVHighlight_13", video="c", query="a man walks his dog", duration=3.0, relevant_windows=[[0, 1]]
        ),
    ]
    write_records(root / "moments.jsonl", moments)
    tiny_model(seed=4).save_pretrained(root / "model")
    return root


def eval_args(
    root: Path, output: Path, *extra: str, annotations: str = "qa.jsonl", videos: str = "videos"
) -> list[str]:
    return [
        "eval",
        "--model",
        str(root / "model"),
        "--annotations",
        str(root / annotations),
        "--videos",
        str(root / videos),
        "--output",
        str(output),
        "--frames",
        "6",
        "--keyframes",
        "2",
        "--batch-size",
        "2",
        "--no-progress",
        "--no-cache",
        *extra,
    ]


def run(capsys, args: list[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_same_predictions(rows: list[dict], expected: list[dict]) -> None:
    """The same rows in the same order: identical answers, keyframes and failures; scores equal up to float
    noise (a question batched with other questions is padded differently)."""
    assert [r["qid"] for r in rows] == [r["qid"] for r in expected]
    for got, want in zip(rows, expected):
        assert got.keys() == want.keys(), got["qid"]
        for key in want:
            if key in ("option_scores", "frame_scores"):
                assert got[key] == pytest.approx(want[key], abs=1e-4), (got["qid"], key)
            else:
                assert got[key] == want[key], (got["qid"], key)


def error_line(err: str) -> str:
    """The one error line of a refused command (any earlier lines are the run's summary)."""
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------ resume


def test_header_records_what_produced_the_predictions(world, tmp_path, capsys):
    output = tmp_path / "pred.jsonl"
    assert run(capsys, eval_args(world, output))[0] == 0
    header = json.loads(header_path(output).read_text())
    assert header["settings"] == header["settings"] | {
        "frames": 6,
        "keyframes": 2,
        "sampling": "uniform",
        "mode": "localizer",
        "precision": "fp32",
        "backend": "pyav",
    }
    assert len(header["settings"]["model"]) == 64 and header["model"]["name"] == str(world / "model")
    assert header["versions"]["sevila"] and header["versions"]["torch"] and header["created"].endswith("Z")
    assert not lock_path(output).exists()  # released at exit
    # Every reader reads the file as it is: plain rows, the header beside them.
    assert len(read_prediction_rows(output)) == 5
    code, out, _ = run(
        capsys, ["metrics", "qa", "--predictions", str(output), "--annotations", str(world / "qa.jsonl")]
    )
    assert code == 0 and json.loads(out)["num_questions"] == 5
    provenance = json.loads(metrics_path(output).read_text())["provenance"]
    assert provenance["predictions_created"] == header["created"] and provenance["settings"] == header["settings"]
    assert provenance["computed"] and provenance["versions"]["sevila"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--frames": "4"}, "was made with --frames 6, this run has 4"),
        ({"--keyframes": "3"}, "was made with --keyframes 2, this run has 3"),
        ({"--uniform": None}, "was made with mode (--uniform) localizer, this run has uniform"),
    ],
)
def test_a_rerun_with_other_settings_is_refused_until_overwrite(world, tmp_path, capsys, change, message):
    output = tmp_path / "pred.jsonl"
    assert run(capsys, eval_args(world, output))[0] == 0
    before = output.read_text()
    args = eval_args(world, output)
    for flag, value in change.items():
        if value is None:
            args.append(flag)
        else:
            args[args.index(flag) + 1] = value
    code, _, err = run(capsys, args)
    assert code == 2 and err.count("\n") == 1
    assert error_line(err) == (
        f"sevila eval: error: {output} {message}: rerun with the same settings, --overwrite to start again, "
        "or choose another --output"
    )
    assert output.read_text() == before and not lock_path(output).exists()
    code, _, err = run(capsys, args + ["--overwrite"])
    assert code == 0 and "answered 3, failed 2, already done 0" not in err  # c.mp4 is there: nothing fails
    assert "answered 5, failed 0, already done 0" in err
    assert json.loads(header_path(output).read_text())["settings"]["frames"] == int(args[args.index("--frames") + 1])


def test_other_weights_are_refused(world, tmp_path, capsys):
    output = tmp_path / "pred.jsonl"
    assert run(capsys, eval_args(world, output))[0] == 0
    tiny_model(seed=5).save_pretrained(tmp_path / "other")
    args = eval_args(world, output)
    args[args.index("--model") + 1] = str(tmp_path / "other")
    code, _, err = run(capsys, args)
    assert code == 2 and "was made with --model (weights fingerprint) " in error_line(err)


def test_predictions_without_a_header_are_not_resumed(world, tmp_path, capsys):
    output = tmp_path / "pred.jsonl"
    output.write_text('{"qid": "CW_a_0", "prediction": 1}\n')  # an older version's file
    code, _, err = run(capsys, eval_args(world, output))
    assert code == 2 and error_line(err) == (
        f"sevila eval: error: {output} holds predictions but no record of the settings that made them "
        "(pred.jsonl.meta.json is missing): --overwrite to start again, or choose another --output"
    )
    assert run(capsys, eval_args(world, output, "--overwrite"))[0] == 0


def test_failed_questions_are_retried_and_replaced(world, tmp_path, capsys):
    output = tmp_path / "pred.jsonl"
    code, _, err = run(capsys, eval_args(world, output, videos="some"))  # c.mp4 missing: 2 of 5 fail
    assert code == 0 and "answered 3, failed 2, already done 0" in err
    first = read_prediction_rows(output)
    assert sum("error" in row for row in first) == 2
    # The video is back (another folder with every video: --videos is not a setting): only the failures rerun.
    code, _, err = run(capsys, eval_args(world, output))
    assert code == 0 and "answered 2, failed 0, already done 3" in err
    rows = read_prediction_rows(output)
    assert [r["qid"] for r in rows] == ["CW_a_0", "TN_c_1", "DL_b_2", "CH_c_3", "TC_a_4"]  # annotation order
    assert not any("error" in row for row in rows)
    assert [r for r in rows if r["qid"] in {"CW_a_0", "DL_b_2", "TC_a_4"}] == [r for r in first if "error" not in r]
    fresh = tmp_path / "fresh.jsonl"
    assert run(capsys, eval_args(world, fresh))[0] == 0
    assert_same_predictions(rows, read_prediction_rows(fresh))
    assert json.loads(metrics_path(output).read_text())["num_failed"] == 0
    # Once more: nothing to do, nothing duplicated.
    code, _, err = run(capsys, eval_args(world, output))
    assert code == 0 and "answered 0, failed 0, already done 5" in err and read_prediction_rows(output) == rows


def test_sharded_runs_retry_failures_too(world, tmp_path):
    model = tiny_model(seed=4)

    def shard_run(rank, videos):
        return evaluate(
            model,
            world / "qa.jsonl",
            world / videos,
            tmp_path / "pred.jsonl",
            num_frames=6,
            num_keyframes=2,
            progress=False,
            shard=Shard(rank, 2),
        )

    shard_run(1, "some")
    shard_run(0, "some")  # merges
    assert sum("error" in row for row in read_prediction_rows(tmp_path / "pred.jsonl")) == 2
    assert shard_run(1, "videos").resumed == 0  # rank 1's two questions (c.mp4) both failed
    assert shard_run(0, "videos").resumed == 3
    rows = read_prediction_rows(tmp_path / "pred.jsonl")
    assert [r["qid"] for r in rows] == ["CW_a_0", "TN_c_1", "DL_b_2", "CH_c_3", "TC_a_4"]
    assert not any("error" in row for row in rows)
    assert not shard_path(tmp_path / "pred.jsonl", Shard(1, 2)).exists()


# ------------------------------------------------------------------------------------------ the lock


def test_a_second_process_on_one_output_is_refused(world, tmp_path, capsys):
    output = tmp_path / "pred.jsonl"
    with OutputLock(output):  # another run holding the output (flock conflicts across open files)
        code, _, err = run(capsys, eval_args(world, output))
    assert code == 2 and error_line(err) == (
        f"sevila eval: error: {output} is being written by process {os.getpid()} (lock pred.jsonl.lock held); "
        "wait for it to finish, or choose another --output"
    )
    assert not output.exists() and not header_path(output).exists()
    # A lock file left by a killed run (no process holds it) does not block.
    lock_path(output).write_text("999999\n")
    assert run(capsys, eval_args(world, output))[0] == 0
    assert len(read_prediction_rows(output)) == 5 and not lock_path(output).exists()


# ------------------------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("annotations", ["qa.jsonl", "moments.jsonl"])
def test_every_question_failing_exits_1(world, tmp_path, capsys, annotations):
    output = tmp_path / "pred.jsonl"
    code, out, err = run(capsys, eval_args(world, output, annotations=annotations, videos="empty"))
    count = 5 if annotations == "qa.jsonl" else 3
    first = "CW_a_0" if annotations == "qa.jsonl" else "11"
    assert code == 1 and out == ""
    assert error_line(err) == (
        f"sevila eval: error: all {count} questions failed, no metrics written (first: {first}: "
        f"{world / 'empty' / 'a.mp4'}: file not found); fix the cause (is --videos right?) and rerun: failed "
        "questions are retried"
    )
    assert not metrics_path(output).exists() and len(read_prediction_rows(output)) == count
    code, _, err = run(capsys, eval_args(world, output, annotations=annotations))  # the right folder
    assert code == 0 and f"answered {count}, failed 0, already done 0" in err and metrics_path(output).is_file()


def test_refused_input_leaves_nothing_behind(world, tmp_path, capsys):
    output = tmp_path / "new" / "dir" / "pred.jsonl"
    (tmp_path / "bad.jsonl").write_text('{"kind": "qa", "qid": "x"}\n')
    code, _, err = run(capsys, eval_args(world, output, annotations=str(tmp_path / "bad.jsonl")))
    assert code == 2 and error_line(err).startswith(f"sevila eval: error: {tmp_path / 'bad.jsonl'}, line 1")
    code, _, err = run(capsys, eval_args(world, output, "--frames", "0"))
    assert code == 2 and error_line(err) == "sevila eval: error: --frames must be at least 1, got 0"
    with OutputLock(output):  # a run refused after taking the lock removes the folders it made for it
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]
    code, _, err = run(capsys, eval_args(world, tmp_path))  # --output names a folder
    assert code == 2 and error_line(err) == (
        f"sevila eval: error: {tmp_path}: is a directory, expected a predictions file (--output)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


# ------------------------------------------------------------------------------------------ commands agree


def test_metrics_qvhighlights_reads_an_eval_output_with_failed_queries(world, tmp_path, capsys):
    output = tmp_path / "sub.jsonl"
    code, out, _ = run(capsys, eval_args(world, output, "--threshold", "0", annotations="moments.jsonl", videos="some"))
    assert code == 0 and json.loads(out)["num_failed"] == 1
    args = ["metrics", "qvhighlights", "--predictions", str(output), "--annotations", str(world / "moments.jsonl")]
    code, _, err = run(capsys, args)
    assert code == 2 and error_line(err) == (
        "sevila metrics: error: predictions and ground truth must cover the same queries: 1 without prediction "
        "[13], 0 without ground truth [] (sevila metrics --partial scores the queries present in both)"
    )
    code, out, _ = run(capsys, args + ["--partial"])
    assert code == 0 and "MR-full-mAP" in json.loads(out)


@pytest.mark.filterwarnings("ignore:prompt cut to 77 tokens")  # the tiny tokenizer lacks synth's words
def test_synth_files_evaluate_and_metrics_reads_what_eval_writes(world, tmp_path, capsys):
    synth = tmp_path / "synth"
    assert run(capsys, ["synth", "--videos", "2", "--out", str(synth)])[0] == 0
    common = ["--model", str(world / "model"), "--videos", str(synth / "videos"), "--frames", "6"]
    common += ["--keyframes", "2", "--no-progress", "--no-cache"]
    moments = tmp_path / "moments.jsonl"
    code, out, _ = run(
        capsys, ["eval", *common, "--annotations", str(synth / "moments.jsonl"), "--output", str(moments)]
    )
    assert code == 0
    metrics = json.loads(out)
    assert metrics["num_failed"] == 0 and "MR-full-mAP" in metrics and "no saliency labels" in metrics["note"]
    assert all(isinstance(row["qid"], str) for row in read_prediction_rows(moments))  # synth's own qids
    qa = tmp_path / "qa.jsonl"
    code, out, _ = run(capsys, ["eval", *common, "--annotations", str(synth / "qa.jsonl"), "--output", str(qa)])
    assert code == 0
    grounding = json.loads(out)["grounding"]
    code, out, err = run(
        capsys, ["metrics", "nextgqa", "--predictions", str(qa), "--annotations", str(synth / "qa.jsonl")]
    )
    assert code == 0, err
    assert json.loads(out) == pytest.approx(grounding)
    code, out, _ = run(capsys, ["metrics", "qa", "--predictions", str(qa), "--annotations", str(synth / "qa.jsonl")])
    assert code == 0 and json.loads(out)["num_questions"] == len(read_prediction_rows(qa))


def test_metrics_qa_refuses_a_prediction_past_the_options(world, tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"qid": "CW_a_0", "prediction": 0}\n{"qid": "TN_c_1", "prediction": 4}\n')
    args = ["metrics", "qa", "--predictions", str(rows), "--annotations", str(world / "qa.jsonl")]
    code, out, err = run(capsys, args)
    assert (
        code == 2
        and out == ""
        and err
        == (
            f"sevila metrics: error: {rows}, line 2, field 'prediction': 4 is out of range: question 'TN_c_1' has 4 "
            "options (0..3)\n"
        )
    )
    # Without an answer key, the row's own option scores say how many options there were.
    rows.write_text('{"qid": "CW_a_0", "prediction": 2, "answer": 0, "option_scores": [0.1, 0.2]}\n')
    code, _, err = run(capsys, ["metrics", "qa", "--predictions", str(rows)])
    assert code == 2 and err == (
        f"sevila metrics: error: {rows}, line 1, field 'prediction': 2 is out of range: the row scores 2 options "
        "(0..1)\n"
    )


# ------------------------------------------------------------------------------------------ SIGKILL


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_predictions(world, tmp_path, capsys):
    """Kill ``python -m sevila.cli eval`` (SIGKILL) at seeded random points — after a random number of rows, plus
    a random few milliseconds — several times, resume each time, and compare with an uninterrupted run."""
    records = [
        QARecord(
            qid=f"CW_{v}_{i}",
            video=v,
            dataset="nextqa",
            question=f"{QUESTION} {i}",
            options=OPTIONS[: 4 + i % 2],
            answer=i % 4,
            question_type="CW",
        )
        for i, v in enumerate(["a", "b", "gone", "c"] * 3)
    ]
    write_records(tmp_path / "many.jsonl", records)
    shutil.copytree(world / "videos", tmp_path / "videos")
    (tmp_path / "model").symlink_to(world / "model")
    reference = tmp_path / "reference.jsonl"
    assert run(capsys, eval_args(tmp_path, reference, annotations="many.jsonl"))[0] == 0
    output = tmp_path / "pred.jsonl"
    args = eval_args(tmp_path, output, "--batch-size", "1", annotations="many.jsonl")
    args[args.index("--no-cache")] = "--cache-dir"  # the feature cache is written (and killed) too
    args.insert(args.index("--cache-dir") + 1, str(tmp_path / "cache"))
    rng = random.Random(17)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed_with = []
    for _ in range(3):
        rows_before = len(read_prediction_rows(output))
        # rows to wait for (+0: kill around the first write), within the first half of what is left
        target = rows_before + rng.randrange(0, max(1, (len(records) - rows_before) // 2))
        process = subprocess.Popen(
            [sys.executable, "-m", "sevila.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if header_path(output).exists() and len(read_prediction_rows(output)) >= target:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.02))
        finished = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_with.append(None if finished else len(read_prediction_rows(output)))
    assert any(k is not None and k < len(records) for k in killed_with), f"no run was interrupted: {killed_with}"
    assert run(capsys, args)[0] == 0  # the resume, with the lock a killed process left behind
    assert_same_predictions(read_prediction_rows(output), read_prediction_rows(reference))
    assert not lock_path(output).exists()
