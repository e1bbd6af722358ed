"""The SeViLA model: modules, T5 input layouts, scoring and training losses."""

from sevila.model.outputs import AnswerOutput, FrameFeatures, Prediction, StageLoss
from sevila.model.precision import Precision
from sevila.model.sevila import SeViLA, select_keyframes
from sevila.model.text import PromptTokenizer, build_word_tokenizer, load_tokenizer

__all__ = [
    "AnswerOutput",
    "FrameFeatures",
    "Precision",
    "Prediction",
    "PromptTokenizer",
    "SeViLA",
    "StageLoss",
    "build_word_tokenizer",
    "load_tokenizer",
    "select_keyframes",
]
