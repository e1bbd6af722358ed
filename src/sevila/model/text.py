"""Tokenisation exactly as the reference does it, and the token ids that carry meaning.

The reference (transformers 4.2x's ``T5TokenizerFast`` on Flan-T5's ``tokenizer.json``) tokenises every prompt
and target with ``padding="longest", truncation=True, max_length=77`` (so an over-long prompt is
right-truncated with its ``</s>`` kept last) and the frame prefixes without special tokens. Its pipeline is
the one saved in ``tokenizer.json``: for Flan-T5 a ``Metaspace`` pre-tokenizer alone, so a trailing space
is a token of its own (``"Frame 1: "`` -> ``▁Frame ▁1 : ▁``). transformers 5 rebuilds a T5 tokenizer from its
vocabulary with a whitespace split first, which drops that token; so we load ``tokenizer.json`` as saved
and encode with the `tokenizers` pipeline directly, leaving transformers' calling conventions out of what
T5 is fed.

The ids of "yes", "no" and the option letters are looked up in the tokenizer (each must be a single piece),
never hard-coded: for Flan-T5 they come out as 4273, 150 and 71/272/205/309/262.
"""

from __future__ import annotations

import json
import logging
import re
import string
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sevila.config import SeViLAConfig
from sevila.hub import resolve_directory
from sevila.prompts import OPTION_LETTERS, QA_INSTRUCTION

logger = logging.getLogger(__name__)
TOKENIZER_FILE = "tokenizer.json"
# Special tokens as T5's tokenizer files name them; T5TokenizerFast registered these (and the files'
# additional special tokens) as special added tokens, so a literal "</s>" in a text is the one token.
_SPECIAL_TOKEN_DEFAULTS = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def _special_tokens(directory: Path) -> dict:
    """eos/unk/pad and the additional special tokens named by ``special_tokens_map.json`` (else
    ``tokenizer_config.json``), as plain strings."""
    found: dict = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map wins where both say
        path = directory / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        for key in (*_SPECIAL_TOKEN_DEFAULTS, "additional_special_tokens"):
            if key in data and data[key] is not None:
                found[key] = data[key]

    def content(token) -> str:
        return token["content"] if isinstance(token, dict) else str(token)

    specials = {key: content(found.get(key, default)) for key, default in _SPECIAL_TOKEN_DEFAULTS.items()}
    specials["additional_special_tokens"] = [content(t) for t in found.get("additional_special_tokens", [])]
    return specials


def load_tokenizer(directory: str | Path):
    """The T5 tokenizer saved in a local directory, with the pipeline of its ``tokenizer.json`` as saved.

    Returns a transformers fast tokenizer (for saving, decoding and the usual attributes) around that
    pipeline. `tokenizer_from` also takes a hub id.
    """
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    path = directory / TOKENIZER_FILE
    if not directory.is_dir():
        raise ValueError(f"could not load a tokenizer from {directory}: not a directory")
    if not path.is_file():
        hint = " (it has only the sentencepiece model spiece.model)" if (directory / "spiece.model").is_file() else ""
        raise ValueError(
            f"could not load a tokenizer from {directory}: no {TOKENIZER_FILE}{hint}; SeViLA encodes with the "
            f"fast tokenizer's saved pipeline, as the original does (Flan-T5's {TOKENIZER_FILE})"
        )
    try:
        backend = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for malformed files
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: not a readable tokenizer file ({first_line})") from None
    specials = _special_tokens(directory)
    names = [specials[key] for key in _SPECIAL_TOKEN_DEFAULTS] + specials["additional_special_tokens"]
    backend.add_special_tokens([AddedToken(name, special=True, normalized=False) for name in names])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **{key: specials[key] for key in _SPECIAL_TOKEN_DEFAULTS},
        additional_special_tokens=specials["additional_special_tokens"],
    )


TOKENIZER_PATTERNS = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def tokenizer_from(name_or_path: str | Path):
    """`load_tokenizer` of a local directory or a Hugging Face hub id (only its tokenizer files are downloaded)."""
    return load_tokenizer(resolve_directory(name_or_path, TOKENIZER_PATTERNS))


def single_token_id(tokenizer, word: str) -> int:
    """The id of ``word`` as one sentencepiece token (e.g. ``"yes"`` -> ``▁yes``); error if it splits."""
    ids = _backend(tokenizer).encode(word, add_special_tokens=False).ids
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(f"the tokenizer splits {word!r} into {len(ids)} tokens {pieces}; SeViLA needs one token")
    if ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"{word!r} is not in the tokenizer's vocabulary (it maps to the unknown token)")
    return ids[0]


def _backend(tokenizer):
    """A private copy of a fast tokenizer's `tokenizers` pipeline, with no padding or truncation set."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(
            f"SeViLA needs a fast tokenizer (one with a tokenizers pipeline), got {type(tokenizer).__name__}; "
            "load it with sevila.model.load_tokenizer"
        )
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


@dataclass
class TokenizedText:
    ids: torch.Tensor  # (rows, length) int64
    mask: torch.Tensor  # (rows, length) int64, 0 on padding

    def repeat_interleave(self, repeats: int) -> TokenizedText:
        return TokenizedText(self.ids.repeat_interleave(repeats, dim=0), self.mask.repeat_interleave(repeats, dim=0))

    def to(self, device: torch.device | str) -> TokenizedText:
        return TokenizedText(self.ids.to(device), self.mask.to(device))


class PromptTruncated(UserWarning):
    """A prompt was longer than ``max_text_length`` tokens and lost its end (as in the reference)."""


_OPTION_MARKER = re.compile(r" Option ([A-Z]): ")


class PromptTokenizer:
    """Wraps a T5 tokenizer with the reference's settings and resolves the special-meaning token ids."""

    def __init__(self, tokenizer, config: SeViLAConfig):
        self.tokenizer = tokenizer
        self.max_length = config.max_text_length
        pad = {"pad_id": tokenizer.pad_token_id, "pad_token": tokenizer.pad_token}
        # Truncation counts the ``</s>`` the post-processor appends, so it stays last (as in the reference).
        self._texts = _backend(tokenizer)
        self._texts.enable_truncation(self.max_length)
        self._texts.enable_padding(**pad)
        self._prefixes = _backend(tokenizer)
        self._prefixes.enable_padding(**pad)
        self.yes_id = single_token_id(tokenizer, config.yes_word)
        self.no_id = single_token_id(tokenizer, config.no_word)
        self.option_ids = [single_token_id(tokenizer, letter) for letter in OPTION_LETTERS]
        self.frame_prefix = self.prefixes([config.frame_prefix])
        self._keyframe_prefixes: dict[int, TokenizedText] = {}
        self._config = config
        self._warned: set[str] = set()  # prompt texts already warned about

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        """Prompts and targets: with ``</s>``, truncated to ``max_text_length``, padded to the longest.

        Truncation is the reference's. An answerer prompt that loses options to it gets a `PromptTruncated`
        warning naming them, once per prompt text; losing only the trailing instruction (common with five
        long options) is logged at debug level, so an evaluation or a training run does not repeat it.
        """
        if isinstance(texts, str):
            raise TypeError("expected a list of strings, got a single string")
        texts = list(texts)
        encodings = self._texts.encode_batch(texts, add_special_tokens=True)
        for text, encoding in zip(texts, encodings):
            if encoding.overflowing:
                self._warn_truncated(text, encoding)
        return _tensors(encodings)

    def _warn_truncated(self, text: str, encoding) -> None:
        full = len(self._prefixes.encode(text, add_special_tokens=True).ids)
        kept_ends = [end for (_, end), special in zip(encoding.offsets, encoding.special_tokens_mask) if not special]
        kept = max(kept_ends, default=0)  # characters of `text` that survive
        # Answerer prompts: " Option X: text" up to the next option or the instruction.
        markers = [(m.start(), m.group(1)) for m in _OPTION_MARKER.finditer(text)]
        instruction = text.find(" " + QA_INSTRUCTION)
        ends = [start for start, _ in markers[1:]] + [instruction if instruction >= 0 else len(text)]
        lost = [letter for (_, letter), end in zip(markers, ends) if end > kept]
        what = f", losing option{'s' if len(lost) > 1 else ''} {', '.join(lost)}" if lost else ""
        shown = text if len(text) <= 80 else text[:77] + "..."
        message = (
            f"prompt cut to {self.max_length} tokens as the original does: {full - self.max_length} of its "
            f"{full} tokens dropped from the end{what}: {shown!r}"
        )
        if not lost:
            logger.debug(message)
        elif text not in self._warned:
            self._warned.add(text)
            warnings.warn(message, PromptTruncated, stacklevel=3)

    def prefixes(self, texts: Sequence[str]) -> TokenizedText:
        """Frame prefixes: no special tokens; tokenised together, so shorter ones are padded (mask 0),
        as the reference does for ``Frame 1: `` ... ``Frame k: ``."""
        return _tensors(self._prefixes.encode_batch(list(texts), add_special_tokens=False))

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


def _tensors(encodings) -> TokenizedText:
    ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
    return TokenizedText(ids, mask)


def build_word_tokenizer(words: Sequence[str], extra_pieces: Sequence[str] = ()):
    """A small T5-compatible tokenizer whose vocabulary is ``words`` (one ``▁word`` piece each) plus single
    characters as a fallback; pad 0, eos 1, unk 2 as in T5. For tiny models and small synthetic worlds."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

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
        {ch for piece in pieces for ch in piece} | set(string.ascii_letters + string.digits + string.punctuation)
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

    # "▁" alone follows the specials (id 3, as in T5): it is the piece of a trailing or lone space.
    vocab = [(s, 0.0) for s in specials] + [("▁", -10.0)] + [(p, score(p)) for p in pieces if p != "▁"]
    model = models.Unigram(vocab, unk_id=2, byte_fallback=False)
    backend = Tokenizer(model)
    # The pipeline transformers 4.2x's T5 converter builds (Flan-T5's tokenizer.json): collapse repeated
    # spaces, then a Metaspace pre-tokenizer alone, so a trailing space is a "▁" token of its own.
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    specials = dict(eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials.values()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
