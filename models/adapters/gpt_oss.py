"""gpt-oss: alternating sliding/full attention with learned attention sinks, MoE in every layer.

Checkpoints already hold the fused expert tensors (``mlp.experts.gate_up_proj`` and biases), so spans load
them by name; ``layer_types`` is sliced per span. (MXFP4-quantized releases need a dequantized copy.)
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

GPT_OSS = register(
    Adapter(
        model_types=("gpt_oss",),
        build_base=base_class("GptOssModel"),
        notes="fused experts stored as such; attention sinks; layer_types sliced per span",
    )
)
