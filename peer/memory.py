"""How much memory a span needs, worked out from the config alone, so a peer refuses before it loads anything.

A span costs its layers' weights plus the KV cache it promises its sessions: ``kv_tokens`` tokens for each of
its layers, each token holding a key and a value of ``num_key_value_heads x head_dim`` in the peer's dtype
(30 layers of SmolLM2-135M at 16,384 tokens in float32: 30 x 16,384 x 2 x 3 x 64 x 4 bytes = 755 MB). The
layer sizes come from the model built on the meta device (no memory), so MoE and hybrid layers count what
they really hold. ``check_fits`` compares the plan with ``--max-memory`` and with what the device has free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from swarm.errors import ConfigError

GB = 2**30


@dataclass(frozen=True)
class MemoryPlan:
    """The bytes a span [start, end) needs: its weights and its KV reserve."""

    start: int
    end: int
    weight_bytes: int
    kv_bytes: int
    kv_tokens: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes

    def describe(self) -> str:
        return (f"layers {self.start}:{self.end} need {self.total_bytes / GB:.2f} GB "
                f"({self.weight_bytes / GB:.2f} GB of weights + {self.kv_bytes / GB:.2f} GB of KV cache for "
                f"{self.kv_tokens} tokens)")


def element_size(dtype: torch.dtype) -> int:
    return torch.tensor([], dtype=dtype).element_size()


def layer_sizes(config: Any, dtype: torch.dtype) -> list[int]:
    """Bytes of each decoder layer's weights in ``dtype``, from the model built on the meta device."""
    from models.adapters import get_adapter
    from models.checkpoint import on_meta

    adapter = get_adapter(config)
    with on_meta():
        base = adapter.build_base(config)
    size = element_size(dtype)
    return [sum(p.numel() for p in layer.parameters()) * size for layer in getattr(base, adapter.layers_attr)]


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Bytes one token's key and value take in one layer."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * heads * head_dim * element_size(dtype)


def span_plan(sizes: list[int], start: int, end: int, kv_per_token: int, kv_tokens: int) -> MemoryPlan:
    """Pure: the plan for layers [start, end) given each layer's weight bytes."""
    return MemoryPlan(start, end, sum(sizes[start:end]), kv_tokens * kv_per_token * (end - start), kv_tokens)


def check_fits(plan: MemoryPlan, *, max_memory_bytes: float | None, free_bytes: float, device: str) -> None:
    """ConfigError, saying what to change, when the plan exceeds --max-memory or the device's free memory."""
    advice = "serve fewer layers (--layers or --num-layers) or lower --kv-reserve-tokens"
    if max_memory_bytes is not None:
        if max_memory_bytes > free_bytes:
            raise ConfigError(f"--max-memory {max_memory_bytes / GB:g} GB is more than {device} has free "
                              f"({free_bytes / GB:.1f} GB)")
        if plan.total_bytes > max_memory_bytes:
            raise ConfigError(f"{plan.describe()}, more than --max-memory {max_memory_bytes / GB:g} GB: {advice}")
    elif plan.total_bytes > free_bytes:
        raise ConfigError(f"{plan.describe()}, but {device} has only {free_bytes / GB:.2f} GB free: {advice}")


def free_memory(device: str) -> float:
    """Bytes free on ``device``: RAM for the CPU (and MPS, which shares it), the card's free memory for CUDA."""
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return float(free)
    import psutil

    return float(psutil.virtual_memory().available)
