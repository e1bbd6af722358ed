"""SeViLA as an lmms-eval model: ``lmms-eval --model sevila --model_args pretrained=DIR --tasks nextqa_mc_test``.

Needs ``pip install 'sevila[lmms-eval]'``; the model is registered through the ``lmms_eval.models`` entry point
(`manifest`). Every question goes through SeViLA's chain — the localizer scores the sampled frames, the answerer
reads the top keyframes — and its answer is the option letter with the highest score:

* ``loglikelihood`` (lmms-eval's ``multiple_choice`` tasks): the requests of one document are its options, scored
  together in one chain, as SeViLA's prompt lists them all; each gets the negative log-softmax of the option
  letters' scores (lmms-eval picks the option with the *smallest* value: its models return losses, issue
  EvolvingLMMs-Lab/lmms-eval#370) and ``is_greedy`` for the chosen one.
* ``generate_until`` (tasks such as ``nextqa_mc_test`` whose text lists the options as ``A. ...`` lines): the
  question and options are read back from the text and the chosen letter is the answer.

The keyframes of each answer are recorded (`SeViLALMMS.records`, and as JSON lines in ``keyframes_file`` when
given): which sampled frames the answerer saw, their times and every frame's localizer score.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmms_eval.api.model import lmms

from sevila.inference import Answer, VideoQA

MODEL_ID = "sevila"
# "A. text", "(A) text", "A) text": one option per line, as lmms-eval's multiple-choice video tasks write them.
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.)]\s+(.+?)\s*$")


def manifest():
    """The ``lmms_eval.models`` entry point: lmms-eval's manifest of this model (imported lazily: lmms-eval
    loads every entry point while it builds its registry)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.{SeViLALMMS.__name__}")


def split_question(context: str) -> tuple[str, list[str]]:
    """The question (the lines before the first option) and the options of a multiple-choice prompt; lines
    after the options (instructions for chat models) are dropped."""
    question: list[str] = []
    options: list[str] = []
    for line in context.splitlines():
        match = OPTION_LINE.match(line)
        if match and match.group(1) == chr(ord("A") + len(options)):
            options.append(match.group(2))
        elif options:
            break
        elif line.strip():
            question.append(line.strip())
    return " ".join(question), options


def _log_softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    total = top + math.log(sum(math.exp(s - top) for s in scores))
    return [s - total for s in scores]


def _passed_through(pair: tuple[float, bool]):
    """A loglikelihood result as lmms-eval's evaluator keeps it: since 0.7.1 it turns every response that is not
    a string or a ``GenerationResult`` into ``str(response)``, so a plain (loss, is_greedy) pair would reach the
    task's scoring as text; a ``GenerationResult`` hands its ``text`` on unchanged."""
    try:
        from lmms_eval.api.instance import GenerationResult
    except ImportError:  # before 0.7.1 the pair itself passes
        return pair
    return GenerationResult(text=pair)  # type: ignore[arg-type]


class SeViLALMMS(lmms):
    """lmms-eval's model ``sevila``. Model arguments: ``pretrained`` (a directory, hub id or ``demo``),
    ``revision``, ``device``, ``precision``, ``num_frames``, ``num_keyframes``, ``backend``, ``keyframes_file``,
    ``cache`` (false: no feature cache; by default a video's frames are encoded once for all its questions)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str = "demo",
        revision: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        num_frames: int | None = None,
        num_keyframes: int | None = None,
        backend: str = "pyav",
        keyframes_file: str | None = None,
        cache: bool | str = True,
        batch_size: int | str = 1,  # lmms-eval passes its --batch_size; questions are answered one chain each
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(f"sevila: unknown model_args {sorted(kwargs)}")
        from sevila.hub import resolve_directory, resolve_name

        # The pinned snapshot first (VideoQA.load takes a directory, a hub id's newest revision or a name).
        source = resolve_directory(resolve_name(pretrained), revision=revision) if revision else pretrained
        self.qa = VideoQA.load(
            source,
            device=device,
            precision=precision,
            cache=str(cache).lower() not in ("false", "0", "no"),
            num_frames=int(num_frames) if num_frames is not None else None,
            num_keyframes=int(num_keyframes) if num_keyframes is not None else None,
            backend=backend,
        )
        self.keyframes_file = Path(keyframes_file) if keyframes_file else None
        self.records: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ helpers
    def _video(self, doc_to_visual: Callable, doc_id: int, task: str, split: str) -> str:
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        flat = [v for v in (visuals if isinstance(visuals, (list, tuple)) else [visuals]) if v is not None]
        if len(flat) != 1 or not isinstance(flat[0], (str, Path)):
            raise ValueError(
                f"sevila: task {task} document {doc_id}: expected one video path from doc_to_visual, got "
                f"{[type(v).__name__ for v in flat]}"
            )
        return str(flat[0])

    def _answer(self, video: str, question: str, options: list[str], task: str, doc_id: int) -> Answer:
        if not options:
            raise ValueError(f"sevila: task {task} document {doc_id}: no options found (lines 'A. ...')")
        answer = self.qa.predict(video, question or None, options)
        record = {
            "task": task,
            "doc_id": doc_id,
            "video": video,
            "prediction": answer.index,
            "letter": answer.letter,
            "option_scores": answer.option_scores,
            "keyframes": answer.keyframes,
            "keyframe_times": answer.keyframe_times,
            "frame_times": answer.frame_times,
            "frame_scores": answer.frame_scores,
        }
        self.records.append(record)
        if self.keyframes_file is not None:
            with self.keyframes_file.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        return answer

    # ------------------------------------------------------------------ lmms-eval's interface
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            _, _, _, doc_id, task, split = request.args
            groups.setdefault((task, split, doc_id), []).append(i)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        for (task, split, doc_id), members in groups.items():
            context, _, doc_to_visual = requests[members[0]].args[:3]
            options = [str(requests[i].args[1]).strip() for i in members]
            question, _ = split_question(context)
            answer = self._answer(self._video(doc_to_visual, doc_id, task, split), question, options, task, doc_id)
            logprobs = _log_softmax(answer.option_scores)
            for position, i in enumerate(members):
                results[i] = _passed_through((-logprobs[position], position == answer.index))
        return results  # type: ignore[return-value]

    def generate_until(self, requests) -> list[str]:
        answers = []
        for request in requests:
            context, _, doc_to_visual, doc_id, task, split = request.args
            question, options = split_question(context)
            video = self._video(doc_to_visual, doc_id, task, split)
            answers.append(self._answer(video, question, options, task, doc_id).letter)
        return answers

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(
            "sevila answers multiple-choice questions in one round; multi-round tasks are not supported"
        )


__all__ = ["MODEL_ID", "SeViLALMMS", "manifest", "split_question"]
