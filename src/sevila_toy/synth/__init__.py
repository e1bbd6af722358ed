"""A small synthetic video-QA world in which the right frames matter, for training and checking a tiny SeViLA.

Coloured shapes drift on a plain background while 1–3 short events happen (a shape appears, moves fast,
changes colour, or several white shapes flash); each question's evidence lies in one or two events of
0.5–1 s, i.e. a few of the 32 uniformly sampled frames, which 4 uniform frames usually miss. Questions,
moment queries and the evidence windows are written as records that `sevila eval` and `sevila train` read.

Modules: `world` (vocabulary, clock, scene model), `scene` (planning a video), `render` (frames and MP4),
`questions` (templates), `evidence` (ground-truth windows), `vocabulary` (words for a tokenizer),
`generate` (the whole folder; `sevila synth`).
"""

from sevila_toy.synth.evidence import Evidence, read_evidence
from sevila_toy.synth.generate import (
    DEFAULT_FRACTIONS,
    SPLITS,
    Summary,
    SynthVideo,
    plan_world,
    split_videos,
    synthesize,
)
from sevila_toy.synth.questions import DEFAULT_QUESTION_TYPES, QUESTION_TYPES, Question
from sevila_toy.synth.vocabulary import world_vocabulary

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEFAULT_QUESTION_TYPES",
    "QUESTION_TYPES",
    "SPLITS",
    "Evidence",
    "Question",
    "Summary",
    "SynthVideo",
    "plan_world",
    "read_evidence",
    "split_videos",
    "synthesize",
    "world_vocabulary",
]
