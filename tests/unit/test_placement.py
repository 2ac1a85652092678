"""Span choice for a joining peer and --layers parsing."""

from __future__ import annotations

import pytest

from peer.placement import choose_span, holdings, layers_that_fit, parse_layers
from swarm.errors import SpanError
from swarm.net.records import PeerState
from tests.factories import make_peer_record


def rec(start, end, **kw):
    return make_peer_record(start=start, end=end, sign=False, **kw)


def test_empty_swarm_starts_at_zero():
    assert choose_span(10, 4, []) == (0, 4)


def test_gap_is_filled_first():
    """A window containing an uncovered layer beats one that is merely thin."""
    assert choose_span(10, 5, [rec(0, 5)]) == (5, 10)
    assert choose_span(12, 4, [rec(0, 4), rec(8, 12), rec(0, 12)]) == (4, 8)


def test_offline_peers_do_not_count():
    assert choose_span(8, 4, [rec(0, 4, state=PeerState.OFFLINE)]) == (0, 4)
    assert holdings([rec(0, 2, state=PeerState.OFFLINE), rec(1, 3, state=PeerState.DRAINING), rec(1, 3)]) == [
        Holding(1, 3, 100.0)]


def test_span_longer_than_model_is_clamped():
    assert choose_span(4, 10, []) == (0, 4)


def test_layers_that_fit():
    assert layers_that_fit(10.0, 2.0, 1.0, 100) == 4
    assert layers_that_fit(100.0, 2.0, 0.0, 8) == 8
    with pytest.raises(SpanError):
        layers_that_fit(1.0, 2.0, 0.5, 8)


@pytest.mark.parametrize("text", ["0:0", "3:2", "-1:2", "0:9", "a:b", "3", "1:2:3"])
def test_bad_layers_are_refused(text):
    with pytest.raises(SpanError):
        parse_layers(text, 8)


def test_good_layers():
    assert parse_layers("2:8", 8) == (2, 8)


# ---- throughput-aware choice, moves and the swarm's throughput (peer/placement.py) ----------------------

from peer.placement import (  # noqa: E402
    Holding,
    carries,
    layer_capacity,
    move_for,
    plan_move,
    swarm_throughput,
    throughput_bound,
)


def test_two_gaps_the_window_holding_more_of_them_wins():
    """Layers 2..3 and 6..7 are empty; a 6-layer peer takes 2:8, which closes both."""
    records = [rec(0, 2), rec(4, 6), rec(8, 10)]
    assert choose_span(10, 6, records) == (2, 8)
    assert choose_span(10, 2, records) == (2, 4)  # the first of two equal gaps


def test_replicated_hot_spot_is_avoided():
    """Three peers on 0:4 and one on 4:8: a joining 4-layer peer goes to 4:8."""
    assert choose_span(8, 4, [rec(0, 4), rec(0, 4), rec(0, 4), rec(4, 8)]) == (4, 8)


def test_one_fast_peer_outweighs_many_slow_ones():
    """One peer at 1,000 tok/s on 0:4 against four at 10 tok/s on 4:8: the newcomer helps 4:8."""
    records = [rec(0, 4, throughput=1000.0)] + [rec(4, 8, throughput=10.0) for _ in range(4)]
    assert choose_span(8, 4, records) == (4, 8)
    records = [rec(0, 4, throughput=10.0)] + [rec(4, 8, throughput=1000.0)]
    assert choose_span(8, 4, records) == (0, 4)


def test_capacity_sums_throughput_per_layer():
    cap = layer_capacity([Holding(0, 2, 5.0), Holding(1, 4, 2.0)], 4)
    assert list(cap) == [5.0, 7.0, 2.0, 2.0]


def test_a_move_to_the_weak_side_is_planned():
    mine = Holding(0, 2, 10.0)
    cap = layer_capacity([mine, Holding(0, 2, 10.0), Holding(0, 4, 1.0)], 4)
    assert plan_move(cap, mine) == 2


def test_balanced_swarm_stays_put():
    mine = Holding(0, 2, 10.0)
    cap = layer_capacity([mine, Holding(2, 4, 10.0)], 4)
    assert plan_move(cap, mine) is None


def test_small_gains_are_not_worth_a_move():
    """Moving would raise the weakest layer from 9.5 to 10: under the 20% margin."""
    mine = Holding(0, 2, 1.0)
    cap = layer_capacity([mine, Holding(0, 2, 10.0), Holding(2, 4, 9.5)], 4)
    assert plan_move(cap, mine) is None
    assert plan_move(cap, mine, margin=0.05) == 2


def test_the_only_holder_of_layers_never_leaves_them():
    mine = Holding(0, 2, 1.0)
    cap = layer_capacity([mine, Holding(2, 4, 100.0), Holding(2, 4, 100.0)], 4)
    assert plan_move(cap, mine) is None


def test_move_for_reads_records():
    me = rec(0, 2, throughput=10.0)
    records = [me, rec(0, 2, throughput=10.0), rec(0, 4, throughput=1.0)]
    assert move_for(records, me.peer_id, 4) == (2, 4)
    assert move_for(records, "someone else", 4) is None


def test_swarm_throughput_is_exact_where_runs_of_layers_are_not_enough():
    """A peer on every layer (rate 2) and a fast one on the middle layer only: layers 0 and 2 together get at
    most 2, so the swarm passes 1 token/s, not the 2 a check of single runs would allow."""
    held = [Holding(0, 3, 2 / 3), Holding(1, 2, 100.0)]
    assert swarm_throughput(held, 3) == pytest.approx(1.0, rel=1e-6)
    assert carries(held, 3, 0.99) and not carries(held, 3, 1.01)


def test_swarm_throughput_and_bound():
    held = [Holding(0, 2, 10.0), Holding(2, 4, 10.0)]
    assert swarm_throughput(held, 4) == pytest.approx(10.0, rel=1e-6)
    assert throughput_bound(held, 4) == pytest.approx(10.0, rel=1e-6)
    unbalanced = [Holding(0, 2, 10.0), Holding(0, 2, 10.0), Holding(2, 4, 1.0)]
    assert swarm_throughput(unbalanced, 4) == pytest.approx(1.0, rel=1e-6)
    assert throughput_bound(unbalanced, 4) == pytest.approx(10.5, rel=1e-6)  # (20 + 20 + 2) / 4
    assert swarm_throughput([Holding(0, 2, 10.0)], 4) == 0.0  # a gap
    assert throughput_bound([Holding(0, 2, 10.0)], 4) == 0.0  # too little memory to hold the model


def test_small_swarms_choose_by_exact_throughput():
    """Up to EXACT_PEERS others, the chosen window gives the swarm the most throughput of any window."""
    import random

    from peer.placement import best_start

    rng = random.Random(4)
    for _ in range(30):
        layers = 12
        others = []
        for _ in range(rng.randint(2, 7)):
            a = rng.randrange(layers)
            others.append(Holding(a, rng.randint(a + 1, layers), rng.choice([1.0, 5.0, 50.0])))
        size, speed = rng.randint(1, 6), rng.choice([1.0, 10.0])
        flows = [swarm_throughput([*others, Holding(s, s + size, speed)], layers) for s in range(layers - size + 1)]
        chosen = best_start(others, layers, size, speed)
        assert flows[chosen] >= max(flows) * (1 - 1e-6)


def test_span_size_from_memory_counts_weights_and_kv(monkeypatch):
    """As many layers as fit --max-memory (or 90% of the free memory), each with its KV reserve."""
    from types import SimpleNamespace

    import torch
    from transformers import Qwen3Config

    import peer.main as peer_main
    from peer.config import PeerConfig
    from peer.memory import GB, kv_bytes_per_token, layer_sizes

    config = Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, vocab_size=128)
    ckpt = SimpleNamespace(config=config, num_layers=8)
    sizes = layer_sizes(config, torch.float32)
    per_layer = max(sizes) + 1000 * kv_bytes_per_token(config, torch.float32)
    budget_gb = 3.5 * per_layer / GB
    pinned = PeerConfig(model="m", max_memory_gb=budget_gb, kv_reserve_tokens=1000)
    assert peer_main.span_size(pinned, ckpt, sizes, torch.float32) == 3
    monkeypatch.setattr(peer_main, "free_memory", lambda device: 5.9 * per_layer / peer_main.FREE_SHARE)
    assert peer_main.span_size(PeerConfig(model="m", kv_reserve_tokens=1000), ckpt, sizes, torch.float32) == 5
    monkeypatch.setattr(peer_main, "free_memory", lambda device: 100 * per_layer)
    assert peer_main.span_size(PeerConfig(model="m", kv_reserve_tokens=1000), ckpt, sizes, torch.float32) == 8
    monkeypatch.setattr(peer_main, "free_memory", lambda device: 0.5 * per_layer)
    with pytest.raises(SpanError, match="free on cpu"):
        peer_main.span_size(PeerConfig(model="m", kv_reserve_tokens=1000), ckpt, sizes, torch.float32)
