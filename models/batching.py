"""Many sessions' steps through a span in one forward pass, each session keeping its own cache.

Sessions sit at different positions (different past lengths). ``run_batch`` builds one batched DynamicCache
whose every layer holds the sessions' keys and values LEFT-padded to the longest past of that layer kind:
full-attention layers to ``Pmax`` columns, sliding-window layers to ``min(Pmax, window - 1)`` (what such a
layer keeps). The base model then runs once with

- a 2D attention mask ``[sum b_i, Pmax + T]``, 0 on each row's padding columns;
- per-row position ids ``past_i .. past_i + T - 1`` (rotary sees each session's own positions).

transformers builds every mask in the padded coordinates: ``q_offset = Pmax`` and, per layer kind,
``(kv_length, kv_offset) = get_mask_sizes(T)``: ``(Pmax + T, 0)`` for full layers and
``(min(Pmax, window - 1) + T, max(Pmax - window + 1, 0))`` for sliding ones, so the sliding layer's columns are
the last ones of the 2D mask. Causal and sliding-window rules compare ``kv_idx`` with ``q_idx``, which a
shift by the row's padding leaves unchanged, and padding columns are False in the 2D mask: a padded key
gets no attention weight. A sliding layer's padding columns left of a short row's real keys lie either on
the 2D mask's padding or outside every query's window. So each row sees exactly its own keys, as alone.

The batched cache's buffers leave T free columns after the past: each layer's new keys and values are
written there (no second copy of the past, as DynamicLayer's concatenation would make) and recorded, and
each session's cache is then extended with its rows through its own layers' ``update``: afterwards it is
what ``SpanModel.forward`` alone would have left (same lengths, same sliding trimming, values equal to float
rounding). A pass that fails leaves every session's cache untouched.

Cost: the merge copies every session's cache once per call (sum of past lengths x KV size, padded to the
longest past) and holds that copy for the pass; the write-back is the concatenation forward() alone does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer, get_layer_types_and_kwargs

from models.adapters import Adapter

# Layer kinds whose masks are shift-invariant rules over kv/q indices (what left padding needs).
_MERGEABLE_KINDS = frozenset({"full_attention", "sliding_attention"})
# Families that pass the checks above but that a left-padded batch cannot run exactly (model type -> why).
DENY: dict[str, str] = {
    # MLA expands its latent keys to every head before attention, yet keeps num_key_value_groups > 1: with any
    # mask at one query token, transformers' sdpa path packs the query for GQA and the shapes no longer match.
    "deepseek_v3": "transformers' sdpa packs MLA queries for GQA whenever a mask is passed at T=1: shape error",
}


def batchable(adapter: Adapter, config: PretrainedConfig) -> bool:
    """Whether sessions of a span with this config can share one forward pass (see the module docstring)."""
    if adapter.new_cache is not None or config.model_type in DENY:
        return False  # hybrids' conv/recurrent states, token counting; families in DENY
    kinds, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    if not set(kinds) <= _MERGEABLE_KINDS:
        return False  # chunked attention (offsets by left padding), indexed, dummy layers
    cache = DynamicCache(config=config)
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


class _RecordingCache(DynamicCache):
    """The batched cache of one pass. Each merged layer's past sits in a buffer with ``steps`` free columns at
    the end: ``update`` writes the new keys/values there and returns the whole buffer (what DynamicLayer's
    concatenation returns, without copying the past again), and remembers them (layer -> (k, v)) for the
    write-back. Layers with no past (every session empty) update as DynamicCache does."""

    def __init__(self, config: PretrainedConfig, steps: int) -> None:
        super().__init__(config=config)
        self.steps = steps
        self.buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> [B, heads, past + T, D] x 2
        self.added: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.added[layer_idx] = (key_states, value_states)  # [B, kv heads, T, head dim]
        if layer_idx not in self.buffers:
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        keys, values = self.buffers[layer_idx]
        keys[:, :, -self.steps :] = key_states
        values[:, :, -self.steps :] = value_states
        layer = self.layers[layer_idx]  # left as its own update would leave it (nothing reads it in this pass)
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length += self.steps
            keep = layer.sliding_window - 1
            layer.keys, layer.values = keys[:, :, -keep:], values[:, :, -keep:]
        else:
            layer.keys, layer.values = keys, values
        return keys, values


def _left_padded(parts: list[torch.Tensor | None], sizes: list[int], width: int, steps: int) -> torch.Tensor:
    """Per-row [b_i, heads, L_i, D] tensors (None: empty) -> [sum b_i, heads, width + steps, D]: each row's
    L_i columns end at ``width``, zeros left of them, the last ``steps`` columns left for ``update``."""
    ref = next(p for p in parts if p is not None and p.shape[-2] > 0)
    out = ref.new_empty((sum(sizes), ref.shape[1], width + steps, ref.shape[3]))
    row = 0
    for part, size in zip(parts, sizes, strict=True):
        length = 0 if part is None else part.shape[-2]
        if length < width:
            out[row : row + size, :, : width - length] = 0  # padding: masked, but never garbage
        if length:
            out[row : row + size, :, width - length : width] = part
        row += size
    return out


def _merge(
    config: PretrainedConfig, caches: list[Any], sizes: list[int], pasts: list[int], steps: int
) -> _RecordingCache:
    """One cache holding every row's past, left-padded per layer to that layer kind's longest past."""
    merged = _RecordingCache(config, steps)
    longest = max(pasts)
    if longest == 0:
        return merged  # nothing cached anywhere: layers initialize on the first update, as alone
    for index, layer in enumerate(merged.layers):
        parts = [cache.layers[index] if index < len(cache.layers) else None for cache in caches]
        if any(part is not None and type(part) is not type(layer) for part in parts):
            raise ValueError(f"layer {index} of a session cache is not a {type(layer).__name__}: not this span's")
        keys = [p.keys if p is not None and p.is_initialized else None for p in parts]
        values = [p.values if p is not None and p.is_initialized else None for p in parts]
        sliding = isinstance(layer, DynamicSlidingWindowLayer)
        width = min(longest, layer.sliding_window - 1) if sliding else longest
        if any(k is not None and k.shape[-2] > width for k in keys):
            raise ValueError(f"layer {index} holds more keys than its past ({width}): not a session cache of this span")
        buffers = _left_padded(keys, sizes, width, steps), _left_padded(values, sizes, width, steps)
        merged.buffers[index] = buffers
        layer.lazy_initialization(*buffers)  # device, dtype, window tensor
        layer.keys, layer.values = buffers[0][:, :, :width], buffers[1][:, :, :width]  # the past: mask sizes
        if sliding:
            layer.cumulative_length = longest  # masks: kv_offset = Pmax - window + 1, as the longest row alone
    return merged


def run_batch(base: nn.Module, config: PretrainedConfig, rows: Sequence[tuple[torch.Tensor, Any]]) -> list[torch.Tensor]:
    """rows: (hidden [b_i, T, H], that session's cache), one T -> outputs [b_i, T, H]; each cache extended."""
    steps = {int(hidden.shape[1]) for hidden, _ in rows}
    if len(steps) != 1:
        raise ValueError(f"every row of a batch must have the same number of tokens, got {sorted(steps)}")
    (step,) = steps
    hiddens = [hidden for hidden, _ in rows]
    caches = [cache for _, cache in rows]
    sizes = [int(hidden.shape[0]) for hidden in hiddens]
    pasts = [int(cache.get_seq_length()) for cache in caches]
    longest = max(pasts)
    device = hiddens[0].device
    attention_mask = torch.ones(sum(sizes), longest + step, dtype=torch.long, device=device)  # [B, Pmax + T]
    position_ids = torch.empty(sum(sizes), step, dtype=torch.long, device=device)  # [B, T]
    row = 0
    for size, past in zip(sizes, pasts, strict=True):
        attention_mask[row : row + size, : longest - past] = 0  # this row's left padding
        position_ids[row : row + size] = torch.arange(past, past + step, device=device)
        row += size
    with torch.inference_mode():
        merged = _merge(config, caches, sizes, pasts, step)
        out = base(
            inputs_embeds=torch.cat(hiddens),
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=merged,
            use_cache=True,
        ).last_hidden_state  # [B, T, H]
        for index in range(len(merged.layers)):
            if index not in merged.added:
                raise RuntimeError(f"layer {index} added no keys in a batched pass")
            keys, values = merged.added[index]
            for cache, k, v in zip(caches, keys.split(sizes), values.split(sizes), strict=True):
                cache.update(k, v, index)  # the session's own layer: concatenation, window trimming
        return [part.clone() for part in out.split(sizes)]  # each session's own tensor, not a view of the batch
