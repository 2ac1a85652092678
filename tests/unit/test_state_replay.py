"""Failover rebuilds a span's recurrent state by replaying the session's inputs in one step.

For every zoo family whose layers keep a state other than keys and values (Mamba, Mamba-2, DeltaNet, conv,
lightning attention), a span that decoded token by token and a fresh span that got the same inputs replayed
at once hold the same cache up to float rounding (the chunked scan instead of the per-token recurrence), and
the next decode step gives the same hidden states.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.adapters import get_adapter
from models.source import resolve_model
from models.span import SpanModel
from tests.conftest_models import ZOO, make_zoo_checkpoint, zoo_model_type

pytestmark = pytest.mark.zoo

STATEFUL = sorted(row for row in ZOO if get_adapter(type("C", (), {"model_type": zoo_model_type(row)})()).new_cache)
PROMPT, STEPS = 12, 6


def _tensors(cache: object) -> list[torch.Tensor]:
    """Every tensor a session cache holds, layer by layer (keys, values, conv and recurrent states)."""
    found: list[torch.Tensor] = []
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values", "conv_states", "recurrent_states"):
            value = getattr(layer, name, None)
            values = value.values() if isinstance(value, dict) else [value]
            found += [v for v in values if isinstance(v, torch.Tensor) and v.numel()]
    found += [v for v in getattr(cache, "linear_cache", []) if isinstance(v, torch.Tensor)]
    return found


def test_the_stateful_families_are_the_expected_ones() -> None:
    assert {"mamba", "mamba2", "falcon_mamba", "jamba", "bamba", "qwen3_5_text", "minimax", "lfm2"} <= set(STATEFUL)


@pytest.mark.parametrize("row", STATEFUL)
def test_a_replayed_span_holds_the_same_state(row: str, tmp_path: Path) -> None:
    ckpt = resolve_model(str(make_zoo_checkpoint(tmp_path, row)))
    stepped, replayed = (SpanModel.load(ckpt, 1, 4, progress=False) for _ in range(2))
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(1, PROMPT + STEPS + 1, stepped.hidden_size, generator=gen)  # [1, T, H]
    cache_a, cache_b = stepped.new_cache(), replayed.new_cache()
    stepped.forward(inputs[:, :PROMPT], cache_a)
    for t in range(PROMPT, PROMPT + STEPS):
        stepped.forward(inputs[:, t:t + 1], cache_a)
    replayed.forward(inputs[:, :PROMPT + STEPS], cache_b)  # what the new peer gets after a failover

    assert stepped.cache_length(cache_a) == replayed.cache_length(cache_b) == PROMPT + STEPS
    state_a, state_b = _tensors(cache_a), _tensors(cache_b)
    assert state_a and len(state_a) == len(state_b)
    for a, b in zip(state_a, state_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    last = inputs[:, PROMPT + STEPS:]
    torch.testing.assert_close(replayed.forward(last, cache_b), stepped.forward(last, cache_a), rtol=1e-3, atol=1e-4)
