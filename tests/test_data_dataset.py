"""The torch Dataset: frames, prompts and targets per record, error handling, collate, DataLoader workers,
and parity of labels and prompts with the recorded original."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sevila.data import MomentRecord, QARecord, VideoRecordDataset, collate, from_sevila_dict, write_records
from sevila.video import VideoError
from sevila.video.encode import write_mp4
from tests.support.paths import shared_dir

FPS, FRAMES, SIZE = 10, 20, 32


def encode(path: Path, frames: int = FRAMES, fps: int = FPS) -> Path:
    """A tiny mp4: frame i is a flat grey of level 10 * i."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_mp4(path, (np.full((SIZE, SIZE, 3), 10 * i, dtype=np.uint8) for i in range(frames)), fps)


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    encode(root / "clips" / "a.mp4")
    encode(root / "b.mp4")
    return root


def nextqa(qid: str = "CW_1_0", video: str = "clips/a", answer: int | None = 2, **kw) -> QARecord:
    return QARecord(
        qid=qid,
        video=video,
        dataset="nextqa",
        question="why did the boy clap?",
        options=["happy.", "sad.", "cold.", "bored.", "tired."],
        answer=answer,
        question_type="CW",
        **kw,
    )


def qvh(windows, qid: str = "QVHighlight_1") -> MomentRecord:
    return MomentRecord(qid=qid, video="b", query="a grey wall", duration=2.0, relevant_windows=windows)


def test_qa_item(video_root):
    item = VideoRecordDataset([nextqa()], video_root, 4, image_size=16)[0]
    assert item["frames"].shape == (4, 3, 16, 16) and item["frames"].dtype == torch.float32
    assert item["frame_indices"].tolist() == [2, 7, 12, 17]  # segment midpoints of linspace(0, 20, 5)
    assert torch.allclose(item["timestamps"], torch.tensor([0.2, 0.7, 1.2, 1.7], dtype=torch.float64))
    assert item["qa_prompt"].startswith("Question: why did the boy clap? Option A: happy. Option B: sad.")
    assert item["loc_prompt"].startswith("Question: why did the boy clap? Options: (happy. sad. cold. bored. tired. )")
    assert (item["answer"], item["target"], item["labeled"], item["frame_labels"]) == (2, "Option C", True, None)
    assert item["video_path"] == os.path.join(str(video_root), "clips/a.mp4")
    # Uniform grey frames normalise to one value per channel: (10 * i / 255 - mean) / std.
    red = item["frames"][1, 0, 8, 8].item()
    assert abs(red - (70 / 255 - 0.48145466) / 0.26862954) < 0.05


def test_clip_window_limits_the_frames(video_root):
    item = VideoRecordDataset([nextqa(start=1.0, end=2.0)], video_root, 2, image_size=16)[0]
    assert item["frame_indices"].tolist() == [12, 17]  # frames [10, 20), two segments


def test_unlabeled_qa_item(video_root):
    item = VideoRecordDataset([nextqa(answer=None)], video_root, 2, image_size=16)[0]
    assert (item["answer"], item["target"], item["labeled"]) == (-1, None, False)


def test_vlep_prompts(video_root):
    record = QARecord(qid="VLEP_1", video="b", dataset="vlep", question=None, options=["x.", "y."], answer=1)
    item = VideoRecordDataset([record], video_root, 2, image_size=16)[0]
    assert item["qa_prompt"] == (
        "Upon observing the provided frames, what is the most probable subsequent event? Option A: x. Option B: y."
    )
    assert item["loc_prompt"].endswith("necessary details to predict next event?")
    assert item["target"] == "Option B"


def test_moment_labels_include_both_window_ends(video_root):
    # Frames 2, 7, 12, 17 at 10 fps are at 0.2, 0.7, 1.2, 1.7 s; the window ends fall exactly on frames.
    dataset = VideoRecordDataset([qvh([[0.7, 1.2]]), qvh(None, qid="QVHighlight_2")], video_root, 4, image_size=16)
    labeled, unlabeled = dataset[0], dataset[1]
    assert labeled["frame_labels"].tolist() == [False, True, True, False]
    assert labeled["target"] == "no_yes_yes_no" and labeled["answer"] == -1
    assert labeled["loc_prompt"] == (
        "Question: a grey wall. Option A: yes. Option B: no. Does the information within the frame provide the "
        "necessary details to accurately answer the given question?"
    )
    assert unlabeled["target"] == "no_no_no_no" and not unlabeled["labeled"]


def test_training_items_are_random_and_cropped(video_root):
    dataset = VideoRecordDataset([nextqa()], video_root, 4, image_size=16, train=True)
    random.seed(0)
    torch.manual_seed(0)
    first = [dataset[0]["frame_indices"].tolist() for _ in range(8)]
    assert all(lo <= i < hi for draw in first for i, (lo, hi) in zip(draw, [(0, 5), (5, 10), (10, 15), (15, 20)]))
    assert len({tuple(d) for d in first}) > 1
    assert dataset[0]["frames"].shape == (4, 3, 16, 16)


def test_training_items_without_augmentation_are_whole_frames(video_root):
    """augment=False: frames are still drawn at random within segments, but not cropped: each equals the
    evaluation frame of the same index."""
    training = VideoRecordDataset([nextqa()], video_root, 4, image_size=16, train=True, augment=False)
    random.seed(1)
    item = training[0]
    whole = VideoRecordDataset([nextqa()], video_root, 20, image_size=16)[0]
    assert whole["frame_indices"].tolist() == list(range(20))
    assert torch.equal(item["frames"], whole["frames"][item["frame_indices"]])


def test_video_path_pattern_and_callable(video_root):
    record = nextqa(video="a")
    by_pattern = VideoRecordDataset([record], video_root, 2, video_path="clips/{video}.mp4")
    assert by_pattern.video_path(record) == os.path.join(str(video_root), "clips/a.mp4")
    by_callable = VideoRecordDataset([record], video_root, 2, video_path=lambda r: f"clips/{r.video}.mp4")
    assert by_callable.video_path(record) == by_pattern.video_path(record)


def test_unreadable_video_raises_naming_file_and_qid(video_root, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    for video in ("missing", "broken"):
        dataset = VideoRecordDataset([nextqa(video=video, qid="CW_9_9")], tmp_path, 2)
        with pytest.raises(VideoError) as err:
            dataset[0]
        assert f"{video}.mp4" in str(err.value) and "CW_9_9" in str(err.value)


def test_skip_mode_drops_the_item_and_records_why(video_root):
    records = [nextqa(), nextqa(qid="CW_2_0", video="missing"), nextqa(qid="CW_3_0", video="b")]
    dataset = VideoRecordDataset(records, video_root, 2, image_size=16, on_error="skip")
    items = [dataset[i] for i in range(3)]
    assert items[1] is None
    (failure,) = dataset.failures
    assert failure.qid == "CW_2_0" and failure.path.endswith("missing.mp4") and "not found" in failure.message
    batch = collate(items)
    assert batch["qid"] == ["CW_1_0", "CW_3_0"]  # no substitute for the missing one
    assert collate([None, None]) is None


def test_collate_stacks_tensors_and_keeps_strings(video_root):
    dataset = VideoRecordDataset([nextqa(), nextqa(qid="CW_2_0", answer=None)], video_root, 3, image_size=16)
    batch = collate([dataset[0], dataset[1]])
    assert batch["frames"].shape == (2, 3, 3, 16, 16)
    assert batch["frame_indices"].shape == (2, 3) and batch["timestamps"].dtype == torch.float64
    assert batch["answer"].tolist() == [2, -1]
    assert batch["target"] == ["Option C", None] and isinstance(batch["qa_prompt"][0], str)


def test_dataloader_with_two_workers(video_root, tmp_path):
    records = [nextqa(qid=f"CW_{i}_0", video="clips/a" if i % 2 else "b") for i in range(7)]
    records[3] = nextqa(qid="CW_3_0", video="missing")
    write_records(tmp_path / "val.jsonl", records)
    dataset = VideoRecordDataset(tmp_path / "val.jsonl", video_root, 4, image_size=16, on_error="skip")
    batches = list(DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate))
    assert [b["qid"] for b in batches] == [["CW_0_0", "CW_1_0", "CW_2_0"], ["CW_4_0", "CW_5_0"], ["CW_6_0"]]
    assert [tuple(b["frames"].shape) for b in batches] == [(3, 4, 3, 16, 16), (2, 4, 3, 16, 16), (1, 4, 3, 16, 16)]


@pytest.mark.parity
def test_parity_labels_and_prompts_of_the_original():
    shared = shared_dir()
    video = shared / "videos" / "demo1.mp4"
    if not (shared / "parity" / "summary.json").is_file() or not video.is_file():
        pytest.skip(f"shared parity fixture or demo video not found under {shared} (set SEVILA_SHARED_DIR)")
    annotations = json.loads((shared / "parity" / "annotations.json").read_text())
    expected = json.loads((shared / "parity" / "summary.json").read_text())["records"]
    moments = [from_sevila_dict(d, "qvhighlights") for d in annotations["qvhighlights_style"]]
    for n in (4, 8):
        batch = collate(list(VideoRecordDataset(moments, shared / "videos", n, image_size=56)))
        assert batch["target"] == [r[f"qa_output_{n}_frames"] for r in expected["qvh"]]
        assert batch["loc_prompt"] == [r["loc_input"] for r in expected["qvh"]]
        assert batch["qa_prompt"] == [r["qa_input"] for r in expected["qvh"]]
    questions = [from_sevila_dict(d, "nextqa") for d in annotations["nextqa_style"]]
    batch = collate(list(VideoRecordDataset(questions, shared / "videos", 4, image_size=56)))
    assert batch["qid"] == [r["question_id"] for r in expected["qa"]]
    assert batch["qa_prompt"] == [r["qa_input"] for r in expected["qa"]]
    assert batch["loc_prompt"] == [r["loc_input"] for r in expected["qa"]]
    assert batch["target"] == [r["qa_output"] for r in expected["qa"]]
