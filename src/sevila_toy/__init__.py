"""The toy world beside the library: a synthetic video-QA world and the demo model built on it.

`sevila` never imports this package. It uses `sevila` like any other user would:

* `sevila_toy.synth`: the synthetic world (scenes with short events, rendered videos, questions with known
  evidence windows, moment queries); `sevila synth` writes one.
* `sevila_toy.demo`: the demo-model builder (backbone pre-training, SeViLA's stages with the real training code,
  the ablations against the known evidence): ``python -m sevila_toy.demo.build``.
* `sevila_toy.preset`: the toy model's sizes (`toy_config`).
* `sevila_toy.pattern_videos`: small frame-numbered videos for tests and benchmarks.

The model it ships is package data of `sevila` (``sevila/assets/demo``, loaded by the name ``demo``); see
docs/demo.md for how a maintainer re-ships it.
"""
