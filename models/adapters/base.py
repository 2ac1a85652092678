"""What differs between architecture families, and nothing else.

The span and client-head code (models/span.py) is written once against an ``Adapter``: how to build the
family's base model (the transformers class that runs embeddings -> layers -> final norm) and how its
checkpoint names tensors. Adding a family is one new file in this package that calls ``register``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from torch import nn
from transformers import PretrainedConfig

from models.config_slice import slice_config
from swarm.errors import UnsupportedModelError


@dataclass(frozen=True)
class Adapter:
    """Per-family facts. ``base_prefix`` is where the base model sits in a *ForCausalLM checkpoint."""

    model_types: tuple[str, ...]
    build_base: Callable[[PretrainedConfig], nn.Module]  # config -> base model (e.g. LlamaModel)
    base_prefix: str = "model."
    head_key: str = "lm_head.weight"
    embed_attr: str = "embed_tokens"
    norm_attr: str = "norm"
    rotary_attr: str = "rotary_emb"
    layers_attr: str = "layers"  # the base model's ModuleList of decoder layers (Falcon: "h")
    head_bias_key: str | None = None  # the LM head's bias in the checkpoint, for heads that have one (Phi)
    learned_positions: bool = False  # a position table of max_position_embeddings rows (GPT-2, OPT): a hard limit
    # Before layer 0, on the client: (base model, input_ids [B, T], positions [B, T]) -> [B, T, H]; None: a
    # plain lookup in the ``embed_attr`` embedding. Positions are absolute (learned position embeddings).
    embed: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # After the LM head (logit scaling, final softcapping), as the family's *ForCausalLM does; None: nothing.
    logits: Callable[[PretrainedConfig, torch.Tensor], torch.Tensor] | None = None
    # After the last layer, before the LM head, on the client: (base model, hidden) -> hidden; None: the
    # ``norm_attr`` module (OPT: an optional final norm, then an optional down-projection).
    final: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    # Applied to a span's base model (not the client's) before its weights load, with the span's first global
    # layer index: turns off input steps the client's ``embed`` already did (Granite's embedding_multiplier,
    # learned positions) so they happen exactly once, and fixes what layers derive from their global index.
    prepare_span: Callable[[nn.Module, int], None] | None = None
    # Fills non-persistent buffers other than rotary frequencies (a meta build leaves them empty and no
    # checkpoint holds them), e.g. Gemma's embedding scale: (base model, device) -> None.
    init_buffers: Callable[[nn.Module, torch.device | str], None] | None = None
    # Re-expresses rules that pick a layer's kind from its global index (Qwen-MoE's sparse step, DeepSeek's
    # first dense layers) for the span's local indices 0..n-1: (full config, sliced config, start, end) -> None.
    localize: Callable[[PretrainedConfig, PretrainedConfig, int, int], None] | None = None
    # A span's empty session cache from its sliced config; None: DynamicCache(config=config).
    new_cache: Callable[[PretrainedConfig], Any] | None = None
    # Tensors outside the layers that the family's checkpoints spell otherwise than the module names them, as
    # (checkpoint name, base-model-local name); transformers renames them with patterns anchored at the whole
    # model's keys, which a base model loaded on its own never sees (Bailing's ``model.word_embeddings``).
    renamed_keys: tuple[tuple[str, str], ...] = ()
    # Where the checkpoint keeps the layers, when it names them otherwise than the module (EXAONE's
    # ``transformer.h.{i}`` for ``layers.{i}``: renamed on load inside each layer by transformers' converters).
    checkpoint_layers: str | None = None
    # The base model multiplies hidden states by the 2-D attention mask as given (Mamba's padding mask), so a
    # mask over past and new tokens would broadcast the new ones over the past: spans pass none (no padding).
    mask_free: bool = False
    # Why this config cannot be served although its family can (a variant whose layers need more than hidden
    # states, e.g. Gemma 4's per-layer token inputs); None: it can. get_adapter refuses it with that reason.
    refuse: Callable[[PretrainedConfig], str | None] | None = None
    notes: str = ""  # one line for docs/models.md: what this family needed beyond the Llama layout

    def embed_input(self, base: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """input_ids, positions: [B, T] -> hidden: [B, T, H], the family's step before layer 0."""
        if self.embed is not None:
            return self.embed(base, input_ids, positions)
        return getattr(base, self.embed_attr)(input_ids)

    def span_config(self, config: PretrainedConfig, start: int, end: int) -> PretrainedConfig:
        """The config a span [start, end) is built from: per-layer lists sliced, global-index rules localized."""
        sliced = slice_config(config, start, end)
        if self.localize is not None:
            self.localize(config, sliced, start, end)
        return sliced

    def final_hidden(self, base: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """hidden after the last layer -> what the LM head takes (the final norm, unless ``final`` says more)."""
        if self.final is not None:
            return self.final(base, hidden)
        return getattr(base, self.norm_attr)(hidden)

    @property
    def layer_prefix(self) -> str:
        """Checkpoint prefix of decoder layer i is ``f"{layer_prefix}{i}."``."""
        return self.checkpoint_layers or f"{self.base_prefix}{self.layers_attr}."

    @property
    def embed_key(self) -> str:
        return f"{self.base_prefix}{self.embed_attr}.weight"

    @property
    def norm_key(self) -> str:
        return f"{self.base_prefix}{self.norm_attr}.weight"

    def checkpoint_key(self, module_key: str, start: int) -> str:
        """The checkpoint name of a base-model tensor; local layer j of a span is global layer start + j."""
        match = re.match(rf"^{re.escape(self.layers_attr)}\.(\d+)\.(.+)$", module_key)
        if match:
            return f"{self.layer_prefix}{int(match.group(1)) + start}.{match.group(2)}"
        return f"{self.base_prefix}{module_key}"

    def local_names(self, names: list[str], start: int, count: int, wanted: set[str]) -> dict[str, str]:
        """Checkpoint names -> base-model-local names, for what a base model of layers
        [start, start + count) loads: those layers' tensors, whatever their on-disk spelling (converted on
        load), and the other base-model tensors it has under the same name (``wanted``)."""
        pattern = re.compile(rf"^{re.escape(self.layer_prefix)}(\d+)\.(.+)$")
        renamed = dict(self.renamed_keys)
        out: dict[str, str] = {}
        for name in names:
            match = pattern.match(name)
            if match:
                index = int(match.group(1))
                if start <= index < start + count:
                    out[name] = f"{self.layers_attr}.{index - start}.{match.group(2)}"
            elif renamed.get(name) in wanted:
                out[name] = renamed[name]
            elif name.startswith(self.base_prefix) and name[len(self.base_prefix):] in wanted:
                out[name] = name[len(self.base_prefix):]
        return out


class NoPositions(nn.Module):
    """Stands in for a learned position embedding on spans: the client added positions before layer 0, so
    a span's base model adds zeros (exact: x + 0 == x), in the span's dtype so nothing is upcast."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def forward(self, *args: torch.Tensor, position_ids: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        ids = position_ids if position_ids is not None else args[0]  # [B, T]
        return torch.zeros((*ids.shape, 1), dtype=self.dtype, device=ids.device)  # broadcasts over H


def local_prefix(count: int, start: int, end: int) -> int:
    """How many of span [start, end)'s layers fall in the model's first ``count`` layers (rules such as "the
    first k layers are dense", re-expressed for the span's local numbering)."""
    return min(max(int(count) - start, 0), end - start)


def base_class(name: str) -> Callable[[PretrainedConfig], nn.Module]:
    """A ``build_base`` that constructs ``transformers.<name>`` (e.g. "OlmoModel") from the config."""

    def build(config: PretrainedConfig) -> nn.Module:
        return getattr(transformers, name)(config)

    build.__name__ = f"build_{name}"
    return build


_REGISTRY: dict[str, Adapter] = {}


def register(adapter: Adapter) -> Adapter:
    """Make ``adapter`` the one ``get_adapter`` returns for each of its model types."""
    for model_type in adapter.model_types:
        _REGISTRY[model_type] = adapter
    return adapter


def supported_model_types() -> list[str]:
    return sorted(_REGISTRY)


def registered_adapters() -> dict[str, Adapter]:
    """model type -> adapter, sorted by model type (what docs/models.md is generated from)."""
    return {name: _REGISTRY[name] for name in sorted(_REGISTRY)}


_REFUSED: dict[str, str] = {}


def refuse(reasons: dict[str, str]) -> None:
    """Record model types that cannot be served, each with the reason (docs/models.md lists them)."""
    _REFUSED.update(reasons)


def refused_model_types() -> dict[str, str]:
    """model type -> why it cannot be served, sorted by model type."""
    return {name: _REFUSED[name] for name in sorted(_REFUSED)}


def get_adapter(config: PretrainedConfig) -> Adapter:
    """The adapter for ``config.model_type``; UnsupportedModelError for a family without one (with the reason
    where the family cannot be served) or a config its adapter refuses."""
    model_type = getattr(config, "model_type", None)
    adapter = _REGISTRY.get(model_type or "")
    if adapter is None:
        if model_type in _REFUSED:
            raise UnsupportedModelError(f"model type {model_type!r} cannot be served: {_REFUSED[model_type]}")
        raise UnsupportedModelError(
            f"model type {model_type!r} has no adapter; supported: {', '.join(supported_model_types())}"
        )
    reason = adapter.refuse(config) if adapter.refuse is not None and hasattr(config, "to_dict") else None
    if reason:
        raise UnsupportedModelError(f"this {model_type} model cannot be served: {reason}")
    return adapter
