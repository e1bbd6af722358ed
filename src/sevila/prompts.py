"""Prompt builders: the exact strings the original SeViLA feeds to Flan-T5, as pure functions.

Every string below reproduces the reference implementation character for character (spaces included;
docs/fidelity.md). No lower-casing and no punctuation changes are applied, except where
the original does so itself (a QVHighlights query gets a trailing '.', demo options get a trailing '.').

This module imports nothing heavy, so converters and data code can use it without torch.
"""

from __future__ import annotations

from collections.abc import Sequence

OPTION_LETTERS = "ABCDE"

QA_INSTRUCTION = "Considering the information presented in the frame, select the correct answer from the options."
LOC_INSTRUCTION = (
    "Does the information within the frame provide the necessary details to accurately answer the given question?"
)
VLEP_QUESTION = "Upon observing the provided frames, what is the most probable subsequent event?"
VLEP_LOC_INSTRUCTION = "Does the information within the frame provide the necessary details to predict next event?"


def _check_options(options: Sequence[str], letters: str = OPTION_LETTERS) -> None:
    if len(options) < 2:
        raise ValueError(f"a multiple-choice question needs at least 2 options, got {len(options)}")
    if len(options) > len(letters):
        raise ValueError(f"at most {len(letters)} options are supported (letters {letters!r}), got {len(options)}")
    for i, option in enumerate(options):
        if not isinstance(option, str):
            raise TypeError(f"option {i} must be a string, got {type(option).__name__}")


def answer_target(answer_index: int, letters: str = OPTION_LETTERS) -> str:
    """The answerer's training target, e.g. ``"Option C"``."""
    if not 0 <= answer_index < len(letters):
        raise ValueError(f"answer index {answer_index} is outside 0..{len(letters) - 1}")
    return "Option " + letters[answer_index]


def qa_prompt(question: str, options: Sequence[str], letters: str = OPTION_LETTERS) -> str:
    """Answerer prompt for NExT-QA, STAR, How2QA and TVQA (the reference's generic branch)."""
    _check_options(options, letters)
    text = "Question: " + question
    for letter, option in zip(letters, options):
        text += " Option " + letter + ": " + option
    return text + " " + QA_INSTRUCTION


def loc_prompt(question: str, options: Sequence[str]) -> str:
    """Localizer prompt for NExT-QA, STAR, How2QA and TVQA: option texts without letters, each followed by a space."""
    _check_options(options)
    hint = "Options: (" + "".join(option + " " for option in options) + ")"
    return "Question: " + question + " " + hint + " " + LOC_INSTRUCTION


def vlep_qa_prompt(options: Sequence[str]) -> str:
    """VLEP answerer prompt: no question, two future events, no trailing instruction."""
    if len(options) != 2:
        raise ValueError(f"VLEP records have exactly 2 options, got {len(options)}")
    return VLEP_QUESTION + " " + "Option A: " + options[0] + " Option B: " + options[1]


def vlep_loc_prompt(options: Sequence[str]) -> str:
    """VLEP localizer prompt: the full answerer prompt followed by the VLEP instruction."""
    return vlep_qa_prompt(options) + " " + VLEP_LOC_INSTRUCTION


def qvhighlights_loc_prompt(query: str) -> str:
    """QVHighlights localizer prompt (localizer pre-training); the query gets a trailing '.' if it has none."""
    if not query:
        raise ValueError("QVHighlights query is empty")
    if not query.endswith("."):
        query = query + "."
    return "Question: " + query + " " + "Option A: yes. Option B: no." + " " + LOC_INSTRUCTION


def qvhighlights_qa_prompt() -> str:
    """The (unused) answerer prompt of QVHighlights records, kept for completeness."""
    return QA_INSTRUCTION


def frame_labels_target(labels: Sequence[bool]) -> str:
    """Per-frame yes/no labels joined by '_' as in the reference (e.g. ``no_no_yes_yes``)."""
    return "_".join("yes" if label else "no" for label in labels)


def _demo_options(options: Sequence[str], letters: str = OPTION_LETTERS) -> str:
    _check_options(options, letters)
    parts = []
    for letter, option in zip(letters, options):
        if not option.endswith("."):
            option = option + "."
        # The demo writes no space after the colon, unlike the dataset prompts.
        parts.append("Option " + letter + ":" + option)
    return " ".join(parts)


def demo_qa_prompt(question: str, options: Sequence[str]) -> str:
    """Answerer prompt of the original Gradio demo (question used as typed)."""
    return "Question: " + question + " " + _demo_options(options) + " " + QA_INSTRUCTION


def demo_loc_prompt(question: str, options: Sequence[str]) -> str:
    """Localizer prompt of the original Gradio demo."""
    return "Question: " + question + " " + _demo_options(options) + " " + LOC_INSTRUCTION


# Styles worded as the generic multiple-choice prompts: the reference's datasets, and "synthetic", the style of
# the demo model's synthetic world (the wording it was trained on). Which dataset uses which style:
# `sevila.data.records.DATASET_TABLE`.
MULTIPLE_CHOICE_DATASETS = ("nextqa", "nextgqa", "star", "how2qa", "tvqa", "synthetic")
PROMPT_STYLES = (*MULTIPLE_CHOICE_DATASETS, "vlep", "qvhighlights", "demo")


def prompts_for(style: str, question: str | None, options: Sequence[str]) -> tuple[str, str]:
    """(answerer prompt, localizer prompt) of a multiple-choice question in the given style (`PROMPT_STYLES`)."""
    if style in MULTIPLE_CHOICE_DATASETS:
        if question is None:
            raise ValueError(f"{style} records need a question")
        return qa_prompt(question, options), loc_prompt(question, options)
    if style == "vlep":
        return vlep_qa_prompt(options), vlep_loc_prompt(options)
    if style == "demo":
        if question is None:
            raise ValueError("demo prompts need a question")
        return demo_qa_prompt(question, options), demo_loc_prompt(question, options)
    raise ValueError(f"unknown prompt style {style!r}; choose one of {PROMPT_STYLES}")
