"""Granite MoE (and its shared-expert variant): Granite's four multipliers around MoE layers.

The dense Granite adapter with another base class (models/adapters/granite.py): the embedding multiplier
once on the client, the logits scaling on the client, residual and attention multipliers inside layers.
Checkpoints store the experts as ``input_linear`` / ``output_linear`` / ``router.layer``; transformers
renames them on load and spans go through the same renaming.
"""

from __future__ import annotations

from dataclasses import replace

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
