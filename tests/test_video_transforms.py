"""Image transforms (`sevila.video.transforms`): CLIP normalisation and the training crop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sevila.config import CLIP_MEAN, CLIP_STD
from sevila.video import normalize, random_resized_crop_box, resized_crop, train_augment
from tests.support.paths import shared_dir


def random_frames(t: int = 3, h: int = 20, w: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parity
def test_normalize_reproduces_the_parity_inputs() -> None:
    path = shared_dir() / "parity" / "inputs.safetensors"
    if not path.is_file():
        pytest.skip(f"parity inputs not found at {path} (set SEVILA_SHARED_DIR)")
    from safetensors.torch import load_file

    inputs = load_file(str(path))
    for n in (8, 4):
        expected = inputs[f"inputs.frames_{n}"]
        got = normalize(inputs[f"inputs.raw_frames_{n}"])
        assert got.shape == expected.shape and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_normalize_layout_and_values() -> None:
    frames = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    frames[1, ..., 0] = 255  # red channel of the second frame
    out = normalize(frames)
    assert out.shape == (2, 3, 4, 5) and out.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(out[0, c], torch.tensor(-CLIP_MEAN[c] / CLIP_STD[c]))
    assert torch.allclose(out[1, 0], torch.tensor((1 - CLIP_MEAN[0]) / CLIP_STD[0]))
    assert torch.equal(normalize(torch.from_numpy(frames)), out)  # numpy and torch inputs alike


def test_normalize_rejects_non_uint8_or_channels_first() -> None:
    with pytest.raises(ValueError, match="uint8"):
        normalize(np.zeros((1, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        normalize(np.zeros((1, 3, 4, 4), dtype=np.uint8))


def test_crop_box_fits_and_respects_scale_and_ratio() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        top, left, h, w = random_resized_crop_box(224, 224, generator=generator)
        assert 0 <= top and top + h <= 224 and 0 <= left and left + w <= 224
        # Rounding of w and h to pixels moves area and aspect slightly off the drawn values.
        assert 0.5 * 0.97 <= h * w / 224**2 <= 1.0
        assert 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03


def test_crop_box_is_seedable() -> None:
    boxes = [random_resized_crop_box(100, 160, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert boxes[0] == boxes[1]
    others = {random_resized_crop_box(100, 160, generator=torch.Generator().manual_seed(s)) for s in range(20)}
    assert len(others) > 15


@pytest.mark.parametrize(
    ("height", "width", "expected"), [(100, 400, (0, 133, 100, 133)), (400, 100, (133, 0, 133, 100))]
)
def test_crop_box_falls_back_to_a_centre_crop(height: int, width: int, expected: tuple[int, ...]) -> None:
    # An area fraction above 1 can never fit: the fallback clamps the aspect into `ratio` and centres the box.
    box = random_resized_crop_box(height, width, scale=(2.0, 3.0), generator=torch.Generator().manual_seed(0))
    assert box == expected
    assert math.isclose(box[3] / box[2], 4 / 3, rel_tol=0.01) or math.isclose(box[3] / box[2], 3 / 4, rel_tol=0.01)


def test_resized_crop_of_the_whole_frame_is_the_identity() -> None:
    frames = random_frames()
    out = resized_crop(frames, (0, 0, 20, 28), (20, 28))
    assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(frames))


def test_resized_crop_matches_the_original_cast_inside_range_and_clamps_overshoot() -> None:
    frames = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    frames[:, :, 4:] = 255  # a hard edge: bicubic overshoots on both sides
    box = (0, 2, 8, 4)
    out = resized_crop(frames, box, (8, 16))
    x = torch.from_numpy(frames)[:, 0:8, 2:6].permute(0, 3, 1, 2).float()
    reference = F.interpolate(x, size=(8, 16), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    assert reference.min() < 0 and reference.max() > 255  # the case the original wraps around
    inside = (reference >= 0) & (reference <= 255)
    assert torch.equal(out[inside], reference[inside].to(torch.uint8))  # truncation, as the original casts
    assert (out[reference < 0] == 0).all() and (out[reference > 255] == 255).all()


def test_train_augment_uses_one_box_for_all_frames() -> None:
    frames = random_frames(t=4, h=32, w=48)
    out = train_augment(frames, generator=torch.Generator().manual_seed(11))
    assert out.shape == (4, 3, 32, 48) and out.dtype == torch.float32
    box = random_resized_crop_box(32, 48, generator=torch.Generator().manual_seed(11))
    assert torch.equal(out, normalize(resized_crop(frames, box, (32, 48))))
    same = np.repeat(frames[:1], 3, axis=0)  # identical frames must stay identical
    augmented = train_augment(same, generator=torch.Generator().manual_seed(2))
    assert torch.equal(augmented[0], augmented[1]) and torch.equal(augmented[1], augmented[2])
