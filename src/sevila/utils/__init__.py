"""The few helpers every room may use: atomic file writes (`io`) and the checkpoint error type (`errors`).

Nothing here imports any other part of sevila, torch or transformers.
"""
