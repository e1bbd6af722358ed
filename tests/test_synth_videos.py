"""`sevila synth` output: layout, determinism, records, and decoded frames that show what questions ask about."""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np
import pytest

from sevila.cli import COMMAND_MODULES, main
from sevila.data import MomentRecord, QARecord, read_records, write_records
from sevila.data.targets import frame_labels, record_prompts
from sevila.video import load_video, open_video, read_clip
from sevila_toy.synth import SPLITS, SynthVideo, plan_world, read_evidence, synthesize
from sevila_toy.synth.render import render, shape_mask, write_mp4
from sevila_toy.synth.world import COLOURS, DIRECTIONS, NUM_FRAMES, RADIUS, SIZE, WHITE_RGB, Appear, Change, Flash, Move

pytestmark = pytest.mark.toy

VIDEOS, SEED = 40, 3
JSONL = ["qa.jsonl", "moments.jsonl", "evidence.jsonl", *(f"{k}_{s}.jsonl" for k in ("qa", "moments") for s in SPLITS)]


@pytest.fixture(scope="module")
def world() -> list[SynthVideo]:
    return plan_world(VIDEOS, SEED)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "world"
    synthesize(folder, VIDEOS, SEED, workers=2)
    return folder


@pytest.fixture(scope="module")
def frames(out, world) -> dict[str, np.ndarray]:
    """Every decoded frame of every video."""
    decoded = {}
    for v in world:
        with open_video(out / "videos" / f"{v.name}.mp4", SIZE) as reader:
            decoded[v.name] = read_clip(reader, range(NUM_FRAMES)).frames
    return decoded


PALETTE = {**COLOURS, "white": WHITE_RGB}


def colour_of(pixel: np.ndarray) -> str | None:
    """The palette colour (or "white") a decoded pixel shows, None for background or a blend."""
    distances = {name: np.abs(pixel.astype(int) - rgb).sum() for name, rgb in PALETTE.items()}
    name = min(distances, key=distances.__getitem__)
    return name if distances[name] < 90 else None


def pixel(frame: np.ndarray, xy: np.ndarray) -> np.ndarray:
    x, y = (int(v) for v in np.rint(xy))
    return frame[y, x]


def colour_mask(frame: np.ndarray, colour: str) -> np.ndarray:
    return np.abs(frame.astype(int) - COLOURS[colour]).sum(axis=-1) < 90


def test_layout(out, world):
    assert sorted(p.name for p in out.iterdir()) == sorted(["videos", *JSONL])
    assert sorted(p.name for p in (out / "videos").iterdir()) == [f"{v.name}.mp4" for v in world]
    clip = load_video(out / "videos" / f"{world[0].name}.mp4", 32, image_size=SIZE)
    assert (clip.fps, clip.num_video_frames, clip.duration) == (8.0, 64, 8.0)


def test_same_seed_same_files_and_frames(tmp_path, out, frames, world):
    synthesize(tmp_path / "again", VIDEOS, SEED, workers=1)
    for name in JSONL:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    for v in world:
        clip = load_video(tmp_path / "again" / "videos" / f"{v.name}.mp4", NUM_FRAMES, image_size=SIZE)
        assert np.array_equal(clip.frames, frames[v.name]), v.name


def _dirty_the_heap(rng: np.random.Generator) -> None:
    """Allocate blocks of all sizes, fill them with non-zero bytes and free them, as earlier work in a long-lived
    process leaves the heap: code that reads memory it never wrote then sees something other than zeros."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    blocks = []
    for size in rng.integers(16, 300_000, 400):
        block = libc.malloc(int(size))
        ctypes.memset(block, int(rng.integers(1, 256)), int(size))
        blocks.append(block)
    for block in blocks:
        libc.free(ctypes.c_void_p(block))


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="needs the C library's malloc to fill the heap")
def test_encoding_does_not_depend_on_leftover_memory(tmp_path, world):
    """The same scene encodes to the same bytes however the heap was left (x264's AVX-512 kernels broke this for
    v0008 of this world: two different files, one or the other at random, in one process)."""
    rng = np.random.default_rng(0)
    frames = render(world[8].scene)
    files = set()
    for attempt in range(8):
        _dirty_the_heap(rng)
        files.add(write_mp4(tmp_path / f"{attempt}.mp4", frames).read_bytes())
    assert len(files) == 1


def test_records_validate_and_round_trip(tmp_path, out, world):
    qa, moments = read_records(out / "qa.jsonl"), read_records(out / "moments.jsonl")
    assert qa == [r for v in world for r in v.qa_records()]
    assert moments == [r for v in world for r in v.moment_records()]
    assert all(isinstance(r, QARecord) and r.qid.split("_")[0] == r.question_type for r in qa)
    assert all(isinstance(r, MomentRecord) for r in moments)
    write_records(tmp_path / "qa.jsonl", qa)
    assert (tmp_path / "qa.jsonl").read_bytes() == (out / "qa.jsonl").read_bytes()


def test_splits_partition_the_videos(out):
    seen: set[str] = set()
    for kind in ("qa", "moments"):
        everything = read_records(out / f"{kind}.jsonl")
        parts = {s: read_records(out / f"{kind}_{s}.jsonl") for s in SPLITS}
        assert sorted(r.qid for p in parts.values() for r in p) == sorted(r.qid for r in everything)
        videos = [{r.video for r in p} for p in parts.values()]
        assert not (videos[0] & videos[1] or videos[0] & videos[2] or videos[1] & videos[2])
        seen |= videos[0]
    assert len(seen) >= 0.6 * VIDEOS


def test_evidence_file_matches_the_records(out):
    evidence = read_evidence(out / "evidence.jsonl")
    qa = read_records(out / "qa.jsonl")
    assert list(evidence) == [r.qid for r in qa]
    for record in qa:
        assert evidence[record.qid].windows == record.extra["grounding_windows"]
        assert evidence[record.qid].video == record.video


def test_event_shapes_show_during_their_event_only(world, frames):
    """Each event shape has its colour at its centre in every frame of its event, and is gone right after."""
    checked = gone = lingering = 0
    for v in world:
        for event in v.scene.events:
            shapes = [s for s in event.sprites if s.rgb in PALETTE.values()]  # not the trail copies
            for sprite in shapes:
                expected = next(name for name, rgb in PALETTE.items() if rgb == sprite.rgb)
                for k in range(sprite.first, sprite.last + 1):
                    assert colour_of(pixel(frames[v.name][k], sprite.centre(k))) == expected, (v.name, event, k)
                    checked += 1
            for k, sprite, at in ((event.first - 1, shapes[0], event.first), (event.last + 1, shapes[-1], event.last)):
                if 0 <= k < NUM_FRAMES:
                    lingering += colour_of(pixel(frames[v.name][k], sprite.centre(at))) is not None
                    gone += 1
    assert checked > 500
    assert lingering <= 0.05 * gone  # only a drifting background shape passing by


def test_evidence_frames_show_the_answer(world, frames):
    for v in world:
        for q in v.questions:
            answer = q.options[q.answer]
            event = _asked_event(v, q.type)
            for first, last in q.evidence:
                for k in range(first, last + 1):
                    frame = frames[v.name][k]
                    if q.type in ("colour", "recolour"):
                        assert colour_of(pixel(frame, event.sprites[-1].centre(k))) == answer
                    elif q.type == "shape":
                        assert _shape_at(frame, event) == answer
                    elif q.type == "count":
                        assert _white_cells(frame) == ["two", "three", "four", "five"].index(answer) + 2
            if q.type == "direction":
                first, last = q.evidence[0]
                step = _centroid(frames[v.name][last], event) - _centroid(frames[v.name][first], event)
                assert step @ np.array(DIRECTIONS[answer]) >= 2.5 * (last - first), (v.name, step, answer)


def _asked_event(v: SynthVideo, qtype: str):
    kind = {"colour": Appear, "shape": Appear, "direction": Move, "recolour": Change, "count": Flash}.get(qtype)
    return next((e for e in v.scene.events if kind and isinstance(e, kind)), None)


def _shape_at(frame: np.ndarray, event: Appear) -> str:
    """The shape whose mask best matches the event colour's pixels around the event's centre (IoU)."""
    x, y = (int(c) for c in np.rint(event.sprites[0].centre(event.first)))
    box = colour_mask(frame, event.colour)[y - RADIUS : y + RADIUS + 1, x - RADIUS : x + RADIUS + 1]
    ious = {}
    for shape in ("circle", "square", "triangle", "cross"):
        mask = shape_mask(shape, RADIUS)
        ious[shape] = (box & mask).sum() / (box | mask).sum()
    return max(ious, key=ious.__getitem__)


def _white_cells(frame: np.ndarray) -> int:
    white = (frame > 200).all(axis=-1)
    cell = SIZE // 4
    corners = [(i, j) for i in range(0, SIZE, cell) for j in range(0, SIZE, cell)]
    return sum(white[i : i + cell, j : j + cell].sum() >= 20 for i, j in corners)


def _centroid(frame: np.ndarray, event: Move) -> np.ndarray:
    """Centre (x, y) of the event colour's pixels within the area the moving shape covers."""
    xy = event.sprites[-1].xy
    low, high = np.floor(xy.min(axis=0)).astype(int) - RADIUS, np.ceil(xy.max(axis=0)).astype(int) + RADIUS
    mask = colour_mask(frame, event.colour)[low[1] : high[1] + 1, low[0] : high[0] + 1]
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + low[0], ys.mean() + low[1]])


def test_moment_frame_labels_mark_the_event(out, world, frames):
    """The localizer's pre-training labels (32 uniform frames, windows in seconds) fall on the event's frames."""
    for video, moment, event in ((v, m, e) for v in world for m, e in zip(v.moment_records(), v.scene.events)):
        clip = load_video(out / "videos" / f"{video.name}.mp4", 32, image_size=SIZE)
        labels = frame_labels(clip.timestamps, moment.relevant_windows)
        assert [k for k, yes in zip(clip.indices, labels) if yes] == [
            k for k in clip.indices if event.first <= k <= event.last
        ]
        assert 1 <= sum(labels) <= 4


def test_command_line(tmp_path, capsys):
    assert "synth" in COMMAND_MODULES
    folder = tmp_path / "cli"
    assert main(["synth", "--out", str(folder), "--videos", "3", "--seed", "1", "--workers", "1"]) == 0
    assert "wrote 3 videos" in capsys.readouterr().err
    assert len(list((folder / "videos").glob("*.mp4"))) == 3
    assert read_records(folder / "qa.jsonl") == [r for v in plan_world(3, 1) for r in v.qa_records()]
    assert main(["synth", "--out", str(folder), "--videos", "3"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "bad"), "--videos", "3", "--split", "0.5", "0.6", "0.1"]) == 2
    assert "fractions" in capsys.readouterr().err
    hard = tmp_path / "hard"
    args = ["synth", "--out", str(hard), "--videos", "6", "--seed", "1", "--workers", "1"]
    assert main([*args, "--question-types", "count", "shape"]) == 0
    assert {r.question_type for r in read_records(hard / "qa.jsonl")} <= {"count", "shape"}
    assert main(["synth", "--out", str(tmp_path / "unknown"), "--question-types", "size"]) == 2
    assert "question types must be some of colour, moved" in capsys.readouterr().err


def test_training_data_path_reads_the_world(out):
    """The torch Dataset reads a split as training does, and a word tokenizer over `world_vocabulary` covers
    every prompt with whole words (no character fall-backs)."""
    import string

    from sevila.data import VideoRecordDataset
    from sevila.model import build_word_tokenizer
    from sevila_toy.synth import world_vocabulary

    vocabulary = world_vocabulary()
    tokenizer = build_word_tokenizer(vocabulary)
    for name in ("qa_train.jsonl", "moments_train.jsonl"):
        dataset = VideoRecordDataset(out / name, out / "videos", 32, image_size=SIZE)
        item = dataset[0]
        assert tuple(item["frames"].shape) == (32, 3, SIZE, SIZE)
        for record in dataset.records:
            for prompt in (*record_prompts(record), "Frame 4: ", "Option E"):
                # The tokenizer splits on whitespace only, so the localizer prompt's "(option" (no space after
                # the bracket) is one word it can only spell out; that is the tokenizer's, not the world's.
                pieces = [p.lstrip("▁") for p in tokenizer.tokenize(prompt.replace("(", "( "))]
                assert all(p in vocabulary or p in string.punctuation for p in pieces), (prompt, pieces)
