"""Qwen3-Next: gated DeltaNet linear attention and gated full attention, by ``layer_types``, with Qwen-MoE MLPs.

- ``layer_types`` ("linear_attention" / "full_attention") is per-layer: slice_config cuts it per span.
- MoE layers are chosen by global index (``mlp_only_layers``, ``decoder_sparse_step``) as in Qwen2-MoE:
  localized per span; per-expert tensors on disk are fused on load (models/checkpoint.fill_converted).
- A linear-attention layer's cache holds a conv state and a recurrent state, no keys and no length; a
  span of only such layers gets its length from models/adapters/token_count.py.

Replaying a session's inputs in one step rebuilds the states with the chunked delta rule instead of the
per-token recurrence: equal up to float rounding, as replayed keys and values are for attention layers.
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register
from models.adapters.qwen2_moe import localize_sparse_layers
from models.adapters.token_count import install_token_count, new_token_counting_cache

QWEN3_NEXT = register(
    Adapter(
        model_types=("qwen3_next",),
        build_base=base_class("Qwen3NextModel"),
        localize=localize_sparse_layers,
        prepare_span=install_token_count,
        new_cache=new_token_counting_cache,
        notes="gated DeltaNet/attention hybrid by layer_types; MoE layers localized per span, experts fused on "
        "load; a token-counting cache gives linear-only spans their length",
    )
)
