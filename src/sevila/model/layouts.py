"""The two T5 encoder input layouts of SeViLA, as the original builds them.

Frame level (the localizer always; the answerer on one frame):
    [E("Frame: ") | visual tokens of the frame | E(prompt)]                  one row per frame
Video level (the answerer on k frames, in temporal order):
    [E("Frame 1: ") | tokens of frame 1 | ... | E("Frame k: ") | tokens of frame k | E(prompt)]   one row per video

Prefix and visual positions get attention mask 1 (prefix padding, which only appears for k >= 10, gets 0,
as in the reference); text positions get the tokenizer mask.
"""

from __future__ import annotations

import torch
from torch import nn

from sevila.model.text import TokenizedText


def frame_level_inputs(
    embed: nn.Embedding, tokens: torch.Tensor, prefix: TokenizedText, prompts: TokenizedText
) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (rows, Q, D), prefix ids (1, P), prompts (rows, L) -> embeds (rows, P+Q+L, D), mask."""
    rows, num_query, _ = tokens.shape
    if prompts.ids.shape[0] != rows:
        raise ValueError(f"{rows} frames but {prompts.ids.shape[0]} prompt rows")
    device = tokens.device
    prefix_embeds = embed(prefix.ids.to(device)).expand(rows, -1, -1)
    text_embeds = embed(prompts.ids.to(device))
    embeds = torch.cat([prefix_embeds, tokens.to(text_embeds.dtype), text_embeds], dim=1)
    mask = torch.cat(
        [
            prefix.mask.to(device).expand(rows, -1),
            torch.ones(rows, num_query, dtype=prompts.mask.dtype, device=device),
            prompts.mask.to(device),
        ],
        dim=1,
    )
    return embeds, mask


def video_level_inputs(
    embed: nn.Embedding, tokens: torch.Tensor, prefixes: TokenizedText, prompts: TokenizedText
) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (videos, K, Q, D), prefixes (K, P) for "Frame 1: ".."Frame K: ", prompts (videos, L)."""
    videos, num_frames, num_query, _ = tokens.shape
    if prefixes.ids.shape[0] != num_frames:
        raise ValueError(f"{num_frames} frames per video but {prefixes.ids.shape[0]} frame prefixes")
    if prompts.ids.shape[0] != videos:
        raise ValueError(f"{videos} videos but {prompts.ids.shape[0]} prompts")
    device = tokens.device
    text_embeds = embed(prompts.ids.to(device))
    prefix_embeds = embed(prefixes.ids.to(device)).unsqueeze(0).expand(videos, -1, -1, -1)  # (V, K, P, D)
    per_frame = torch.cat([prefix_embeds, tokens.to(text_embeds.dtype)], dim=2)  # (V, K, P+Q, D)
    prefix_mask = prefixes.mask.to(device).unsqueeze(0).expand(videos, -1, -1)
    frame_mask = torch.cat(
        [prefix_mask, torch.ones(videos, num_frames, num_query, dtype=prefix_mask.dtype, device=device)], dim=2
    )
    embeds = torch.cat([per_frame.flatten(1, 2), text_embeds], dim=1)
    mask = torch.cat([frame_mask.flatten(1, 2), prompts.mask.to(device)], dim=1)
    return embeds, mask
