"""The toy model's sizes: the SeViLA of the synthetic world (`sevila_toy.synth`) that `sevila_toy.demo` builds.

Not one of the library's named presets (`sevila.config.PRESETS`): the toy's code calls `toy_config` directly,
and a model built from it saves its full config, so loading one (the shipped ``demo`` model included) needs
nothing of this package.
"""

from __future__ import annotations

from sevila.config import LanguageModelConfig, QFormerConfig, SeViLAConfig, VisionConfig


def toy_config() -> SeViLAConfig:
    """64 px frames, a 512-piece word vocabulary, ~2 M parameters: trainable through every stage on a CPU."""
    return SeViLAConfig(
        vision=VisionConfig(
            image_size=64,
            patch_size=8,
            hidden_size=96,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=384,
        ),
        qformer=QFormerConfig(
            hidden_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            num_query_tokens=8,
        ),
        language_model=LanguageModelConfig(
            # 16 narrow heads rather than 4 wide ones of the same total width: with the wide ones this T5 rarely
            # learns to look up options (docs/demo.md, "What it took").
            vocab_size=512,
            d_model=128,
            d_kv=8,
            d_ff=256,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=16,
            # No dropout: the training data is an endless generated stream. Tied embeddings: the setting the
            # option lookup was first learned with.
            dropout_rate=0.0,
            tie_word_embeddings=True,
        ),
        num_frames=32,
        num_keyframes=4,
    )
