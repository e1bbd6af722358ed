"""`sevila.utils.io.atomic_write`, the one way sevila writes files others read: whole or not at all, normal
permissions, and every writer goes through it."""

import os
import re
import stat
from pathlib import Path

import pytest

from sevila.utils.io import atomic_write, atomic_write_text

SRC = Path(__file__).resolve().parents[1] / "src" / "sevila"


def test_writes_whole_files_with_the_usual_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new" / "a.txt", "one\r\ntwo\n")
    finally:
        os.umask(previous)
    path = tmp_path / "new" / "a.txt"
    assert path.read_bytes() == b"one\r\ntwo\n"  # written as is: no newline translation
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 & ~umask, not mkstemp's 0o600
    assert os.listdir(tmp_path / "new") == ["a.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_no_other_module_writes_through_its_own_temporary_file():
    """mkstemp / os.replace of files live in sevila/utils/io.py only (train/checkpointing.py swaps directories)."""
    own = {SRC / "utils" / "io.py", SRC / "train" / "checkpointing.py"}
    offenders = [
        f"{path.relative_to(SRC.parent)}:{number}"
        for path in SRC.rglob("*.py")
        if path not in own
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bmkstemp\b|\bos\.replace\(|\bos\.rename\(", line)
    ]
    assert not offenders, f"write files with sevila.utils.io.atomic_write instead: {offenders}"


def test_a_valid_long_file_name_can_be_written(tmp_path):
    name = "p" * 240 + ".jsonl"  # 255 is the usual limit: the temporary name must not grow past it
    atomic_write_text(tmp_path / name, "x")
    assert os.listdir(tmp_path) == [name]
