"""Reading scores out of T5 with the fewest decoder steps that give exactly the reference's numbers.

The reference runs a greedy 30-token ``generate`` and reads ``scores[0]`` (localizer: the "yes" logit) or
``scores[1]`` (answerer: the option-letter logits after its own greedy first token). With greedy decoding,
``min_length=1`` and no other logits processors, those are plain decoder logits (``min_length=1`` masks
nothing once the decoder start token is there, and Flan-T5 forces or suppresses no token):
  * step 0 = decoder input ``[start]``;
  * step 1 = decoder input ``[start, argmax(step 0)]``.
We compute exactly those one or two decoder steps and project only onto the vocabulary rows we need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import T5ForConditionalGeneration


def encode(t5: T5ForConditionalGeneration, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return t5.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


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
    return decoder_logits(t5, states, mask, start_tokens(t5, embeds.shape[0], embeds.device), token_ids)[:, 0]


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
