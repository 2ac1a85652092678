"""What differs between architecture families, and nothing else.

The span and client-head code (models/span.py) is written once against an ``Adapter``: how to build the
family's base model (the transformers class that runs embeddings -> layers -> final norm) and how its
checkpoint names tensors. Adding a family is one new file in this package that calls ``register``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig

from swarm.errors import UnsupportedModelError

_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")


def _embed_tokens(base: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The Llama-style step before layer 0: a plain embedding lookup."""
    return base.embed_tokens(input_ids)  # input_ids: [B, T] -> hidden: [B, T, H]


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
    embed: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _embed_tokens

    @property
    def layer_prefix(self) -> str:
        """Checkpoint prefix of decoder layer i is ``f"{layer_prefix}{i}."``."""
        return f"{self.base_prefix}layers."

    @property
    def embed_key(self) -> str:
        return f"{self.base_prefix}{self.embed_attr}.weight"

    @property
    def norm_key(self) -> str:
        return f"{self.base_prefix}{self.norm_attr}.weight"

    def checkpoint_key(self, module_key: str, start: int) -> str:
        """The checkpoint name of a base-model tensor; local layer j of a span is global layer start + j."""
        match = _LAYER_KEY.match(module_key)
        if match:
            return f"{self.layer_prefix}{int(match.group(1)) + start}.{match.group(2)}"
        return f"{self.base_prefix}{module_key}"


_REGISTRY: dict[str, Adapter] = {}


def register(adapter: Adapter) -> Adapter:
    """Make ``adapter`` the one ``get_adapter`` returns for each of its model types."""
    for model_type in adapter.model_types:
        _REGISTRY[model_type] = adapter
    return adapter


def supported_model_types() -> list[str]:
    return sorted(_REGISTRY)


def get_adapter(config: PretrainedConfig) -> Adapter:
    """The adapter for ``config.model_type``; UnsupportedModelError for a family without one."""
    model_type = getattr(config, "model_type", None)
    adapter = _REGISTRY.get(model_type or "")
    if adapter is None:
        raise UnsupportedModelError(
            f"model type {model_type!r} has no adapter; supported: {', '.join(supported_model_types())}"
        )
    return adapter
