"""LFM2 (Liquid): a hybrid of short gated convolutions ("conv" layers) and attention, chosen per layer.

- ``layer_types`` ("conv" / "full_attention") is per-layer, so slice_config cuts it per span; the legacy
  ``full_attn_idxs`` (global indices) is rewritten for the span's local indices by ``localize_attention``.
- The final norm is ``embedding_norm`` (applied after the last layer despite its name): ``norm_attr``.
- A conv layer's cache holds the last ``conv_L_cache`` inputs, no keys and no length, and a span may hold no
  attention layer at all, where DynamicCache.get_seq_length raises (transformers asks an attention layer
  for the length). ``new_token_counting_cache`` gives a DynamicCache that counts tokens itself for such
  spans; ``count_tokens`` (a forward hook installed by ``prepare_span``) advances it after each call.

Replaying a session's inputs in one step rebuilds the conv state (the last kernel-size inputs) exactly.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import CacheLayerMixin

from models.adapters.base import Adapter, base_class, register


class TokenCountingCache(DynamicCache):
    """DynamicCache whose length is known even when none of its layers keeps keys (all conv / linear)."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config=config)
        self.seen_tokens = 0  # advanced by ``count_tokens`` after each forward of the span

    def _has_kv_layer(self) -> bool:
        return any(isinstance(layer, CacheLayerMixin) for layer in self.layers)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        if self._has_kv_layer():
            return super().get_seq_length(layer_idx)
        return self.seen_tokens

    def get_mask_sizes(self, query_length: int, layer_idx: int) -> tuple[int, int]:
        if self._has_kv_layer():
            return super().get_mask_sizes(query_length, layer_idx)
        return self.seen_tokens + query_length, 0  # the (unused) full-attention mask of a span without one


def new_token_counting_cache(config: PretrainedConfig) -> TokenCountingCache:
    return TokenCountingCache(config)


def count_tokens(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
    """Forward hook on a span's base model: the tokens just run are now in its cache."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    hidden = kwargs.get("inputs_embeds")
    if isinstance(cache, TokenCountingCache) and hidden is not None:
        cache.seen_tokens += int(hidden.shape[1])  # hidden: [B, T, H]


def install_token_count(base: nn.Module, start: int) -> None:
    base.register_forward_hook(count_tokens, with_kwargs=True)


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
