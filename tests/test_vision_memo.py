"""The memo of frozen-ViT states used by training on repeated frames: same outputs, fewer encodes, bounded."""

from __future__ import annotations

import torch

from sevila.model.vision_memo import memoized_vision
from tests.support.tiny import random_frames, tiny_model


def test_memo_returns_the_vit_output_and_encodes_each_distinct_frame_once():
    model = tiny_model()
    frames = random_frames(2, 3, model.config).flatten(0, 1)  # 6 distinct frames
    with torch.no_grad():
        direct = model.encode_vision(frames)
        with memoized_vision(model) as memo:
            first = model.encode_vision(frames[:4])
            again = model.encode_vision(torch.stack([frames[5], frames[1], frames[1], frames[4]]))
            videos = model.encode_frames(frames.view(2, 3, *frames.shape[1:]))
    assert (memo.misses, memo.hits) == (6, 2 + 6)  # frame 1 twice in one call: encoded once
    torch.testing.assert_close(first, direct[:4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, direct[[5, 1, 1, 4]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(videos.answerer, model.encode_frames(frames.view(2, 3, *frames.shape[1:])).answerer)
    assert "encode_vision" not in vars(model)  # the method is back after the block


def test_memo_stops_keeping_states_past_its_byte_bound():
    model = tiny_model()
    frames = random_frames(1, 4, model.config).flatten(0, 1)
    with torch.no_grad(), memoized_vision(model, max_bytes=1) as memo:
        model.encode_vision(frames)
        model.encode_vision(frames)
    assert memo.bytes == 0 and (memo.misses, memo.hits) == (8, 0)
