"""Answer questions about any video: the Python API behind ``sevila answer`` and ``sevila eval``.

    from sevila.inference import VideoQA
    qa = VideoQA.load("path/to/model")                      # or a hub id, or a named model
    answer = qa.predict("video.mp4", "what does the man do?", ["runs.", "sits.", "eats."])
    answer.text, answer.keyframe_times, answer.frame_scores

Per video, frames are sampled uniformly, encoded once (through the feature cache when enabled) and reused
for every question about that video; only the T5 scoring depends on the question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sevila import prompts
from sevila.features import FeatureCache, VideoFeatures, encode_video
from sevila.loading import load_model
from sevila.model import FrameFeatures, Precision, SeViLA
from sevila.moments import DEFAULT_SPAN_THRESHOLD, DEFAULT_THRESHOLD, frame_scores_to_moments
from sevila.utils.batching import positions_by_key


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
    if question is not None and (not isinstance(question, str) or not question.strip()):
        raise ValueError("the question is empty")
    if isinstance(options, str):
        raise TypeError("options must be a list of strings, not one string")
    if not 2 <= len(options) <= len(letters):
        raise ValueError(f"a question needs 2 to {len(letters)} options, got {len(options)}")
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise ValueError(f"option {i + 1} is empty")


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
    one per option count, since a batch shares its option-letter ids."""
    letters = prompts.OPTION_LETTERS
    answers: list[Answer | None] = [None] * len(items)
    for count, members in positions_by_key(len(item.options) for item in items).items():
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
            item, index = items[i], int(out.prediction[row])
            keyframes = out.keyframes[row].tolist()
            answers[i] = Answer(
                question=item.question,
                options=item.options,
                index=index,
                letter=letters[index],
                text=item.options[index],
                option_scores=out.option_scores[row].tolist(),
                frame_times=list(item.video.timestamps),
                frame_indices=list(item.video.indices),
                frame_scores=None if out.frame_scores is None else out.frame_scores[row].tolist(),
                keyframes=keyframes,
                keyframe_times=[item.video.timestamps[j] for j in keyframes],
            )
    return answers


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
    """

    def __init__(
        self,
        model: SeViLA,
        num_frames: int | None = None,
        num_keyframes: int | None = None,
        cache: FeatureCache | None = None,
        backend: str = "pyav",
        prompt_style: str = "nextqa",
    ):
        self.model = model.eval()
        self.num_frames = num_frames or model.config.num_frames
        self.num_keyframes = num_keyframes or model.config.num_keyframes
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
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        precision = Precision.named(precision, device)  # a bad name fails before anything is loaded
        model = load_model(name_or_path, device=device, precision=precision)
        if cache is True:
            cache = FeatureCache()
        return cls(model, cache=cache or None, **kwargs)

    # ------------------------------------------------------------------ video side
    def features(
        self, video: str | Path, num_frames: int | None = None, clip: tuple[float, float] | None = None
    ) -> VideoFeatures:
        return encode_video(self.model, video, num_frames or self.num_frames, clip, self.backend, self.cache)

    # ------------------------------------------------------------------ moments
    def localize(
        self,
        video: str | Path | VideoFeatures,
        query: str,
        *,
        num_frames: int | None = None,
        clip: tuple[float, float] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        span_threshold: int = DEFAULT_SPAN_THRESHOLD,
    ) -> Localization:
        """Score every sampled frame for ``query`` and merge frames with p(yes) >= ``threshold`` into moments,
        bridging gaps of up to ``span_threshold`` frames (the rule: `sevila.moments`)."""
        encoded = video if isinstance(video, VideoFeatures) else self.features(video, num_frames, clip)
        scores = localize_features(self.model, encoded, query)
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
        )

    # ------------------------------------------------------------------ questions
    def predict(
        self,
        video: str | Path | VideoFeatures,
        question: str | None,
        options: Sequence[str],
        *,
        num_frames: int | None = None,
        num_keyframes: int | None = None,
        clip: tuple[float, float] | None = None,
        use_localizer: bool = True,
    ) -> Answer:
        """Answer one multiple-choice question about ``video`` (a path, or features from `features`)."""
        return self.predict_many(
            video,
            [(question, options)],
            num_frames=num_frames,
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
        num_keyframes: int | None = None,
        clip: tuple[float, float] | None = None,
        use_localizer: bool = True,
    ) -> list[Answer]:
        """Several questions about one video: the video is decoded and encoded once.

        Without the localizer the answerer sees every sampled frame (set ``num_frames`` to the number it
        should see, e.g. 4 for the paper's uniform baseline).
        """
        letters = prompts.OPTION_LETTERS
        for question, options in questions:
            _check_question(question, options, letters)
        encoded = video if isinstance(video, VideoFeatures) else self.features(video, num_frames, clip)
        items = [
            QuestionItem(encoded, question, list(options), *prompts.prompts_for(self.prompt_style, question, options))
            for question, options in questions
        ]
        return answer_batch(self.model, items, num_keyframes or self.num_keyframes, use_localizer)
