"""Live compute figures (peer/rates.py): smoothed per layer, decode by batch size, prefill apart; the cache
file keeps the batch-1 figure per device, model and dtype."""

from __future__ import annotations

import pytest

from peer.rates import LiveRates, ThroughputCache, bucket


def test_bucket_rounds_to_a_power_of_two():
    assert [bucket(r) for r in (1, 2, 3, 5, 6, 12, 64)] == [1, 2, 4, 4, 8, 16, 32]  # nearest in log scale


def test_figures_are_per_layer_and_given_for_the_whole_span():
    live = LiveRates(span_layers=10)
    assert live.throughput() is None and live.rates() == {}
    live.observe(prefill=False, rows=1, tokens=1, layers=10, seconds=0.1)  # 10 tok/s through 10 layers
    live.observe(prefill=False, rows=4, tokens=1, layers=5, seconds=0.1)  # 4 rows over half the span
    live.observe(prefill=True, rows=1, tokens=100, layers=10, seconds=1.0)
    assert live.throughput() == pytest.approx(10.0)
    assert live.rates() == pytest.approx({"decode@1": 10.0, "decode@4": 20.0, "prefill": 100.0})


def test_figures_follow_the_machine_smoothly():
    live = LiveRates(span_layers=1)
    live.observe(prefill=False, rows=1, tokens=1, layers=1, seconds=0.01)
    for _ in range(40):
        live.observe(prefill=False, rows=1, tokens=1, layers=1, seconds=0.02)  # the machine got busy
    assert live.throughput() == pytest.approx(50.0, rel=0.01)
    before = live.throughput()
    live.observe(prefill=False, rows=1, tokens=1, layers=1, seconds=2.0)  # one stall moves it by 1/8 only
    assert live.throughput() == pytest.approx(before - (before - 0.5) / 8)


def test_nonsense_passes_are_ignored():
    live = LiveRates(span_layers=4)
    live.observe(prefill=False, rows=0, tokens=1, layers=4, seconds=0.1)
    live.observe(prefill=False, rows=1, tokens=1, layers=4, seconds=0.0)
    assert live.passes == 0 and live.throughput() is None


def test_cache_keeps_figures_and_survives_a_broken_file(tmp_path):
    cache = ThroughputCache(tmp_path / "sub" / "throughput.json")
    key = ThroughputCache.key("llama-abc", "cpu", "float32")
    assert cache.get(key) is None
    cache.put(key, 0.002)
    cache.put(ThroughputCache.key("llama-abc", "cpu", "bfloat16"), 0.004)
    assert ThroughputCache(cache.path).get(key) == 0.002
    cache.path.write_text("{not json")
    assert cache.get(key) is None
    cache.put(key, 0.003)
    assert cache.get(key) == 0.003
