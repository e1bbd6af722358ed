"""Reading scores out of T5 with the fewest decoder steps that give exactly the reference's numbers.

The reference runs a greedy 30-token ``generate`` and reads ``scores[0]`` (localizer: the "yes" logit) or
``scores[1]`` (answerer: the option-letter logits after its own greedy first token). With greedy decoding,
``min_length=1`` and no other logits processors, those are plain decoder logits (``min_length=1`` masks
nothing once the decoder start token is there, and Flan-T5 forces or suppresses no token):
  * step 0 = decoder input ``[start]``;
  * step 1 = decoder input ``[start, argmax(step 0)]``.
We compute exactly those one or two decoder steps and project only onto the vocabulary rows we need.

The steps themselves (`fast_steps`, on by default for inference) skip work a single query position does
not need, with the same numbers up to floating-point reassociation:
  * cross-attention never projects the encoder states to keys and values. For one query ``q`` and head
    ``h``, ``q·(W_k,h H_j) = (W_k,hᵀ q)·H_j`` and ``Σ_j p_j (W_v,h H_j) = W_v,h (Σ_j p_j H_j)``, so each head
    costs two matrix-vector products over the encoder states instead of two projections of every state
    (a factor ``d_kv`` less work: T5 projects ``heads × d_kv = d_model`` values per state and head);
  * step 0's self-attention attends to one position, so its softmax is exactly 1 and its output is the
    value projection alone (no query or key);
  * step 1 reuses step 0's self-attention keys and values, as ``generate``'s cache does, and computes the
    new position only.
`use_fast_steps(False)` restores transformers' decoder (full recomputation, keys and values of every
encoder state) for comparisons; training (dropout) and gradients always use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import T5ForConditionalGeneration

_FAST = True


@contextmanager
def use_fast_steps(enabled: bool) -> Iterator[None]:
    """Within the block, compute decoder steps the fast way (`enabled`) or with transformers' decoder."""
    global _FAST
    previous, _FAST = _FAST, enabled
    try:
        yield
    finally:
        _FAST = previous


def _fast(t5: T5ForConditionalGeneration) -> bool:
    # Dropout (training mode) and gradients go through transformers' modules, which the tests pin.
    return _FAST and not t5.training and not torch.is_grad_enabled()


def encode(t5: T5ForConditionalGeneration, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if _fast(t5) and embeds.dtype != torch.float16 and t5.encoder.config._attn_implementation == "sdpa":
        return _encode_fast(t5, embeds, mask)
    return t5.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


def _encode_fast(t5: T5ForConditionalGeneration, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """transformers' T5 encoder (SDPA attention, eval mode) with the same operations on the same values (the
    same bits), less memory traffic: the attention mask holding the relative-position bias is built once
    for all layers (every layer adds the same one), and the gate product and residual sums are written in
    place instead of into new tensors (on a CPU a fresh large tensor costs page faults comparable to the
    arithmetic of an elementwise op)."""
    encoder = t5.encoder
    rows, length, _ = embeds.shape
    hidden = embeds
    bias = None
    for block in encoder.block:
        attention_layer, feed_forward_layer = block.layer
        attention = attention_layer.SelfAttention
        heads, width = attention.n_heads, attention.key_value_proj_dim
        normed = attention_layer.layer_norm(hidden)
        query = attention.q(normed).view(rows, length, heads, width).transpose(1, 2)
        key = attention.k(normed).view(rows, length, heads, width).transpose(1, 2)
        value = attention.v(normed).view(rows, length, heads, width).transpose(1, 2)
        if bias is None:  # as transformers' `create_position_bias_mask`, once
            position = encoder.block[0].layer[0].SelfAttention.compute_bias(length, length, device=hidden.device)
            if bool(mask.all()):
                bias = position.contiguous()
            else:
                lowest = max(torch.finfo(key.dtype).min, torch.finfo(position.dtype).min)
                keep = mask.to(device=hidden.device, dtype=torch.bool)[:, None, None, :]
                bias = torch.where(keep, position, lowest).contiguous()
        context = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=1.0)
        output = attention.o(context.transpose(1, 2).reshape(rows, length, heads * width))
        hidden = output.add_(hidden) if output.dtype == hidden.dtype else hidden + output
        dense = feed_forward_layer.DenseReluDense
        normed = feed_forward_layer.layer_norm(hidden)
        if hasattr(dense, "wi_0"):
            inner = dense.act(dense.wi_0(normed))
            linear = dense.wi_1(normed)
            inner = (
                inner.mul_(linear) if inner.dtype == torch.promote_types(inner.dtype, linear.dtype) else inner * linear
            )
        else:
            inner = dense.act(dense.wi(normed))
        if inner.dtype != dense.wo.weight.dtype and dense.wo.weight.dtype != torch.int8:
            inner = inner.to(dense.wo.weight.dtype)
        output = dense.wo(inner)
        hidden = output.add_(hidden) if output.dtype == hidden.dtype else hidden + output
    return encoder.final_layer_norm(hidden)


def decoder_logits(
    t5: T5ForConditionalGeneration,
    encoder_states: torch.Tensor,
    encoder_mask: torch.Tensor,
    decoder_input_ids: torch.Tensor,
    token_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """Logits (rows, steps, vocab or len(token_ids)) in float32 for the given decoder inputs."""
    hidden = t5.decoder(
        input_ids=decoder_input_ids,
        encoder_hidden_states=encoder_states,
        encoder_attention_mask=encoder_mask,
        use_cache=False,
    ).last_hidden_state
    return project(t5, hidden, token_ids)


def project(
    t5: T5ForConditionalGeneration, hidden: torch.Tensor, token_ids: Sequence[int] | None = None
) -> torch.Tensor:
    """The LM head on decoder outputs, restricted to ``token_ids`` if given, in float32."""
    # Original T5 rescales the decoder output before a tied head; Flan-T5 (untied) does not.
    # transformers >= 5 records this as `scale_decoder_outputs`; older versions use `tie_word_embeddings`.
    if getattr(t5.config, "scale_decoder_outputs", t5.config.tie_word_embeddings):
        hidden = hidden * (t5.config.d_model**-0.5)
    weight = t5.lm_head.weight
    if token_ids is not None:
        weight = weight[torch.as_tensor(list(token_ids), device=weight.device)]
    return torch.nn.functional.linear(hidden, weight).float()


def start_tokens(t5: T5ForConditionalGeneration, rows: int, device: torch.device) -> torch.Tensor:
    return torch.full((rows, 1), t5.config.decoder_start_token_id, dtype=torch.long, device=device)


def first_step_logits(
    t5: T5ForConditionalGeneration,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    token_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """``scores[0]`` of the reference's generate, restricted to ``token_ids`` if given: (rows, ...)."""
    states = encode(t5, embeds, mask)
    start = start_tokens(t5, embeds.shape[0], embeds.device)
    if _fast(t5):
        return project(t5, FastDecoder(t5, states, mask).step(start[:, 0]), token_ids)
    return decoder_logits(t5, states, mask, start, token_ids)[:, 0]


@dataclass
class GreedyTwoStep:
    first_token: torch.Tensor  # (rows,) the greedy token at step 0 (``▁Option`` for a trained answerer)
    step0_logits: torch.Tensor  # (rows, vocab)
    step1_logits: torch.Tensor  # (rows, len(token_ids)) or (rows, vocab)


def greedy_second_step_logits(
    t5: T5ForConditionalGeneration,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    token_ids: Sequence[int] | None = None,
) -> GreedyTwoStep:
    """``scores[1]`` of the reference's greedy generate: the logits after the model's own first token.

    A row whose first token is ``</s>`` still gets step-1 logits computed from ``[start, </s>]``, exactly as
    ``generate`` does while other rows continue. (The reference falls back to ``scores[0]`` only when *every*
    row of a batch ends at step 0, which makes a prediction depend on its batch-mates; we always use step 1.)
    """
    states = encode(t5, embeds, mask)
    start = start_tokens(t5, embeds.shape[0], embeds.device)
    if _fast(t5):
        decoder = FastDecoder(t5, states, mask)
        step0 = project(t5, decoder.step(start[:, 0]))
        first = step0.argmax(dim=-1)
        step1 = project(t5, decoder.step(first), token_ids)
        return GreedyTwoStep(first_token=first, step0_logits=step0, step1_logits=step1)
    step0 = decoder_logits(t5, states, mask, start)[:, 0]
    first = step0.argmax(dim=-1)
    step1 = decoder_logits(t5, states, mask, torch.cat([start, first[:, None]], dim=1), token_ids)[:, 1]
    return GreedyTwoStep(first_token=first, step0_logits=step0, step1_logits=step1)


def teacher_forced_logits(
    t5: T5ForConditionalGeneration,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    token_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """Logits (rows, target_len, ...) with the decoder fed the labels shifted right (padding = -100)."""
    states = encode(t5, embeds, mask)
    return decoder_logits(t5, states, mask, t5._shift_right(labels), token_ids)


def sequence_loss(
    t5: T5ForConditionalGeneration,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    decoder_mask: torch.Tensor,
) -> torch.Tensor:
    """Teacher-forced cross-entropy, mean over every non-ignored label token of every row (as T5's loss)."""
    return t5(inputs_embeds=embeds, attention_mask=mask, labels=labels, decoder_attention_mask=decoder_mask).loss


class FastDecoder:
    """T5's decoder one position at a time over fixed encoder states (eval mode, no gradients), keeping each
    layer's self-attention keys and values; see the module docstring for what it skips and why it is exact.

    The attention arithmetic (scores, softmax, weighted sums) runs in float32 whatever the weights' dtype, as
    SDPA's kernels accumulate it: in bf16, rounding the folded query or the scores to bf16 would add error
    the usual path does not have. Its output is cast back to the dtype the attention output has there."""

    def __init__(self, t5: T5ForConditionalGeneration, encoder_states: torch.Tensor, encoder_mask: torch.Tensor):
        self.t5 = t5
        self.decoder = t5.decoder
        self.states = encoder_states.float()
        self.states_t = self.states.transpose(1, 2)
        # Masked encoder positions get -inf before the softmax: exp gives exactly 0, as for T5's finfo.min.
        self.masked = None if bool(encoder_mask.all()) else (encoder_mask == 0)[:, None, :].to(encoder_states.device)
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.position = 0

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (rows,) at the next position; returns the decoder output there (rows, D)."""
        hidden = self.decoder.embed_tokens(tokens)[:, None]
        bias = None
        if self.position:
            attention = self.decoder.block[0].layer[0].SelfAttention
            # The last query row of the square bias: `compute_bias`'s offset argument is named differently
            # across transformers 5.x (cache_position, past_seen_tokens), its square form is not.
            length = self.position + 1
            bias = attention.compute_bias(length, length, device=hidden.device)[:, :, -1:, :]
        for index, block in enumerate(self.decoder.block):
            self_layer, cross_layer, feed_forward = block.layer
            hidden = hidden + self._self_attention(index, self_layer.SelfAttention, self_layer.layer_norm(hidden), bias)
            hidden = hidden + self._cross_attention(cross_layer.EncDecAttention, cross_layer.layer_norm(hidden))
            hidden = feed_forward(hidden)
        self.position += 1
        return self.decoder.final_layer_norm(hidden)[:, 0]

    def _self_attention(self, index: int, attention, normed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows, heads, width = normed.shape[0], attention.n_heads, attention.key_value_proj_dim
        value = attention.v(normed).view(rows, 1, heads, width).transpose(1, 2)  # (rows, heads, 1, d_kv)
        key = attention.k(normed).view(rows, 1, heads, width).transpose(1, 2)
        if self.position == 0:
            # One key: its softmax weight is exactly 1, so the output is the value itself.
            self.cache.append((key, value))
            context = value
        else:
            query = attention.q(normed).view(rows, 1, heads, width).transpose(1, 2)
            keys, values = self.cache[index]
            keys, values = torch.cat([keys, key], dim=2), torch.cat([values, value], dim=2)
            self.cache[index] = (keys, values)
            with torch.autocast(normed.device.type, enabled=False):
                scores = torch.matmul(query.float(), keys.float().transpose(2, 3)) + bias.float()  # T5: no scale
                context = torch.matmul(torch.softmax(scores, dim=-1), values.float()).to(values.dtype)
        return attention.o(context.transpose(1, 2).reshape(rows, 1, heads * width))

    def _cross_attention(self, attention, normed: torch.Tensor) -> torch.Tensor:
        rows, heads, width = normed.shape[0], attention.n_heads, attention.key_value_proj_dim
        query = attention.q(normed)
        with torch.autocast(normed.device.type, enabled=False):
            # u_h = W_k,hᵀ q_h: (rows, heads, d_model); scores_h = H u_h.
            key_weight = attention.k.weight.float().view(heads, width, -1)
            folded = torch.einsum("rhk,hkd->rhd", query.float().view(rows, heads, width), key_weight)
            scores = torch.bmm(folded, self.states_t)  # (rows, heads, L); T5 does not scale
            if self.masked is not None:
                scores = scores.masked_fill(self.masked, float("-inf"))
            pooled = torch.bmm(torch.softmax(scores, dim=-1), self.states)  # Σ_j p_j H_j per head
            value_weight = attention.v.weight.float().view(heads, width, -1)
            context = torch.einsum("rhd,hkd->rhk", pooled, value_weight).to(query.dtype)
        return attention.o(context.reshape(rows, 1, heads * width))
