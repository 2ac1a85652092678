"""SpanModel.forward_batch: many sessions, each with its own cache and position, in one forward pass.

Every check compares against the same sessions run alone with forward() on copies of their caches: outputs
within 1e-5 (float32) at every step, and afterwards caches of the same lengths and tensors.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from models import batching
from models.source import resolve_model
from models.span import ClientHead, SpanModel
from tests.conftest_models import make_tiny_checkpoint, make_zoo_checkpoint

PROMPTS = (3, 9, 17, 30)  # past the sliding window (8) of mistral and gemma2
ROUNDS = 10
ATOL = 1e-5
# family -> (tiny ARCHS or zoo row, span): spans start at 1 so no family's span is the whole model.
FAMILIES: dict[str, tuple[str, tuple[int, int]]] = {
    "llama": ("tiny", (1, 4)),
    "mistral": ("tiny", (1, 4)),  # every layer slides, window 8
    "qwen2": ("tiny", (1, 4)),
    "qwen3": ("tiny", (1, 4)),
    "gemma2": ("zoo", (1, 4)),  # layers full, sliding, full; attention logit softcapping
    "bloom": ("zoo", (1, 4)),  # ALiBi, built from the attention mask itself: padding must not shift it
}


class _Spans(dict):
    """family -> (span, client head), built on first use and kept for the module."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, family: str) -> tuple[SpanModel, ClientHead]:
        kind, (start, end) = FAMILIES.get(family, ("zoo", (1, 4)))
        make = make_tiny_checkpoint if kind == "tiny" else make_zoo_checkpoint
        ckpt = resolve_model(str(make(self.root, family)))
        self[family] = (SpanModel.load(ckpt, start, end, progress=False), ClientHead.load(ckpt))
        return self[family]


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> _Spans:
    return _Spans(tmp_path_factory.mktemp("batch"))


def _hidden(head: ClientHead, batch: int, steps: int, start: int, seed: int) -> torch.Tensor:
    """What a client sends: the embedding of random ids at positions start.., [batch, steps, H]."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, head.vocab_size, (batch, steps), generator=generator)
    return head.embed(ids, start)


def _prefilled(span: SpanModel, head: ClientHead, prompts: tuple[int, ...], batches: tuple[int, ...]) -> list:
    """One session per prompt length, each prefilled alone with forward()."""
    caches = []
    for index, (length, batch) in enumerate(zip(prompts, batches, strict=True)):
        cache = span.new_cache()
        if length:
            span.forward(_hidden(head, batch, length, 0, seed=100 + index), cache)
        caches.append(cache)
    return caches


def _assert_same_cache(got: object, want: object) -> None:
    assert got.get_seq_length() == want.get_seq_length()
    assert len(got.layers) == len(want.layers)
    for mine, theirs in zip(got.layers, want.layers, strict=True):
        assert type(mine) is type(theirs)
        if isinstance(theirs, DynamicSlidingWindowLayer):
            assert mine.cumulative_length == theirs.cumulative_length
        assert mine.keys.shape == theirs.keys.shape and mine.values.shape == theirs.values.shape
        torch.testing.assert_close(mine.keys, theirs.keys, atol=ATOL, rtol=0)
        torch.testing.assert_close(mine.values, theirs.values, atol=ATOL, rtol=0)


def _step_both(
    span: SpanModel, head: ClientHead, batched: list, alone: list, batches: tuple[int, ...], steps: int, seed: int
) -> None:
    """One forward_batch over all sessions vs each session's forward() alone: outputs and lengths agree."""
    rows = [
        (_hidden(head, batch, steps, span.cache_length(cache), seed=seed + index), cache)
        for index, (batch, cache) in enumerate(zip(batches, batched, strict=True))
    ]
    outs = span.forward_batch(rows)
    assert len(outs) == len(rows)
    for (hidden, cache), out, own in zip(rows, outs, alone, strict=True):
        want = span.forward(hidden, own)
        assert out.shape == want.shape == hidden.shape
        torch.testing.assert_close(out, want, atol=ATOL, rtol=0)
        assert span.cache_length(cache) == span.cache_length(own)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batched_decode_equals_each_session_alone(family: str, spans: _Spans) -> None:
    """Sessions prefilled alone at different lengths (3, 9, 17, 30), then 10 batched decode steps (T=1): each
    step's outputs equal forward() alone within 1e-5, and the caches end with the same lengths and tensors."""
    span, head = spans[family]
    assert span.batchable
    batches = (1,) * len(PROMPTS)
    batched = _prefilled(span, head, PROMPTS, batches)
    alone = copy.deepcopy(batched)
    for round_ in range(ROUNDS):
        _step_both(span, head, batched, alone, batches, 1, seed=1000 * round_)
    for got, want, prompt in zip(batched, alone, PROMPTS, strict=True):
        assert span.cache_length(got) == prompt + ROUNDS
        _assert_same_cache(got, want)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_multi_token_step_including_a_fresh_session(family: str, spans: _Spans) -> None:
    """T=4 for every row, one of them a session with an empty cache (its prefill rides in the batch), then a
    decode step: outputs and caches equal each session alone."""
    span, head = spans[family]
    prompts = (0, *PROMPTS)
    batches = (1,) * len(prompts)
    batched = _prefilled(span, head, prompts, batches)
    alone = copy.deepcopy(batched)
    _step_both(span, head, batched, alone, batches, 4, seed=7)
    _step_both(span, head, batched, alone, batches, 1, seed=8)
    for got, want in zip(batched, alone, strict=True):
        _assert_same_cache(got, want)


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_sessions_of_several_rows_mix_with_single_rows(family: str, spans: _Spans) -> None:
    """A session with batch rows b=2 (shorter past) next to b=1 sessions, across the sliding window: its two
    rows and the others all equal forward() alone, step after step."""
    span, head = spans[family]
    prompts, batches = (5, 12, 30), (1, 2, 1)
    batched = _prefilled(span, head, prompts, batches)
    alone = copy.deepcopy(batched)
    for round_ in range(4):
        _step_both(span, head, batched, alone, batches, 1, seed=50 + round_)
    _step_both(span, head, batched, alone, batches, 3, seed=99)
    for got, want in zip(batched, alone, strict=True):
        _assert_same_cache(got, want)


def test_one_row_is_forward_exactly(spans: _Spans) -> None:
    """forward_batch with a single row gives forward()'s output bit for bit and leaves the same cache."""
    span, head = spans["mistral"]
    (cache,) = _prefilled(span, head, (11,), (1,))
    own = copy.deepcopy(cache)
    hidden = _hidden(head, 1, 2, 11, seed=3)
    (out,) = span.forward_batch([(hidden, cache)])
    assert torch.equal(out, span.forward(hidden, own))
    for mine, theirs in zip(cache.layers, own.layers, strict=True):
        assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)


def test_rows_with_different_token_counts_are_refused(spans: _Spans) -> None:
    """Rows of 1 and 2 tokens raise ValueError, and no cache is touched."""
    span, head = spans["llama"]
    caches = _prefilled(span, head, (4, 6), (1, 1))
    rows = [(_hidden(head, 1, 1, 4, seed=1), caches[0]), (_hidden(head, 1, 2, 6, seed=2), caches[1])]
    with pytest.raises(ValueError, match="token"):
        span.forward_batch(rows)
    assert [span.cache_length(cache) for cache in caches] == [4, 6]
    assert span.forward_batch([]) == []


def test_mistral_and_gemma2_caches_slide(spans: _Spans) -> None:
    """The sliding cases above are real: mistral's layers all slide with window 8, gemma2's span mixes sliding
    and full layers, and sessions past the window keep window - 1 keys in sliding layers."""
    mistral, mistral_head = spans["mistral"]
    (cache,) = _prefilled(mistral, mistral_head, (30,), (1,))
    assert all(isinstance(layer, DynamicSlidingWindowLayer) and layer.sliding_window == 8 for layer in cache.layers)
    assert {layer.keys.shape[-2] for layer in cache.layers} == {7}
    gemma, gemma_head = spans["gemma2"]
    kinds = {type(layer) for layer in _prefilled(gemma, gemma_head, (30,), (1,))[0].layers}
    assert kinds == {DynamicLayer, DynamicSlidingWindowLayer}


def test_hybrids_and_denied_families_are_not_batchable(spans: _Spans) -> None:
    """lfm2 (conv states in its cache) and deepseek_v3 (in batching.DENY) report batchable False, and
    forward_batch refuses them with ValueError rather than computing something wrong."""
    lfm2, lfm2_head = spans["lfm2"]
    assert not lfm2.batchable
    caches = [lfm2.new_cache(), lfm2.new_cache()]
    with pytest.raises(ValueError, match="cannot batch"):
        lfm2.forward_batch([(_hidden(lfm2_head, 1, 1, 0, seed=s), cache) for s, cache in enumerate(caches)])
    assert "deepseek_v3" in batching.DENY
    deepseek, _ = spans["deepseek_v3"]
    assert not deepseek.batchable


def test_a_failed_pass_leaves_every_cache_as_it_was(spans: _Spans) -> None:
    """When the batched pass raises inside the model (here: one row in float64 against float32 weights), no
    session's cache has changed."""
    span, head = spans["gemma2"]
    caches = _prefilled(span, head, (4, 20), (1, 1))
    before = copy.deepcopy(caches)
    rows = [(_hidden(head, 1, 1, 4, seed=1), caches[0]), (torch.zeros(1, 1, span.hidden_size, dtype=torch.float64), caches[1])]
    with pytest.raises(RuntimeError):
        span.forward_batch(rows)
    for got, want in zip(caches, before, strict=True):
        _assert_same_cache(got, want)
