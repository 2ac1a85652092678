"""Granite MoE (and its shared-expert, sliding-window and HyperCLOVA X relatives): Granite's four multipliers around MoE layers.

The dense Granite adapter with another base class (models/adapters/granite.py): the embedding multiplier
once on the client, the logits scaling on the client, residual and attention multipliers inside layers.
Checkpoints store the experts as ``input_linear`` / ``output_linear`` / ``router.layer``; transformers
renames them on load and spans go through the same renaming.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from transformers import PretrainedConfig

from models.adapters.base import base_class, register
from models.adapters.granite import GRANITE

GRANITEMOE = register(
    replace(
        GRANITE,
        model_types=("granitemoe",),
        build_base=base_class("GraniteMoeModel"),
        notes="Granite multipliers (embedding on the client only, logits scaling); expert tensors renamed on load",
    )
)
GRANITEMOESHARED = register(
    replace(
        GRANITE,
        model_types=("granitemoeshared",),
        build_base=base_class("GraniteMoeSharedModel"),
        notes="Granite MoE plus a shared expert; same multipliers and on-load renaming as granitemoe",
    )
)

# Sliding-window variants: window and layer kinds come per layer in ``layer_types`` (sliced per span).
for _model_type, _base in (("granite_swa", "GraniteSWAModel"), ("granitemoe_swa", "GraniteMoeSWAModel")):
    register(
        replace(
            GRANITE,
            model_types=(_model_type,),
            build_base=base_class(_base),
            notes="Granite multipliers (embedding on the client only, logits scaling); sliding/full attention by "
            "layer_types, sliced per span",
        )
    )


def multiplied_logits(config: PretrainedConfig, logits: torch.Tensor) -> torch.Tensor:
    """HyperCLOVA X multiplies the LM head's output by ``logits_scaling`` (Granite divides by it)."""
    return logits * config.logits_scaling


HYPERCLOVAX = register(
    replace(
        GRANITE,
        model_types=("hyperclovax",),
        build_base=base_class("HyperCLOVAXModel"),
        logits=multiplied_logits,
        notes="Granite-style multipliers: embedding on the client only, logits multiplied by logits_scaling",
    )
)
