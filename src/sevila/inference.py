"""Answer questions about any video: the Python API behind ``sevila answer`` and ``sevila eval``.

    from sevila.inference import VideoQA
    qa = VideoQA.load("path/to/model")                      # or a hub id, or a named model
    answer = qa.predict("video.mp4", "what does the man do?", ["runs.", "sits.", "eats."])
    answer.text, answer.keyframe_times, answer.frame_scores

Per video, frames are sampled uniformly (a number of them, or ``fps=`` frames a second), encoded once (through
the feature cache when enabled) and reused for every question about that video; only the T5 scoring depends on
the question. A video that samples more frames than one chunk (``chunk_frames``, 32) is streamed: decoded,
encoded and scored a chunk at a time, so memory does not grow with its length (`sevila.streaming`).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sevila import prompts, streaming
from sevila.features import (
    FeatureCache,
    VideoFeatures,
    VideoPlan,
    VideoPrefetcher,
    encode_chunks,
    encode_video,
    finish_video,
)
from sevila.loading import load_model
from sevila.model import FrameFeatures, Precision, SeViLA
from sevila.moments import DEFAULT_SPAN_THRESHOLD, DEFAULT_THRESHOLD, frame_scores_to_moments
from sevila.utils.batching import positions_by_key
from sevila.video import VideoError, check_backend, check_clip, check_count_or_rate, check_rate, check_video_file

DEFAULT_CHUNK_FRAMES = 32
"""Frames decoded and encoded at once on a long video: a 32-frame question's memory, whatever the length."""


@dataclass
class Answer:
    """One question's result. Frame positions index the sampled frames; times are seconds in the video."""

    question: str | None
    options: list[str]
    index: int  # 0-based chosen option
    letter: str
    text: str
    option_scores: list[float]  # logits of the option letters
    frame_times: list[float]  # every sampled frame
    frame_indices: list[int]  # their frame numbers in the video
    frame_scores: list[float] | None  # localizer "yes" logit per sampled frame; None without the localizer
    keyframes: list[int]  # positions (into the sampled frames) the answerer saw, in time order
    keyframe_times: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def _check_question(question: str | None, options: Sequence[str], letters: str) -> None:
    if question is not None and not isinstance(question, str):
        raise TypeError(f"the question must be a string, got {type(question).__name__}")
    if question is not None and not question.strip():
        raise ValueError("the question is empty")
    if isinstance(options, str):
        raise TypeError("options must be a list of strings, not one string")
    if not isinstance(options, (list, tuple)):
        raise TypeError(f"options must be a list of strings, got {type(options).__name__}")
    if not 2 <= len(options) <= len(letters):
        raise ValueError(f"a question needs 2 to {len(letters)} options, got {len(options)}")
    for i, option in enumerate(options):
        if not isinstance(option, str):
            raise TypeError(f"option {i + 1} must be a string, got {type(option).__name__}")
        if not option.strip():
            raise ValueError(f"option {i + 1} is empty" + (" (only whitespace)" if option else ""))


def _question_pairs(questions) -> list[tuple[str | None, Sequence[str]]]:
    """`predict_many`'s questions as a list of (question, options) pairs, or a one-line `TypeError`."""
    if isinstance(questions, (str, bytes)) or not isinstance(questions, Iterable):
        raise TypeError(f"questions must be a list of (question, options) pairs, got {type(questions).__name__}")
    pairs = list(questions)
    for i, item in enumerate(pairs):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            shown = repr(item) if len(repr(item)) <= 60 else repr(item)[:57] + "..."
            raise TypeError(f"questions[{i}] must be a (question, options) pair, got {shown}")
    return [(question, options) for question, options in pairs]


def _count(value: object, name: str, flag: str) -> int:
    """A frame or keyframe number: a whole number of at least 1 (0 and negatives are errors, never defaults)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} ({flag}) must be a whole number, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} ({flag}) must be at least 1, got {value}")
    return int(value)


def _check_keyframes(num_keyframes: int, num_frames: int) -> None:
    if num_keyframes > num_frames:
        raise ValueError(
            f"num_keyframes (--keyframes) is {num_keyframes} but only {num_frames} frames are sampled "
            f"(num_frames, --frames): keyframes are chosen among the sampled frames"
        )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a `torch.device` that exists here (default: cuda if available, else cpu), or a one-line
    `ValueError` naming it and the devices available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; available here: {', '.join(available_devices())}") from None
    problem = None
    if resolved.type == "cuda":
        if torch.version.cuda is None:
            problem = f"this PyTorch build ({torch.__version__}) has no CUDA support"
        elif not torch.cuda.is_available():
            problem = "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
        elif resolved.index is not None and resolved.index >= torch.cuda.device_count():
            problem = f"there are {torch.cuda.device_count()} CUDA devices"
    elif resolved.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            problem = "MPS (Apple GPU) is not available"
    elif resolved.type != "cpu":
        problem = f"SeViLA runs on cpu, cuda or mps, not {resolved.type}"
    if problem:
        raise ValueError(
            f"device {str(device)!r} is not available: {problem}; available here: {', '.join(available_devices())}"
        )
    return resolved


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return found


def distinct_frames(encoded: VideoFeatures, requested: int, clip: tuple[float, float] | None, source) -> VideoFeatures:
    """Each frame once: more frames requested than the video (or clip window) has make the uniform sampling
    repeat frames, and repeated frames score alike, so the localizer would pick the same frame several times.
    Like the original's sampling (which takes ``min(n, frames)`` segments), use every frame once instead,
    with a warning."""
    first: dict[int, int] = {}
    for position, index in enumerate(encoded.indices):
        first.setdefault(index, position)
    if len(first) == len(encoded.indices):
        return encoded
    keep = sorted(first.values())
    _warn_fewer_frames(source, clip, len(keep), requested)
    positions = torch.tensor(keep, device=encoded.features.answerer.device)
    features = FrameFeatures(
        encoded.features.answerer.index_select(1, positions), encoded.features.localizer.index_select(1, positions)
    )
    return VideoFeatures(
        features,
        [encoded.indices[p] for p in keep],
        [encoded.timestamps[p] for p in keep],
        encoded.fps,
        encoded.duration,
    )


def _warn_fewer_frames(source, clip, available: int, requested: int) -> None:
    where = f"the clip window ({clip[0]:g}s, {clip[1]:g}s) of {source}" if clip else str(source)
    warnings.warn(
        f"{where} has only {available} frame{'s' if available != 1 else ''}: using each once instead of {requested} sampled frames (--frames)",
        FewerFrames,
        stacklevel=4,
    )


class FewerFrames(UserWarning):
    """The video (or clip window) has fewer frames than requested; each is used once."""


@dataclass
class FrameScores:
    logits: list[float]  # the localizer's "yes" logit per frame (what keyframe selection ranks)
    probabilities: list[float]  # p(yes) against "no" per frame, for thresholding into moments


def localize_features(model: SeViLA, video: VideoFeatures, query: str) -> FrameScores:
    """The localizer's score of every sampled frame for a free-text query (the QVHighlights prompt)."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query is empty")
    with torch.no_grad():
        yes_no = model.frame_scores(
            video.features.localizer.to(model.device), [prompts.qvhighlights_loc_prompt(query)], with_no=True
        )[0]
    return _frame_scores(yes_no)


def _frame_scores(yes_no: torch.Tensor) -> FrameScores:
    """(frames, 2) [yes, no] logits -> the yes logits and p(yes) against "no"."""
    return FrameScores(yes_no[:, 0].tolist(), torch.sigmoid(yes_no[:, 0] - yes_no[:, 1]).tolist())


@dataclass
class Localization:
    """Where a query happens: every sampled frame's score and the merged moments (best first)."""

    query: str
    frame_times: list[float]
    frame_indices: list[int]
    frame_scores: list[float]  # "yes" logits
    frame_probabilities: list[float]  # p(yes) vs "no"
    moments: list[tuple[float, float, float]]  # (start s, end s, score), best first
    duration: float = 0.0  # seconds of the whole video

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QuestionItem:
    """One question to answer, with its video's features and its two prompts."""

    video: VideoFeatures
    question: str | None
    options: list[str]
    qa_prompt: str
    loc_prompt: str


def answer_batch(
    model: SeViLA, items: Sequence[QuestionItem], num_keyframes: int, use_localizer: bool = True
) -> list[Answer]:
    """Chained inference on a batch of questions (about one or several videos) in as few T5 passes as possible:
    one per option count (a batch shares its option-letter ids) and number of frames (videos sampled by rate
    differ in it)."""
    answers: list[Answer | None] = [None] * len(items)
    groups = positions_by_key((len(item.options), len(item.video.indices)) for item in items)
    for (count, _), members in groups.items():
        features = FrameFeatures(
            torch.cat([items[i].video.features.answerer for i in members]).to(model.device),
            torch.cat([items[i].video.features.localizer for i in members]).to(model.device),
        )
        with torch.no_grad():
            out = model.predict(
                features,
                [items[i].qa_prompt for i in members],
                count,
                [items[i].loc_prompt for i in members] if use_localizer else None,
                num_keyframes=num_keyframes,
                use_localizer=use_localizer,
            )
        for row, i in enumerate(members):
            answers[i] = _answer(items[i], out, row, items[i].video.indices, items[i].video.timestamps)
    return answers


def _answer(item, out, row: int, indices: Sequence[int], timestamps: Sequence[float]) -> Answer:
    """Row ``row`` of a `Prediction` as the `Answer` to ``item`` (its question and options)."""
    index = int(out.prediction[row])
    keyframes = out.keyframes[row].tolist()
    return Answer(
        question=item.question,
        options=item.options,
        index=index,
        letter=prompts.OPTION_LETTERS[index],
        text=item.options[index],
        option_scores=out.option_scores[row].tolist(),
        frame_times=list(timestamps),
        frame_indices=list(indices),
        frame_scores=None if out.frame_scores is None else out.frame_scores[row].tolist(),
        keyframes=keyframes,
        keyframe_times=[timestamps[j] for j in keyframes],
    )


class VideoQA:
    """SeViLA's chained inference on video files.

    Args:
        model: a loaded `SeViLA` (see `load`).
        num_frames: frames sampled per video (the paper: 32).
        num_keyframes: frames the localizer keeps for the answerer (the paper: 4).
        cache: a `FeatureCache`, or None to always recompute.
        backend: video decoder (``pyav``, ``decord``, ``torchcodec``).
        prompt_style: which dataset's prompt wording to use (`sevila.prompts.PROMPT_STYLES`; default: the
            multiple-choice wording of NExT-QA, STAR, How2QA and TVQA, which the released model was trained on).
        fps: sample this many frames a second instead of a fixed number (e.g. 1 for a long video), the same
            uniform rule with the count taken from the video's length (`sevila.video.frames_at_rate`).
        chunk_frames: frames decoded and encoded at once when a video samples more than this many; memory
            follows it, not the video's length (`sevila.streaming`).
    """

    def __init__(
        self,
        model: SeViLA,
        num_frames: int | None = None,
        num_keyframes: int | None = None,
        cache: FeatureCache | None = None,
        backend: str = "pyav",
        prompt_style: str = "nextqa",
        fps: float | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    ):
        self.model = model.eval()
        check_count_or_rate(num_frames, fps)
        # None means the model's; 0 or a negative number is an error, never silently the default.
        self.num_frames = _count(
            model.config.num_frames if num_frames is None else num_frames, "num_frames", "--frames"
        )
        self.fps = None if fps is None else check_rate(fps)
        self.chunk_frames = _count(chunk_frames, "chunk_frames", "--chunk-frames")
        self.num_keyframes = _count(
            model.config.num_keyframes if num_keyframes is None else num_keyframes, "num_keyframes", "--keyframes"
        )
        if num_keyframes is not None and fps is None:  # a default keyframe count is only checked where it runs
            _check_keyframes(self.num_keyframes, self.num_frames)
        check_backend(backend)  # a missing optional decoder fails here, not at the first video
        self.cache = cache
        self.backend = backend
        if prompt_style not in prompts.PROMPT_STYLES or prompt_style == "qvhighlights":
            raise ValueError(
                f"unknown prompt style {prompt_style!r}; choose one of {prompts.PROMPT_STYLES[:-2]} or 'demo'"
            )
        self.prompt_style = prompt_style

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        device: str | torch.device | None = None,
        cache: FeatureCache | bool | None = True,
        precision: str | Precision | None = None,
        **kwargs,
    ) -> VideoQA:
        """A model by name, hub id or directory; ``cache=True`` uses the default cache location.

        ``precision``: ``"reference"`` (the original's mixed precision; the default on CUDA), ``"bf16"``
        (faster, lighter) or ``"fp32"`` (the default on a CPU), or a `Precision`; see `sevila.model.precision`.
        """
        device = resolve_device(device)
        precision = Precision.named(precision, device)  # a bad name fails before anything is loaded
        for name, flag in (("num_frames", "--frames"), ("num_keyframes", "--keyframes")):
            if kwargs.get(name) is not None:  # bad numbers and backends fail before the model is loaded, too
                _count(kwargs[name], name, flag)
        if kwargs.get("fps") is not None:
            check_count_or_rate(kwargs.get("num_frames"), kwargs["fps"])
            check_rate(kwargs["fps"])
        elif kwargs.get("num_frames") is not None and kwargs.get("num_keyframes") is not None:
            _check_keyframes(kwargs["num_keyframes"], kwargs["num_frames"])
        check_backend(kwargs.get("backend", "pyav"))
        model = load_model(name_or_path, device=device, precision=precision)
        if cache is True:
            cache = FeatureCache()
        return cls(model, cache=cache or None, **kwargs)

    # ------------------------------------------------------------------ video side
    def _sampling(self, num_frames: int | None, fps: float | None) -> tuple[int | None, float | None]:
        """(frame count, None) or (None, rate): a call's own choice, else the instance's."""
        check_count_or_rate(num_frames, fps)
        if num_frames is not None:
            return _count(num_frames, "num_frames", "--frames"), None
        if fps is not None:
            return None, check_rate(fps)
        return (None, self.fps) if self.fps is not None else (self.num_frames, None)

    def _plan(self, path: Path, count: int | None, rate: float | None, clip) -> tuple[VideoPlan | None, int]:
        """The long-video plan of ``path``, or (None, frame count) when the video fits in one chunk and takes
        the short path (one cache entry, the exact arithmetic of the original)."""
        if rate is None and count <= self.chunk_frames:
            return None, count
        plan, asked = streaming.plan_video(
            path,
            num_frames=count,
            rate=rate,
            clip=clip,
            image_size=self.model.config.vision.image_size,
            backend=self.backend,
        )
        if len(plan.indices) <= self.chunk_frames:
            return None, asked
        if len(plan.indices) < asked:
            _warn_fewer_frames(path, clip, len(plan.indices), asked)
        return plan, asked

    def _video(self, video: str | Path, clip) -> tuple[Path, tuple[float, float] | None]:
        # Checked before the cache hashes the file: reading a FIFO or /dev/zero would never end.
        path = check_video_file(video)
        return path, (None if clip is None else check_clip(clip, source=path))

    def _chunks(self, plan: VideoPlan):
        return encode_chunks(self.model, plan, self.chunk_frames, self.backend, self.cache)

    def features(
        self,
        video: str | Path,
        num_frames: int | None = None,
        clip: tuple[float, float] | None = None,
        *,
        fps: float | None = None,
    ) -> VideoFeatures:
        """The sampled frames' features (through the cache). A video or window with fewer frames than
        ``num_frames`` gives each of its frames once, with a `FewerFrames` warning. On a long video they are
        every sampled frame's tokens in memory; `predict` and `localize` stream such a video instead."""
        path, clip = self._video(video, clip)
        plan, count = self._plan(path, *self._sampling(num_frames, fps), clip)
        if plan is not None:
            return streaming.concatenate(self._chunks(plan))
        return self._encoded(path, count, clip)

    def _encoded(self, path: Path, count: int, clip) -> VideoFeatures:
        """A short video's ``count`` frames, encoded at once (one cache entry), each frame once."""
        return distinct_frames(encode_video(self.model, path, count, clip, self.backend, self.cache), count, clip, path)

    def predict_videos(
        self,
        jobs: Iterable[tuple[str | Path, Sequence[tuple[str | None, Sequence[str]]]]],
        *,
        num_frames: int | None = None,
        num_keyframes: int | None = None,
        use_localizer: bool = True,
        fps: float | None = None,
    ) -> Iterator[list[Answer]]:
        """`predict_many` over several videos: ``jobs`` are (video, questions) pairs, and one list of answers
        is yielded per video, in order. While the model answers a video's questions, a background thread
        decodes the next video (or reads its cached features), so decoding hides behind the model's work.
        (Long videos decode their next chunk behind the model instead.)"""
        jobs = list(jobs)
        count, rate = self._sampling(num_frames, fps)
        if use_localizer and rate is None:
            keyframes = self.num_keyframes if num_keyframes is None else num_keyframes
            _check_keyframes(_count(keyframes, "num_keyframes", "--keyframes"), count)
        short = rate is None and count <= self.chunk_frames
        with VideoPrefetcher(self.model, self.backend, self.cache) as prefetcher:

            def submit(position: int) -> None:
                if short and position < len(jobs) and isinstance(jobs[position][0], (str, Path)):
                    try:  # a bad path fails at its turn, with the message `features` would give
                        prefetcher.submit(position, check_video_file(jobs[position][0]), count)
                    except VideoError:
                        pass

            submit(0)
            for position, (video, questions) in enumerate(jobs):
                submit(position + 1)
                if position in prefetcher:
                    path = check_video_file(video)
                    encoded = finish_video(self.model, prefetcher.take(position), self.cache)
                    video = distinct_frames(encoded, count, None, path)
                yield self.predict_many(
                    video,
                    questions,
                    num_frames=num_frames,
                    fps=fps,
                    num_keyframes=num_keyframes,
                    use_localizer=use_localizer,
                )

    # ------------------------------------------------------------------ moments
    def localize(
        self,
        video: str | Path | VideoFeatures,
        query: str,
        *,
        num_frames: int | None = None,
        fps: float | None = None,
        clip: tuple[float, float] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        span_threshold: int = DEFAULT_SPAN_THRESHOLD,
    ) -> Localization:
        """Score every sampled frame for ``query`` and merge frames with p(yes) >= ``threshold`` into moments,
        bridging gaps of up to ``span_threshold`` frames (the rule: `sevila.moments`)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the query is empty")
        if isinstance(video, VideoFeatures):
            encoded, scores = video, localize_features(self.model, video, query)
        else:
            path, clip = self._video(video, clip)
            plan, count = self._plan(path, *self._sampling(num_frames, fps), clip)
            if plan is None:
                encoded = self._encoded(path, count, clip)
                scores = localize_features(self.model, encoded, query)
            else:
                found = streaming.scan(
                    self.model, self._chunks(plan), [[prompts.qvhighlights_loc_prompt(query)]], 0, with_no=True
                )
                encoded, scores = found, _frame_scores(found.scores[0][0])
        moments = frame_scores_to_moments(
            encoded.timestamps,
            scores.probabilities,
            encoded.duration,
            threshold=threshold,
            span_threshold=span_threshold,
        )
        return Localization(
            query,
            list(encoded.timestamps),
            list(encoded.indices),
            scores.logits,
            scores.probabilities,
            [tuple(m) for m in moments],
            encoded.duration,
        )

    # ------------------------------------------------------------------ questions
    def predict(
        self,
        video: str | Path | VideoFeatures,
        question: str | None,
        options: Sequence[str],
        *,
        num_frames: int | None = None,
        fps: float | None = None,
        num_keyframes: int | None = None,
        clip: tuple[float, float] | None = None,
        use_localizer: bool = True,
    ) -> Answer:
        """Answer one multiple-choice question about ``video`` (a path, or features from `features`)."""
        return self.predict_many(
            video,
            [(question, options)],
            num_frames=num_frames,
            fps=fps,
            num_keyframes=num_keyframes,
            clip=clip,
            use_localizer=use_localizer,
        )[0]

    def predict_many(
        self,
        video: str | Path | VideoFeatures,
        questions: Sequence[tuple[str | None, Sequence[str]]],
        *,
        num_frames: int | None = None,
        fps: float | None = None,
        num_keyframes: int | None = None,
        clip: tuple[float, float] | None = None,
        use_localizer: bool = True,
    ) -> list[Answer]:
        """Several questions about one video: the video is decoded and encoded once (a long one in one pass,
        chunk by chunk, for all the questions).

        Without the localizer the answerer sees every sampled frame (set ``num_frames`` to the number it
        should see, e.g. 4 for the paper's uniform baseline).
        """
        letters = prompts.OPTION_LETTERS
        questions = _question_pairs(questions)
        for question, options in questions:
            _check_question(question, options, letters)
        keyframes = (
            self.num_keyframes if num_keyframes is None else _count(num_keyframes, "num_keyframes", "--keyframes")
        )
        if isinstance(video, VideoFeatures):
            encoded, plan, source = video, None, None
        else:
            path, clip = self._video(video, clip)
            count, rate = self._sampling(num_frames, fps)
            if use_localizer and rate is None:
                _check_keyframes(keyframes, count)
            plan, count = self._plan(path, count, rate, clip)
            if plan is None:
                encoded = self._encoded(path, count, clip)
            source = path
        if plan is not None and not use_localizer:
            raise ValueError(
                f"{source}: without the localizer the answerer reads every sampled frame, and {len(plan.indices)} "
                f"are more than one chunk ({self.chunk_frames}); sample fewer (--frames) for the uniform baseline"
            )
        available = len(plan.indices) if plan is not None else len(encoded.indices)
        if use_localizer and keyframes > available:
            raise VideoError(
                source,
                f"only {available} distinct frame{'s' if available != 1 else ''} to choose {keyframes} keyframes "
                f"from; lower num_keyframes (--keyframes)",
            )
        items = [
            QuestionItem(
                encoded if plan is None else None,
                question,
                list(options),
                *prompts.prompts_for(self.prompt_style, question, options),
            )
            for question, options in questions
        ]
        if plan is None:
            return answer_batch(self.model, items, keyframes, use_localizer)
        return self._answer_streamed(plan, items, keyframes)

    def _answer_streamed(self, plan: VideoPlan, items: list[QuestionItem], keyframes: int) -> list[Answer]:
        """Every question about a long video in one pass over its chunks (`sevila.streaming.scan`)."""
        groups = positions_by_key(len(item.options) for item in items)
        found = streaming.scan(
            self.model,
            self._chunks(plan),
            [[items[i].loc_prompt for i in members] for members in groups.values()],
            keyframes,
        )
        if keyframes > len(found.indices):  # the video's tail did not decode (warned by encode_chunks)
            raise VideoError(plan.path, f"only {len(found.indices)} frames decode; fewer than {keyframes} keyframes")
        answers: list[Answer | None] = [None] * len(items)
        for group, (count, members) in enumerate(groups.items()):
            out = streaming.predict_scanned(
                self.model, found, group, [items[i].qa_prompt for i in members], count, keyframes
            )
            for row, i in enumerate(members):
                answers[i] = _answer(items[i], out, row, found.indices, found.timestamps)
        return answers
