"""What the app does, as plain functions and one small class with no Gradio in them.

`Service` answers a question or finds the moments of a query about a video with a model chosen by name; it
keeps the last model loaded and shares the feature cache with the command line (the same `FeatureCache`
directory), so a second question about a video reads its frames' tokens from the cache. The page
(`sevila.app.page`) only wires widgets to `Service.answer` / `Service.find_moments` and shows what they
return, or the one-line message `error_message` makes of what they raise — the text the command line prints
after ``error:``, because both come from the same library checks.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sevila.hub import DEMO_DIR
from sevila.prompts import OPTION_LETTERS

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "sevila[app]"'
DEMO_MODEL = "demo"
DEMO_LABEL = "demo: a toy model trained on synthetic shapes"
MIN_OPTIONS, MAX_OPTIONS = 2, len(OPTION_LETTERS)
THUMBNAIL_SIZE = 224
# Errors of the input (a bad video, option list, number or model name): shown as they are. Anything else is a
# bug and is shown with its type, the traceback going to the server log.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError)

Progress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


class AppUnavailable(ImportError):
    """Gradio is not installed."""


def require_gradio() -> None:
    """Raise `AppUnavailable` (one line, with the install command) unless Gradio can be imported."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise AppUnavailable(f"the app needs gradio: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class Example:
    video: Path
    question: str
    options: list[str]
    answer: int | None  # the correct option's index, where the example knows it


def bundled_example() -> Example | None:
    """The demo's example question (``sevila/assets/demo/example.json``), or None where it is not installed."""
    path = DEMO_DIR / "example.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return Example(DEMO_DIR / data["video"], data["question"], list(data["options"]), data.get("answer"))


# ---------------------------------------------------------------------------------------------- reading the page
def visible_options(values: Sequence[str | None], count: int) -> list[str]:
    """The options of the ``count`` option rows on show (hidden rows keep old text, which is not an option)."""
    count = max(MIN_OPTIONS, min(MAX_OPTIONS, int(count)))
    return ["" if value is None else str(value) for value in list(values)[:count]]


def check_question(question: str | None, options: Sequence[str]) -> None:
    """The library's checks of a question and its options (`sevila.inference`), with its messages, made before
    any model or video work so a bad option list costs nothing."""
    if question is None or not question.strip():
        raise ValueError("the question is empty")
    if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        raise ValueError(f"a question needs {MIN_OPTIONS} to {MAX_OPTIONS} options, got {len(options)}")
    for i, option in enumerate(options):
        if not option.strip():
            raise ValueError(f"option {i + 1} is empty" + (" (only whitespace)" if option else ""))


def check_query(query: str | None) -> str:
    if query is None or not query.strip():
        raise ValueError("the query is empty")
    return query


def check_video(video: str | Path | None) -> str:
    if video is None or not str(video).strip():
        raise ValueError("no video: upload one or use the bundled example")
    return str(video)


def as_rate(value: Any) -> Any:
    """The frames-per-second box: 0 or empty means "sample the number of frames instead" (None)."""
    return None if value in (None, "", 0) else value


def as_count(value: Any) -> Any:
    """A slider's number as an int when it is whole (sliders send 32.0); anything else unchanged, for the
    library to refuse with its message."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def error_message(err: BaseException, video: str | Path | None = None) -> str:
    """``error: ...`` on one line, as the command line prints it; an uploaded video's temporary path is shown
    as the file's name, which is what the person chose."""
    text = " ".join(str(err).split()) or type(err).__name__
    if video:
        for shown in {str(video), str(Path(video))}:
            text = text.replace(shown, Path(video).name)
    if not isinstance(err, USER_ERRORS):
        text = f"unexpected {type(err).__name__}: {text} (the server log has the traceback)"
    return f"error: {text}"


# ---------------------------------------------------------------------------------------------- results
@dataclass
class AnswerResult:
    answer: Any  # sevila.inference.Answer
    thumbnails: list[tuple[Any, str]]  # (uint8 H×W×3 image, caption) per keyframe, in time order
    figure: Any  # matplotlib Figure: the frame-score curve with the keyframes marked
    seconds: float
    from_cache: bool | None  # None: no feature cache
    notes: list[str] = field(default_factory=list)  # the library's warnings, one line each


@dataclass
class MomentsResult:
    localization: Any  # sevila.inference.Localization
    figure: Any  # matplotlib Figure: p(yes) per frame with the moments shaded
    seconds: float
    from_cache: bool | None
    notes: list[str] = field(default_factory=list)


def moment_rows(localization: Any) -> list[list[float]]:
    """The moments as table rows: start (s), end (s), score; best first."""
    return [[round(start, 2), round(end, 2), round(score, 3)] for start, end, score in localization.moments]


def _timing(seconds: float, from_cache: bool | None, frames: int) -> str:
    if from_cache:
        how = "the frames' tokens came from the feature cache"
    elif from_cache is None:
        how = f"{frames} frames read and encoded (no feature cache)"
    else:
        how = f"{frames} frames read and encoded (kept in the feature cache for further questions)"
    return f"{seconds:.2f} s; {how}"


def _notes_html(notes: Sequence[str]) -> str:
    return "".join(f'<p class="sevila-note">note: {html.escape(note)}</p>' for note in notes)


def answer_html(result: AnswerResult) -> str:
    """The chosen option, every option's score (the logit of its letter) and how long it took."""
    answer = result.answer
    chosen = ' class="sevila-chosen"'
    rows = "".join(
        f"<tr{chosen if i == answer.index else ''}><td>({letter})</td>"
        f"<td>{html.escape(option)}</td><td>{score:.2f}</td><td>{'✓' if i == answer.index else ''}</td></tr>"
        for i, (letter, option, score) in enumerate(zip(OPTION_LETTERS, answer.options, answer.option_scores))
    )
    keyframes = ", ".join(f"{t:.2f} s" for t in answer.keyframe_times)
    return (
        f'<div class="sevila-result"><p class="sevila-verdict">Answer: ({answer.letter}) {html.escape(answer.text)}</p>'
        f"<table><thead><tr><th></th><th>option</th><th>score</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        f"<p>Keyframes at {keyframes}.</p>"
        f'<p class="sevila-timing">Answered in {_timing(result.seconds, result.from_cache, len(answer.frame_times))}.</p>'
        f"{_notes_html(result.notes)}</div>"
    )


def moments_html(result: MomentsResult) -> str:
    localization = result.localization
    count = len(localization.moments)
    what = (
        f"{count} moment{'s' if count != 1 else ''} for “{html.escape(localization.query)}”, best first"
        if count
        else f"no moment for “{html.escape(localization.query)}” passes the threshold (the plot shows every frame)"
    )
    return (
        f'<div class="sevila-result"><p class="sevila-verdict">{what}.</p>'
        f'<p class="sevila-timing">Found in {_timing(result.seconds, result.from_cache, len(localization.frame_times))}.</p>'
        f"{_notes_html(result.notes)}</div>"
    )


def error_html(message: str) -> str:
    return f'<p class="sevila-error">{html.escape(message)}</p>'


def keyframe_thumbnails(answer: Any, video: str | Path, backend: str = "pyav") -> list[tuple[Any, str]]:
    """The keyframes decoded from the video, each captioned with its time."""
    from sevila.video import open_video, read_clip

    with open_video(video, image_size=THUMBNAIL_SIZE, backend=backend) as reader:
        frames = read_clip(reader, [answer.frame_indices[k] for k in answer.keyframes]).frames
    return [(frame, f"keyframe {n + 1}: {t:.2f} s") for n, (frame, t) in enumerate(zip(frames, answer.keyframe_times))]


# ---------------------------------------------------------------------------------------------- the service
class Service:
    """Loads models by name (keeping the last one) and runs questions and queries one at a time.

    One at a time because the work is CPU- or GPU-bound and the model is shared: a second request waits for
    the first instead of both running at half speed.
    """

    def __init__(self, *, device=None, precision=None, cache=True, backend: str = "pyav"):
        self.device, self.precision, self.backend = device, precision, backend
        self.cache = cache  # a FeatureCache, True for the default one (the command line's), or None/False
        self._loaded: tuple[str, Any] | None = None
        self._lock = threading.Lock()

    def model(self, name: str | None, progress: Progress = _quiet):
        """The `VideoQA` for ``name`` (a model name, directory or hub id), loading it unless it is the last one."""
        name = (name or "").strip()
        if not name:
            raise ValueError(f"no model given: choose {DEMO_MODEL!r}, a model directory or a Hugging Face hub id")
        if self._loaded is None or self._loaded[0] != name:
            from sevila.features import FeatureCache
            from sevila.inference import VideoQA

            progress(0.05, f"loading the model {name}")
            self._loaded = None  # the previous model's memory is freed before the next one is built
            cache = FeatureCache() if self.cache is True else self.cache or False
            qa = VideoQA.load(name, device=self.device, cache=cache, precision=self.precision, backend=self.backend)
            self._loaded = (name, qa)
        return self._loaded[1]

    @contextmanager
    def _request(self, model: str | None, progress: Progress) -> Iterator[_Request]:
        """One request at a time, with the model loaded, the clock running and the library's warnings kept."""
        from sevila.plots import require_matplotlib

        require_matplotlib()
        with self._lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            qa = self.model(model, progress)
            yield _Request(qa, start, None if qa.cache is None else qa.cache.hits, caught)

    def answer(
        self,
        model: str | None,
        video: str | Path | None,
        question: str | None,
        options: Sequence[str],
        frames: Any,
        keyframes: Any,
        progress: Progress = _quiet,
        fps: Any = None,
    ) -> AnswerResult:
        """``fps`` (frames a second; 0 or None: ``frames`` frames) samples a long video by its length."""
        video = check_video(video)
        check_question(question, options)
        from sevila.plots import answer_figure

        with self._request(model, progress) as request:
            progress(0.2, "reading the video, scoring its frames and answering")
            rate = as_rate(fps)
            answer = request.qa.predict(
                video,
                question,
                list(options),
                num_frames=None if rate is not None else as_count(frames),
                fps=rate,
                num_keyframes=as_count(keyframes),
            )
            progress(0.8, "drawing the keyframes and the frame scores")
            thumbnails = keyframe_thumbnails(answer, video, self.backend)
            figure = answer_figure(answer)
            seconds, from_cache, notes = request.finish()
        return AnswerResult(answer, thumbnails, figure, seconds, from_cache, notes)

    def find_moments(
        self,
        model: str | None,
        video: str | Path | None,
        query: str | None,
        frames: Any,
        progress: Progress = _quiet,
        fps: Any = None,
    ) -> MomentsResult:
        video = check_video(video)
        query = check_query(query)
        from sevila.plots import localization_figure

        with self._request(model, progress) as request:
            progress(0.2, "reading the video and scoring its frames")
            rate = as_rate(fps)
            localization = request.qa.localize(
                video, query, num_frames=None if rate is not None else as_count(frames), fps=rate
            )
            progress(0.8, "drawing the frame scores")
            figure = localization_figure(localization)
            seconds, from_cache, notes = request.finish()
        return MomentsResult(localization, figure, seconds, from_cache, notes)


@dataclass
class _Request:
    qa: Any  # sevila.inference.VideoQA
    start: float
    hits_before: int | None  # the feature cache's hits when the request began; None: no cache
    caught: list[warnings.WarningMessage]

    def finish(self) -> tuple[float, bool | None, list[str]]:
        """Seconds since the start, whether the frames came from the feature cache, the warnings as lines."""
        from_cache = None if self.hits_before is None else self.qa.cache.hits > self.hits_before
        return time.perf_counter() - self.start, from_cache, _lines(self.caught)


def _lines(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    lines: list[str] = []
    for warning in caught:
        line = " ".join(str(warning.message).split())
        if line not in lines:
            lines.append(line)
    return lines


__all__ = [
    "AnswerResult",
    "AppUnavailable",
    "DEMO_LABEL",
    "DEMO_MODEL",
    "Example",
    "MomentsResult",
    "Service",
    "answer_html",
    "as_count",
    "bundled_example",
    "check_question",
    "error_html",
    "error_message",
    "keyframe_thumbnails",
    "moment_rows",
    "moments_html",
    "require_gradio",
    "visible_options",
]
