"""The demo model: a tiny SeViLA taken through the paper's stages on the synthetic world (`sevila.synth`).

`backbone` pre-trains the frozen parts on single frames (BLIP-2's role), `ablations` measures frame
choices and localizers against the known evidence, `build` runs the whole pipeline over seeds and can ship
the result into the package as the model named ``demo``.
"""
