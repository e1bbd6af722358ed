"""One visual branch (answerer or localizer): LayerNorm on the raw ViT output -> Q-Former -> projection.

The two branches have the same structure and separate weights. Neither sees the question, so a branch's
output ("visual tokens", `num_query_tokens` vectors in T5's embedding space per frame) depends only on the
frame: it can be computed once per video and cached.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2QFormerModel

from sevila.config import SeViLAConfig


class VisualBranch(nn.Module):
    def __init__(self, config: SeViLAConfig):
        super().__init__()
        q = config.qformer
        # The reference's ln_vision / ln_vision_loc: torch's default eps (1e-5), not the ViT's 1e-6.
        self.layernorm = nn.LayerNorm(config.vision.hidden_size, eps=config.vision_layernorm_eps)
        self.qformer = Blip2QFormerModel(config.to_hf_qformer_config())
        self.query_tokens = nn.Parameter(torch.zeros(1, q.num_query_tokens, q.hidden_size))
        nn.init.normal_(self.query_tokens, std=0.02)
        self.projection = nn.Linear(q.hidden_size, config.language_model.d_model)

    def forward(self, vision_states: torch.Tensor) -> torch.Tensor:
        """(frames, vit_tokens, vit_width) raw ViT output -> (frames, num_query_tokens, d_model)."""
        normed = self.layernorm(vision_states.to(self.layernorm.weight.dtype))
        queries = self.query_tokens.expand(normed.shape[0], -1, -1)
        # No masks: the reference passes all-ones self- and cross-attention masks, i.e. attends everywhere.
        hidden = self.qformer(query_embeds=queries, encoder_hidden_states=normed).last_hidden_state
        return self.projection(hidden.to(self.projection.weight.dtype))
