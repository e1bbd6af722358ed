"""The lmms-eval adapter end to end: lmms-eval's own command line, its task API reading two local task YAMLs (a
``multiple_choice`` task scored through ``loglikelihood``, and a ``generate_until`` task that lists the options
as ``A. ...`` lines, as ``nextqa_mc_test`` does), a tiny model and tiny videos; no network. Skipped without
lmms-eval (``pip install 'sevila[lmms-eval]'``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install 'sevila[lmms-eval]')")

from sevila.integrations.lmms_eval import split_question  # noqa: E402
from sevila_toy.pattern_videos import write_video  # noqa: E402
from tests.support.tiny import OPTIONS, QUESTION, tiny_model  # noqa: E402

pytestmark = pytest.mark.slow

UTILS = """
OPTIONS = "ABCDE"


def doc_to_visual(doc):
    return [doc["video"]]


def question(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def choices(doc):
    return [doc[f"a{i}"] for i in range(5)]


def listed(doc, lmms_eval_specific_kwargs=None):
    lines = [doc["question"]] + [f"{OPTIONS[i]}. {doc[f'a{i}']}" for i in range(5)]
    return "\\n".join(lines) + "\\nAnswer with the option's letter from the given choices directly."


def letter_matches(doc, results):
    return {"exact_match": results[0].strip() == OPTIONS[doc["answer"]]}
"""


def task_yaml(name: str, data: str, output_type: str, text: str, extra: str) -> str:
    return textwrap.dedent(
        f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: {output_type}
        doc_to_visual: !function utils.doc_to_visual
        doc_to_text: !function utils.{text}
        doc_to_target: answer
        """
    ) + textwrap.dedent(extra)


def test_split_question_reads_lmms_eval_prompts():
    text = "what is it?\nA. a cup\nB. a phone\nAnswer with the option's letter."
    assert split_question(text) == ("what is it?", ["a cup", "a phone"])
    assert split_question("(A) x\n(B) y") == ("", ["x", "y"])


def test_lmms_eval_runs_local_tasks_end_to_end(tmp_path):
    tiny_model(seed=2).save_pretrained(tmp_path / "model")
    docs = []
    for i in range(3):
        video = tmp_path / f"v{i}.mp4"
        write_video(video, num_frames=16 + 4 * i, fps=8)
        docs.append(
            {"video": str(video), "question": QUESTION, **{f"a{j}": o for j, o in enumerate(OPTIONS)}, "answer": i}
        )
    data = tmp_path / "docs.json"
    data.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text(UTILS)
    mc_extra = """\
        doc_to_choice: !function utils.choices
        metric_list:
          - metric: acc
        """
    gen_extra = """\
        generation_kwargs:
          max_new_tokens: 4
        process_results: !function utils.letter_matches
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """
    (tasks / "tiny_mc.yaml").write_text(task_yaml("sevila_tiny_mc", data, "multiple_choice", "question", mc_extra))
    (tasks / "tiny_gen.yaml").write_text(task_yaml("sevila_tiny_gen", data, "generate_until", "listed", gen_extra))

    keyframes = tmp_path / "keyframes.jsonl"
    model_args = f"pretrained={tmp_path / 'model'},num_frames=6,num_keyframes=2,keyframes_file={keyframes}"
    command = [sys.executable, "-m", "lmms_eval", "--model", "sevila", "--model_args", model_args]
    command += ["--tasks", "sevila_tiny_mc,sevila_tiny_gen", "--include_path", str(tasks), "--batch_size", "1"]
    command += ["--output_path", str(tmp_path / "out"), "--log_samples"]
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env = {**os.environ, **offline, "HF_HOME": str(tmp_path / "hf"), "SEVILA_CACHE_DIR": str(tmp_path / "features")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])

    records = [json.loads(line) for line in keyframes.read_text().splitlines()]
    by_task = {task: [r for r in records if r["task"] == task] for task in ("sevila_tiny_mc", "sevila_tiny_gen")}
    assert sorted(r["doc_id"] for r in by_task["sevila_tiny_mc"]) == [0, 1, 2]
    assert sorted(r["doc_id"] for r in by_task["sevila_tiny_gen"]) == [0, 1, 2]
    for record in records:
        assert len(record["keyframes"]) == 2 and len(record["frame_scores"]) == 6
    # One chain per document whichever way lmms-eval asks: the same answers both ways.
    chosen = {task: {r["doc_id"]: r["prediction"] for r in rows} for task, rows in by_task.items()}
    assert chosen["sevila_tiny_mc"] == chosen["sevila_tiny_gen"]
    assert len(list((tmp_path / "features").rglob("*"))) > 0  # each video encoded once, for both tasks

    results_file = next((tmp_path / "out").rglob("*results.json"))
    results = json.loads(results_file.read_text())["results"]
    expected = sum(chosen["sevila_tiny_mc"][d["answer"]] == d["answer"] for d in docs) / len(docs)
    assert results["sevila_tiny_mc"]["acc,none"] == pytest.approx(expected)
    assert results["sevila_tiny_gen"]["exact_match,none"] == pytest.approx(expected)
