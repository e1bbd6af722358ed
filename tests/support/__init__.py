"""Helpers the tests (and benchmarks) import as ``tests.support.<module>``; no tests here.

`paths`: where the shared data and the parity fixture are; `tiny`: tiny models and tokenizers built on the spot;
`parity`: the parity fixture recorded from the original implementation; `tokenization_cases`: the texts of the
tokenisation tests; `train`: tiny videos, records, model directories and run configs for the training tests.
"""
