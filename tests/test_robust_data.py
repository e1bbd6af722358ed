"""Issue 17, item 7 — the malformed annotation corpus: every bad annotation file or path given to
`read_records`, the converters and `sevila prepare` fails with one line naming the file, the line (or record
index) and the field — or is accepted where it should be (a byte-order mark, CRLF line ends). `prepare` never
overwrites one of its inputs and never leaves a half-written output.

Each case asserts the whole message, so a reworded message is a deliberate change of this file.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import sevila.cli as cli
from sevila.data import DataError, convert, read_records, record_to_dict, write_records
from sevila.data import sources as data_sources
from sevila.data.records import MomentRecord, QARecord

QA = record_to_dict(
    QARecord(
        qid="CH_1_0",
        video="1106/4010069381",
        dataset="nextqa",
        question="how do they play?",
        options=["roll.", "tap.", "strum.", "hit.", "pat."],
        answer=0,
        question_type="CH",
    )
)
MOMENT = record_to_dict(
    MomentRecord(
        qid="QVHighlight_1", video="v_0.0_150.0", query="a girl cooks", duration=150, relevant_windows=[[0, 2]]
    )
)


def jsonl(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def one_line(err: BaseException | str) -> str:
    text = str(err).strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


# ------------------------------------------------------------------ read_records: file contents
# (name, file bytes, the message after "<file>, " — or the number of records when the file is accepted)
RECORD_CORPUS: list[tuple[str, bytes, str | int]] = [
    ("empty file", b"", 0),
    ("only blank lines", b"\n \n\r\n", 0),
    ("not JSON", b"hello\n", "line 1: invalid JSON: Expecting value (column 1)"),
    ("truncated object", b'{"kind": "qa"', "line 1: invalid JSON: Expecting ',' delimiter (column 14)"),
    (
        "a JSON array on one line",
        json.dumps([QA]).encode(),
        "line 1: expected a JSON object, got a JSON array: expected JSON lines (one object per line)",
    ),
    (
        "an indented JSON array",
        json.dumps([QA], indent=1).encode(),
        "line 1: invalid JSON: Expecting value (column 2); a JSON array? expected JSON lines (one object per line)",
    ),
    ("a JSON string", b'"CH_1_0"\n', 'line 1: expected a JSON object, got "CH_1_0"'),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + jsonl(QA), 1),
    ("CRLF line ends", jsonl(QA, {**QA, "qid": "CH_1_1"}).replace(b"\n", b"\r\n"), 2),
    ("BOM and CRLF", b"\xef\xbb\xbf" + jsonl(QA, MOMENT).replace(b"\n", b"\r\n"), 2),
    ("no final newline", jsonl(QA, MOMENT).rstrip(b"\n"), 2),
    ("not UTF-8", jsonl(QA) + b'{"qid": "\xff"}\n', "line 2: not UTF-8 text (invalid start byte at byte 10)"),
    (
        "missing kind",
        jsonl({k: v for k, v in QA.items() if k != "kind"}),
        "line 1, field 'kind': missing",
    ),  # fmt: skip
    ("missing options", jsonl({k: v for k, v in QA.items() if k != "options"}), "line 1, field 'options': missing"),
    (
        "missing duration",
        jsonl({k: v for k, v in MOMENT.items() if k != "duration"}),
        "line 1, field 'duration': missing",
    ),  # fmt: skip
    ("unknown field", jsonl({**QA, "colour": "red"}), "line 1, field 'colour': unknown field for a qa record"),
    ("qid a number", jsonl({**QA, "qid": 7}), "line 1, field 'qid': expected a non-empty string, got 7"),
    ("question a number", jsonl({**QA, "question": 5}), "line 1, field 'question': expected a non-empty string, got 5"),
    (
        "options a string",
        jsonl({**QA, "options": "a,b"}),
        "line 1, field 'options': expected a list of 2..5 strings, got 'a,b'",
    ),  # fmt: skip
    (
        "option a number",
        jsonl({**QA, "options": ["a", 2]}),
        "line 1, field 'options[1]': expected a non-empty string, got 2",
    ),  # fmt: skip
    (
        "answer a string",
        jsonl({**QA, "answer": "1"}),
        "line 1, field 'answer': expected null or an index 0..4, got '1'",
    ),  # fmt: skip
    (
        "start a string",
        jsonl({**QA, "start": "3", "end": 4}),
        "line 1, field 'start': expected [start, end] numbers, got ('3', 4)",
    ),  # fmt: skip
    (
        "duration a string",
        jsonl({**MOMENT, "duration": "150"}),
        "line 1, field 'duration': expected a positive number, got '150'",
    ),  # fmt: skip
    ("extra a list", jsonl({**QA, "extra": [1]}), "line 1, field 'extra': expected an object, got [1]"),
    (
        "dataset unknown",
        jsonl({**QA, "dataset": "msrvtt"}),
        "line 1, field 'dataset': 'msrvtt' is not one of nextqa, nextgqa, star, how2qa, tvqa, vlep, synthetic",
    ),  # fmt: skip
    (
        "empty option",
        jsonl({**QA, "options": ["a", ""]}),
        "line 1, field 'options[1]': expected a non-empty string, got ''",
    ),  # fmt: skip
    (
        "whitespace-only option",
        jsonl({**QA, "options": ["a", "b", " \t "]}),
        "line 1, field 'options[2]': expected a non-empty string, got ' \\t '",
    ),  # fmt: skip
    ("option with trailing space is kept", jsonl({**QA, "options": ["a ", "b"]}), 1),
    ("duplicate qids", jsonl(QA, QA), "line 2, field 'qid': 'CH_1_0' repeats the qid of line 1"),
    (
        "video escaping the folder",
        jsonl({**QA, "video": "../../etc/passwd"}),
        "line 1, field 'video': "
        "'../../etc/passwd' leaves the video folder: expected a relative path without '..' components",
    ),  # fmt: skip
    (
        "video '..' inside",
        jsonl({**QA, "video": "1106/../../x"}),
        "line 1, field 'video': '1106/../../x' leaves the "
        "video folder: expected a relative path without '..' components",
    ),  # fmt: skip
    (
        "video absolute",
        jsonl({**MOMENT, "video": "/etc/passwd"}),
        "line 1, field 'video': '/etc/passwd' leaves the "
        "video folder: expected a relative path without '..' components",
    ),  # fmt: skip
    (
        "video Windows drive",
        jsonl({**QA, "video": "C:\\videos\\a"}),
        "line 1, field 'video': 'C:\\\\videos\\\\a' "
        "leaves the video folder: expected a relative path without '..' components",
    ),  # fmt: skip
    (
        "video NUL byte",
        jsonl({**QA, "video": "a\u0000b"}),
        "line 1, field 'video': 'a\\x00b' contains a control character",
    ),  # fmt: skip
    ("video with dots in a name is fine", jsonl({**QA, "video": "a..b/c.d"}), 1),
    (
        "window past the video's end",
        jsonl({**MOMENT, "relevant_windows": [[0, 2], [140, 160]]}),
        "line 1, field 'relevant_windows[1]': window [140, 160] ends after the video's duration 150",
    ),  # fmt: skip
    ("window ending at the video's end", jsonl({**MOMENT, "relevant_windows": [[140, 150]]}), 1),
    (
        "clip id past the video's end",
        jsonl({**MOMENT, "relevant_clip_ids": [74, 75], "saliency_scores": [[1], [1]]}),
        "line 1, field 'relevant_clip_ids[1]': clip 75 starts at 150 s, after the video's duration 150",
    ),  # fmt: skip
    ("a huge but valid record", jsonl({**QA, "question": "why " * 500_000}), 1),
]


@pytest.mark.parametrize(("name", "content", "expected"), RECORD_CORPUS, ids=[c[0] for c in RECORD_CORPUS])
def test_record_file_corpus(tmp_path, name, content, expected):
    path = tmp_path / "records.jsonl"
    path.write_bytes(content)
    if isinstance(expected, int):
        assert len(read_records(path)) == expected
        return
    with pytest.raises(DataError) as err:
        read_records(path)
    assert one_line(err.value) == f"{path}, {expected}"


def test_a_line_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(data_sources, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "records.jsonl"
    path.write_bytes(jsonl(QA) + b"x" * 5000)
    with pytest.raises(DataError) as err:
        read_records(path)
    assert one_line(err.value) == f"{path}, line 2: line longer than 1000 bytes: not a JSON-lines file"
    assert data_sources._size(64 * 1024 * 1024) == "64 MiB"


# ------------------------------------------------------------------ paths that are not readable files
def _directory(tmp_path: Path) -> Path:
    (tmp_path / "dir.jsonl").mkdir()
    return tmp_path / "dir.jsonl"


def _symlink_loop(tmp_path: Path) -> Path:
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    return tmp_path / "loop.jsonl"


def _too_long(tmp_path: Path) -> Path:
    return tmp_path / ("x" * 300 + ".jsonl")


def _unreadable(tmp_path: Path) -> Path:
    path = tmp_path / "secret.jsonl"
    path.write_bytes(jsonl(QA))
    path.chmod(0)
    return path


BAD_PATHS = {
    "a directory": (_directory, "cannot read: is a directory, expected a file"),
    "a symlink loop": (_symlink_loop, "cannot read: too many levels of symbolic links (a symlink loop?)"),
    "a too-long name": (_too_long, "cannot read: file name too long"),
    "an unreadable file": (_unreadable, "cannot read: permission denied"),
    "a device": (lambda tmp_path: Path("/dev/zero"), "not a regular file (a device or a socket)"),
}


def _deny_if_root(monkeypatch, path: Path) -> None:
    """root reads a chmod-0 file anyway: make `open` refuse it as the kernel would for anyone else."""
    if os.geteuid() != 0:
        return
    real_open = open

    def fake_open(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(data_sources, "open", fake_open, raising=False)


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_bad_annotation_paths_give_one_line(tmp_path, monkeypatch, capsys, case):
    make, problem = BAD_PATHS[case]
    path = make(tmp_path)
    _deny_if_root(monkeypatch, path)
    with pytest.raises(DataError) as err:
        read_records(path)
    assert one_line(err.value) == f"{path}: {problem}"
    with pytest.raises(DataError) as err:
        convert("vlep", path)
    assert one_line(err.value) == f"{path}: {problem}"
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("prepare",))
    assert cli.main(["prepare", "vlep", str(path), "-o", str(tmp_path / "out.jsonl")]) == 2
    assert one_line(capsys.readouterr().err) == f"sevila prepare: error: {path}: {problem}"
    assert not (tmp_path / "out.jsonl").exists()


def test_a_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_records(tmp_path / "nope.jsonl")


# ------------------------------------------------------------------ converters: release files
NEXTQA_HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
NEXTQA_ROW = "4010069381,369,640,480,how do they play,0,6,CH,roll the handle,tap their feet,strum,hit,pat\n"
HOW2QA_CSV_ROW = "NOuQuofjk44,[7.2:18.0],10,12,16,how many knife is there?,1\n"
VALUE_ROW = {"vid_name": "v1", "qid": 0, "q": "what?", "a0": "x", "a1": "y", "a2": "z", "a3": "w", "answer_idx": 0,
             "ts": "1-2"}  # fmt: skip
TVQA_ROW = {"qid": 1, "vid_name": "s01e01_seg02_clip_00", "q": "who?", "a0": "a ", "a1": "b", "a2": "c", "a3": "d",
            "a4": "e", "answer_idx": 1, "ts": "0-10.01", "show_name": "Friends"}  # fmt: skip
VLEP_ROW = {"example_id": 1, "vid_name": "a_ep", "ts": [1, 2.5], "events": ["x", "y"], "answer": 1}
QVH_ROW = {"qid": 1, "query": "a girl cooks", "duration": 150, "vid": "v_0.0_150.0", "relevant_windows": [[0, 2]]}
STAR_ROW = {"question_id": "Interaction_T1_0", "question": "what?", "video_id": "6H78U", "start": 1, "end": 5,
            "answer": "a", "choices": [{"choice": "a"}, {"choice": "b"}]}  # fmt: skip
BIG = 140_000  # over the csv module's 131072-character field limit

# (name, dataset, file name, file bytes, message after "<file>, " — or records out when accepted)
CONVERTER_CORPUS: list[tuple[str, str, str, bytes, str | int]] = [
    ("nextqa: empty file", "nextqa", "val.csv", b"", "line 1: empty file: expected a header row"),
    ("nextqa: header only", "nextqa", "val.csv", NEXTQA_HEADER.encode(), "no records to convert (an empty file?)"),
    (
        "nextqa: empty option cell",
        "nextqa",
        "val.csv",
        (NEXTQA_HEADER + NEXTQA_ROW.replace(",hit,", ",,")).encode(),
        "line 2, field 'a3': is empty",
    ),  # fmt: skip
    (
        "nextqa: blank option cell",
        "nextqa",
        "val.csv",
        (NEXTQA_HEADER + NEXTQA_ROW.replace(",pat", ",  ")).encode(),
        "line 2, field 'a4': is empty",
    ),  # fmt: skip
    (
        "nextqa: BOM and CRLF",
        "nextqa",
        "val.csv",
        b"\xef\xbb\xbf" + (NEXTQA_HEADER + NEXTQA_ROW * 1).replace("\n", "\r\n").encode(),
        1,
    ),  # fmt: skip
    (
        "nextqa: missing column",
        "nextqa",
        "val.csv",
        NEXTQA_HEADER.replace(",a4", "").encode(),
        "line 1, field 'a4': missing column in the header",
    ),  # fmt: skip
    (
        "nextqa: answer not a number",
        "nextqa",
        "val.csv",
        (NEXTQA_HEADER + NEXTQA_ROW.replace(",0,6,", ",x,6,")).encode(),
        "line 2, field 'answer': expected an integer, got \"x\"",
    ),  # fmt: skip
    (
        "nextqa: duplicate rows",
        "nextqa",
        "val.csv",
        (NEXTQA_HEADER + NEXTQA_ROW * 2).encode(),
        "record [1], field 'qid': 'CH_4010069381_6' occurs twice",
    ),  # fmt: skip
    (
        "nextqa: field over the csv limit",
        "nextqa",
        "val.csv",
        (NEXTQA_HEADER + NEXTQA_ROW + '1,2,3,4,"' + "q" * BIG + "\n").encode(),
        "line 3: a field longer than 131072 characters: an unbalanced double quote (the field runs "
        "on over the following lines)?",
    ),  # fmt: skip
    (
        "nextqa: quote never closed",
        "nextqa",
        "val.csv",
        (NEXTQA_HEADER + NEXTQA_ROW + '1,2,"3\n4\n').encode(),
        "line 3: a double quote opened in this row is never closed",
    ),  # fmt: skip
    (
        "how2qa csv: empty wrong answer",
        "how2qa",
        "how2QA_val_release.csv",
        HOW2QA_CSV_ROW.replace(",12,", ",,").encode(),
        "line 1, field 'wrong_1': is empty",
    ),  # fmt: skip
    (
        "how2qa csv: empty correct answer",
        "how2qa",
        "how2QA_val_release.csv",
        HOW2QA_CSV_ROW.replace(",1\n", ",\n").encode(),
        "line 1, field 'correct': is empty",
    ),  # fmt: skip
    (
        "how2qa jsonl: blank option",
        "how2qa",
        "how2qa_val_release.jsonl",
        jsonl({**VALUE_ROW, "a2": " "}),
        "line 1, field 'a2': is empty",
    ),  # fmt: skip
    ("tvqa: empty option", "tvqa", "tvqa_val.jsonl", jsonl({**TVQA_ROW, "a4": ""}), "line 1, field 'a4': is empty"),
    ("tvqa: trailing spaces kept", "tvqa", "tvqa_val.jsonl", jsonl(TVQA_ROW), 1),
    (
        "nextqa: not UTF-8",
        "nextqa",
        "val.csv",
        (NEXTQA_HEADER + NEXTQA_ROW).encode().replace(b"strum", b"str\xffum"),
        "not UTF-8 text (invalid start byte)",
    ),
    ("vlep: empty file", "vlep", "vlep_dev_release.jsonl", b"", "no records to convert (an empty file?)"),
    (
        "vlep: blank event",
        "vlep",
        "vlep_dev_release.jsonl",
        jsonl({**VLEP_ROW, "events": ["x", " "]}),
        "line 1, field 'events': expected 2 non-empty event strings, got ['x', ' ']",
    ),  # fmt: skip
    (
        "vlep: a JSON array",
        "vlep",
        "vlep_dev_release.jsonl",
        json.dumps([VLEP_ROW]).encode(),
        "line 1: expected a JSON object, got a JSON array: expected JSON lines (one object per line)",
    ),  # fmt: skip
    (
        "vlep: video escaping",
        "vlep",
        "vlep_dev_release.jsonl",
        jsonl({**VLEP_ROW, "vid_name": "../x"}),
        "line 1, field 'video': '../x' leaves the video folder: expected a relative path without '..' components",
    ),  # fmt: skip
    (
        "vlep: BOM and CRLF",
        "vlep",
        "vlep_dev_release.jsonl",
        b"\xef\xbb\xbf" + jsonl(VLEP_ROW).replace(b"\n", b"\r\n"),
        1,
    ),  # fmt: skip
    (
        "qvhighlights: window past the end",
        "qvhighlights",
        "highlight_val_release.jsonl",
        jsonl(QVH_ROW, {**QVH_ROW, "qid": 2, "relevant_windows": [[148, 152]]}),
        "line 2, field 'relevant_windows[0]': window [148, 152] ends after the video's duration 150",
    ),  # fmt: skip
    (
        "qvhighlights: duration a string",
        "qvhighlights",
        "highlight_val_release.jsonl",
        jsonl({**QVH_ROW, "duration": "150"}),
        "line 1, field 'duration': expected a number, got \"150\"",
    ),  # fmt: skip
    ("star: empty file", "star", "STAR_val.json", b"", "empty file: expected a JSON document"),
    (
        "star: not JSON",
        "star",
        "STAR_val.json",
        b"[{]",
        "line 1: invalid JSON: Expecting property name enclosed in double quotes (column 3)",
    ),  # fmt: skip
    (
        "star: JSON lines instead of an array",
        "star",
        "STAR_val.json",
        jsonl(STAR_ROW, STAR_ROW),
        "line 2: invalid JSON: Extra data (column 1)",
    ),  # fmt: skip
    (
        "star: an object instead of an array",
        "star",
        "STAR_val.json",
        json.dumps(STAR_ROW).encode(),
        "expected a JSON array of records, got dict",
    ),  # fmt: skip
    ("star: empty array", "star", "STAR_val.json", b"[]", "no records to convert (an empty file?)"),
    (
        "star: blank choice",
        "star",
        "STAR_val.json",
        json.dumps([{**STAR_ROW, "choices": [{"choice": "a"}, {"choice": ""}]}]).encode(),
        "record [0], field 'choices[1]': expected an object with a non-empty string 'choice'",
    ),  # fmt: skip
    ("star: BOM", "star", "STAR_val.json", b"\xef\xbb\xbf" + json.dumps([STAR_ROW]).encode(), 1),
    (
        "sevila list: video escaping",
        "nextqa",
        "val.json",
        json.dumps(
            [
                {
                    "video": "/etc/passwd",
                    "num_option": 2,
                    "qid": "CH_1_0",
                    "a0": "a.",
                    "a1": "b.",
                    "answer": 0,
                    "question": "q?",
                }
            ]
        ).encode(),
        "record [0], field 'video': "
        "'/etc/passwd' leaves the video folder: expected a relative path without '..' components",
    ),  # fmt: skip
    (
        "sevila list: blank option",
        "nextqa",
        "val.json",
        json.dumps(
            [{"video": "1/2", "num_option": 2, "qid": "CH_1_0", "a0": "a.", "a1": " ", "answer": 0, "question": "q?"}]
        ).encode(),
        "record [0], field 'options[1]': expected a non-empty string, got ' '",
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    ("name", "dataset", "filename", "content", "expected"), CONVERTER_CORPUS, ids=[c[0] for c in CONVERTER_CORPUS]
)
def test_release_file_corpus(tmp_path, name, dataset, filename, content, expected):
    path = tmp_path / filename
    path.write_bytes(content)
    video_map = None
    if dataset == "nextqa" and not filename.endswith(".json"):
        video_map = tmp_path / "map_vid_vidorID.json"
        video_map.write_text(json.dumps({"4010069381": "1106/4010069381", "1": "1/1"}))
    if isinstance(expected, int):
        assert len(convert(dataset, path, video_map=video_map).records) == expected
        return
    with pytest.raises(DataError) as err:
        convert(dataset, path, video_map=video_map)
    separator = ", " if expected.startswith(("line", "record")) else ": "
    assert one_line(err.value) == f"{path}{separator}{expected}"


# ------------------------------------------------------------------ sevila prepare: the output path
@pytest.fixture
def prepare(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("prepare",))

    def run(*args) -> tuple[int, str]:
        status = cli.main(["prepare", *map(str, args)])
        return status, capsys.readouterr().err.strip()

    return run


@pytest.fixture
def nextqa_files(tmp_path) -> tuple[Path, Path]:
    csv = tmp_path / "val.csv"
    csv.write_text(NEXTQA_HEADER + NEXTQA_ROW)
    vmap = tmp_path / "map_vid_vidorID.json"
    vmap.write_text(json.dumps({"4010069381": "1106/4010069381"}))
    return csv, vmap


def test_the_output_may_not_be_an_input(tmp_path, prepare, nextqa_files):
    csv, vmap = nextqa_files
    before = {p: p.read_bytes() for p in (csv, vmap)}
    (tmp_path / "hard.csv").hardlink_to(csv)
    (tmp_path / "link.json").symlink_to(vmap)
    for output, input_path in [
        (csv, csv),
        (vmap, vmap),
        (tmp_path / "hard.csv", csv),
        (tmp_path / "link.json", vmap),
        (tmp_path / "sub" / ".." / "val.csv", csv),
    ]:
        status, err = prepare("nextqa", csv, vmap, "-o", output)
        assert status == 2
        assert (
            one_line(err)
            == f"sevila prepare: error: {output}: is the input file {input_path}; give another output path"
        )
    assert {p: p.read_bytes() for p in (csv, vmap)} == before
    status, err = prepare("nextqa", csv, "--video-map", vmap, "-o", vmap)  # an input given by flag counts too
    assert status == 2 and "is the input file" in err
    assert {p: p.read_bytes() for p in (csv, vmap)} == before


def _out_directory(tmp_path: Path) -> Path:
    (tmp_path / "outdir").mkdir()
    return tmp_path / "outdir"


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "plain").write_text("")
    return tmp_path / "plain" / "out.jsonl"


OUTPUT_PATHS = {
    "a directory": (_out_directory, "is a directory; give the output file's path (e.g. {out}/val.jsonl)"),
    "a symlink loop": (_symlink_loop, "cannot write the output: too many levels of symbolic links (a symlink loop?)"),
    "a too-long name": (_too_long, "cannot write the output: file name too long"),
    "below a file": (_under_a_file, "cannot write the output: a part of the path is not a directory"),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_PATHS))
def test_bad_output_paths_give_one_line(tmp_path, prepare, nextqa_files, case):
    make, problem = OUTPUT_PATHS[case]
    out = make(tmp_path)
    status, err = prepare("nextqa", *nextqa_files, "-o", out)
    assert status == 2
    assert one_line(err) == f"sevila prepare: error: {out}: {problem.format(out=out)}"


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),
        (errno.ENOSPC, "no space left on the device"),
        (errno.EIO, "input/output error"),
    ],
)
def test_unwritable_output_gives_one_line_and_leaves_nothing(
    tmp_path, prepare, nextqa_files, monkeypatch, code, problem
):
    out = tmp_path / "out" / "val.jsonl"
    out.parent.mkdir()
    out.write_text("previous\n")

    def failing_write(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(code, os.strerror(code), str(tmp))

    import sevila.utils.io as io

    real = io.atomic_write
    monkeypatch.setattr(io, "atomic_write", lambda target, write: real(target, failing_write))
    status, err = prepare("nextqa", *nextqa_files, "-o", out)
    assert status == 2
    assert one_line(err) == f"sevila prepare: error: {out}: cannot write the output: {problem}"
    assert out.read_text() == "previous\n" and os.listdir(out.parent) == ["val.jsonl"]


def test_a_failed_conversion_leaves_no_file_and_keeps_an_old_one(tmp_path, prepare, nextqa_files):
    csv, vmap = nextqa_files
    csv.write_text(NEXTQA_HEADER + NEXTQA_ROW + NEXTQA_ROW.replace(",hit,", ",,"))
    out = tmp_path / "new" / "val.jsonl"
    status, err = prepare("nextqa", csv, vmap, "-o", out)
    assert (status, one_line(err)) == (2, f"sevila prepare: error: {csv}, line 3, field 'a3': is empty")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    old = tmp_path / "old.jsonl"
    write_records(old, [])
    status, _ = prepare("nextqa", csv, vmap, "-o", old)
    assert status == 2 and old.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map_vid_vidorID.json", "old.jsonl", "val.csv"]
