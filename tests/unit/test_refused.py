"""Model types that cannot be served are refused with their reason, never half-loaded; supported families'
variants that cannot be split (Gemma 4 with per-layer token inputs) are refused the same way."""

from __future__ import annotations

import pytest
import transformers

from models.adapters import get_adapter, refused_model_types, supported_model_types
from swarm.errors import UnsupportedModelError

pytestmark = pytest.mark.zoo


def _config(model_type: str) -> object:
    return type("Config", (), {"model_type": model_type})()


def test_no_model_type_is_both_supported_and_refused() -> None:
    assert not set(refused_model_types()) & set(supported_model_types())


@pytest.mark.parametrize("model_type", sorted(refused_model_types()))
def test_a_refused_model_type_gives_its_reason(model_type: str) -> None:
    reason = refused_model_types()[model_type]
    with pytest.raises(UnsupportedModelError, match="cannot be served") as info:
        get_adapter(_config(model_type))
    assert reason in str(info.value) and repr(model_type) in str(info.value)


def test_gemma4_variants_whose_layers_need_more_than_hidden_states_are_refused() -> None:
    common = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                  num_hidden_layers=5, vocab_size=160, head_dim=16, global_head_dim=32)
    plain = transformers.Gemma4TextConfig(**common, hidden_size_per_layer_input=0, num_kv_shared_layers=0)
    assert "gemma4_text" in get_adapter(plain).model_types
    with pytest.raises(UnsupportedModelError, match="per-layer inputs computed from the token ids"):
        get_adapter(transformers.Gemma4TextConfig(**common, hidden_size_per_layer_input=16, num_kv_shared_layers=0))
    with pytest.raises(UnsupportedModelError, match="num_kv_shared_layers"):
        get_adapter(transformers.Gemma4TextConfig(**common, hidden_size_per_layer_input=0, num_kv_shared_layers=2))
