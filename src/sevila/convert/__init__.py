"""Weights of other projects into SeViLA: one module per foreign format, each with its documented key map.

* `blip2` — a transformers BLIP-2 (``Salesforce/blip2-flan-t5-xl`` or a directory): the paper's
  initialisation, BLIP-2's Q-Former in both branches (`from_blip2`, `config_from_blip2`).
* `lavis` — the original LAVIS checkpoints (``sevila_pretrained.pth``, ``blip2_pretrained_flant5xl.pth``,
  stage checkpoints, ``eva_vit_g.pth``): loaded into a model (`load_lavis_checkpoint`) or streamed into our
  format without building one (`convert_original_checkpoint`, behind ``sevila convert``); the paper's model
  from the Hub in one call (`convert_paper_model`, behind ``sevila convert --from-hub``).

The key maps are pure functions of the names (and the tensors they regroup); reading and writing files is
`sevila.model.weights`'s. These modules import the model, never the reverse.
"""

from sevila.convert.blip2 import BLIP2_HUB_ID, config_from_blip2, convert_blip2_state_dict, from_blip2
from sevila.convert.common import ConvertedState, load_converted
from sevila.convert.lavis import (
    convert_lavis_state_dict,
    convert_original_checkpoint,
    convert_paper_model,
    load_lavis_checkpoint,
)

__all__ = [
    "BLIP2_HUB_ID",
    "ConvertedState",
    "config_from_blip2",
    "convert_blip2_state_dict",
    "convert_lavis_state_dict",
    "convert_original_checkpoint",
    "convert_paper_model",
    "from_blip2",
    "load_converted",
    "load_lavis_checkpoint",
]
