"""Ways to reach a peer (swarm/net/ways.py): parsing, what a peer publishes after its reachability check."""

from __future__ import annotations

import pytest

from peer.sessions import check_addr
from swarm.errors import ConfigError, ProtocolError
from swarm.net.ways import (
    DIRECT,
    MAX_RELAYS,
    RELAYED,
    check_way,
    choose_ways,
    is_relayed,
    parse_relayed,
    prefer_connected,
    relayed_way,
    way_kind,
)

R1 = "/ip4/203.0.113.10/tcp/31337/p2p/QmfQrZF4AykDfJ5cV3qadVHqfQvqwmyfvZFvfiozRzTUKT"
R2 = "/ip4/203.0.113.11/tcp/31337/p2p/QmSCu27VD2Td9dLdUowH7kh7DdDSu2WzKv4Se6PXbCbnMK"
ME = "12D3KooWRch1rxjvgvMT7s4KP2Tsy1bfZeMUVND4a9xbrB16LJ9m"
LOCAL = ["198.51.100.2:31400", "127.0.0.1:31400"]


def test_a_relayed_way_names_the_relay_and_the_peer():
    way = relayed_way(R1, ME)
    assert way == f"{R1}/p2p-circuit/p2p/{ME}"
    parts = parse_relayed(way)
    assert (parts.relay, parts.relay_id, parts.target) == ("/ip4/203.0.113.10/tcp/31337", R1.rsplit("/", 1)[1], ME)
    assert parts.relay_maddr == R1
    assert is_relayed(way) and way_kind(way) == RELAYED
    assert not is_relayed("198.51.100.2:31400") and way_kind("198.51.100.2:31400") == DIRECT


@pytest.mark.parametrize("way", [
    f"{R1}/p2p-circuit/p2p/",                               # no target
    f"/ip4/203.0.113.10/tcp/31337/p2p-circuit/p2p/{ME}",    # a relay without its id
    f"/ip4/203.0.113.10/tcp/99999/p2p/{R1[-46:]}/p2p-circuit/p2p/{ME}",  # no such port
    f"{R1}/p2p-circuit/p2p/{ME}/extra",
    f"/unix/tmp/x/p2p/{R1[-46:]}/p2p-circuit/p2p/{ME}",     # not a network address
    f"{R1}/p2p-circuit/p2p/0OIl{ME[4:]}",                   # not base58
])
def test_malformed_relayed_ways_are_refused(way):
    with pytest.raises(ConfigError):
        parse_relayed(way)
    with pytest.raises(ProtocolError):  # from the network: a clear refusal, never a crash
        check_addr(way)


def test_a_next_hop_may_be_a_relayed_way_but_not_one_of_the_peer_s_own():
    way = relayed_way(R1, ME)
    check_addr(way)
    check_way(way)
    check_way("203.0.113.12:31400")
    with pytest.raises(ProtocolError):
        check_addr(way, own_addrs=(way,))


def test_a_peer_no_relay_reached_publishes_only_its_relayed_ways():
    reach = choose_ways(LOCAL, announce=None, relays=[R1, R2],
                        observed=[("203.0.113.200:31400", False), ("203.0.113.200:31400", False)], target=ME)
    assert reach.kind == RELAYED and reach.checked
    assert reach.ways == (relayed_way(R1, ME), relayed_way(R2, ME))  # never a private address
    assert "behind a NAT" in reach.summary and "203.0.113.200:31400" in reach.summary


def test_a_reached_peer_publishes_the_address_the_relay_saw_first_then_its_own_then_relays():
    reach = choose_ways(LOCAL, announce=None, relays=[R1, R2],
                        observed=[("203.0.113.12:31400", True), ("203.0.113.12:31400", False)], target=ME)
    assert reach.kind == DIRECT and reach.checked
    assert reach.ways == ("203.0.113.12:31400", *LOCAL, relayed_way(R1, ME), relayed_way(R2, ME))
    assert reach.summary.startswith("reachable at 203.0.113.12:31400")


def test_announce_addr_is_published_as_said():
    reach = choose_ways(LOCAL, announce="192.0.2.7:4000", relays=[R1], observed=[("203.0.113.200:31400", False)],
                        target=ME)
    assert reach.kind == DIRECT and not reach.checked
    assert reach.ways == ("192.0.2.7:4000", relayed_way(R1, ME))


def test_without_a_relay_nothing_is_checked_and_the_local_addresses_stay():
    reach = choose_ways(LOCAL, announce=None, relays=[], observed=[], target=ME)
    assert reach.ways == tuple(LOCAL) and reach.kind == DIRECT and not reach.checked
    assert "not checked" in reach.summary


def test_a_record_lists_a_bounded_number_of_ways():
    relays = [f"/ip4/203.0.113.{10 + i}/tcp/31337/p2p/{R1[-46:]}" for i in range(8)]
    reach = choose_ways([f"198.51.100.{i}:1" for i in range(20)], announce=None, relays=relays,
                        observed=[("203.0.113.12:31400", True)], target=ME, max_ways=16)
    assert len(reach.ways) == 16
    assert sum(is_relayed(w) for w in reach.ways) == MAX_RELAYS
    assert reach.ways[0] == "203.0.113.12:31400"


def test_ways_through_lost_relays_move_last_and_come_back():
    ways = (relayed_way(R1, ME), relayed_way(R2, ME))
    r1, r2 = parse_relayed(ways[0]).relay_id, parse_relayed(ways[1]).relay_id
    assert prefer_connected(ways, {r1, r2}) == ways
    assert prefer_connected(ways, {r2}) == (ways[1], ways[0])
    assert prefer_connected((ways[1], ways[0]), {r1, r2}) == (ways[1], ways[0])  # no flapping once both are back
    direct = ("203.0.113.12:31400", *ways)
    assert prefer_connected(direct, set()) == direct  # direct ways never move
