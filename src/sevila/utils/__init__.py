"""The few helpers every room may use: atomic file writes (`io`), the checkpoint error type (`errors`) and grouping a batch by a key (`batching`).

Nothing here imports any other part of sevila, torch or transformers.
"""
