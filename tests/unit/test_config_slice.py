"""slice_config: a span's config keeps only its layers' settings and never touches the original."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig, Qwen2Config

from models.config_slice import empty_config, slice_config
from swarm.errors import SpanError


def _hybrid_config() -> Qwen2Config:
    # Layers 0-1 full attention, 2-5 sliding: layer_types is the per-layer list that must follow the slice.
    return Qwen2Config(
        num_hidden_layers=6,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=2,
        eos_token_id=[1, 2],
    )


def test_slice_sets_layer_count_and_per_layer_lists() -> None:
    """num_hidden_layers becomes end - start and layer_types is cut to [start:end]."""
    config = _hybrid_config()
    sliced = slice_config(config, 1, 4)
    assert sliced.num_hidden_layers == 3
    assert sliced.layer_types == config.layer_types[1:4]
    assert sliced.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    assert sliced.hidden_size == config.hidden_size


def test_slice_leaves_lists_that_are_not_per_layer() -> None:
    """A 2-layer model's two eos ids are not a per-layer list and survive slicing."""
    config = LlamaConfig(num_hidden_layers=2, eos_token_id=[7, 9])
    assert slice_config(config, 1, 2).eos_token_id == [7, 9]


def test_slice_does_not_mutate_input() -> None:
    """The input config is unchanged and shares no lists with the slice."""
    config = _hybrid_config()
    before = config.to_dict()
    sliced = slice_config(config, 2, 6)
    sliced.layer_types.append("x")
    assert config.to_dict() == before
    assert config.num_hidden_layers == 6


def test_whole_model_slice_equals_original() -> None:
    """[0, n) keeps every layer's settings."""
    config = _hybrid_config()
    assert slice_config(config, 0, 6).to_dict() == config.to_dict()


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (0, 0), (3, 3), (4, 2), (0, 7), (6, 7)])
def test_bad_spans_raise_span_error(start: int, end: int) -> None:
    """Empty, reversed or out-of-model spans are refused with SpanError."""
    with pytest.raises(SpanError, match="span"):
        slice_config(_hybrid_config(), start, end)


def test_empty_config_has_no_layers() -> None:
    """The client's config keeps the model's shape but no layers."""
    config = _hybrid_config()
    empty = empty_config(config)
    assert empty.num_hidden_layers == 0
    assert empty.layer_types == []
    assert config.num_hidden_layers == 6
