"""Run a span of transformer layers (a peer's part) and the embed/head ends (the client's part).

A span is the family's own transformers base model built from ``slice_config(config, start, end)``:
layers are numbered 0..n-1 locally, so the DynamicCache built from the same sliced config lines up with
them, and sliding-window layers keep their type. Spans drop the embedding and replace the final norm with
Identity; the client runs both. Attention stays as a default from_pretrained would choose (sdpa), which
keeps split execution equal to unsplit generate() to float32 rounding.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import DynamicLayer

from models import batching
from models.adapters import Adapter, get_adapter
from models.checkpoint import (
    check_float_weights,
    checkpoint_names,
    default_dtype,
    fill_converted,
    fill_module,
    has_conversions,
    has_tensor,
    module_bytes,
    on_meta,
    read_tensors,
)
from models.config_slice import empty_config
from models.source import Checkpoint
from swarm.errors import ConfigError, SessionError


def _build_on_meta(adapter: Adapter, config: PretrainedConfig, dtype: torch.dtype) -> nn.Module:
    config.dtype = dtype  # as from_pretrained sets it: some modules read it (Apertus 1.5's xIELU parameters)
    with on_meta(), default_dtype(dtype):
        return adapter.build_base(config)


def _fresh_rotary(adapter: Adapter, base: nn.Module, device: str | torch.device) -> None:
    """Replace the rotary embedding: its inv_freq buffer is non-persistent, so a meta build leaves it empty.

    Computed on the CPU, as from_pretrained does, then moved: the same frequencies bit for bit.
    """
    old = getattr(base, adapter.rotary_attr, None)
    if old is None:
        return
    with torch.device("cpu"):
        fresh = type(old)(config=base.config)
    setattr(base, adapter.rotary_attr, fresh.to(device))


def _load_base(
    ckpt: Checkpoint,
    adapter: Adapter,
    config: PretrainedConfig,
    start: int,
    *,
    dtype: torch.dtype,
    device: str | torch.device,
    progress: bool,
    desc: str = "weights",
    keep_ends: bool = False,
) -> nn.Module:
    """A base model from ``config`` whose local layer j is checkpoint layer start + j, weights filled."""
    check_float_weights(ckpt)
    base = _meta_base(adapter, config, start, dtype=dtype, keep_ends=keep_ends)
    _fresh_rotary(adapter, base, device)
    if adapter.init_buffers is not None:
        adapter.init_buffers(base, device)
    reads = _reads(ckpt, adapter, base, start)
    if has_conversions(base):  # e.g. MoE experts stored one by one, fused in memory
        try:
            fill_converted(base, ckpt, reads, dtype=dtype, device=device)
        except ConfigError as e:
            raise ConfigError(f"{desc} (local layer j is layer {start} + j): {e}") from e
    else:
        tensors = read_tensors(ckpt, list(reads), dtype=dtype, device=device, progress=progress, desc=desc)
        fill_module(base, {local: tensors[name] for name, local in reads.items()})
    base.config.dtype = dtype
    return base.eval()


def _meta_base(
    adapter: Adapter, config: PretrainedConfig, start: int, *, dtype: torch.dtype, keep_ends: bool
) -> nn.Module:
    """The base model on the meta device; without ``keep_ends`` as a span has it (no embedding, no final norm)."""
    base = _build_on_meta(adapter, config, dtype)
    if not keep_ends:
        setattr(base, adapter.embed_attr, None)  # the client embeds
        setattr(base, adapter.norm_attr, nn.Identity())  # the client runs the final norm
        if adapter.prepare_span is not None:
            adapter.prepare_span(base, start)  # input steps already done once by the client's embed
    return base


def _reads(ckpt: Checkpoint, adapter: Adapter, base: nn.Module, start: int) -> dict[str, str]:
    """Checkpoint name -> base-model-local name of every tensor ``base`` (layers start.. of the checkpoint) reads.
    Families that transformers converts on load read their on-disk spelling (per-expert tensors, old names)."""
    if has_conversions(base):
        count = int(base.config.num_hidden_layers)
        return adapter.local_names(checkpoint_names(ckpt), start, count, set(base.state_dict()))
    return {adapter.checkpoint_key(local, start): local for local in base.state_dict()}


@dataclass(frozen=True)
class SpanPlan:
    """What loading a span would read: ``reads`` maps checkpoint tensor names to the span's module names as
    on disk (before transformers' conversions); ``tensors`` is every tensor name the built span holds."""

    reads: dict[str, str]
    tensors: frozenset[str]


def planned_reads(ckpt: Checkpoint, start: int, end: int) -> SpanPlan:
    """What ``SpanModel.load(ckpt, start, end)`` would read, without reading anything, from a meta build (a
    600B model's span plans in a second and no memory)."""
    adapter = get_adapter(ckpt.config)
    base = _meta_base(adapter, adapter.span_config(ckpt.config, start, end), start, dtype=torch.float32,
                      keep_ends=False)
    return SpanPlan(_reads(ckpt, adapter, base, start), frozenset(base.state_dict()))


def planned_client_reads(ckpt: Checkpoint) -> set[str]:
    """The checkpoint tensors ``ClientHead.load`` reads: embeddings, final norm and the LM head (unless tied)."""
    adapter = get_adapter(ckpt.config)
    base = _meta_base(adapter, empty_config(ckpt.config), 0, dtype=torch.float32, keep_ends=True)
    return set(_reads(ckpt, adapter, base, 0)) | set(_head_reads(ckpt, adapter).values())


class SpanModel:
    """Layers [start, end) of a model, fed and returning hidden states: [B, T, H] in, [B, T, H] out."""

    def __init__(self, base: nn.Module, start: int, end: int, dtype: torch.dtype, model_key: str) -> None:
        self.base = base
        self.config: PretrainedConfig = base.config
        self.start = start
        self.end = end
        self.hidden_size = int(self.config.hidden_size)
        self.dtype = dtype
        self.model_key = model_key
        self._batchable: bool | None = None  # decided on first use (builds an empty cache to look at it)
        self._mask_free = get_adapter(self.config).mask_free  # forward passes no 2-D mask (Mamba)
        self.full_config: PretrainedConfig | None = None  # the whole model's config: needed for views
        self._views: dict[tuple[int, int], SpanModel] = {}

    @classmethod
    def load(
        cls,
        ckpt: Checkpoint,
        start: int,
        end: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        progress: bool = True,
    ) -> SpanModel:
        """Build the span on meta and read only its layers' tensors (SpanError for a bad span)."""
        adapter = get_adapter(ckpt.config)
        config = adapter.span_config(ckpt.config, start, end)
        desc = f"layers {start}..{end - 1}"
        base = _load_base(
            ckpt, adapter, config, start, dtype=dtype, device=device, progress=progress, desc=desc
        )
        span = cls(base, start, end, dtype, ckpt.model_key)
        span.full_config = ckpt.config
        return span

    def view(self, start: int, end: int) -> SpanModel:
        """Layers [start, end) of this span as a span of their own, sharing its weights (no copy): what a
        session that asked for part of the span runs (routes may use any part of a span).

        The view's decoder layers are copies of the span's modules around the same tensors, renumbered so
        its first layer is local layer 0 (a cache built from the view's config lines up with them); its
        config is the family's span config for [start, end). ``check_views`` decides whether views of this
        family are exact before any is served."""
        if (start, end) == (self.start, self.end):
            return self
        if not self.start <= start < end <= self.end:
            raise SessionError(f"layers {start}:{end} are not inside this span's {self.start}:{self.end}")
        if self.full_config is None:
            raise SessionError("this span was not loaded from a checkpoint: it has no views")
        key = (start, end)
        if key not in self._views:
            adapter = get_adapter(self.config)
            config = adapter.span_config(self.full_config, start, end)
            config.dtype = self.dtype
            config._attn_implementation = self.config._attn_implementation  # masks are built for it
            offset = start - self.start
            layers = getattr(self.base, adapter.layers_attr)[offset:end - self.start]
            base = copy.copy(self.base)  # the same submodules and tensors; its own attribute dicts below
            base._modules = dict(self.base._modules)
            base._modules[adapter.layers_attr] = nn.ModuleList(_renumbered(layer, offset) for layer in layers)
            base.config = config
            view = SpanModel(base, start, end, self.dtype, self.model_key)
            view.full_config = self.full_config
            self._views[key] = view
        return self._views[key]

    def check_views(self) -> bool:
        """Whether views are exact for this span: its two halves, one after the other, give what the whole
        span gives, over a 3-token prefill and a decode step (float rounding allowed). False where the
        family's cache is not a plain per-layer cache (hybrids count tokens across layers) or the span has
        a single layer."""
        if self.end - self.start < 2 or self.full_config is None or get_adapter(self.config).new_cache is not None:
            return False
        mid = (self.start + self.end) // 2
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(1, t, self.hidden_size, generator=gen).to(self.device, self.dtype) for t in (3, 1)]
        try:
            first, second = self.view(self.start, mid), self.view(mid, self.end)
            whole, a, b = self.new_cache(), first.new_cache(), second.new_cache()
            for x in inputs:
                want = self.forward(x, whole)
                got = second.forward(first.forward(x, a), b)
                scale = float(want.abs().max()) + 1e-6
                if not torch.isfinite(got).all() or float((got - want).abs().max()) > 1e-3 * scale:
                    return False
        except Exception:  # noqa: BLE001 - a family whose modules cannot be renumbered serves whole spans
            self._views.clear()
            return False
        return True

    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def new_cache(self) -> Any:
        """An empty KV cache for one session, shaped by the sliced config (sliding layers included)."""
        adapter = get_adapter(self.config)
        if adapter.new_cache is not None:
            return adapter.new_cache(self.config)  # e.g. hybrid families' token-counting cache
        return DynamicCache(config=self.config)

    def cache_length(self, cache: Any) -> int:
        """Tokens already seen by this cache (its next position)."""
        return int(cache.get_seq_length())

    def rewind(self, cache: Any, position: int) -> None:
        """Cut ``cache`` back to its first ``position`` tokens (SessionError where the family's cache cannot be
        cut: see ``can_rewind``)."""
        if not can_rewind(cache):
            raise SessionError(f"{self.config.model_type} caches cannot be rewound (sliding-window or recurrent "
                               "layers): speculative decoding is not available for this model")
        length = self.cache_length(cache)
        if not 0 <= position <= length:
            raise SessionError(f"cannot rewind a cache of {length} tokens to position {position}")
        cache.crop(position - length)  # a negative count removes that many tokens from the end

    def reorder(self, cache: Any, rows: torch.Tensor) -> None:
        """Beam search: the cache's row i becomes its row ``rows[i]`` (SessionError where the family's cache
        holds more than per-layer keys and values: the hybrids' token-counting caches)."""
        if type(cache) is not DynamicCache:
            raise SessionError(f"{self.config.model_type} caches cannot be reordered: beam search is not available "
                               "for this model")
        cache.reorder_cache(rows.to(self.device))

    def forward(self, hidden: torch.Tensor, cache: Any) -> torch.Tensor:
        """Run the span on ``hidden`` ([B, T, H], positions cache_length .. +T), extending ``cache``."""
        batch, steps, _ = hidden.shape  # hidden: [B, T, H]
        past = self.cache_length(cache)
        device = hidden.device
        positions = torch.arange(past, past + steps, device=device)  # [T]
        position_ids = positions.unsqueeze(0).expand(batch, -1)  # [B, T]
        attention_mask = None if self._mask_free else torch.ones(batch, past + steps, dtype=torch.long, device=device)
        with torch.inference_mode():
            out = self.base(
                inputs_embeds=hidden,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
            )
        return out.last_hidden_state  # [B, T, H]

    __call__ = forward

    @property
    def batchable(self) -> bool:
        """Whether ``forward_batch`` may run several sessions at once: plain DynamicCache sessions (not the
        hybrids' caches) of full and sliding attention layers, and a family not in ``batching.DENY``."""
        if self._batchable is None:
            self._batchable = batching.batchable(get_adapter(self.config), self.config)
        return self._batchable

    def forward_batch(self, rows: Sequence[tuple[torch.Tensor, Any]]) -> list[torch.Tensor]:
        """rows: (hidden [b_i, T, H], that session's cache) with the same T for every row (ValueError
        otherwise), sessions at any positions. Runs them as ONE forward pass (models/batching.py) and extends
        each cache as ``forward(hidden, cache)`` alone would. Returns each row's output [b_i, T, H]."""
        if not rows:
            return []
        if not self.batchable:
            raise ValueError(f"{self.config.model_type} spans cannot batch sessions (see SpanModel.batchable)")
        if len(rows) == 1:
            return [self.forward(*rows[0])]  # nothing to pad: the plain pass, no copy of the cache
        return batching.run_batch(self.base, self.config, rows)

    def weight_bytes(self) -> int:
        return module_bytes(self.base)


def _renumbered(layer: nn.Module, offset: int) -> nn.Module:
    """A copy of ``layer``'s modules that shares its parameters and buffers, with every ``layer_idx`` (what
    attention and state layers index the cache by; GPT-Neo's ``layer_id``) lowered by ``offset``."""
    if offset == 0:
        return layer
    shared = {id(t): t for t in itertools.chain(layer.parameters(), layer.buffers())}
    clone = copy.deepcopy(layer, shared)
    for module in clone.modules():
        for attr in ("layer_idx", "layer_id"):  # GPT-Neo indexes its cache by layer_id
            index = getattr(module, attr, None)
            if isinstance(index, int) and not isinstance(index, bool):
                setattr(module, attr, index - offset)
    return clone


def can_rewind(cache: Any) -> bool:
    """Whether ``cache`` can be cut back to an earlier position: a plain DynamicCache of full-attention layers
    (a sliding window forgets what a rewind would need, a recurrent state cannot be cut at all)."""
    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


def model_can_rewind(config: PretrainedConfig) -> bool:
    """Whether every span of this model keeps caches that ``SpanModel.rewind`` can cut (the client asks before it
    decodes speculatively)."""
    adapter = get_adapter(config)
    if adapter.new_cache is not None:
        return False
    return can_rewind(DynamicCache(config=adapter.span_config(config, 0, int(config.num_hidden_layers))))


def model_can_reorder(config: PretrainedConfig) -> bool:
    """Whether every span of this model keeps plain per-layer caches that ``SpanModel.reorder`` can reorder
    (the client asks before a beam search): not the hybrids' token-counting caches."""
    return get_adapter(config).new_cache is None


class ClientHead:
    """The model's two ends, held by the client: embeddings before layer 0, final norm + LM head after."""

    def __init__(self, base: nn.Module, lm_head: nn.Linear, adapter: Adapter, dtype: torch.dtype) -> None:
        self.base = base  # a 0-layer base model: embeddings and final norm only
        self.lm_head = lm_head
        self.adapter = adapter
        self.hidden_size = int(base.config.hidden_size)
        self.vocab_size = int(lm_head.out_features)
        self.dtype = dtype

    @classmethod
    def load(cls, ckpt: Checkpoint, *, dtype: torch.dtype = torch.float32, device: str = "cpu") -> ClientHead:
        """Read embeddings, final norm and LM head only; tie the head to the embeddings when the model does."""
        adapter = get_adapter(ckpt.config)
        config = empty_config(ckpt.config)
        base = _load_base(
            ckpt, adapter, config, 0, dtype=dtype, device=device, progress=False, keep_ends=True
        )
        embedding: nn.Embedding = getattr(base, adapter.embed_attr)
        with on_meta():
            lm_head = nn.Linear(
                embedding.embedding_dim, embedding.num_embeddings, bias=adapter.head_bias_key is not None
            )
        keys = _head_reads(ckpt, adapter)
        tensors = read_tensors(ckpt, list(keys.values()), dtype=dtype, device=device) if keys else {}
        own = {local: tensors[key] for local, key in keys.items()}
        if "weight" in own:
            fill_module(lm_head, own)
        else:
            lm_head.weight = embedding.weight  # tied: one tensor, as in the unsplit model
            if "bias" in own:
                lm_head.bias = nn.Parameter(own["bias"], requires_grad=False)
        return cls(base, lm_head.eval(), adapter, dtype)

    def embed(self, input_ids: torch.LongTensor, start: int = 0) -> torch.Tensor:
        """input_ids: [B, T] at positions start .. start + T - 1 -> hidden: [B, T, H], whatever the base
        model does before layer 0 (families with learned position embeddings need ``start``)."""
        batch, steps = input_ids.shape
        if self.adapter.learned_positions:
            limit = int(self.base.config.max_position_embeddings)
            if start + steps > limit:
                raise SessionError(
                    f"position {start + steps - 1} is past this model's {limit} learned positions: "
                    f"prompt plus new tokens must stay within {limit}"
                )
        positions = torch.arange(start, start + steps, device=input_ids.device).expand(batch, -1)  # [B, T]
        with torch.inference_mode():
            return self.adapter.embed_input(self.base, input_ids, positions)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [B, T, H] (after the last layer) -> logits: [B, T, V] float32."""
        with torch.inference_mode():
            logits = self.lm_head(self.adapter.final_hidden(self.base, hidden.to(self.dtype)))
            if self.adapter.logits is not None:
                logits = self.adapter.logits(self.base.config, logits)  # scaling/softcapping of *ForCausalLM
            return logits.float()

    def weight_bytes(self) -> int:
        return module_bytes(nn.ModuleList([self.base, self.lm_head]))  # a tied head is counted once


def _head_reads(ckpt: Checkpoint, adapter: Adapter) -> dict[str, str]:
    """The LM head's tensors the client reads, as head-local name -> checkpoint name: its weight unless it is tied
    to the embeddings, and its bias (Phi), which a biased head keeps even when the weight is tied."""
    keys = {"weight": adapter.head_key} if _has_own_head(ckpt, adapter) else {}
    if adapter.head_bias_key is not None:
        keys["bias"] = adapter.head_bias_key
    return keys


def _has_own_head(ckpt: Checkpoint, adapter: Adapter) -> bool:
    """Whether the checkpoint stores an LM head rather than reusing the embeddings."""
    return not getattr(ckpt.config, "tie_word_embeddings", False) and has_tensor(ckpt, adapter.head_key)
