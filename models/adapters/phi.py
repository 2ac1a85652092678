"""Phi (Phi-1, Phi-1.5, Phi-2): parallel attention + MLP on one LayerNorm, and an LM head with a bias.

The final norm is ``final_layernorm`` (LayerNorm with bias) and PhiForCausalLM's ``lm_head`` has a bias,
which the client's head loads (``head_bias_key``). Embedding dropout is identity in eval; partial rotary
and the optional q/k LayerNorms live inside the layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

PHI = register(
    Adapter(
        model_types=("phi",),
        build_base=base_class("PhiModel"),
        norm_attr="final_layernorm",
        head_bias_key="lm_head.bias",
        notes="final_layernorm with bias; LM head with a bias (head_bias_key); parallel attention/MLP in layers",
    )
)
