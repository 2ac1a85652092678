"""LFM2 (Liquid): a hybrid of short gated convolutions ("conv" layers) and attention, chosen per layer.

- ``layer_types`` ("conv" / "full_attention") is per-layer, so slice_config cuts it per span; the legacy
  ``full_attn_idxs`` (global indices) is rewritten for the span's local indices by ``localize_attention``.
- The final norm is ``embedding_norm`` (applied after the last layer despite its name): ``norm_attr``.
- A conv layer's cache holds the last ``conv_L_cache`` inputs, no keys and no length, and a span may hold no
  attention layer at all, where DynamicCache.get_seq_length raises (transformers asks an attention layer
  for the length): such spans get their length from models/adapters/token_count.py.

Replaying a session's inputs in one step rebuilds the conv state (the last kernel-size inputs) exactly.
"""

from __future__ import annotations

from dataclasses import replace

from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, local_prefix, register
from models.adapters.token_count import install_token_count, new_token_counting_cache


def localize_attention(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """``full_attn_idxs`` as the span's local indices (layer_types, already sliced, is what layers read)."""
    sliced.full_attn_idxs = [i for i, kind in enumerate(sliced.layer_types) if kind != "conv"]


LFM2 = register(
    Adapter(
        model_types=("lfm2",),
        build_base=base_class("Lfm2Model"),
        norm_attr="embedding_norm",
        localize=localize_attention,
        prepare_span=install_token_count,
        new_cache=new_token_counting_cache,
        notes="conv/attention hybrid by layer_types; final norm is embedding_norm; a token-counting cache "
        "gives conv-only spans their length",
    )
)


def localize_moe(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    """LFM2-MoE: layers < num_dense_layers (global index) are dense; as the span's local indices."""
    sliced.num_dense_layers = local_prefix(config.num_dense_layers, start, end)


LFM2_MOE = register(
    replace(
        LFM2,
        model_types=("lfm2_moe",),
        build_base=base_class("Lfm2MoeModel"),
        localize=localize_moe,
        notes="LFM2's conv/attention hybrid by layer_types with MoE layers after num_dense_layers (global "
        "index, localized per span); a token-counting cache gives conv-only spans their length",
    )
)
