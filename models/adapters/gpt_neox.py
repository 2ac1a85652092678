"""GPT-NeoX (Pythia, GPT-NeoX-20B, ...): other names for the same ends, and a separate LM head.

The base model sits under ``gpt_neox.``; its embedding is ``embed_in`` and its final norm
``final_layer_norm`` (LayerNorm with bias). The head is stored as ``embed_out.weight`` (transformers 5
renames it to ``lm_head`` on load and back on save). Embedding dropout before layer 0 is identity in eval;
parallel residual and partial rotary live inside the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

GPT_NEOX = register(
    Adapter(
        model_types=("gpt_neox",),
        build_base=base_class("GPTNeoXModel"),
        base_prefix="gpt_neox.",
        head_key="embed_out.weight",
        embed_attr="embed_in",
        norm_attr="final_layer_norm",
        notes="keys gpt_neox.embed_in / final_layer_norm / embed_out; parallel residual, partial rotary in layers",
    )
)
