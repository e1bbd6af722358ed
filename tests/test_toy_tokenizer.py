"""The demo model's tokenizer: T5's special ids, case and punctuation forgiven, one token for an unknown word."""

from __future__ import annotations

import json

import pytest

from sevila.hub import DEMO_DIR
from sevila.model.text import load_tokenizer, single_token_id
from sevila_toy.demo.build import toy_tokenizer
from sevila_toy.synth import QUESTION_TYPES, plan_world

pytestmark = pytest.mark.toy

TOKENIZER = toy_tokenizer()


def ids(text: str) -> list[int]:
    return TOKENIZER(text).input_ids


def test_special_ids_are_t5s():
    assert (TOKENIZER.pad_token_id, TOKENIZER.eos_token_id, TOKENIZER.unk_token_id) == (0, 1, 2)
    assert ids("red")[-1] == 1 and len(ids("red")) == 2  # one word, then </s>


def test_case_spacing_and_punctuation_do_not_change_the_words():
    asked = ids("What colour was the shape that appeared?")
    assert ids("what colour  was the shape that appeared ?") == asked
    assert ids("  WHAT Colour was the shape that appeared?") == asked
    assert ids("What colour was the shape that appeared") == [*asked[:-2], 1]  # the "?" is a token of its own
    assert ids("What colour was the shape that appeared?!") == [*asked[:-1], ids("!")[0], 1]
    assert ids("What colour was the shape that appeared…")[:-1] == [*asked[:-2], *[ids(".")[0]] * 3]


def test_an_unknown_word_is_one_unknown_token():
    asked = ids("What colour was the shape that appeared?")
    blob = ids("What colour was the blob that appeared?")
    assert blob == [*asked[:4], 2, *asked[5:]]
    assert ids("Wat colour") == [2, asked[1], 1]


def test_every_prompt_of_every_question_type_is_known_words():
    from sevila.data.targets import record_prompts

    texts = ["Frame 32: ", "Option E", "yes", "no"]
    for video in plan_world(60, seed=3, question_types=QUESTION_TYPES):
        for record in (*video.qa_records(), *video.moment_records()):
            texts.extend(record_prompts(record))
    for text in texts:
        assert 2 not in ids(text), text


def test_saved_and_loaded_by_the_library_as_saved(tmp_path):
    TOKENIZER.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "Question: WHAT colour did the red circle turn? Option A: blue Option B: green"
    assert loaded(text).input_ids == ids(text)
    words = ["yes", "no", *"ABCDE"]
    answer_ids = [single_token_id(loaded, w) for w in words]
    assert len(set(answer_ids)) == len(words) and min(answer_ids) > 2


def test_option_letters_are_not_the_article():
    letter_a = single_token_id(TOKENIZER, "A")
    assert letter_a != single_token_id(TOKENIZER, "a")
    assert ids("Option A: a red circle")[1] == letter_a
    assert letter_a not in ids("Is there a red circle? Answer yes or no.")
    assert ids("Option A:red.") == ids("OPTION A : Red .")  # the letter keeps its case, the rest folds


needs_demo = pytest.mark.skipif(
    not (DEMO_DIR / "model" / "config.json").is_file(),
    reason="the demo model is not in this checkout (docs/demo.md, The shipped demo)",
)


@needs_demo
def test_the_shipped_model_answers_case_and_punctuation_variants_alike():
    from sevila.inference import VideoQA

    example = json.loads((DEMO_DIR / "example.json").read_text())
    question, options = example["question"], example["options"]
    qa = VideoQA.load("demo", device="cpu", cache=False)
    video = qa.features(DEMO_DIR / example["video"])
    asked = qa.predict(video, question, options)
    # Case, runs of spaces and a space before the "?" change nothing; dropping the "?" would (it is a word).
    for variant in (question.lower(), question.upper(), "  " + question.replace(" ", "  ").replace("?", " ?")):
        again = qa.predict(video, variant, [o.upper() for o in options])
        assert again.index == asked.index and again.keyframes == asked.keyframes, variant
        assert again.option_scores == pytest.approx(asked.option_scores, abs=1e-4), variant
