"""A span's memory is worked out from the config before loading: weights plus a KV reserve per layer."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from peer.memory import GB, check_fits, kv_bytes_per_token, layer_sizes, span_plan
from swarm.errors import ConfigError


def smollm2_like() -> LlamaConfig:
    return LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                       num_key_value_heads=3, vocab_size=49152)


def test_kv_reserve_counts_layers_kv_heads_head_size_and_dtype():
    """30 layers x 16,384 tokens x (K and V) x 3 KV heads x 64 x 4 bytes: about 720 MiB, not 24 MB."""
    config = smollm2_like()
    per_token = kv_bytes_per_token(config, torch.float32)
    assert per_token == 2 * 3 * 64 * 4
    plan = span_plan([0] * 30, 0, 30, per_token, 16384)
    assert plan.kv_bytes == 30 * 16384 * 1536
    assert 700 < plan.kv_bytes / 2**20 < 730
    assert span_plan([0] * 30, 10, 20, per_token, 16384).kv_bytes == plan.kv_bytes // 3
    assert kv_bytes_per_token(config, torch.bfloat16) == per_token // 2


def test_layer_sizes_come_from_the_meta_model():
    """Each layer's bytes equal its parameters' count x the dtype's size, with no memory allocated."""
    sizes = layer_sizes(smollm2_like(), torch.float16)
    q_and_o, k_and_v, mlp, norms = 2 * 576 * 576, 2 * 576 * 192, 3 * 576 * 1536, 2 * 576
    assert sizes == [(q_and_o + k_and_v + mlp + norms) * 2] * 30


def test_check_fits_refuses_with_what_to_change():
    """Over --max-memory, over the free memory, or --max-memory beyond the machine: one ConfigError each."""
    plan = span_plan([GB] * 4, 0, 4, 1024, 2**20)  # 4 GB of weights + 4 GB of KV
    check_fits(plan, max_memory_bytes=9 * GB, free_bytes=20 * GB, device="cpu")
    check_fits(plan, max_memory_bytes=None, free_bytes=9 * GB, device="cpu")
    with pytest.raises(ConfigError, match=r"layers 0:4 need 8.00 GB .*--max-memory 6 GB.*--kv-reserve-tokens"):
        check_fits(plan, max_memory_bytes=6 * GB, free_bytes=20 * GB, device="cpu")
    with pytest.raises(ConfigError, match="cpu has only 7.00 GB free"):
        check_fits(plan, max_memory_bytes=None, free_bytes=7 * GB, device="cpu")
    with pytest.raises(ConfigError, match="more than cpu has free"):
        check_fits(plan, max_memory_bytes=30 * GB, free_bytes=20 * GB, device="cpu")
