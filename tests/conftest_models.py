"""Tiny random-weight checkpoints for model tests, built locally (the machine reaches no hub).

``make_tiny_checkpoint`` saves a *ForCausalLM with save_pretrained, so tests load it through the same code
users use. Deterministic for a given seed; ``shards > 1`` exercises the model.safetensors.index.json path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM

from models.source import Checkpoint
from models.span import ClientHead, SpanModel

_COMMON = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

_ARCHS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(vocab_size=128, tie_word_embeddings=False)),
    # Sliding window 8: prompts of 12 tokens plus 20 decode steps cross it.
    "mistral": ("MistralConfig", dict(vocab_size=160, sliding_window=8, tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", dict(vocab_size=192, tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", dict(vocab_size=256, head_dim=32, tie_word_embeddings=False)),
}

ARCHS = tuple(_ARCHS)


def make_tiny_checkpoint(
    tmp_path: Path, arch: str, *, num_layers: int = 4, hidden: int = 64, seed: int = 0, shards: int = 1
) -> Path:
    """Save a random ``arch`` model of ``num_layers`` layers under tmp_path/<arch>-tiny and return that dir."""
    config_cls, extra = _ARCHS[arch]
    config = getattr(transformers, config_cls)(
        **{**_COMMON, "hidden_size": hidden, "num_hidden_layers": num_layers, **extra}
    )
    return _save_random(config, Path(tmp_path) / f"{arch}-tiny", seed=seed, shards=shards)


def _save_random(
    config: transformers.PretrainedConfig,
    path: Path,
    *,
    seed: int,
    shards: int = 1,
    perturb: tuple[str, ...] = ("norm.weight", "norm.bias"),
) -> Path:
    """Build a random *ForCausalLM from ``config`` (seeded), perturb tensors ending in ``perturb``, save it."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init leaves norms at 1 (0 for Gemma's 1 + w) and biases at 0; perturb them so a wrong or
    # missing norm or bias shows in the logits.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(perturb):
                param.add_(0.1 * torch.randn_like(param))
    save_kwargs: dict = {}
    if shards > 1:
        total = sum(p.numel() * p.element_size() for p in model.parameters())
        save_kwargs["max_shard_size"] = max(1, total // shards + 1)
    model.save_pretrained(path, **save_kwargs)
    if shards > 1 and not (path / "model.safetensors.index.json").exists():
        raise RuntimeError(f"expected a sharded checkpoint in {path}")
    return path


# The model zoo (tests/unit/test_zoo_local.py): row -> (config class, overrides of _ZOO_COMMON). A row is
# named by its model type, or "<model type>/<variant>" when one family needs several rows.
# Each row exercises what makes the family differ: sliding windows crossed by a 20-token prompt, mixed
# layer_types split across spans, non-trivial multipliers, logit scales and softcaps, biases.
# Falcon: ln_*; gpt-oss: attention sinks; DeepSeek-V3: the router's score correction bias.
_ZOO_PERTURB = ("norm.weight", "ln_f.weight", "ln_attn.weight", "ln_mlp.weight", ".bias", "sinks", "correction_bias")
_ZOO_COMMON = dict(_COMMON, num_hidden_layers=5, vocab_size=160)
_MIXED = ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention"]

_SMALL = dict(  # applied where the family's config has the setting: 4 experts, top-2, narrow experts and heads
    num_experts=4, num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2, moe_topk=2, moe_intermediate_size=32,
    shared_expert_intermediate_size=32, n_shared_experts=1, n_group=1, topk_group=1, head_dim=16, sliding_window=8,
)
_MLA = dict(kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, num_key_value_heads=4)
_HYBRID = ["linear_attention", "full_attention", "linear_attention", "full_attention", "full_attention"]


def _small(config_cls: str, **overrides: object) -> tuple[str, dict]:
    """A ZOO entry: ``_SMALL``'s settings the config class has (its defaults are large), then ``overrides``."""
    defaults = getattr(transformers, config_cls)()
    return config_cls, {**{k: v for k, v in _SMALL.items() if hasattr(defaults, k)}, **overrides}


ZOO: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(tie_word_embeddings=False)),
    "mistral": ("MistralConfig", dict(sliding_window=8, tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", dict(sliding_window=8, use_sliding_window=True, max_window_layers=2)),
    "qwen3": ("Qwen3Config", dict(head_dim=32, tie_word_embeddings=False)),
    "olmo": ("OlmoConfig", dict(clip_qkv=0.5)),
    "olmo2": ("Olmo2Config", dict()),
    "granite": (
        "GraniteConfig",
        dict(
            embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.05, logits_scaling=4.0
        ),
    ),
    "stablelm": ("StableLmConfig", dict(use_qkv_bias=True, qk_layernorm=False, use_parallel_residual=False)),
    "starcoder2": ("Starcoder2Config", dict(sliding_window=8, use_bias=True)),
    "helium": ("HeliumConfig", dict(head_dim=16)),
    "glm4": ("Glm4Config", dict(head_dim=16, attention_bias=True)),
    "exaone4": ("Exaone4Config", dict(sliding_window=8, layer_types=_MIXED)),
    "ernie4_5": ("Ernie4_5Config", dict(head_dim=16, use_bias=True, tie_word_embeddings=False)),
    "seed_oss": ("SeedOssConfig", dict(head_dim=16, attention_bias=True)),
    "cohere": ("CohereConfig", dict(logit_scale=0.5, tie_word_embeddings=True)),
    "cohere2": (
        "Cohere2Config",
        dict(head_dim=16, logit_scale=0.5, sliding_window=8, layer_types=_MIXED, tie_word_embeddings=True),
    ),
    "nemotron": ("NemotronConfig", dict(head_dim=16)),
    "phi3": ("Phi3Config", dict()),
    "phi": ("PhiConfig", dict(qk_layernorm=True, partial_rotary_factor=0.5)),
    "falcon": ("FalconConfig", dict(new_decoder_architecture=True, num_kv_heads=2, bias=True)),
    "falcon/7b": ("FalconConfig", dict(multi_query=True, parallel_attn=True, num_kv_heads=None)),
    "falcon/rw-alibi": ("FalconConfig", dict(alibi=True, multi_query=False, parallel_attn=False, bias=True)),
    "gpt_neox": ("GPTNeoXConfig", dict(rotary_pct=0.5, use_parallel_residual=True)),
    "olmo3": ("Olmo3Config", dict(sliding_window=8, layer_types=_MIXED)),
    "glm": ("GlmConfig", dict(head_dim=16)),
    "smollm3": ("SmolLM3Config", dict(no_rope_layers=[1, 0, 1, 1, 0], tie_word_embeddings=True)),
    "arcee": ("ArceeConfig", dict(head_dim=16)),
    "apertus": ("ApertusConfig", dict()),
    "ministral": ("MinistralConfig", dict(head_dim=16, sliding_window=8, layer_types=_MIXED)),
    "hunyuan_v1_dense": ("HunYuanDenseV1Config", dict(head_dim=16)),
    "gemma": ("GemmaConfig", dict(head_dim=16)),
    "gemma2": (
        "Gemma2Config",
        dict(head_dim=16, sliding_window=8, final_logit_softcapping=2.0, attn_logit_softcapping=5.0),
    ),
    "vaultgemma": (
        "VaultGemmaConfig",
        dict(head_dim=16, sliding_window=8, final_logit_softcapping=2.0, attn_logit_softcapping=5.0),
    ),
    # Mixture of experts: 4 experts, top-2; uneven dense/sparse layer patterns that only global indices get right.
    "mixtral": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2)),
    "qwen2_moe": (  # sparse where (i + 1) % 2 == 0 and i not in [4]: layers 1 and 3
        "Qwen2MoeConfig",
        dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=48,
             decoder_sparse_step=2, mlp_only_layers=[4]),
    ),
    "qwen3_moe": (  # dense layers 0 and 2 by global index
        "Qwen3MoeConfig",
        dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, head_dim=16, mlp_only_layers=[0, 2]),
    ),
    "olmoe": ("OlmoeConfig", dict(num_experts=4, num_experts_per_tok=2)),
    "granitemoe": (
        "GraniteMoeConfig",
        dict(num_local_experts=4, num_experts_per_tok=2, embedding_multiplier=12.0, residual_multiplier=0.22,
             attention_multiplier=0.05, logits_scaling=4.0),
    ),
    "granitemoeshared": (
        "GraniteMoeSharedConfig",
        dict(num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=48, embedding_multiplier=12.0,
             logits_scaling=4.0),
    ),
    "deepseek_v3": (  # layers 0 and 1 dense (first_k_dense_replace=2): the span [1, 3) holds one of each
        "DeepseekV3Config",
        dict(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, first_k_dense_replace=2,
             n_group=2, topk_group=1, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=8,
             v_head_dim=16, n_shared_experts=1),
    ),
    "gpt_oss": (
        "GptOssConfig",
        dict(num_local_experts=4, num_experts_per_tok=2, head_dim=16, sliding_window=8, layer_types=_MIXED),
    ),
    # Learned positions, ALiBi, embedding norms, projections, inverse-layer-index scaling.
    "gpt2": ("GPT2Config", dict(n_embd=64, n_head=4, n_layer=5, n_positions=256)),
    "gpt2/inverse-layer-scaling": (
        "GPT2Config",
        dict(n_embd=64, n_head=4, n_layer=5, n_positions=256, scale_attn_by_inverse_layer_idx=True,
             reorder_and_upcast_attn=True),
    ),
    "gpt_bigcode": ("GPTBigCodeConfig", dict(n_embd=64, n_head=4, n_layer=5, n_positions=256, multi_query=True)),
    "opt": ("OPTConfig", dict(ffn_dim=128, word_embed_proj_dim=64)),
    "opt/350m-projections": (  # post-norm layers, no final norm, 32-wide embeddings projected in and out
        "OPTConfig",
        dict(ffn_dim=128, word_embed_proj_dim=32, do_layer_norm_before=False),
    ),
    "bloom": ("BloomConfig", dict(n_head=4, n_layer=5)),
    "ministral3": ("Ministral3Config", dict(head_dim=16)),
    "flex_olmo": ("FlexOlmoConfig", dict(num_experts=4, num_experts_per_tok=2)),
    "bitnet": ("BitNetConfig", dict()),
    "gptj": ("GPTJConfig", dict(n_embd=64, n_head=4, n_layer=5, n_positions=256, rotary_dim=8)),
    "codegen": ("CodeGenConfig", dict(n_embd=64, n_head=4, n_layer=5, n_positions=256, n_ctx=256, rotary_dim=8)),
    # Hybrids: conv or linear-attention layers mixed with attention; span [0, 1) holds no attention layer.
    "lfm2_moe": _small(
        "Lfm2MoeConfig", layer_types=["conv", "full_attention", "conv", "full_attention", "full_attention"],
        num_dense_layers=2, initializer_range=0.2,
    ),
    "lfm2": (
        "Lfm2Config",
        dict(layer_types=["conv", "full_attention", "conv", "full_attention", "full_attention"], conv_bias=True,
             block_auto_adjust_ff_dim=False, initializer_range=0.2),  # wider init: default one repeats a token
    ),
    "qwen3_next": (
        "Qwen3NextConfig",
        dict(layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention",
                          "full_attention"],
             head_dim=16, linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
             linear_num_value_heads=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
             shared_expert_intermediate_size=32, decoder_sparse_step=2, mlp_only_layers=[4]),
    ),
    "gemma4_text": (
        "Gemma4TextConfig",
        dict(head_dim=16, global_head_dim=32, sliding_window=8, layer_types=_MIXED, final_logit_softcapping=2.0,
             hidden_size_per_layer_input=0, num_kv_shared_layers=0),
    ),
    "gemma3_text": (
        "Gemma3TextConfig",
        dict(head_dim=16, sliding_window=8, layer_types=_MIXED, final_logit_softcapping=2.0),
    ),
    # Second wave: the newest dense and MoE families (per-layer lists mixed across split points by default).
    "afmoe": _small("AfmoeConfig", num_dense_layers=2, mup_enabled=True, layer_types=_MIXED),
    "apertus1p5_text": _small("Apertus1p5TextConfig"),
    "aria_text": _small("AriaTextConfig"),
    "axk1": _small("AXK1Config", **_MLA, head_dim=8),
    "axk2": _small("AXK2Config", **_MLA),
    "cohere2_moe": _small("Cohere2MoeConfig", logit_scale=0.5, layer_types=_MIXED),
    "cwm": _small("CwmConfig", layer_types=_MIXED),
    "dbrx": (
        "DbrxConfig",
        dict(d_model=64, n_heads=4, n_layers=5, max_seq_len=256, attn_config=dict(kv_n_heads=2, clip_qkv=8.0,
             rope_theta=10000.0), ffn_config=dict(ffn_hidden_size=32, moe_num_experts=4, moe_top_k=2)),
    ),
    "deepseek_v2": _small("DeepseekV2Config", first_k_dense_replace=2, **_MLA),
    "deepseek_v32": _small("DeepseekV32Config", first_k_dense_replace=2, **_MLA),
    "diffllama": _small("DiffLlamaConfig"),
    "doge": _small("DogeConfig"),
    "dots1": _small("Dots1Config", first_k_dense_replace=2),
    "ernie4_5_moe": _small("Ernie4_5_MoeConfig", moe_layer_start_index=1, moe_layer_end_index=3),
    "exaone": _small("ExaoneConfig"),
    "exaone_moe": _small("ExaoneMoeConfig"),
    "flint": _small("FlintConfig", mlp_only_layers=[0, 2], layer_types=_MIXED),
    "glm4_moe": _small("Glm4MoeConfig", first_k_dense_replace=2),
    "glm4_moe_lite": _small("Glm4MoeLiteConfig", **_MLA),
    "glm_moe_dsa": _small("GlmMoeDsaConfig", first_k_dense_replace=2, **_MLA),
    "xglm": ("XGLMConfig", dict(d_model=64, attention_heads=4, num_layers=5, ffn_dim=128, max_position_embeddings=256)),
    "biogpt": ("BioGptConfig", dict(scale_embedding=True)),
    "gpt_neo": (
        "GPTNeoConfig",
        dict(num_layers=5, attention_types=[[["global", "local"], 2], [["global"], 1]], window_size=8),
    ),
    "granite_swa": _small(
        "GraniteSWAConfig", embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.05,
        logits_scaling=4.0,
    ),
    "granitemoe_swa": _small(
        "GraniteMoeSWAConfig", embedding_multiplier=12.0, residual_multiplier=0.22, logits_scaling=4.0,
    ),
    "hunyuan_v1_moe": _small("HunYuanMoEV1Config"),
    "hy_v3": _small("HYV3Config"),
    "hyperclovax": _small(
        "HyperCLOVAXConfig", embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.05,
        logits_scaling=0.25,
    ),
    "internlm3": _small("InternLM3Config"),
    "iquestcoder": _small("IQuestCoderConfig"),
    "jais2": _small("Jais2Config"),
    "jetmoe": _small("JetMoeConfig"),
    "kolibri1": _small("Kolibri1Config", layer_types=_MIXED),
    "laguna": _small("LagunaConfig"),
    "llama4_text": _small("Llama4TextConfig", moe_layers=[1, 3], no_rope_layers=[1, 1, 0, 1, 0], intermediate_size_mlp=96),
    "mellum": _small("MellumConfig"),
    "mimo_v2_flash": _small("MiMoV2FlashConfig", layer_types=_MIXED),
    "minicpm3": _small("MiniCPM3Config", scale_emb=12.0, scale_depth=1.4, dim_model_base=16, **_MLA),
    "minimax_m2": _small("MiniMaxM2Config"),
    "minimax_m3_vl_text": _small("MiniMaxM3VLTextConfig"),
    "mpt": _small("MptConfig"),
    "nanochat": _small("NanoChatConfig", final_logit_softcapping=2.0),
    "persimmon": _small("PersimmonConfig"),
    "phimoe": _small("PhimoeConfig"),
    "sarvam_mla": _small("SarvamMLAConfig", first_k_dense_replace=2, **_MLA),
    "sarvam_moe": _small("SarvamMoEConfig", first_k_dense_replace=2),
    "solar_open": _small("SolarOpenConfig"),
    "youtu": _small("YoutuConfig", **_MLA, head_dim=8),
    # State-space models and hybrids: spans [0, 1) and the like hold no attention layer.
    "mamba": _small("MambaConfig"),
    "falcon_mamba": _small("FalconMambaConfig"),
    "jamba": _small(
        "JambaConfig", attn_layer_period=3, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
        mamba_d_state=8, mamba_expand=2,
    ),
    "nemotron_h": _small(
        "NemotronHConfig", layers_block_type=["linear_attention", "moe", "full_attention", "mlp", "linear_attention"],
        mamba_num_heads=8, mamba_head_dim=16, n_groups=1, ssm_state_size=16,
    ),
    "mamba2": _small("Mamba2Config", num_heads=8, head_dim=16, expand=2, n_groups=1, state_size=16),
    "falcon_h1": _small(
        "FalconH1Config", mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=16, embedding_multiplier=3.0,
        lm_head_multiplier=0.5,
    ),
    "qwen3_5_text": _small("Qwen3_5TextConfig", layer_types=_HYBRID),
    "qwen3_5_moe_text": _small("Qwen3_5MoeTextConfig", layer_types=_HYBRID),
    # Layer 0 full: transformers' own incremental decoding miscounts positions when layer 0 is linear (spans
    # whose first layer is linear count their tokens; the 0:2, 2:3, 3:5 and 1:3 spans here start with one).
    "minimax": _small(
        "MiniMaxConfig",
        layer_types=["full_attention", "linear_attention", "linear_attention", "full_attention", "linear_attention"],
    ),
    "olmo_hybrid": _small("OlmoHybridConfig", layer_types=_HYBRID),
    "lara_mini": _small("LaraMiniConfig"),
    "kimi_linear": _small("KimiLinearConfig", layer_types=_HYBRID, **_MLA),
    "bailing_hybrid": _small("BailingHybridConfig", layer_types=_HYBRID, **_MLA),
    "bamba": _small("BambaConfig", attn_layer_indices=[1, 3, 4]),
    "granitemoehybrid": _small(
        "GraniteMoeHybridConfig", layer_types=_HYBRID, embedding_multiplier=12.0, residual_multiplier=0.22,
        logits_scaling=4.0,
    ),

}


def zoo_model_type(row: str) -> str:
    """The model type a ZOO row tests ("falcon/7b" -> "falcon")."""
    return row.split("/")[0]


def wire_dtype(row: str, dtype: str) -> str:
    """The dtype ZOO ``row``'s hidden states cross the wire in when peers run in ``dtype``: their own, except for
    families whose layers keep the residual stream in float32 (Mamba's ``residual_in_fp32``)."""
    config_cls, overrides = ZOO[row]
    config = getattr(transformers, config_cls)(**{**_ZOO_COMMON, **overrides})
    return "float32" if getattr(config, "residual_in_fp32", False) else dtype


def make_zoo_checkpoint(tmp_path: Path, row: str, *, seed: int = 0, shards: int = 1) -> Path:
    """Save a random tiny model for ZOO ``row`` (5 layers, hidden 64) under tmp_path and return that dir."""
    config_cls, overrides = ZOO[row]
    config = getattr(transformers, config_cls)(**{**_ZOO_COMMON, **overrides})
    path = Path(tmp_path) / f"{row.replace('/', '-')}-zoo"
    return _save_random(config, path, seed=seed, shards=shards, perturb=_ZOO_PERTURB)


def shard_files(path: Path) -> list[str]:
    """The safetensors files of a saved checkpoint (one, or those its index names)."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return ["model.safetensors"]


def local_greedy(path: Path, ids: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What local transformers does in float32 for ``ids`` [B, T]: greedy generate() of exactly ``steps``
    tokens (EOS disabled, whatever a random model emits) and the prompt's logits [B, T, V]."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    with torch.no_grad():
        want = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, do_sample=False)
        logits = model(ids).logits
    return want, logits


def split_generate(
    ckpt: Checkpoint, bounds: list[int], ids: torch.Tensor, steps: int, *, dtype: torch.dtype = torch.float32,
    views: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding through spans [bounds[i], bounds[i+1]) in this process, as the swarm splits it:
    client embed -> spans -> client norm + head. Returns (all ids [B, T + steps], prompt logits [B, T, V]).
    ``views``: one span holds every layer and the parts are its views (SpanModel.view), as sub-span routes
    run them."""
    head = ClientHead.load(ckpt, dtype=dtype)
    if views:
        whole = SpanModel.load(ckpt, bounds[0], bounds[-1], dtype=dtype, progress=False)
        spans = [whole.view(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    else:
        spans = [
            SpanModel.load(ckpt, a, b, dtype=dtype, progress=False) for a, b in zip(bounds, bounds[1:], strict=False)
        ]
    caches = [span.new_cache() for span in spans]
    out, current, prompt_logits = ids, ids, None
    for _ in range(steps):
        hidden = head.embed(current, out.shape[1] - current.shape[1])  # [B, T, H]
        for span, cache in zip(spans, caches, strict=True):
            hidden = span.forward(hidden, cache)
        logits = head.logits(hidden)  # [B, T, V]
        prompt_logits = logits if prompt_logits is None else prompt_logits
        current = logits[:, -1].argmax(-1, keepdim=True)  # [B, 1]
        out = torch.cat([out, current], dim=1)
    # Every span has seen every token but the last one produced.
    assert {span.cache_length(cache) for span, cache in zip(spans, caches, strict=True)} == {out.shape[1] - 1}
    assert prompt_logits is not None
    return out, prompt_logits


def spy_safe_open(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every checkpoint file models/checkpoint.py opens from now on (in order)."""
    import models.checkpoint as checkpoint_module

    opened: list[str] = []
    real = checkpoint_module.safe_open

    def spy(path: str, *args: object, **kwargs: object) -> object:
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "safe_open", spy)
    return opened
