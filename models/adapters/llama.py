"""The Llama family: Llama, Mistral, Qwen2 and Qwen3 share one layout.

embed_tokens -> decoder layers -> RMSNorm -> lm_head, tensors named ``model.layers.{i}.*`` in checkpoints.
They differ only in the transformers base-model class (Qwen3 adds q/k norms, Mistral and Qwen2 can slide
their attention window), which transformers itself implements, so one adapter serves them all.
"""

from __future__ import annotations

import transformers
from torch import nn
from transformers import PretrainedConfig

from models.adapters.base import Adapter, register

_BASE_CLASSES = {
    "llama": "LlamaModel",
    "mistral": "MistralModel",
    "qwen2": "Qwen2Model",
    "qwen3": "Qwen3Model",
}


def build_base(config: PretrainedConfig) -> nn.Module:
    """The family's base model (no LM head) for ``config``, with the attention a default load would use."""
    cls = getattr(transformers, _BASE_CLASSES[config.model_type])
    return cls(config)


LLAMA = register(
    Adapter(
        model_types=tuple(_BASE_CLASSES),
        build_base=build_base,
        notes="the reference layout; mistral/qwen2 sliding window and qwen3 q/k norms are inside transformers' layers",
    )
)
