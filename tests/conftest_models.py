"""Tiny random-weight checkpoints for model tests, built locally (the machine reaches no hub).

``make_tiny_checkpoint`` saves a *ForCausalLM with save_pretrained, so tests load it through the same code
users use. Deterministic for a given seed; ``shards > 1`` exercises the model.safetensors.index.json path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM

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
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init leaves norms at 1; perturb them so a wrong or missing norm shows in the logits.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.add_(0.1 * torch.randn_like(param))
    path = Path(tmp_path) / f"{arch}-tiny"
    save_kwargs: dict = {}
    if shards > 1:
        total = sum(p.numel() * p.element_size() for p in model.parameters())
        save_kwargs["max_shard_size"] = max(1, total // shards + 1)
    model.save_pretrained(path, **save_kwargs)
    if shards > 1 and not (path / "model.safetensors.index.json").exists():
        raise RuntimeError(f"expected a sharded checkpoint in {path}")
    return path


def shard_files(path: Path) -> list[str]:
    """The safetensors files of a saved checkpoint (one, or those its index names)."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return ["model.safetensors"]
