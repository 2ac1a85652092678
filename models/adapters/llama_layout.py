"""Families whose base model is the Llama layout and nothing more, as far as spans are concerned.

Keys ``model.{embed_tokens,layers.{i},norm}`` and ``lm_head``; the client's embedding is a plain lookup and
its final step the ``norm`` module. What makes each family differ (MoE routers and shared experts, sliding
windows, latent or indexed attention, q/k norms, gated attention) lives inside transformers' layers, and the
per-layer choices are lists as long as the layer stack (``layer_types``, ``mlp_layer_types``,
``num_attention_heads_per_layer``), which models/config_slice.py cuts per span. Per-expert tensors on disk
are fused on load by transformers' own converters (models/checkpoint.fill_converted).
"""

from __future__ import annotations

from models.adapters.base import Adapter, base_class, register

_MLP_TYPES = "dense/sparse MLPs by mlp_layer_types, sliced per span"
_SLIDING = "sliding/full attention by layer_types, sliced per span"

# model type -> (transformers base model, what the family has inside its layers)
FAMILIES: dict[str, tuple[str, str]] = {
    "apertus1p5_text": ("Apertus1p5TextModel", "Apertus 1.5 text model; q/k norms and xIELU MLPs in layers"),
    "aria_text": ("AriaTextModel", "MoE with shared experts in every layer"),
    "axk1": ("AXK1Model", f"latent attention; {_MLP_TYPES}"),
    "axk2": ("AXK2Model", f"latent attention with a sparse indexer; {_MLP_TYPES}"),
    "cwm": ("CwmModel", _SLIDING),
    "deepseek_v32": ("DeepseekV32Model", f"latent attention with a lightning indexer; {_MLP_TYPES}"),
    "doge": ("DogeModel", "dynamic-mask attention and cross-domain MoE inside layers"),
    "exaone_moe": ("ExaoneMoeModel", f"{_SLIDING}; {_MLP_TYPES}"),
    "glm4_moe_lite": ("Glm4MoeLiteModel", f"latent attention; {_MLP_TYPES}"),
    "glm_moe_dsa": ("GlmMoeDsaModel", f"latent attention with a sparse indexer; {_MLP_TYPES}"),
    "hunyuan_v1_moe": ("HunYuanMoEV1Model", "MoE with a shared MLP in every layer; q/k norms"),
    "hy_v3": ("HYV3Model", _MLP_TYPES),
    "internlm3": ("LlamaModel", "checkpoints in the Llama layout under their own model type"),
    "iquestcoder": ("LlamaModel", "checkpoints in the Llama layout under their own model type"),
    "jais2": ("Jais2Model", "LayerNorm and an ungated MLP in layers"),
    "jetmoe": ("JetMoeModel", "mixture of attention heads and of MLP experts in every layer"),
    "kolibri1": ("Kolibri1Model", _SLIDING),
    "laguna": ("LagunaModel", f"heads per layer and {_MLP_TYPES}"),
    "mellum": ("MellumModel", _MLP_TYPES),
    "mimo_v2_flash": ("MiMoV2FlashModel", f"{_SLIDING}; {_MLP_TYPES}"),
    "minimax_m2": ("MiniMaxM2Model", "MoE in every layer; q/k norms over all heads"),
    "minimax_m3_vl_text": ("MiniMaxM3VLTextModel", f"text model of MiniMax-M3-VL; {_MLP_TYPES}"),
    "phimoe": ("PhimoeModel", "MoE with sparse-mixer routing in every layer; LayerNorms"),
    "solar_open": ("SolarOpenModel", "MoE with shared experts in every layer"),
    "youtu": ("YoutuModel", "latent attention"),
}

for _model_type, (_base, _notes) in FAMILIES.items():
    register(Adapter(model_types=(_model_type,), build_base=base_class(_base), notes=f"Llama layout; {_notes}"))

PERSIMMON = register(
    Adapter(
        model_types=("persimmon",),
        build_base=base_class("PersimmonModel"),
        norm_attr="final_layernorm",
        notes="Llama keys with final_layernorm as the final norm; fused qkv, q/k LayerNorms, partial rotary and a "
        "relu2 MLP in layers",
    )
)
