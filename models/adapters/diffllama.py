"""DiffLlama: the Llama layout with differential attention, whose mixing constant depends on the layer's depth.

Each attention sets ``lambda_init = 0.8 - 0.6 * exp(-0.3 * layer_idx)`` at construction from its *local* index;
``prepare_span`` recomputes it from the global one (views keep it: their layers are copies).
"""

from __future__ import annotations

from torch import nn
from transformers.models.diffllama.modeling_diffllama import lambda_init_fn

from models.adapters.base import Adapter, base_class, register


def global_lambda_init(base: nn.Module, start: int) -> None:
    for local, layer in enumerate(base.layers):
        layer.self_attn.lambda_init = lambda_init_fn(start + local)


DIFFLLAMA = register(
    Adapter(
        model_types=("diffllama",),
        build_base=base_class("DiffLlamaModel"),
        prepare_span=global_lambda_init,
        notes="Llama layout; differential attention's lambda_init recomputed from the global layer index",
    )
)
