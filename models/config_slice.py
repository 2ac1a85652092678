"""Cut a transformers config down to a span of layers [start, end).

A span is built as an ordinary base model of ``end - start`` layers, numbered 0..n-1 locally, so that the
KV cache transformers builds from the same sliced config lines up with it. Per-layer settings (such as
``layer_types``, which decides sliding vs full attention) must follow the layers they describe.
"""

from __future__ import annotations

import copy

from transformers import PretrainedConfig

from swarm.errors import SpanError

# Lists that can be as long as the layer stack by coincidence but are not per-layer.
_NOT_PER_LAYER = frozenset(
    {
        "architectures", "bos_token_id", "eos_token_id", "pad_token_id",
        "mlp_only_layers",  # (indices: localized)
        "ssm_multipliers", "mlp_multipliers",  # Falcon-H1: per projection section, not per layer
    }
)


def _per_layer_items(config: PretrainedConfig) -> list[tuple[str, list | tuple]]:
    """Attributes taken to be per-layer: any list/tuple as long as the layer stack (layer_types, ...)."""
    num_layers = int(config.num_hidden_layers)
    return [
        (name, value)
        for name, value in vars(config).items()
        if isinstance(value, list | tuple) and len(value) == num_layers and name not in _NOT_PER_LAYER
    ]


def check_span(num_layers: int, start: int, end: int) -> None:
    """Raise SpanError unless 0 <= start < end <= num_layers."""
    if not 0 <= start < end <= num_layers:
        raise SpanError(f"span [{start}, {end}) is empty or outside the model's {num_layers} layers")


def slice_config(config: PretrainedConfig, start: int, end: int) -> PretrainedConfig:
    """A deep copy of ``config`` describing only layers [start, end); the input is left untouched."""
    num_layers = int(config.num_hidden_layers)
    check_span(num_layers, start, end)
    sliced = copy.deepcopy(config)
    for name, value in _per_layer_items(config):
        setattr(sliced, name, type(value)(value[start:end]))
    _slice_heterogeneity(sliced, start, end)
    sliced.num_hidden_layers = end - start
    return sliced


def _slice_heterogeneity(sliced: PretrainedConfig, start: int, end: int) -> None:
    """Heterogeneous configs (transformers' ``per_layer_config``, e.g. Gemma 4's head sizes per layer kind) keep
    their per-layer overrides by layer index: renumber those of [start, end) from 0 and drop the rest."""
    spec = sliced.__dict__.get("_heterogeneity_spec")
    if spec is not None:
        spec.per_layer_overrides = {
            index - start: overrides for index, overrides in spec.per_layer_overrides.items() if start <= index < end
        }


def empty_config(config: PretrainedConfig) -> PretrainedConfig:
    """A deep copy with no layers at all: the client's embed/norm/head model is built from it."""
    empty = copy.deepcopy(config)
    for name, value in _per_layer_items(config):
        setattr(empty, name, type(value)())
    _slice_heterogeneity(empty, 0, 0)
    empty.num_hidden_layers = 0
    return empty
