"""BitNet b1.58: the Llama layout with ternary-weight linears (as transformers' BitNet modules compute them,
sub-norms before the attention output and MLP down projections) and squared-ReLU MLPs; spans are the family's
own modules, so nothing differs beyond the names transformers gives them."""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

BITNET = register(
    Adapter(
        model_types=("bitnet",),
        build_base=base_class("BitNetModel"),
        notes="Llama layout; BitNet linears, sub-norms and relu2 MLPs inside the layers",
    )
)
