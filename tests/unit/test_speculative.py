"""Speculative decoding's decisions: how many drafts a round checks, how many it keeps, and a draft's cache
kept in step with the text (routing/speculative.py); a span's cache cut back (models/span.py)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from models.source import resolve_model
from models.span import SpanModel, can_rewind, model_can_rewind
from routing.speculative import (
    RECHECK_EVERY,
    ModelDraft,
    PromptLookupDraft,
    Rates,
    accepted_count,
    choose_k,
    expected_tokens,
)
from tests.conftest_models import make_tiny_checkpoint


def test_expected_tokens_per_round():
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 2) == pytest.approx(1.75)


def test_k_grows_with_the_round_trip_and_the_acceptance():
    # a slow round and a cheap draft: check many; a fast round and a slow draft: few
    assert choose_k(0.2, 0.001, 0.8) == 8
    assert choose_k(0.01, 0.01, 0.8) < choose_k(0.2, 0.01, 0.8)
    assert choose_k(0.2, 0.01, 0.3) < choose_k(0.2, 0.01, 0.9)
    assert choose_k(0.2, 0.01, 0.0) == 1  # nothing accepted: the least that still measures acceptance
    assert choose_k(0.2, 0.001, 0.99, k_max=3) == 3


def test_drafts_are_kept_up_to_the_first_disagreement():
    assert accepted_count([5, 6, 7], [5, 6, 9, 1]) == 2
    assert accepted_count([5, 6, 7], [5, 6, 7, 1]) == 3
    assert accepted_count([4], [5, 6]) == 0


def test_rates_follow_the_rounds():
    rates = Rates()
    assert rates.k(8) == 2  # before any round
    for _ in range(20):
        rates.update(round_s=0.3, draft_s=0.002, proposed=4, accepted=4)
    assert rates.accept > 0.95 and rates.k(8) == 8
    for _ in range(20):
        rates.update(round_s=0.3, draft_s=0.002, proposed=4, accepted=0)
    assert rates.accept < 0.05
    # guessing now loses to plain steps: rounds go without guesses, one in RECHECK_EVERY guesses once
    ks = [rates.k(8) for _ in range(2 * RECHECK_EVERY)]
    assert ks.count(1) == 2 and set(ks) == {0, 1}


class CountingDraft(ModelDraft):
    """Guesses the last token + 1; records what it was fed, over a real DynamicCache of one tiny layer."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: 0.0)
        self.fed: list[list[int]] = []

    def _new_cache(self):
        return _ListCache()

    def _logits(self, ids, start, cache):
        self.fed.append(ids[0].tolist())
        cache.tokens.extend(ids[0].tolist())
        logits = torch.zeros(1, ids.shape[1], 100)
        logits[0, torch.arange(ids.shape[1]), (ids[0] + 1) % 100] = 1.0
        return logits


class _ListCache:
    def __init__(self) -> None:
        self.tokens: list[int] = []

    def crop(self, n: int) -> None:
        assert n <= 0
        if n:
            del self.tokens[n:]


def test_a_draft_feeds_only_what_its_cache_lacks_and_cuts_where_the_text_diverged():
    draft = CountingDraft()
    assert draft.propose([1, 2, 3], 3)[0] == [4, 5, 6]
    assert draft.fed == [[1, 2, 3], [4], [5]]
    # the model kept 4 and chose 9: the cache keeps 1 2 3 4 and is fed 9 only
    assert draft.propose([1, 2, 3, 4, 9], 2)[0] == [10, 11]
    assert draft.fed[-2:] == [[9], [10]]
    assert draft._cache.tokens == [1, 2, 3, 4, 9, 10]
    # the whole text already cached: one step back for its last logits
    assert draft.propose([1, 2, 3, 4, 9], 1)[0] == [10]
    assert draft.fed[-1] == [9]


def test_a_span_cache_cut_back_continues_as_one_never_extended(tmp_path):
    ckpt = resolve_model(str(make_tiny_checkpoint(tmp_path, "llama", num_layers=2)))
    span = SpanModel.load(ckpt, 0, 2, progress=False)
    x = torch.randn(1, 9, span.hidden_size, generator=torch.Generator().manual_seed(0))
    cut, fresh = span.new_cache(), span.new_cache()
    span.forward(x[:, :6], cut)
    span.rewind(cut, 4)
    assert span.cache_length(cut) == 4
    got = span.forward(x[:, 4:9], cut)
    want = span.forward(x, fresh)[:, 4:9]
    torch.testing.assert_close(got, want)
    assert can_rewind(cut) and model_can_rewind(ckpt.config)


def test_families_whose_caches_cannot_be_cut_say_so(tmp_path):
    """The tiny mistral has sliding-window layers: a rewind past the window would need what they forgot."""
    config = resolve_model(str(make_tiny_checkpoint(tmp_path, "mistral", num_layers=2))).config
    assert config.sliding_window is not None and not model_can_rewind(config)
    assert not can_rewind(object())
    assert can_rewind(DynamicCache())


def test_prompt_lookup_guesses_what_followed_the_latest_match_of_the_longest_tail():
    draft = PromptLookupDraft(max_tokens=3, max_ngram=2)
    assert draft.propose([1, 2, 3, 4, 9, 2, 3], 8)[0] == [4, 9, 2]  # "2 3" was followed by 4 9 2
    assert draft.propose([5, 1, 7, 1, 8, 1], 8)[0] == [8, 1]  # "1" alone: its latest earlier match
    assert draft.propose([1, 2, 3], 4)[0] == []  # nothing repeats: a plain step
    with pytest.raises(ValueError):
        PromptLookupDraft(max_tokens=0)
