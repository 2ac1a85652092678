"""Span choice for a joining peer and --layers parsing."""

from __future__ import annotations

import pytest

from peer.placement import choose_span, coverage, layers_that_fit, parse_layers
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
    assert coverage([rec(0, 2, state=PeerState.OFFLINE), rec(1, 3)], 4) == [0, 1, 1, 0]


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
