"""`sevila app` used as a person uses it: the command serves the page on a free localhost port and headless
Chromium (the system's ``chromium``, driven by Playwright; nothing is downloaded) uploads a video, types the
question and options, clicks Answer and reads the page.

Every request the page makes outside localhost is refused and counted: the page must work offline.

``SEVILA_APP_SCREENSHOT=docs/app.png python -m pytest tests/test_app_browser.py`` also saves the answered page
(the README's picture). The Answer→result times of the first and the second question are printed; so does
``python -m benchmarks.bench_app``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from sevila.app.logic import bundled_example
from sevila.hub import DEMO_DIR

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = bundled_example()
CHROMIUM = os.environ.get("SEVILA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1000, "height": 900}
RESULT = "#answer-text .sevila-verdict, #answer-error .sevila-error"
LETTERS = "abcde"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import gradio  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed: pip install -e '.[app,test]'"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set SEVILA_CHROMIUM)"
    if EXAMPLE is None or not (DEMO_DIR / "model" / "config.json").is_file():
        return "the demo model or its example is not in this checkout (docs/demo.md)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(cache_dir: Path, timeout: float = 180.0):
    """``sevila app`` on a free localhost port, as a separate process; yields its URL."""
    port = free_port()
    env = {**os.environ, "SEVILA_CACHE_DIR": str(cache_dir), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sevila.cli", "app", "--port", str(port), "--device", "cpu"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        deadline = time.monotonic() + timeout
        for line in process.stdout:  # the command prints its URL once it serves
            seen.append(line)
            if line.startswith("sevila app: serving "):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"sevila app did not start in {timeout:.0f} s:\n{''.join(seen)}")
        else:
            raise AssertionError(f"sevila app exited ({process.wait()}):\n{''.join(seen)}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def chromium():
    """Headless Chromium with a fresh profile; yields (context, the URLs it tried to reach off this machine)."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def route(route):
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "http://localhost", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT
        )
        try:
            context.route("**/*", route)
            yield context, outside
        finally:
            context.close()


def open_page(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#answer-button", timeout=60_000)
    return page


def upload(page, path: Path) -> None:
    """Choose ``path`` in the video box (removing the video shown first, as a person does with its ✕)."""
    if page.locator("#video video").count():
        page.locator("#video button[aria-label='Clear']").first.click()
    page.locator("#video input[type=file]").set_input_files(str(path))
    page.locator(f'#video video[src*="{path.name}"]').wait_for(state="attached", timeout=60_000)


def textbox(page, elem_id: str):
    return page.locator(f"#{elem_id}").get_by_role("textbox")


def set_options(page, options: list[str]) -> None:
    """Add or remove option rows until there are as many as ``options``, then type them."""
    shown = sum(textbox(page, f"option-{x}").is_visible() for x in LETTERS)
    while shown < len(options):
        page.click("#add-option")
        textbox(page, f"option-{LETTERS[shown]}").wait_for(state="visible", timeout=10_000)
        shown += 1
    while shown > len(options):
        page.click("#remove-option")
        textbox(page, f"option-{LETTERS[shown - 1]}").wait_for(state="hidden", timeout=10_000)
        shown -= 1
    for letter, option in zip(LETTERS, options):
        textbox(page, f"option-{letter}").fill(option)


def ask(page, question: str, options: list[str]) -> float:
    """Type the question and options, click Answer; the seconds until the answer (or the error) is shown."""
    textbox(page, "question").fill(question)
    set_options(page, options)
    shown = page.locator(RESULT)
    previous = shown.element_handle() if shown.count() else None
    start = time.perf_counter()
    page.click("#answer-button")
    if previous is not None:  # the click first clears the last result
        previous.wait_for_element_state("hidden", timeout=30_000)
    page.wait_for_selector(RESULT, state="visible", timeout=300_000)
    return time.perf_counter() - start


def expected_answer():
    """What the library itself answers to the example question (the page's settings: the model's defaults)."""
    from sevila.inference import VideoQA

    return VideoQA.load("demo", device="cpu", cache=False).predict(EXAMPLE.video, EXAMPLE.question, EXAMPLE.options)


def cli_error(path: Path) -> str:
    """The line `sevila answer` prints for the example question about ``path``, after ``sevila answer: ``, the
    file named as the page names it (by its name)."""
    run = subprocess.run(
        [sys.executable, "-m", "sevila.cli", "answer", path.name, "-q", EXAMPLE.question]
        + [arg for option in EXAMPLE.options for arg in ("-o", option)]
        + ["--model", "demo", "--device", "cpu", "--no-cache"],
        cwd=path.parent,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2, run.stderr
    return run.stderr.strip().removeprefix("sevila answer: ")


@pytest.fixture(scope="module")
def browser_and_app(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with running_app(tmp_path_factory.mktemp("cache")) as url, chromium() as (context, outside):
        yield url, context, outside


def test_answer_the_example_in_the_browser(browser_and_app, capsys):
    url, context, outside = browser_and_app
    expected = expected_answer()
    page = open_page(context, url)
    upload(page, EXAMPLE.video)

    first = ask(page, EXAMPLE.question, EXAMPLE.options)
    assert page.inner_text("#answer-error") == ""
    assert page.inner_text("#answer-text .sevila-verdict") == f"Answer: ({expected.letter}) {expected.text}"
    assert "read and encoded" in page.inner_text("#answer-text .sevila-timing")
    thumbnails = page.locator("#keyframe-thumbnails img")
    assert thumbnails.count() == len(expected.keyframes) == 4
    for n, t in enumerate(expected.keyframe_times):
        assert f"keyframe {n + 1}: {t:.2f} s" in page.inner_text("#keyframe-thumbnails")
    plot = page.locator("#answer-plot img")
    assert plot.count() == 1 and plot.evaluate("img => img.naturalWidth") > 400  # the rendered frame-score curve

    second = ask(page, EXAMPLE.question, EXAMPLE.options)
    assert page.inner_text("#answer-text .sevila-verdict") == f"Answer: ({expected.letter}) {expected.text}"
    assert "feature cache" in page.inner_text("#answer-text .sevila-timing")
    assert page.locator("#keyframe-thumbnails img").count() == 4

    screenshot = os.environ.get("SEVILA_APP_SCREENSHOT")
    if screenshot:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=screenshot, full_page=True)
    with capsys.disabled():
        print(f"\nsevila app, example video: Answer -> result {first:.2f} s (first question), {second:.2f} s (second)")
    assert outside == [], f"the page tried to reach the internet: {outside}"


def test_a_broken_video_shows_the_error_and_the_app_keeps_serving(browser_and_app, tmp_path):
    url, context, outside = browser_and_app
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video\n" * 50)
    page = open_page(context, url)
    upload(page, broken)
    ask(page, EXAMPLE.question, EXAMPLE.options)
    assert page.inner_text("#answer-error").strip() == cli_error(broken)
    assert page.inner_text("#answer-error").startswith("error: broken.mp4: ")
    assert page.locator("#answer-text .sevila-verdict").count() == 0

    set_options(page, [EXAMPLE.options[0], " "])  # a bad option list: the same line as the command line's
    ask(page, EXAMPLE.question, [EXAMPLE.options[0], " "])
    assert page.inner_text("#answer-error").strip() == "error: option 2 is empty (only whitespace)"

    upload(page, EXAMPLE.video)
    ask(page, EXAMPLE.question, EXAMPLE.options)
    expected = expected_answer()
    assert page.inner_text("#answer-error") == ""
    assert page.inner_text("#answer-text .sevila-verdict") == f"Answer: ({expected.letter}) {expected.text}"
    assert page.locator("#keyframe-thumbnails img").count() == 4
    assert outside == [], f"the page tried to reach the internet: {outside}"


def test_find_moments_of_the_bundled_example(browser_and_app):
    from sevila.inference import VideoQA

    url, context, outside = browser_and_app
    query = "a red triangle"
    expected = VideoQA.load("demo", device="cpu", cache=False).localize(EXAMPLE.video, query)
    page = open_page(context, url)
    page.click("#use-example")  # the bundled video, question and options, without an upload
    page.locator(f'#video video[src*="{EXAMPLE.video.name}"]').wait_for(state="attached", timeout=60_000)
    assert textbox(page, "question").input_value() == EXAMPLE.question
    page.get_by_role("tab", name="Find moments").click()
    textbox(page, "query").fill(query)
    page.click("#moments-button")
    page.wait_for_selector("#moments-text .sevila-verdict, #moments-error .sevila-error", timeout=300_000)
    assert page.inner_text("#moments-error") == ""
    count = len(expected.moments)
    assert page.inner_text("#moments-text .sevila-verdict").startswith(f"{count} moment" if count else "no moment")
    rows = page.locator("#moments-table [role=row]:has([role=gridcell])")
    if count:  # the table's rows are drawn after the summary
        rows.nth(count - 1).wait_for(state="attached", timeout=30_000)
    cells = [rows.nth(i).locator("[role=gridcell]").all_inner_texts() for i in range(rows.count())]
    shown = [[float(cell) for cell in row] for row in cells if any(cell.strip() for cell in row)]
    assert shown == [[round(s, 2), round(e, 2), round(score, 3)] for s, e, score in expected.moments]
    assert page.locator("#moments-plot img").count() == 1
    assert outside == [], f"the page tried to reach the internet: {outside}"
