"""What T5 is fed: the ids and masks of every prompt, target and frame prefix.

Two references, on the parity fixture's tokenizer (built like Flan-T5's: a ``Metaspace`` pre-tokenizer
alone): the ``tokenizer.json`` pipeline as saved, run by `tokenizers` itself, on every prompt style of
every dataset's real release files; and the ids the original's ``T5TokenizerFast`` (transformers 4.26.1)
recorded for a fixed set of texts (``data/tokenization_reference.json``), which fails whenever an
installed transformers or tokenizers changes what the model is fed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from sevila.config import SeViLAConfig
from sevila.model import build_word_tokenizer, load_tokenizer
from sevila.model.text import PromptTokenizer
from tests.support.paths import shared_dir
from tests.support.tokenization_cases import EDGE_TEXTS, all_cases, prefix_batches

RECORDED = Path(__file__).resolve().parent / "data" / "tokenization_reference.json"
MAX_LENGTH = 77
SPECIAL_TOKEN_TEXTS = ("</s>", "<pad>", "<unk>", "<extra_id_")


@pytest.fixture(scope="module")
def tokenizer_dir(parity) -> Path:
    return parity.root / "tokenizer"


@pytest.fixture(scope="module")
def ours(tokenizer_dir) -> PromptTokenizer:
    return PromptTokenizer(load_tokenizer(tokenizer_dir), SeViLAConfig.preset("tiny"))


@pytest.fixture(scope="module")
def saved_pipeline(tokenizer_dir) -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))


def expected(pipeline: Tokenizer, texts: list[str], special_tokens: bool) -> tuple[list[list[int]], list[list[int]]]:
    """Padded ids and masks as the reference builds them from the pipeline's plain encodings: right
    truncation to 77 tokens keeping ``</s>`` last, then padding with id 0 to the longest row."""
    rows = []
    for text in texts:
        ids = pipeline.encode(text, add_special_tokens=special_tokens).ids
        if len(ids) > MAX_LENGTH:
            ids = ids[: MAX_LENGTH - 1] + ids[-1:]
        rows.append(ids)
    width = max(len(r) for r in rows)
    return [r + [0] * (width - len(r)) for r in rows], [[1] * len(r) + [0] * (width - len(r)) for r in rows]


def as_lists(encoded) -> tuple[list[list[int]], list[list[int]]]:
    assert encoded.ids.dtype == encoded.mask.dtype == torch.long
    return encoded.ids.tolist(), encoded.mask.tolist()


@pytest.fixture(scope="module")
def cases() -> dict[str, dict[str, list[str]]]:
    datasets = shared_dir() / "datasets"
    if not datasets.is_dir():
        pytest.skip(f"shared datasets not found at {datasets} (set SEVILA_SHARED_DIR)")
    return all_cases(datasets)


@pytest.mark.parity
def test_every_prompt_and_target_of_every_dataset_is_the_saved_pipelines(ours, saved_pipeline, cases):
    checked = 0
    truncated = 0
    for name, texts in cases["texts"].items():
        if any(s in t for t in texts for s in SPECIAL_TOKEN_TEXTS):
            continue  # special tokens as text: see the recorded reference below
        assert as_lists(ours(texts)) == expected(saved_pipeline, texts, special_tokens=True), name
        checked += len(texts)
        truncated += sum(len(saved_pipeline.encode(t).ids) > MAX_LENGTH for t in texts)
    assert checked > 60 and truncated > 0  # the cases do reach the 77-token limit


@pytest.mark.parity
def test_a_trailing_space_is_a_token_of_its_own(ours, saved_pipeline):
    space = saved_pipeline.token_to_id("▁")
    frame = ours.prefixes(["Frame 1: "]).ids[0].tolist()
    assert frame[-1] == space and len(frame) == 4  # ▁Frame ▁1 : ▁
    assert ours(["yes "]).ids[0].tolist()[-2:] == [space, 1]
    assert ours(["two  spaces"]).ids.tolist() == ours(["two spaces"]).ids.tolist()  # collapsed, as T5's


@pytest.mark.parity
@pytest.mark.parametrize("text", [t for t in EDGE_TEXTS if not any(s in t for s in SPECIAL_TOKEN_TEXTS)])
def test_whitespace_and_unicode_strings_are_the_saved_pipelines(ours, saved_pipeline, text):
    assert as_lists(ours([text])) == expected(saved_pipeline, [text], special_tokens=True)


@pytest.mark.parity
@pytest.mark.parametrize("name", sorted(prefix_batches()))
def test_frame_prefixes_are_the_saved_pipelines_without_special_tokens(ours, saved_pipeline, name):
    texts = prefix_batches()[name]
    assert as_lists(ours.prefixes(texts)) == expected(saved_pipeline, texts, special_tokens=False)


# ---------------------------------------------------------------------------------------------- recorded original
@pytest.fixture(scope="module")
def recorded(tokenizer_dir) -> dict:
    data = json.loads(RECORDED.read_text(encoding="utf-8"))
    sha = hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()
    if sha != data["tokenizer_json_sha256"]:
        pytest.fail(
            f"{RECORDED.name} was recorded for another tokenizer.json than {tokenizer_dir}; "
            "record it again (tests/data/record_tokenization_reference.py says how)"
        )
    return data


@pytest.mark.parity
def test_special_and_answer_token_ids_are_the_originals(ours, recorded):
    tokenizer = ours.tokenizer
    special = {"pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id}
    assert special == recorded["special_ids"]
    words = recorded["word_ids"]
    assert [ours.yes_id] == words["yes"] and [ours.no_id] == words["no"]
    assert [[i] for i in ours.option_ids] == [words[letter] for letter in "ABCDE"]


@pytest.mark.parity
def test_texts_are_tokenised_as_the_originals_tokenizer_did(ours, recorded):
    """Every recorded batch (dataset prompts, targets, whitespace, unicode, literal special tokens, a
    mixed batch that pads): the same ids and masks, whatever transformers and tokenizers are installed."""
    for name, case in recorded["texts"].items():
        assert as_lists(ours(case["texts"])) == (case["ids"], case["mask"]), name


@pytest.mark.parity
def test_frame_prefixes_are_tokenised_as_the_originals_tokenizer_did(ours, recorded):
    for name, case in recorded["prefixes"].items():
        assert as_lists(ours.prefixes(case["texts"])) == (case["ids"], case["mask"]), name


@pytest.mark.parity
def test_the_recorded_cases_still_cover_todays_prompts(recorded, cases):
    """The recorded texts are today's prompts: a change to a prompt builder or converter asks for a new
    recording instead of leaving the reference to test stale strings."""
    for kind in ("texts", "prefixes"):
        assert {n: c["texts"] for n, c in recorded[kind].items()} == cases[kind]


# ---------------------------------------------------------------------------------------------- tokenizers we build
def test_word_tokenizer_has_the_real_pipeline():
    """Tiny test models get a tokenizer built like Flan-T5's, so the tests see the same trailing-space token."""
    tokenizer = build_word_tokenizer(["Frame", "yes", "no"])
    text = PromptTokenizer(tokenizer, SeViLAConfig.preset("tiny"))
    pieces = tokenizer.convert_ids_to_tokens(text.prefixes(["Frame 1: "]).ids[0].tolist())
    assert pieces == ["▁Frame", "▁1", ":", "▁"]
    assert tokenizer.convert_ids_to_tokens(text(["no "]).ids[0].tolist()) == ["▁no", "▁", "</s>"]


def test_a_saved_tokenizer_loads_with_its_pipeline(tmp_path):
    tokenizer = build_word_tokenizer(["Frame", "yes"])
    tokenizer.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    for text in ["Frame 1: ", "yes  ", "</s> x"]:
        assert again(text).input_ids == tokenizer(text).input_ids


def test_tokenizer_directories_that_cannot_be_used_are_named(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path / 'missing'}: not a directory"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "spm").mkdir()
    (tmp_path / "spm" / "spiece.model").write_bytes(b"\0")
    with pytest.raises(ValueError, match="no tokenizer.json \\(it has only the sentencepiece model"):
        load_tokenizer(tmp_path / "spm")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: not a readable tokenizer file"):
        load_tokenizer(tmp_path / "bad")
    (tmp_path / "bad" / "tokenizer.json").unlink()
    build_word_tokenizer(["x"]).save_pretrained(str(tmp_path / "bad"))
    (tmp_path / "bad" / "special_tokens_map.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="special_tokens_map.json: not valid JSON"):
        load_tokenizer(tmp_path / "bad")


def test_a_tokenizer_named_by_hub_id_comes_from_the_hub_cache(tmp_path, monkeypatch):
    """A model config names its tokenizer by hub id (``google/flan-t5-xl``); it is fetched like a model
    (here from a local hub cache, offline) and loaded with its saved pipeline."""
    import huggingface_hub.constants as hub

    from sevila.model.text import tokenizer_from

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--tester--tiny-t5"
    tokenizer = build_word_tokenizer(["Frame", "yes"])
    tokenizer.save_pretrained(str(repo / "snapshots" / revision))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    assert tokenizer_from("tester/tiny-t5")("Frame 1: ").input_ids == tokenizer("Frame 1: ").input_ids
    with pytest.raises(Exception, match="could not get tester/absent from the Hugging Face Hub"):
        tokenizer_from("tester/absent")
