"""Record what the original SeViLA's tokenizer feeds T5 for the tokenisation cases.

The original loads ``T5TokenizerFast`` with transformers 4.2x and calls it with ``padding="longest",
truncation=True, max_length=77`` (prompts and targets, with ``</s>``) or ``add_special_tokens=False``
(frame prefixes). From the repository root: the cases in sevila's environment, then this script in an environment
with that version, not sevila's (it needs only transformers):

    python -m venv /tmp/tf426 && /tmp/tf426/bin/pip install transformers==4.26.1 tokenizers==0.13.3
    python -m tests.support.tokenization_cases > /tmp/cases.json
    /tmp/tf426/bin/python tests/data/record_tokenization_reference.py /tmp/cases.json \\
        ../shared/parity/tokenizer tests/data/tokenization_reference.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import tokenizers
import transformers
from transformers import T5TokenizerFast

MAX_LENGTH = 77


def main(cases_path: str, tokenizer_dir: str, output: str) -> None:
    cases = json.loads(Path(cases_path).read_text(encoding="utf-8"))
    tokenizer = T5TokenizerFast.from_pretrained(tokenizer_dir)
    settings = {
        "texts": dict(padding="longest", truncation=True, max_length=MAX_LENGTH),
        "prefixes": dict(padding="longest", truncation=True, max_length=MAX_LENGTH, add_special_tokens=False),
    }
    recorded = {
        "recorded_with": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                          "class": type(tokenizer).__name__},
        "tokenizer_json_sha256": hashlib.sha256((Path(tokenizer_dir) / "tokenizer.json").read_bytes()).hexdigest(),
        "special_ids": {"pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id},
        "word_ids": {w: tokenizer(w, add_special_tokens=False).input_ids for w in ["yes", "no", *"ABCDE"]},
    }
    for kind, batches in cases.items():
        recorded[kind] = {}
        for name, texts in batches.items():
            encoded = tokenizer(texts, **settings[kind])
            recorded[kind][name] = {"texts": texts, "ids": encoded.input_ids, "mask": encoded.attention_mask}
    Path(output).write_text(json.dumps(recorded, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:4])
