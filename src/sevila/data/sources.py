"""Reading raw annotation files with errors that say where: file, line (or record index) and field.

Every reader here yields `Row`s: a mapping plus its position in the file. A `Row` hands out typed fields
and turns any problem into a `DataError` whose message names the file, the position and the field, so a
malformed release file is fixed in one look instead of a debugging session.

Files are opened by `open_input`: a UTF-8 byte-order mark is skipped and CRLF line ends are accepted; a
path that cannot be read (a directory, no permission, a symlink loop, a name too long, a device) is a
one-line `DataError` naming it. A missing file stays a `FileNotFoundError`.

No torch here: converters and the record I/O depend on this module.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, TypeVar

from sevila.utils.io import atomic_write_text  # noqa: F401  (re-exported: data.records and sevila_toy write with it)

T = TypeVar("T")

MAX_LINE_BYTES = 64 * 1024 * 1024
"""Longest line a JSON-lines file may have. A record is a few kilobytes; a longer line is not JSON lines
(a whole file on one line, a binary file) and is refused before it is read into memory."""

# The csv module's own cap on one field (128 Ki characters by default) is kept: a field that long in an
# annotation csv is an unbalanced double quote that swallowed the rest of the file, reported as such.


class DataError(ValueError):
    """Malformed annotation input. The message reads ``FILE, line N, field 'x': problem``."""

    def __init__(self, source: str | os.PathLike[str], position: str | None, field: str | None, problem: str):
        self.source = str(source)
        self.position = position
        self.field = field
        self.problem = problem
        parts = [self.source]
        if position:
            parts.append(position)
        if field:
            parts.append(f"field {field!r}")
        super().__init__(", ".join(parts) + ": " + problem)


_OS_PROBLEMS = {
    errno.EISDIR: "is a directory, expected a file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
}


def os_problem(err: OSError) -> str:
    """A short, lower-case description of an `OSError` (no errno number, no repeated path)."""
    return _OS_PROBLEMS.get(err.errno or 0) or (err.strerror or str(err) or type(err).__name__).lower()


@contextlib.contextmanager
def open_input(path: str | os.PathLike[str], *, binary: bool = False, newline: str | None = None) -> Iterator[IO]:
    """Open an annotation file for reading: text as UTF-8 (a byte-order mark skipped), or bytes.

    A directory, a device, an unreadable path, a symlink loop or a too-long name raises `DataError` naming
    the path and the problem; a missing file raises `FileNotFoundError` as `open` does. Pipes are allowed
    (``<(zcat val.jsonl.gz)``).
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            raise DataError(path, None, None, "not a regular file (a device or a socket)")
        f = open(path, "rb") if binary else open(path, encoding="utf-8-sig", newline=newline)  # noqa: SIM115
    except FileNotFoundError:
        raise
    except OSError as err:
        raise DataError(path, None, None, f"cannot read: {os_problem(err)}") from None
    with f:
        try:
            yield f
        except UnicodeDecodeError as err:
            raise DataError(path, None, None, f"not UTF-8 text ({err.reason})") from None
        except OSError as err:
            if isinstance(err, FileNotFoundError):
                raise
            raise DataError(path, None, None, f"cannot read: {os_problem(err)}") from None


def line_position(line: int) -> str:
    """Position of a row in a line-based file (1-based, as editors count)."""
    return f"line {line}"


def index_position(index: int) -> str:
    """Position of an element of a JSON array (0-based, as Python indexes)."""
    return f"record [{index}]"


class Row:
    """One raw record and where it came from; typed accessors raise `DataError` naming the field."""

    def __init__(self, data: Mapping[str, Any], source: str | os.PathLike[str], position: str):
        self.data = data
        self.source = str(source)
        self.position = position

    def error(self, field: str | None, problem: str) -> DataError:
        return DataError(self.source, self.position, field, problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise self.error(key, "missing")
        return self.data[key]

    def str(self, key: str, *, allow_empty: bool = False) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_show(value)}")
        if not allow_empty and not value.strip():
            raise self.error(key, "is empty")
        return value

    def int(self, key: str, *, low: int | None = None, high: int | None = None, from_text: bool = False) -> int:
        """An integer field; with `from_text`, digit strings too (CSV cells, TVQA+'s string answer_idx)."""
        value = self.raw(key)
        if from_text and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_show(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, f"{value} is outside {low}..{high}")
        return value

    def number(self, key: str) -> int | float:
        """A finite JSON number, returned as written (an int stays an int)."""
        return self.check_number(key, self.raw(key))

    def check_number(self, field: str, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field, f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise self.error(field, f"expected a finite number, got {value}")
        return value

    def span(self, field: str, value: Any) -> tuple[int | float, int | float]:
        """A ``[start, end]`` pair of numbers with ``start <= end``."""
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self.error(field, f"expected [start, end], got {_show(value)}")
        start, end = (self.check_number(field, v) for v in value)
        if start > end:
            raise self.error(field, f"start {start} is after end {end}")
        return start, end

    def list(self, key: str) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_show(value)}")
        return value


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, type(None))) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def parse_float(row: Row, field: str, text: str) -> float:
    """A number written as a string (CSV cell, ``"s-e"`` timestamp part)."""
    try:
        value = float(text)
    except ValueError:
        raise row.error(field, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise row.error(field, f"{text!r} is not a finite number")
    return value


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Row]:
    """Rows of a JSON-lines file; blank lines are ignored and a missing final newline is fine.

    A UTF-8 byte-order mark and CRLF line ends are accepted. A line that is not UTF-8, not JSON, not an
    object (a JSON array: an original SeViLA list or a prediction list, not JSON lines) or longer than
    `MAX_LINE_BYTES` is an error naming the file and the line.
    """
    with open_input(path, binary=True) as f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            number += 1
            position = line_position(number)
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(
                    path, position, None, f"line longer than {_size(MAX_LINE_BYTES)}: not a JSON-lines file"
                )
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    path, position, None, f"not UTF-8 text ({err.reason} at byte {err.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                data = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                problem = f"invalid JSON: {err.msg} (column {err.colno})"
                if number == 1 and line.lstrip().startswith("["):
                    problem += "; a JSON array? expected JSON lines (one object per line)"
                raise DataError(path, position, None, problem) from None
            if not isinstance(data, dict):
                problem = f"expected a JSON object, got {_kind(data)}"
                if isinstance(data, list):
                    problem += ": expected JSON lines (one object per line)"
                raise DataError(path, position, None, problem)
            yield Row(data, path, position)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"


def _kind(value: Any) -> str:
    """What a JSON value is, for messages: ``a JSON array``, ``a string "x"``, ``null``..."""
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return _show(value)


def unique_by_qid(rows: Iterable[Row], parse: Callable[[Row], T]) -> Iterator[T]:
    """``parse`` every row; an item whose ``qid`` an earlier row already had is an error naming both rows
    (predictions, answer keys and records are all keyed by qid)."""
    seen: dict[Any, str] = {}
    for row in rows:
        item = parse(row)
        qid = item.qid  # type: ignore[attr-defined]
        if qid in seen:
            raise row.error("qid", f"{qid!r} repeats the qid of {seen[qid]}")
        seen[qid] = row.position
        yield item


def load_json(path: str | os.PathLike[str]) -> Any:
    """A whole-file JSON document; a syntax error is reported with its line."""
    with open_input(path) as f:
        text = f.read()
    if not text.strip():
        raise DataError(path, None, None, "empty file: expected a JSON document")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        problem = f"invalid JSON: {err.msg} (column {err.colno})"
        raise DataError(path, line_position(err.lineno), None, problem) from None


def json_array_rows(path: str | os.PathLike[str], data: Any) -> Iterator[Row]:
    """Rows of a JSON document that must be an array of objects."""
    if not isinstance(data, list):
        raise DataError(path, None, None, f"expected a JSON array of records, got {type(data).__name__}")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise DataError(path, index_position(index), None, f"expected a JSON object, got {_show(item)}")
        yield Row(item, path, index_position(index))


def json_object(path: str | os.PathLike[str], data: Any, what: str) -> dict[str, Any]:
    """A JSON document that must be an object (video maps, grounding files)."""
    if not isinstance(data, dict):
        raise DataError(path, None, None, f"expected a JSON object ({what}), got {type(data).__name__}")
    return data


def read_csv(
    path: str | os.PathLike[str], *, columns: Sequence[str] | None = None, required: Sequence[str] = ()
) -> Iterator[Row]:
    """Rows of a CSV file keyed by its header, or by `columns` for a headerless file.

    `required` header columns are checked first, so a file of the wrong dataset (NExT-GQA's csv given as
    NExT-QA) fails on the missing column instead of on row 1. Quoted fields and both ``\\n`` and ``\\r\\n``
    line endings are handled by the csv module; a row's position is the line it starts on.
    """
    with open_input(path, newline="") as f:
        # strict: a quote left open at the end of the file is an error, not a field running to the end.
        reader = csv.reader(f, strict=True)
        start = 1
        try:
            if columns is None:
                header = next(reader, None)
                if header is None:
                    raise DataError(path, line_position(1), None, "empty file: expected a header row")
                for column in required:
                    if column not in header:
                        raise DataError(path, line_position(1), column, "missing column in the header")
                columns = header
            start = reader.line_num + 1
            for cells in reader:
                position = line_position(start)
                start = reader.line_num + 1
                if not cells:
                    continue
                if len(cells) != len(columns):
                    raise DataError(path, position, None, f"expected {len(columns)} columns, got {len(cells)}")
                yield Row(dict(zip(columns, cells)), path, position)
        except csv.Error as err:
            raise DataError(path, line_position(start), None, _csv_problem(err)) from None


def _csv_problem(err: csv.Error) -> str:
    text = str(err)
    if "field larger than field limit" in text:
        return (
            f"a field longer than {csv.field_size_limit()} characters: an unbalanced double quote "
            "(the field runs on over the following lines)?"
        )
    if "unexpected end of data" in text:
        return "a double quote opened in this row is never closed"
    return f"malformed csv: {text}"
