"""Image transforms of SeViLA's video processors, on the uint8 frames `load_video` returns.

* Evaluation (``blip_video_eval``): `normalize` — ``(x / 255 - mean) / std`` with CLIP's mean and std,
  channels first.
* Training (``blip2_video_train``): `train_augment` — one random-resized-crop box per clip (every frame gets
  the same box, so motion stays coherent), bicubic resize back to the input size, back to uint8, then
  `normalize`. No flips, no colour jitter, as in the original.

One deliberate difference from the original: it casts the bicubic output to uint8 without clamping, so
overshoots below 0 or above 255 wrap around (a dark pixel next to a bright edge can turn white). We clamp
to ``[0, 255]`` first. Values inside the range are cast exactly as the original does (truncation toward zero),
so frames without overshoot are bit-identical.

The crop box follows torchvision's ``RandomResizedCrop.get_params`` algorithm (re-implemented here: torchvision
is not a dependency), drawing from an explicit `torch.Generator` so augmentation can be made reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from sevila.config import CLIP_MEAN, CLIP_STD

Box = tuple[int, int, int, int]
"""(top, left, height, width) in pixels."""


def _as_uint8_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if tensor.dtype != torch.uint8 or tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {tuple(tensor.shape)} {tensor.dtype}")
    return tensor


def normalize(
    frames: np.ndarray | torch.Tensor,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` RGB → float32 ``(T, 3, H, W)``, ``(x / 255 - mean) / std`` per channel.

    Computed in float32 in the original's order (divide, subtract, divide) so it reproduces its tensors.
    """
    x = _as_uint8_tensor(frames).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Box:
    """A crop box covering a random `scale` fraction of the area with a random aspect `ratio` (w / h).

    Up to ten draws (area uniform in `scale`, log-aspect uniform in log `ratio`) until the box fits; if none
    does, the largest centred box whose aspect is clamped into `ratio`.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_low, log_high, generator))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(frames: np.ndarray | torch.Tensor, box: Box, size: tuple[int, int]) -> torch.Tensor:
    """Crop every frame to `box`, resize bicubically to `size` (h, w), clamp and cast back to uint8 (T, h, w, 3)."""
    top, left, h, w = box
    x = _as_uint8_tensor(frames)[:, top : top + h, left : left + w].permute(0, 3, 1, 2).to(torch.float32)
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    return x.clamp_(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1)


def train_augment(
    frames: np.ndarray | torch.Tensor,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> torch.Tensor:
    """The training processor: one crop box for the whole clip, bicubic resize to the input size, normalize.

    uint8 ``(T, H, W, 3)`` → float32 ``(T, 3, H, W)``.
    """
    tensor = _as_uint8_tensor(frames)
    height, width = tensor.shape[1], tensor.shape[2]
    box = random_resized_crop_box(height, width, scale, ratio, generator)
    return normalize(resized_crop(tensor, box, (height, width)), mean, std)
