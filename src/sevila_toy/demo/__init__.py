"""The demo-model builder: a tiny SeViLA taken through the paper's stages on the synthetic world
(`sevila_toy.synth`).

`backbone` pre-trains the frozen parts: T5 alone on the text option lookups of `text_tasks` (Flan-T5's role),
the ViT alone on reading frame facts (`vision_pretraining`, EVA-CLIP's role), then a Q-Former and T5 through the
frozen ViT on the frame tasks of `frame_tasks`, one frame or four (BLIP-2's role); `ablations` measures frame
choices and localizers against the known evidence; `build` runs the whole pipeline over seeds and, with
``--ship DIR``, writes the result to a folder in the layout of `sevila`'s ``demo`` model.
"""
