"""Granite MoE (and its shared-expert variant): Granite's four multipliers around MoE layers.

The multipliers are handled as for dense Granite (models/adapters/granite.py): the embedding multiplier
once on the client, the logits scaling on the client, residual and attention multipliers inside layers.
Checkpoints store the experts as ``input_linear`` / ``output_linear`` / ``router.layer``; transformers
renames them on load and spans go through the same renaming.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register
from models.adapters.granite import multiplied_embed, no_input_scaling, scaled_logits

GRANITEMOE = register(
    Adapter(
        model_types=("granitemoe",),
        build_base=base_class("GraniteMoeModel"),
        embed=multiplied_embed,
        prepare_span=no_input_scaling,
        logits=scaled_logits,
        notes="Granite multipliers (embedding on the client only, logits scaling); expert tensors renamed on load",
    )
)
GRANITEMOESHARED = register(
    Adapter(
        model_types=("granitemoeshared",),
        build_base=base_class("GraniteMoeSharedModel"),
        embed=multiplied_embed,
        prepare_span=no_input_scaling,
        logits=scaled_logits,
        notes="Granite MoE plus a shared expert; same multipliers and on-load renaming as granitemoe",
    )
)
