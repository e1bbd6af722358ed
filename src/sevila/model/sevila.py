"""The SeViLA module: one frozen ViT and one frozen Flan-T5 shared by two trained visual branches.

Built from transformers' blocks (`Blip2VisionModel`, two `Blip2QFormerModel`s, `T5ForConditionalGeneration`);
only the glue between them is ours. The computation is split in two:

* question-independent: `encode_vision` (ViT, raw output, no final norm) and `encode_frames` (both branches'
  visual tokens for every frame) — cacheable per video;
* question-dependent: T5 scoring — `frame_scores` (localizer), `answer` / `answer_per_frame` (answerer),
  and the training losses of the four reference branches plus localizer pre-training.

Frames come in as (videos, frames, 3, H, W) float tensors, normalised with CLIP mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub import ModelHubMixin
from torch import nn
from transformers import Blip2VisionModel, T5ForConditionalGeneration

from sevila.config import SeViLAConfig
from sevila.model import layouts, scoring
from sevila.model.branch import VisualBranch
from sevila.model.outputs import AnswerOutput, FrameFeatures, Prediction, StageLoss
from sevila.model.precision import Precision
from sevila.model.text import PromptTokenizer
from sevila.prompts import answer_target

BRANCHES = ("answerer", "localizer")


def build_language_model(config: SeViLAConfig) -> T5ForConditionalGeneration:
    """Flan-T5 with an *untied* LM head, as the real checkpoints have.

    transformers >= 5 forces ``T5Config.tie_word_embeddings = True`` and ties ``lm_head`` to the input
    embeddings at construction (it only unties while loading a checkpoint that holds both). SeViLA's T5 has
    separate weights, so we give the head its own parameter and mark the config untied.
    """
    t5 = T5ForConditionalGeneration(config.to_hf_t5_config())
    if not config.language_model.tie_word_embeddings:
        t5.config.tie_word_embeddings = False
        if t5.lm_head.weight is t5.shared.weight:
            head = nn.Linear(t5.config.d_model, t5.config.vocab_size, bias=False)
            head.weight.data.copy_(t5.shared.weight.data)
            t5.lm_head = head
    return t5


def tie_input_embeddings(t5: T5ForConditionalGeneration) -> None:
    """Make the encoder's and decoder's token embeddings (and, in a tied config as original T5's, the
    LM head) the same tensor as ``shared`` again (moving a model off the meta device with ``to_empty`` gives
    each its own storage)."""
    t5.encoder.embed_tokens.weight = t5.shared.weight
    t5.decoder.embed_tokens.weight = t5.shared.weight
    if t5.config.tie_word_embeddings:
        t5.lm_head.weight = t5.shared.weight


SCORE_BLOCK_FRAMES = 32
"""Frames per T5 call of `SeViLA.frame_scores`. A matmul's rounding depends on how many rows it holds, so a
frame's score is bit-for-bit reproducible only when it is scored in the same block: every path that scores
frames (all at once, or a long video chunk by chunk) uses blocks of this size counted from the first frame."""


def select_keyframes(frame_scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest-scoring frames of each video, returned in temporal (ascending) order."""
    num_frames = frame_scores.shape[-1]
    if not 1 <= k <= num_frames:
        raise ValueError(f"cannot select {k} keyframes from {num_frames} frames")
    return frame_scores.topk(k, dim=-1).indices.sort(dim=-1).values


def _check_batch(name: str, items: Sequence, expected: int) -> None:
    if isinstance(items, str):
        raise TypeError(f"{name} must be a list of strings (one per video), got a single string")
    if len(items) != expected:
        raise ValueError(f"{name} has {len(items)} entries for {expected} videos")


class SeViLA(
    nn.Module,
    ModelHubMixin,
    library_name="sevila",
    repo_url="https://github.com/Yui010206/SeViLA",
    paper_url="https://arxiv.org/abs/2305.06988",
    license="bsd-3-clause",
    pipeline_tag="video-text-to-text",
    tags=["sevila", "video-question-answering", "video-localization"],
):
    def __init__(self, config: SeViLAConfig, tokenizer=None):
        super().__init__()
        self.config = config
        self.vision = Blip2VisionModel(config.to_hf_vision_config())
        # SeViLA applies its own two LayerNorms (one per branch) to the raw ViT output; BLIP-2's single
        # post-LayerNorm must not run in between.
        self.vision.post_layernorm = nn.Identity()
        self.answerer = VisualBranch(config)
        self.localizer = VisualBranch(config)
        self.language_model = build_language_model(config)
        self.precision = Precision()  # what `apply_precision` last set: how each stage computes
        self.text: PromptTokenizer | None = None
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)
        self.set_trainable(BRANCHES)

    # ------------------------------------------------------------------ setup
    def set_tokenizer(self, tokenizer) -> None:
        self.text = PromptTokenizer(tokenizer, self.config)

    @property
    def tokenizer(self):
        return None if self.text is None else self.text.tokenizer

    def _text(self) -> PromptTokenizer:
        if self.text is None:
            raise RuntimeError(
                "this SeViLA model has no tokenizer; call set_tokenizer() or load with from_pretrained()"
            )
        return self.text

    def set_trainable(self, branches: Sequence[str] | str | None) -> None:
        """Make only the named branches trainable; the ViT and T5 are always frozen."""
        branches = (branches,) if isinstance(branches, str) else tuple(branches or ())
        unknown = set(branches) - set(BRANCHES)
        if unknown:
            raise ValueError(f"unknown branches {sorted(unknown)}; choose from {BRANCHES}")
        for name, module in self.named_children():
            module.requires_grad_(name in branches)

    def train(self, mode: bool = True) -> SeViLA:
        super().train(mode)
        self.vision.eval()  # frozen ViT: always in eval mode, as the reference pins it
        return self

    def apply_precision(self, precision: Precision) -> SeViLA:
        """Store every parameter in its dtype (`Precision.param_dtype`) and compute each stage as ``precision``
        says from now on. Cheap when the weights already have their dtypes (e.g. materialised so)."""
        with torch.no_grad():
            for name, param in self.named_parameters():  # tied weights appear once
                dtype = precision.param_dtype(name)
                if param.dtype != dtype:
                    param.data = param.data.to(dtype)
            for name, buffer in self.named_buffers():
                if buffer.is_floating_point():
                    module, _, attr = name.rpartition(".")
                    self.get_submodule(module)._buffers[attr] = buffer.to(precision.param_dtype(name))
        self.precision = precision
        return self

    def autocast(self, stage: str):
        """The context ``stage`` ("vision", "localizer", "answerer", "language_model") computes in."""
        return self.precision.autocast(stage, self.device)

    @property
    def device(self) -> torch.device:
        return self.language_model.lm_head.weight.device

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    # ------------------------------------------------------------------ question-independent part
    def encode_vision(self, frames: torch.Tensor) -> torch.Tensor:
        """(videos, frames, 3, H, W) or (frames, 3, H, W) -> raw ViT tokens (videos*frames, S, W)."""
        pixels = frames.flatten(0, 1) if frames.dim() == 5 else frames
        if pixels.dim() != 4:
            raise ValueError(
                f"frames must be (videos, frames, 3, H, W) or (frames, 3, H, W), got {tuple(frames.shape)}"
            )
        with self.autocast("vision"):
            if self.precision.vision_fp32_norms:
                return self._vision_fp32_residual(pixels.to(device=self.device, dtype=torch.float32))
            pixels = pixels.to(device=self.device, dtype=self.vision.embeddings.patch_embedding.weight.dtype)
            return self.vision(pixel_values=pixels).last_hidden_state

    def _vision_fp32_residual(self, pixels: torch.Tensor) -> torch.Tensor:
        """The ViT as the original's fp16 EVA runs it under autocast: the patch convolution in the autocast
        dtype, then the class token and position embeddings (fp32) joined and added with type promotion, so
        the residual stream and the output stay fp32 (transformers' embeddings would cast them down to the
        convolution's dtype instead)."""
        embeddings = self.vision.embeddings
        patches = embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = embeddings.class_embedding.expand(pixels.shape[0], 1, -1)
        hidden = torch.cat([cls, patches], dim=1)  # fp32 + fp16 -> fp32, as EVA's torch.cat under autocast
        hidden = hidden + embeddings.position_embedding[:, : hidden.shape[1]]
        hidden = self.vision.encoder(inputs_embeds=hidden).last_hidden_state
        return self.vision.post_layernorm(hidden)  # an Identity (see __init__)

    def encode_frames(self, frames: torch.Tensor, chunk_size: int | None = None) -> FrameFeatures:
        """Visual tokens of every frame for both branches: (videos, frames, Q, D) each.

        ``chunk_size`` bounds how many frames go through the ViT at once (memory), without changing results.
        """
        if frames.dim() != 5:
            raise ValueError(f"frames must be (videos, frames, 3, H, W), got {tuple(frames.shape)}")
        videos, num_frames = frames.shape[:2]
        flat = frames.flatten(0, 1)
        step = chunk_size or flat.shape[0]
        answerer, localizer = [], []
        for start in range(0, flat.shape[0], step):
            states = self.encode_vision(flat[start : start + step])
            with self.autocast("answerer"):
                answerer.append(self.answerer(states))
            with self.autocast("localizer"):
                localizer.append(self.localizer(states))

        def unflatten(parts: list[torch.Tensor]) -> torch.Tensor:
            tokens = torch.cat(parts)
            return tokens.view(videos, num_frames, *tokens.shape[1:])

        return FrameFeatures(answerer=unflatten(answerer), localizer=unflatten(localizer))

    # ------------------------------------------------------------------ T5 inputs
    def frame_level_inputs(self, tokens: torch.Tensor, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (videos, frames, Q, D) + one prompt per video -> one T5 row per frame (video-major)."""
        videos, num_frames = tokens.shape[:2]
        _check_batch("prompts", prompts, videos)
        text = self._text()
        encoded = text(prompts).repeat_interleave(num_frames)
        return layouts.frame_level_inputs(self._t5_embed(tokens), tokens.flatten(0, 1), text.frame_prefix, encoded)

    def video_level_inputs(self, tokens: torch.Tensor, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (videos, k, Q, D) + one prompt per video -> one T5 row per video with "Frame i: " prefixes."""
        videos, num_frames = tokens.shape[:2]
        _check_batch("prompts", prompts, videos)
        text = self._text()
        return layouts.video_level_inputs(
            self._t5_embed(tokens), tokens, text.keyframe_prefixes(num_frames), text(prompts)
        )

    def _t5_embed(self, tokens: torch.Tensor):
        """T5's token embedding for building inputs with ``tokens``. With ``promote_t5_inputs`` the embeddings
        come out in the promoted dtype of both (bf16 embeddings and fp32 visual tokens: fp32, exactly), as
        the original's ``torch.cat`` under autocast; otherwise the visual tokens are cast to the embeddings'."""
        embed = self.embed_tokens
        dtype = torch.promote_types(embed.weight.dtype, tokens.dtype)
        if not self.precision.promote_t5_inputs or dtype == embed.weight.dtype:
            return embed
        return lambda ids: embed(ids).to(dtype)

    def _targets(self, answers: torch.Tensor | Sequence[int], num_options: int) -> list[str]:
        answers = [int(a) for a in answers]
        for a in answers:
            if not 0 <= a < num_options:
                raise ValueError(f"answer index {a} is outside 0..{num_options - 1}")
        return [answer_target(a) for a in answers]

    # ------------------------------------------------------------------ inference
    def frame_scores(
        self, localizer_tokens: torch.Tensor, loc_prompts: Sequence[str], with_no: bool = False
    ) -> torch.Tensor:
        """Localizer "yes" logit at the first decoding step for every frame: (videos, frames).

        With ``with_no`` the result is (videos, frames, 2) holding the [yes, no] logits. Frames are scored in
        blocks of `SCORE_BLOCK_FRAMES` (the last one shorter), counted from the first frame given: memory stays
        bounded on long videos, and streaming them chunk by chunk (`sevila.streaming`) gives the same numbers.
        """
        num_frames = localizer_tokens.shape[1]
        if num_frames > SCORE_BLOCK_FRAMES:
            blocks = range(0, num_frames, SCORE_BLOCK_FRAMES)
            return torch.cat(
                [
                    self.frame_scores(localizer_tokens[:, s : s + SCORE_BLOCK_FRAMES], loc_prompts, with_no)
                    for s in blocks
                ],
                dim=1,
            )
        text = self._text()
        embeds, mask = self.frame_level_inputs(localizer_tokens, loc_prompts)
        ids = [text.yes_id, text.no_id] if with_no else [text.yes_id]
        with self.autocast("language_model"):
            logits = scoring.first_step_logits(self.language_model, embeds, mask, ids)
        logits = logits.view(*localizer_tokens.shape[:2], len(ids))
        return logits if with_no else logits[..., 0]

    def answer(self, answerer_tokens: torch.Tensor, qa_prompts: Sequence[str], num_options: int) -> AnswerOutput:
        """Answerer on k frames per video (multi-frame layout): option-letter logits at decoding step 1."""
        option_ids = self._text().option_token_ids(num_options)
        embeds, mask = self.video_level_inputs(answerer_tokens, qa_prompts)
        with self.autocast("language_model"):
            steps = scoring.greedy_second_step_logits(self.language_model, embeds, mask, option_ids)
        return AnswerOutput(option_scores=steps.step1_logits, first_token=steps.first_token)

    def answer_per_frame(
        self, answerer_tokens: torch.Tensor, qa_prompts: Sequence[str], num_options: int
    ) -> AnswerOutput:
        """Single-frame answerer: every frame answers alone. Scores (videos, frames, options)."""
        option_ids = self._text().option_token_ids(num_options)
        embeds, mask = self.frame_level_inputs(answerer_tokens, qa_prompts)
        with self.autocast("language_model"):
            steps = scoring.greedy_second_step_logits(self.language_model, embeds, mask, option_ids)
        shape = answerer_tokens.shape[:2]
        return AnswerOutput(
            option_scores=steps.step1_logits.view(*shape, -1), first_token=steps.first_token.view(shape)
        )

    def _keyframe_count(self, num_keyframes: int | None) -> int:
        """``num_keyframes``, or the config's when None (0 is an error in `select_keyframes`, not the default)."""
        return self.config.num_keyframes if num_keyframes is None else num_keyframes

    def predict(
        self,
        inputs: torch.Tensor | FrameFeatures,
        qa_prompts: Sequence[str],
        num_options: int,
        loc_prompts: Sequence[str] | None = None,
        num_keyframes: int | None = None,
        use_localizer: bool = True,
    ) -> Prediction:
        """Chained inference. ``inputs`` are frames (videos, frames, 3, H, W) or precomputed features.

        With the localizer, the ``num_keyframes`` (default: config) best frames by "yes" logit feed the
        answerer in temporal order; without it, the answerer sees every given frame (uniform baseline).
        """
        features = inputs if isinstance(inputs, FrameFeatures) else self.encode_frames(inputs)
        videos, num_frames = features.answerer.shape[:2]
        frame_scores = None
        if use_localizer:
            if loc_prompts is None:
                raise ValueError("loc_prompts are required when use_localizer=True")
            frame_scores = self.frame_scores(features.localizer, loc_prompts)
            keyframes = select_keyframes(frame_scores, self._keyframe_count(num_keyframes))
        else:
            keyframes = torch.arange(num_frames, device=features.answerer.device).expand(videos, -1)
        tokens = _gather_frames(features.answerer, keyframes)
        return self.answer(tokens, qa_prompts, num_options).chained(keyframes, frame_scores)

    # ------------------------------------------------------------------ training losses
    def pseudo_labels(
        self, answerer_tokens: torch.Tensor, qa_prompts: Sequence[str], answers: torch.Tensor, num_options: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse chain: a frame is "yes" when the answerer, seeing it alone, picks the right option.

        As in the reference, the letter logits are read teacher-forced at decoder position 1 (after the gold
        ``▁Option``). Returns (labels (videos, frames) bool, option logits (videos, frames, options)).
        """
        videos, num_frames = answerer_tokens.shape[:2]
        text = self._text()
        embeds, mask = self.frame_level_inputs(answerer_tokens, qa_prompts)
        targets = [t for t in self._targets(answers, num_options) for _ in range(num_frames)]
        labels, _ = text.labels(targets)
        with self.autocast("language_model"):
            logits = scoring.teacher_forced_logits(
                self.language_model, embeds, mask, labels.to(embeds.device), text.option_token_ids(num_options)
            )[:, 1].view(videos, num_frames, num_options)
        gold = torch.as_tensor([int(a) for a in answers], device=logits.device)
        return logits.argmax(dim=-1) == gold[:, None], logits

    def _localizer_loss(self, states: torch.Tensor, shape, loc_prompts, frame_labels) -> torch.Tensor:
        text = self._text()
        tokens = self.localizer(states).view(*shape, *self._token_shape())
        embeds, mask = self.frame_level_inputs(tokens, loc_prompts)
        words = [self.config.yes_word if bool(y) else self.config.no_word for y in frame_labels.flatten()]
        labels, decoder_mask = text.labels(words)
        with self.autocast("language_model"):
            return scoring.sequence_loss(
                self.language_model, embeds, mask, labels.to(embeds.device), decoder_mask.to(embeds.device)
            )

    def refine_localizer_loss(
        self,
        frames: torch.Tensor,
        qa_prompts: Sequence[str],
        loc_prompts: Sequence[str],
        answers: torch.Tensor,
        num_options: int,
    ) -> StageLoss:
        """Stage 3, localizer self-refinement: train the localizer on the answerer's pseudo-labels."""
        states = self.encode_vision(frames)
        shape = frames.shape[:2]
        with torch.no_grad():
            answerer_tokens = self.answerer(states).view(*shape, *self._token_shape())
            labels, _ = self.pseudo_labels(answerer_tokens, qa_prompts, answers, num_options)
        loss = self._localizer_loss(states, shape, loc_prompts, labels)
        return StageLoss(loss=loss, pseudo_labels=labels)

    def answerer_loss_with_localizer(
        self,
        frames: torch.Tensor,
        qa_prompts: Sequence[str],
        loc_prompts: Sequence[str],
        answers: torch.Tensor,
        num_options: int,
        num_keyframes: int | None = None,
    ) -> StageLoss:
        """Stage 2, forward chain: the frozen localizer picks keyframes, the answerer trains on them."""
        states = self.encode_vision(frames)
        shape = frames.shape[:2]
        with torch.no_grad():
            localizer_tokens = self.localizer(states).view(*shape, *self._token_shape())
            scores = self.frame_scores(localizer_tokens, loc_prompts)
            keyframes = select_keyframes(scores, self._keyframe_count(num_keyframes))
        selected = _gather_frames(states.view(*shape, *states.shape[1:]), keyframes)
        tokens = self.answerer(selected.flatten(0, 1)).view(*keyframes.shape, *self._token_shape())
        loss = self._answer_loss(tokens, qa_prompts, answers, num_options, video_level=True)
        return StageLoss(loss=loss, keyframes=keyframes, frame_scores=scores)

    def answerer_loss_uniform(
        self,
        frames: torch.Tensor,
        qa_prompts: Sequence[str],
        answers: torch.Tensor,
        num_options: int,
        video_level: bool = True,
    ) -> StageLoss:
        """The answerer on all given frames without the localizer: jointly ("Frame i: " layout, the
        reference's ``qa_vid``) or, with ``video_level=False``, every frame answering alone."""
        states = self.encode_vision(frames)
        tokens = self.answerer(states).view(*frames.shape[:2], *self._token_shape())
        return StageLoss(loss=self._answer_loss(tokens, qa_prompts, answers, num_options, video_level))

    def pretrain_localizer_loss(
        self, frames: torch.Tensor, loc_prompts: Sequence[str], frame_labels: torch.Tensor
    ) -> StageLoss:
        """Stage 1, localizer pre-training on per-frame yes/no labels (QVHighlights moments)."""
        if tuple(frame_labels.shape) != tuple(frames.shape[:2]):
            raise ValueError(
                f"frame_labels has shape {tuple(frame_labels.shape)}, expected (videos, frames) = {tuple(frames.shape[:2])}"
            )
        states = self.encode_vision(frames)
        return StageLoss(loss=self._localizer_loss(states, frames.shape[:2], loc_prompts, frame_labels))

    def _answer_loss(self, tokens, qa_prompts, answers, num_options: int, video_level: bool) -> torch.Tensor:
        text = self._text()
        targets = self._targets(answers, num_options)
        if video_level:
            embeds, mask = self.video_level_inputs(tokens, qa_prompts)
        else:
            embeds, mask = self.frame_level_inputs(tokens, qa_prompts)
            targets = [t for t in targets for _ in range(tokens.shape[1])]
        labels, decoder_mask = text.labels(targets)
        with self.autocast("language_model"):
            return scoring.sequence_loss(
                self.language_model, embeds, mask, labels.to(embeds.device), decoder_mask.to(embeds.device)
            )

    def _token_shape(self) -> tuple[int, int]:
        return (self.config.qformer.num_query_tokens, self.config.language_model.d_model)

    # ------------------------------------------------------------------ persistence
    # huggingface_hub's ModelHubMixin gives `save_pretrained(..., push_to_hub=True)` and `push_to_hub(repo_id,
    # token=, branch=, private=, create_pr=, commit_message=)`, one commit through its upload API. The files
    # are written by our format's `sevila.model.weights`, which imports this module (hence the local imports).
    def _save_pretrained(self, save_directory: Path) -> None:
        from sevila.model.weights import save_pretrained

        save_pretrained(self, save_directory, max_shard_size=self.__dict__.get("_max_shard_size", "5GB"))

    def save_pretrained(self, save_directory: str | Path, *, max_shard_size: int | str = "5GB", **kwargs):
        """Write the model in our format: ``config.json``, safetensors weights (shards of at most
        ``max_shard_size`` once larger), ``tokenizer/`` and a model card ``README.md`` (the card the model was
        loaded with, if any). ``push_to_hub=True, repo_id=...`` (and `push_to_hub`'s keywords) uploads it too."""
        kwargs.setdefault("config", self.config.to_dict())
        # The mixin calls `_save_pretrained(directory)` alone, and again through `push_to_hub=True`: the
        # outermost call's shard size holds for both.
        outermost = "_max_shard_size" not in self.__dict__
        if outermost:
            self.__dict__["_max_shard_size"] = max_shard_size
        try:
            return super().save_pretrained(save_directory, **kwargs)
        finally:
            if outermost:
                del self.__dict__["_max_shard_size"]

    def generate_model_card(self, *args, **kwargs):
        """The card this model was loaded with (a converted paper model keeps its sources and numbers),
        else a new one (`sevila.hub.model_card`)."""
        from huggingface_hub import ModelCard

        from sevila.hub import model_card

        loaded = getattr(self, "model_card_text", None)
        if loaded:
            return ModelCard(loaded)
        return model_card(num_frames=self.config.num_frames, num_keyframes=self.config.num_keyframes)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        **kwargs,
    ) -> SeViLA:
        """A model of our format from a directory or hub id (``revision`` pins it; ``device``, ``precision``:
        `sevila.model.weights.from_pretrained`). Not the mixin's: our config.json is a nested `SeViLAConfig`
        read with one-line errors, and a hub failure is one line too."""
        from sevila.model.weights import from_pretrained

        return from_pretrained(
            pretrained_model_name_or_path,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            **kwargs,
        )


def _gather_frames(per_frame: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """per_frame (videos, frames, ...) and indices (videos, k) -> (videos, k, ...)."""
    index = indices.to(per_frame.device).view(*indices.shape, *([1] * (per_frame.dim() - 2)))
    return per_frame.gather(1, index.expand(-1, -1, *per_frame.shape[2:]))
