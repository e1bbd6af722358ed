"""The demo model's tokenizer: one token per known word, forgiving of how a person types a question.

Case is folded, punctuation is split off into tokens of its own and runs of white space count as one, so
"What colour was the shape that appeared?", "what colour was the shape that appeared ?" and "WHAT colour was the
shape that appeared" give the same word tokens; a word outside the vocabulary is one ``<unk>`` (not a spray of
characters that the model never saw together). Ids follow T5's conventions, which the library relies on: pad 0,
eos 1 (appended to every text), unk 2. Saved as ``tokenizer.json`` like any fast tokenizer, so
`sevila.model.load_tokenizer` reads it back as saved and `sevila` needs nothing of this package to load the model.

The option letters A-E are the exception to folding case: written as a capital standing alone, each is a token
of its own, so the letter the answerer scores ("Option A") is never the article "a" that captions and questions
use ("Is there a red circle?"). One token for both taught the toy T5 to read one through the other.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from sevila.prompts import OPTION_LETTERS

SPECIALS = ("<pad>", "</s>", "<unk>")
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
_PREFIX = "▁"


def build_toy_tokenizer(words: Iterable[str]):
    """A case-folding, word-level T5-style tokenizer over `words` (and every ASCII punctuation mark)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for word in sorted({w.lower() for w in words} | set(string.punctuation)):
        vocab.setdefault(_PREFIX + word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    )
    # Words split at white space, then every punctuation mark on its own; each piece marked as a word start.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Metaspace(replacement=_PREFIX, prepend_scheme="always", split=False),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement=_PREFIX, prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS_ID)])
    specials = dict(pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials.values()])
    # Matched in the text as typed, before case is folded: a capital letter alone is the option letter.
    backend.add_tokens([AddedToken(letter, single_word=True, normalized=False) for letter in OPTION_LETTERS])
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
