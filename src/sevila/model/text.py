"""Tokenisation exactly as the reference does it, and the token ids that carry meaning.

The reference tokenises every prompt and target with ``padding="longest", truncation=True, max_length=77``
(so an over-long prompt is right-truncated with its ``</s>`` kept last) and the frame prefixes without
special tokens. The ids of "yes", "no" and the option letters are looked up in the tokenizer (each must
be a single piece), never hard-coded: for Flan-T5 they come out as 4273, 150 and 71/272/205/309/262.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sevila.config import SeViLAConfig


def load_tokenizer(name_or_path: str):
    """A T5 tokenizer from a Hugging Face hub id or a local directory."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as err:  # not found locally, no network, not a tokenizer directory
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"could not load a tokenizer from {name_or_path}: {first_line}") from None


def single_token_id(tokenizer, word: str) -> int:
    """The id of ``word`` as one sentencepiece token (e.g. ``"yes"`` -> ``▁yes``); error if it splits."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(f"the tokenizer splits {word!r} into {len(ids)} tokens {pieces}; SeViLA needs one token")
    if ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"{word!r} is not in the tokenizer's vocabulary (it maps to the unknown token)")
    return ids[0]


@dataclass
class TokenizedText:
    ids: torch.Tensor  # (rows, length) int64
    mask: torch.Tensor  # (rows, length) int64, 0 on padding

    def repeat_interleave(self, repeats: int) -> TokenizedText:
        return TokenizedText(self.ids.repeat_interleave(repeats, dim=0), self.mask.repeat_interleave(repeats, dim=0))

    def to(self, device: torch.device | str) -> TokenizedText:
        return TokenizedText(self.ids.to(device), self.mask.to(device))


class PromptTokenizer:
    """Wraps a T5 tokenizer with the reference's settings and resolves the special-meaning token ids."""

    def __init__(self, tokenizer, config: SeViLAConfig):
        self.tokenizer = tokenizer
        self.max_length = config.max_text_length
        self.yes_id = single_token_id(tokenizer, config.yes_word)
        self.no_id = single_token_id(tokenizer, config.no_word)
        self.option_ids = [single_token_id(tokenizer, letter) for letter in config.option_letters]
        self.frame_prefix = self.prefixes([config.frame_prefix])
        self._keyframe_prefixes: dict[int, TokenizedText] = {}
        self._config = config

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        """Prompts and targets: with ``</s>``, truncated to ``max_text_length``, padded to the longest."""
        if isinstance(texts, str):
            raise TypeError("expected a list of strings, got a single string")
        encoded = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return TokenizedText(encoded.input_ids, encoded.attention_mask)

    def prefixes(self, texts: Sequence[str]) -> TokenizedText:
        """Frame prefixes: no special tokens; tokenised together, so shorter ones are padded (mask 0),
        as the reference does for ``Frame 1: `` ... ``Frame k: ``."""
        encoded = self.tokenizer(
            list(texts), padding="longest", add_special_tokens=False, return_tensors="pt"
        )
        return TokenizedText(encoded.input_ids, encoded.attention_mask)

    def keyframe_prefixes(self, count: int) -> TokenizedText:
        """``"Frame 1: "`` .. ``"Frame {count}: "``, tokenised once per count (every answerer call needs them)."""
        if count not in self._keyframe_prefixes:
            self._keyframe_prefixes[count] = self.prefixes(self._config.keyframe_prefixes(count))
        return self._keyframe_prefixes[count]

    def labels(self, targets: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels with padding set to -100, decoder attention mask) for teacher-forced training."""
        encoded = self(targets)
        return encoded.ids.masked_fill(encoded.mask == 0, -100), encoded.mask

    def option_token_ids(self, num_options: int) -> list[int]:
        if not 2 <= num_options <= len(self.option_ids):
            raise ValueError(f"num_options must be between 2 and {len(self.option_ids)}, got {num_options}")
        return self.option_ids[:num_options]


def build_word_tokenizer(words: Sequence[str], extra_pieces: Sequence[str] = ()):
    """A small T5-compatible tokenizer whose vocabulary is ``words`` (one ``▁word`` piece each) plus single
    characters as a fallback; pad 0, eos 1, unk 2 as in T5. For tiny test models and toy worlds."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    pieces: list[str] = []
    seen = set(specials)
    for word in [*words, *extra_pieces]:
        bare = word.removeprefix("▁")
        # "▁word" starts a word; the bare form serves after attached punctuation, e.g. "(" + "blue".
        for piece in ("▁" + bare, bare):
            if piece not in seen:
                seen.add(piece)
                pieces.append(piece)
    characters = sorted(
        {ch for piece in pieces for ch in piece}
        | set(string.ascii_letters + string.digits + string.punctuation)
    )
    for ch in characters:
        for piece in (ch, "▁" + ch):
            if piece not in seen:
                seen.add(piece)
                pieces.append(piece)
    # Whole words score higher than character fall-backs so the Unigram model prefers them, and a word-start
    # piece higher than its bare form.
    def score(piece: str) -> float:
        if len(piece.removeprefix("▁")) <= 1:
            return -10.0
        return -1.0 if piece.startswith("▁") else -2.0

    vocab = [(s, 0.0) for s in specials] + [(p, score(p)) for p in pieces]
    model = models.Unigram(vocab, unk_id=2, byte_fallback=False)
    backend = Tokenizer(model)
    # Same pipeline as T5's converted sentencepiece tokenizer: collapse repeated spaces, split on
    # whitespace (so a trailing space yields no token), then mark word starts with "▁".
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)
