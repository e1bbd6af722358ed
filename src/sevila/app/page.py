"""The Gradio page of `sevila app`: widgets wired to `sevila.app.logic`, and serving it.

The page needs nothing from the internet: analytics and Gradio's update check are off, its fonts are
Gradio's bundled ones, and it is served on localhost unless ``--host`` or ``--share`` say otherwise.
"""

from __future__ import annotations

import logging
import os
import time

# Gradio's default for every page of this process: no usage reports and no version check to api.gradio.app
# (the page below also turns them off itself, for a Gradio imported before this module).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from sevila.app.logic import (  # noqa: E402
    DEMO_LABEL,
    DEMO_MODEL,
    MAX_OPTIONS,
    MIN_OPTIONS,
    USER_ERRORS,
    Service,
    answer_html,
    bundled_example,
    error_html,
    error_message,
    moment_rows,
    moments_html,
    visible_options,
)
from sevila.hub import DEMO_DIR  # noqa: E402
from sevila.prompts import OPTION_LETTERS  # noqa: E402

logger = logging.getLogger(__name__)

CSS = """
.sevila-error { color: #b91c1c; font-weight: 600; margin: 0.25em 0; }
.sevila-verdict { font-size: 1.25em; font-weight: 600; margin: 0.25em 0; }
.sevila-chosen { font-weight: 600; }
.sevila-timing, .sevila-note { color: #6b7280; margin: 0.25em 0; }
.sevila-result table { width: auto; }
"""
MOMENT_HEADERS = ["start (s)", "end (s)", "score"]


def build_page(service: Service, *, model: str = DEMO_MODEL, frames: int = 32, keyframes: int = 4) -> gr.Blocks:
    """The page. ``model`` is preselected; ``frames`` and ``keyframes`` are the settings' starting values."""
    example = bundled_example()
    choices = [(DEMO_LABEL, DEMO_MODEL)] + ([(model, model)] if model != DEMO_MODEL else [])
    with gr.Blocks(title="SeViLA", analytics_enabled=False) as page:
        gr.Markdown(
            "## SeViLA: find the frames a question is about, then answer it\n"
            "The localizer scores every sampled frame for the question and keeps the best as **keyframes**; "
            "the answerer reads the keyframes and picks an option."
        )
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], elem_id="video", height=280)
                use_example = gr.Button(
                    "Use the bundled example", elem_id="use-example", size="sm", visible=example is not None
                )
            with gr.Column(scale=1):
                model_in = gr.Dropdown(
                    choices=choices,
                    value=model,
                    allow_custom_value=True,
                    label="Model",
                    info="a name, a model directory or a Hugging Face hub id",
                    elem_id="model",
                )
                frames_in = gr.Slider(
                    1, 128, value=frames, step=1, label="Candidate frames", elem_id="frames",
                    info="sampled uniformly from the video; the localizer scores each",
                )  # fmt: skip
                fps_in = gr.Number(
                    value=0, minimum=0, label="Frames per second", elem_id="fps",
                    info="0: the candidate frames above; e.g. 1 for a long video, scored chunk by chunk",
                )  # fmt: skip
                keyframes_in = gr.Slider(
                    1, 16, value=keyframes, step=1, label="Keyframes", elem_id="keyframes",
                    info="the best-scoring frames, which the answerer sees",
                )  # fmt: skip
        with gr.Tabs():
            with gr.Tab("Answer", elem_id="answer-tab"):
                question = gr.Textbox(label="Question", elem_id="question", placeholder="What shape appeared?")
                count = gr.State(MIN_OPTIONS)
                option_rows = [
                    gr.Textbox(label=f"Option {letter}", visible=i < MIN_OPTIONS, elem_id=f"option-{letter.lower()}")
                    for i, letter in enumerate(OPTION_LETTERS[:MAX_OPTIONS])
                ]
                with gr.Row():
                    add = gr.Button("Add an option", size="sm", elem_id="add-option")
                    remove = gr.Button("Remove the last option", size="sm", elem_id="remove-option")
                ask = gr.Button("Answer", variant="primary", elem_id="answer-button")
                answer_error = gr.HTML(elem_id="answer-error")
                verdict = gr.HTML(elem_id="answer-text")
                gallery = gr.Gallery(
                    label="Keyframes", columns=4, height=200, object_fit="contain", elem_id="keyframe-thumbnails"
                )
                answer_plot = gr.Plot(
                    label="Localizer score of every sampled frame", format="png", elem_id="answer-plot"
                )
            with gr.Tab("Find moments", elem_id="moments-tab"):
                query = gr.Textbox(label="Query", elem_id="query", placeholder="a red triangle")
                find = gr.Button("Find moments", variant="primary", elem_id="moments-button")
                moments_error = gr.HTML(elem_id="moments-error")
                summary = gr.HTML(elem_id="moments-text")
                moments_plot = gr.Plot(label="Moments", format="png", elem_id="moments-plot")
                table = gr.Dataframe(headers=MOMENT_HEADERS, interactive=False, elem_id="moments-table")

        def rows_for(n: int):
            return [gr.Textbox(visible=i < n) for i in range(MAX_OPTIONS)]

        def add_row(n: int):
            n = min(MAX_OPTIONS, n + 1)
            return [n, *rows_for(n)]

        def remove_row(n: int):
            n = max(MIN_OPTIONS, n - 1)
            # The removed row is emptied, so adding it back starts blank.
            return [n, *[gr.Textbox(visible=i < n, **({"value": ""} if i >= n else {})) for i in range(MAX_OPTIONS)]]

        add.click(add_row, count, [count, *option_rows], queue=False)
        remove.click(remove_row, count, [count, *option_rows], queue=False)

        if example is not None:

            def fill_example():
                n = min(MAX_OPTIONS, len(example.options))
                values = [*example.options[:n], *[""] * (MAX_OPTIONS - n)]
                rows = [gr.Textbox(value=v, visible=i < n) for i, v in enumerate(values)]
                return [str(example.video), example.question, n, *rows]

            use_example.click(fill_example, None, [video, question, count, *option_rows], queue=False)

        def clear_answer():
            return "", "", None, None

        # Gradio shows a progress bar for the handler whose parameter defaults to gr.Progress() (hence B008).
        def on_answer(
            model_name,
            video_path,
            text,
            n,
            a,
            b,
            c,
            d,
            e,
            n_frames,
            n_keyframes,
            rate,
            progress=gr.Progress(),  # noqa: B008
        ):
            try:
                result = service.answer(
                    model_name,
                    video_path,
                    text,
                    visible_options([a, b, c, d, e], n),
                    n_frames,
                    n_keyframes,
                    progress=lambda f, m: progress(f, desc=m),
                    fps=rate,
                )
            except Exception as err:  # the page reports it and keeps serving
                if not _is_user_error(err):
                    logger.exception("answering failed")
                return error_html(error_message(err, video_path)), "", None, None
            return "", answer_html(result), result.thumbnails, result.figure

        answer_outputs = [answer_error, verdict, gallery, answer_plot]
        ask.click(clear_answer, None, answer_outputs, queue=False).then(
            on_answer,
            [model_in, video, question, count, *option_rows, frames_in, keyframes_in, fps_in],
            answer_outputs,
            concurrency_limit=1,
            show_progress_on=verdict,  # one progress bar, where the answer will appear
        )

        def clear_moments():
            return "", "", None, None

        def on_moments(model_name, video_path, text, n_frames, rate, progress=gr.Progress()):  # noqa: B008
            try:
                result = service.find_moments(
                    model_name, video_path, text, n_frames, progress=lambda f, m: progress(f, desc=m), fps=rate
                )
            except Exception as err:
                if not _is_user_error(err):
                    logger.exception("finding moments failed")
                return error_html(error_message(err, video_path)), "", None, None
            return "", moments_html(result), result.figure, moment_rows(result.localization)

        moments_outputs = [moments_error, summary, moments_plot, table]
        find.click(clear_moments, None, moments_outputs, queue=False).then(
            on_moments,
            [model_in, video, query, frames_in, fps_in],
            moments_outputs,
            concurrency_limit=1,
            show_progress_on=summary,
        )
    return page


def _is_user_error(err: BaseException) -> bool:
    return isinstance(err, USER_ERRORS)


def serve(
    service: Service,
    *,
    model: str = DEMO_MODEL,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    block: bool = True,
):
    """Load ``model`` (so the first question does not wait for it), build the page and serve it.

    ``block=False`` returns the running page (tests, notebooks); close it with ``page.close()``.
    """
    qa = service.model(model)
    page = build_page(service, model=model, frames=qa.num_frames, keyframes=qa.num_keyframes)
    page.queue(default_concurrency_limit=1)
    _, local_url, share_url = page.launch(
        server_name=host,
        server_port=port,
        share=share,
        allowed_paths=[str(DEMO_DIR)],  # the bundled example video, which lives in the installed package
        ssr_mode=False,  # server-side rendering would need Node.js
        show_error=False,  # errors are shown in the page by the handlers, as one line
        css=CSS,
        footer_links=[],
        quiet=True,  # Gradio's own lines suggest editing launch(); ours name the command's flags
        prevent_thread_lock=True,
    )
    print(f"sevila app: serving {local_url}" + (f" and {share_url}" if share_url else ""), flush=True)
    if block:
        print("sevila app: Ctrl-C stops it", flush=True)
        try:
            while page.is_running:
                time.sleep(0.2)
        finally:  # Ctrl-C reaches the command, which reports it as every command does
            page.close()
    return page
