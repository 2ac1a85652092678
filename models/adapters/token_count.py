"""A session cache that knows its length when none of a span's layers keeps keys (hybrid families).

Conv layers (LFM2) and linear-attention layers (Qwen3-Next) keep fixed-size states, not a growing list of
keys, and transformers asks an attention layer for the cache's length. A span made only of such layers
would have none. ``TokenCountingCache`` counts the tokens it has seen instead; ``count_tokens``, a forward
hook that ``install_token_count`` puts on the span's base model, advances the count after each call.
Spans that do hold an attention layer defer to transformers.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import CacheLayerMixin
from transformers.models.minimax.modeling_minimax import MiniMaxCache


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


class MiniMaxCountingCache(MiniMaxCache):
    """MiniMax's own cache (its lightning-attention layers keep their state in ``linear_cache``, and MiniMaxModel
    accepts no other class), with its length counted: its lazily made layers cannot tell it when the span's
    first layer is a linear one."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def get_mask_sizes(self, query_length: int, layer_idx: int) -> tuple[int, int]:
        return self.seen_tokens + query_length, 0  # full attention over every token seen


COUNTING_CACHES = (TokenCountingCache, MiniMaxCountingCache)


def new_token_counting_cache(config: PretrainedConfig) -> TokenCountingCache:
    return TokenCountingCache(config)


def count_tokens(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
    """Forward hook on a span's base model: the tokens just run are now in its cache."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    hidden = kwargs.get("inputs_embeds")
    if isinstance(cache, COUNTING_CACHES) and hidden is not None:
        cache.seen_tokens += int(hidden.shape[1])  # hidden: [B, T, H]


def install_token_count(base: nn.Module, start: int) -> None:
    base.register_forward_hook(count_tokens, with_kwargs=True)
