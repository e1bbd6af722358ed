"""The package's layering, checked: every import of every module of ``src/sevila`` (module level and inside
function bodies, ``importlib.import_module("sevila...")`` included) must follow an arrow `ROOMS` allows.

`ROOMS` is the one source of truth: docs/architecture.md's rooms table is generated from it
(``python tests/test_layering.py`` rewrites it) and `test_the_docs_table_is_this_table` keeps them equal.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Room:
    name: str
    modules: tuple[str, ...]  # dotted prefixes; a module belongs to the room of its longest matching prefix
    owns: str
    may_import: tuple[str, ...]  # other rooms (a room always imports its own modules)


# From the bottom up: a room may import only rooms listed before it (checked below), so arrows point one way.
ROOMS = [
    Room(
        "config",
        ("sevila.config", "sevila.prompts"),
        "`SeViLAConfig` (sizes, frame counts, token words, prefixes) with presets `paper`, `mid`, `tiny`, and "
        "the transformers configs it builds (`config.py`); the exact prompt strings of every dataset (pure "
        "functions, no torch; `prompts.py`)",
        (),
    ),
    Room(
        "utils",
        ("sevila.utils",),
        "the few shared helpers: atomic file writes (`io`: fsync, normal file modes), `CheckpointError`, grouping a "
        "batch by a key (`batching`), sizes such as `10GB` (`sizes`)",
        (),
    ),
    Room(
        "hub",
        ("sevila.hub",),
        "resolving names, local directories and Hugging Face hub ids to a directory; the one registry of "
        "named models (`NAMED_MODELS`: `demo`, shipped as package data in `sevila/assets/demo/`)",
        ("utils",),
    ),
    Room(
        "model",
        ("sevila.model",),
        "`SeViLA` (`sevila.py`), one `VisualBranch` (`branch.py`), T5 input layouts (`layouts.py`), decoder-step "
        "scoring (`scoring.py`), tokenisation with the saved `tokenizer.json` pipeline (`text.py`), precision "
        "modes (`precision.py`), result types (`outputs.py`), the frozen-ViT memo for training "
        "(`vision_memo.py`), our weight format: safetensors reader and sharded writer, `save_pretrained` / "
        "`from_pretrained` built on the meta device in each part's dtype (`weights.py`)",
        ("config", "utils", "hub"),
    ),
    Room(
        "convert",
        ("sevila.convert",),
        "foreign weights in, each with its documented key map: transformers BLIP-2 (`blip2.py`: `from_blip2`, "
        "`config_from_blip2`), the original LAVIS `.pth` files (`lavis.py`: `load_lavis_checkpoint`, the "
        "streamed `convert_original_checkpoint` behind `sevila convert`)",
        ("config", "utils", "hub", "model"),
    ),
    Room(
        "loading",
        ("sevila.loading",),
        "`load_model`: a named model, our format or a BLIP-2 by one name, ready for inference",
        ("hub", "model", "convert"),
    ),
    Room(
        "video",
        ("sevila.video",),
        "decoding (PyAV by default; decord, torchcodec optional), frame-index sampling, image transforms",
        ("config", "utils"),
    ),
    Room(
        "data",
        ("sevila.data",),
        "unified record types and JSONL I/O with positioned errors, one table of datasets "
        "(`records.DATASET_TABLE`: each one's record kind, prompt style and metrics), one converter per dataset "
        "(no torch), the original project's JSON format, the torch `Dataset` and collate",
        ("config", "utils", "video"),
    ),
    Room(
        "features",
        ("sevila.features",),
        "the on-disk per-video feature cache (key: video bytes, sampling, weights, precision; checksummed entries, "
        "an LRU size limit) and `encode_video`",
        ("config", "utils", "model", "video"),
    ),
    Room(
        "moments",
        ("sevila.moments",),
        "frame scores → moments and per-clip highlight scores, the documented merging rule (numpy only)",
        (),
    ),
    Room(
        "inference",
        ("sevila.inference", "sevila.streaming"),
        "the Python API `VideoQA` (`load`, `predict`, `predict_many`, `localize`; frames by count or `fps=`) and "
        "batched answering (`inference.py`); long videos scored chunk by chunk with bounded memory (`streaming.py`)",
        ("config", "utils", "model", "loading", "video", "features", "moments"),
    ),
    Room(
        "plots",
        ("sevila.plots",),
        "pictures of results with matplotlib (optional, `sevila[plot]`; imported only when a plot is drawn): the "
        "frame-score curve with keyframes marked and their thumbnails, or with the moments shaded",
        ("video", "moments"),
    ),
    Room(
        "metrics",
        ("sevila.evaluate.metrics",),
        "QA accuracy by type, QVHighlights moment retrieval and highlights, NExT-GQA grounding — numpy only, on "
        "records and prediction files",
        ("utils", "data", "moments"),
    ),
    Room(
        "evaluate",
        ("sevila.evaluate",),
        "running a split (`runner`: batched, sharded under torchrun, resumable: failed rows retried, other settings "
        "refused, one writer by lock), prediction files and their settings header, the summary `sevila eval` reports",
        ("config", "utils", "model", "video", "data", "features", "moments", "inference", "metrics"),
    ),
    Room(
        "train",
        ("sevila.train",),
        "the three stages as recipes over one loop (Accelerate), config files, stage starts, resumable "
        "checkpoints, logging",
        ("config", "utils", "hub", "model", "convert", "loading", "video", "data", "features", "metrics"),
    ),
    Room(
        "integrations",
        ("sevila.integrations",),
        "where SeViLA meets other tools: transformers' `AutoConfig` registration of `model_type: sevila` "
        "(`hf_config`, hooked in by `import sevila` without importing transformers) and the lmms-eval model "
        "adapter (`lmms_eval`, optional `sevila[lmms-eval]`)",
        ("config", "utils", "hub", "model", "loading", "video", "features", "inference"),
    ),
    Room(
        "package",
        ("sevila",),  # sevila/__init__.py alone
        "`sevila.SeViLA` (imported lazily), `SeViLAConfig`, and the `AutoConfig` registration hook",
        ("config", "model", "integrations"),
    ),
    Room(
        "app",
        ("sevila.app",),
        "the web page of `sevila app` (optional, `sevila[app]`, Gradio): plain functions and `Service` without "
        "Gradio (`logic.py`: option rows, models by name, answers, moments, one-line errors), the page and "
        "serving it (`page.py`); nothing of the library imports it",
        ("config", "utils", "hub", "video", "features", "inference", "plots"),
    ),
    Room(
        "cli",
        ("sevila.cli",),
        "the `sevila` console command: one thin module per sub-command",
        (
            "config",
            "utils",
            "hub",
            "model",
            "convert",
            "loading",
            "video",
            "data",
            "features",
            "moments",
            "inference",
            "plots",
            "metrics",
            "evaluate",
            "train",
            "package",
            "app",
        ),
    ),
]
ROOM = {room.name: room for room in ROOMS}

# Finer rules inside an allowed arrow: (room, modules it must not import, why).
NARROWER = [
    ("metrics", "sevila.data.converters", "metrics read records; converting a release file is the caller's job"),
    ("metrics", "sevila.data.dataset", "metrics never import torch"),
]

# The toy world (synthetic videos, the demo-model builder) is its own package, never imported by the library;
# only `sevila synth` reaches it, inside its function (so `sevila --help` and every other command stay free of it).
TOY = ("sevila_toy", "sevila.synth", "sevila.demo", "sevila.video.synthetic")
TOY_ALLOWED_LAZILY = ("sevila.cli.synth",)

# Modules that must not import torch or its stack at all (checked in the source, then by importing them).
TORCH = ("torch", "torchvision", "transformers", "safetensors", "accelerate", "tokenizers", "torchcodec", "decord")
TORCH_FREE = (
    "sevila.utils",
    "sevila.hub",
    "sevila.moments",
    "sevila.evaluate.metrics",
    "sevila.prompts",
    "sevila.data.records",
    "sevila.data.sources",
    "sevila.data.converters",
    "sevila.data.sevila_format",
)


# ---------------------------------------------------------------------------------------------- reading imports
@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    source: str  # the importing module
    target: str  # the imported module (``from a import b``: ``a.b`` if that is a module of the tree, else ``a``)
    lazy: bool  # inside a function body


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(package: str = "sevila") -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


KNOWN = {module_name(p) for p in SRC.rglob("*.py")}


def _is_ours(module: str) -> bool:
    return module == "sevila" or module.startswith("sevila.")


def _string_prefix(node: ast.expr) -> str | None:
    """The module named by a constant string, or the constant start of an f-string up to its last dot."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value).rpartition(".")[0] or None
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: Path):
        self.path, self.module, self.depth = path, module_name(path), 0
        self.package = self.module if path.name == "__init__.py" else self.module.rpartition(".")[0]
        self.found: list[Import] = []

    def _add(self, node: ast.AST, target: str) -> None:
        self.found.append(Import(self.path, node.lineno, self.module, target, self.depth > 0))

    def visit_FunctionDef(self, node):  # noqa: N802
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815
    visit_Lambda = visit_FunctionDef  # noqa: N815

    def visit_Import(self, node):  # noqa: N802
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node):  # noqa: N802
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:  # a submodule (from sevila import prompts) or a name of the module
            self._add(node, f"{module}.{alias.name}" if f"{module}.{alias.name}" in KNOWN else module)

    def visit_Call(self, node):  # noqa: N802
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            target = _string_prefix(node.args[0])
            if target:
                self._add(node, target)
        self.generic_visit(node)


def imports_of(path: Path) -> list[Import]:
    visitor = _Visitor(path)
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return visitor.found


def all_imports() -> list[Import]:
    return [found for path in source_files() for found in imports_of(path)]


def _matches(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def room_of(module: str) -> str | None:
    best, length = None, -1
    for room in ROOMS:
        for prefix in room.modules:
            exact_only = prefix == "sevila"  # the package room is sevila/__init__.py, not everything under it
            if (module == prefix if exact_only else _matches(module, prefix)) and len(prefix) > length:
                best, length = room.name, len(prefix)
    return best


def _where(found: Import) -> str:
    return f"{found.path.relative_to(ROOT)}:{found.line}"


# ---------------------------------------------------------------------------------------------- the tests
def test_the_table_points_one_way():
    """Each room imports only rooms listed before it, so no two rooms can import each other."""
    order = [room.name for room in ROOMS]
    for room in ROOMS:
        for other in room.may_import:
            assert other in ROOM, f"ROOMS: {room.name} may import {other!r}, which is not a room"
            assert order.index(other) < order.index(room.name), f"ROOMS: {room.name} → {other} points up the table"


def test_every_module_has_a_room():
    lost = [
        module_name(p) for p in source_files() if room_of(module_name(p)) is None and not _matches(module_name(p), TOY)
    ]
    assert not lost, f"modules in no room of tests/test_layering.py's ROOMS: {lost}"


def test_no_import_the_architecture_forbids():
    problems = []
    for found in all_imports():
        if not _is_ours(found.target) or _matches(found.target, TOY):
            continue  # third-party and the standard library; the toy world has its own test
        source, target = room_of(found.source), room_of(found.target)
        if source is None or _matches(found.source, TOY):
            continue  # reported by test_every_module_has_a_room (or the toy's own modules)
        if found.target not in KNOWN:
            problems.append(f"{_where(found)}: {found.source} imports {found.target}, which is not a module of src/")
        elif target is None:
            problems.append(f"{_where(found)}: {found.source} imports {found.target}, which is in no room")
        elif source != target and target not in ROOM[source].may_import:
            allowed = ", ".join(ROOM[source].may_import) or "nothing"
            problems.append(
                f"{_where(found)}: {found.source} imports {found.target}: "
                f"{source} → {target} is forbidden ({source} may import: {allowed})"
            )
        for room, forbidden, why in NARROWER:
            if source == room and _matches(found.target, forbidden):
                problems.append(
                    f"{_where(found)}: {found.source} imports {found.target}: {room} → {forbidden} is forbidden ({why})"
                )
    assert not problems, "imports against the architecture (tests/test_layering.py ROOMS):\n" + "\n".join(problems)


def test_the_library_never_imports_the_toy_world():
    problems = []
    for found in all_imports():
        if _matches(found.target, TOY) and not _matches(found.source, TOY):
            if found.source in TOY_ALLOWED_LAZILY and found.lazy:
                continue
            how = "at module level" if not found.lazy else "(only sevila.cli.synth may, inside its function)"
            problems.append(f"{_where(found)}: {found.source} imports {found.target} {how}: sevila → toy is forbidden")
    toy_modules = [module_name(p) for p in source_files() if _matches(module_name(p), TOY)]
    assert not toy_modules, f"the toy world is still inside the library: {toy_modules}"
    assert not problems, "\n".join(problems)


def test_torch_free_modules_import_no_torch():
    problems = [
        f"{_where(found)}: {found.source} imports {found.target}, but must stay free of torch"
        for found in all_imports()
        if _matches(found.source, TORCH_FREE) and found.target.split(".")[0] in TORCH
    ]
    assert not problems, "\n".join(problems)
    modules = sorted(module_name(p) for p in source_files() if _matches(module_name(p), TORCH_FREE))
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in {TORCH!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"importing the torch-free modules loaded {loaded}"


@pytest.mark.slow
def test_importing_the_library_loads_nothing_of_the_toy_world():
    code = (
        "import sys, sevila, sevila.inference, sevila.cli\n"
        "sevila.cli.build_parser()\n"  # every sub-command module, as `sevila --help` loads them
        f"print(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {TOY!r})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"`import sevila.inference, sevila.cli` loaded toy modules: {loaded}"


@pytest.mark.slow
def test_the_library_imports_nothing_of_the_toy():
    code = (
        "import sys, sevila, sevila.inference, sevila.cli, sevila.data, sevila.evaluate.summary; "
        "sevila.cli.build_parser(); "
        "toy = [m for m in sys.modules if m.split('.')[0] == 'sevila_toy']; assert not toy, toy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- the docs' table
BEGIN = "<!-- rooms: generated from tests/test_layering.py (python tests/test_layering.py); do not edit by hand -->"
END = "<!-- end of rooms -->"


def _module_cell(prefix: str) -> str:
    if prefix == "sevila":
        return "`sevila/__init__.py`"
    path = SRC / prefix.replace(".", "/")
    return f"`{path.relative_to(SRC).as_posix()}/`" if path.is_dir() else f"`{path.relative_to(SRC).as_posix()}.py`"


def rooms_table() -> str:
    lines = ["| room | modules | owns | may import |", "|---|---|---|---|"]
    for room in ROOMS:
        modules = ", ".join(_module_cell(p) for p in room.modules)
        allowed = ", ".join(f"`{r}`" for r in room.may_import) or "nothing of sevila"
        lines.append(f"| **{room.name}** | {modules} | {room.owns} | {allowed} |")
    return "\n".join(lines)


def _doc_block(text: str) -> str:
    assert BEGIN in text and END in text, f"{DOC}: the rooms table markers are missing ({BEGIN!r} ... {END!r})"
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()


def test_the_docs_table_is_this_table():
    assert _doc_block(DOC.read_text(encoding="utf-8")) == rooms_table(), (
        f"{DOC.relative_to(ROOT)}'s rooms table differs from ROOMS; regenerate it with `python tests/test_layering.py`"
    )


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    _doc_block(text)
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + rooms_table() + "\n" + text[end:], encoding="utf-8")
    print(f"wrote the rooms table into {DOC.relative_to(ROOT)}")
