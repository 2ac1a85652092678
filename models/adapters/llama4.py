"""Llama 4 (text model): MoE layers listed by global index, NoPE layers and chunked attention per layer.

``moe_layers`` holds global indices: ``localize`` re-expresses them for the span. ``no_rope_layers`` and
``layer_types`` (chunked or full attention) are per-layer lists that slice_config cuts per span; the
attention-temperature tuning of NoPE layers reads absolute positions from the cache, which a span's cache
has (it holds every token of the session).
"""

from __future__ import annotations

from transformers import PretrainedConfig

from models.adapters.base import Adapter, base_class, register


def localize_moe_layers(config: PretrainedConfig, sliced: PretrainedConfig, start: int, end: int) -> None:
    sliced.moe_layers = [i - start for i in config.moe_layers if start <= i < end]


LLAMA4_TEXT = register(
    Adapter(
        model_types=("llama4_text",),
        build_base=base_class("Llama4TextModel"),
        localize=localize_moe_layers,
        notes="moe_layers (global indices) localized per span; NoPE and chunked-attention layers sliced per span",
    )
)
