"""Ways to reach a peer: what a peer record's ``addrs`` lists, the preferred first.

A peer is named by its peer id everywhere (records, next hops, pushes, rebinds); a *way* only says how to get
a connection to it, and whoever answers there still has to prove it is that peer (``Ping`` with a nonce):

- ``HOST:PORT``: the peer's data port, dialled directly over TCP (the fast path);
- ``/ip4/R/tcp/P/p2p/RELAY/p2p-circuit/p2p/TARGET``: through the relay ``RELAY`` (a bootstrap started with
  ``--relay``) to the libp2p node ``TARGET`` of a peer that keeps a connection to that relay, as a peer behind
  a NAT does. The form is libp2p's circuit address; ``swarm/net/circuits.py`` carries frames over it.

Pure functions only: parsing, checking, and the choice of what a peer publishes (``choose_ways``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from swarm.net.errors import ConfigError
from swarm.net.transport import parse_addr

CIRCUIT = "/p2p-circuit/p2p/"
MAX_RELAYS = 4  # relay ways one record lists: enough to survive losing relays, small enough for a record
_PEER_ID = r"[1-9A-HJ-NP-Za-km-z]{20,128}"  # a libp2p peer id in base58
_RELAY = re.compile(rf"^/(ip4|ip6|dns|dns4|dns6)/([^/\s]+)/tcp/(\d{{1,5}})/p2p/({_PEER_ID})$")
_TARGET = re.compile(rf"^{_PEER_ID}$")

DIRECT = "direct"
RELAYED = "relayed"
PUNCHED = "punched"  # not a way: how a connection made over a relayed way ended up, after a hole punch


@dataclass(frozen=True)
class RelayedWay:
    relay: str  # the relay's libp2p address without its peer id: /ip4/HOST/tcp/PORT
    relay_id: str  # the relay's libp2p peer id
    target: str  # the libp2p peer id of the peer's node, which keeps a connection to the relay

    @property
    def relay_maddr(self) -> str:
        """The relay's full address, as --initial-peers takes it."""
        return f"{self.relay}/p2p/{self.relay_id}"


def is_relayed(way: str) -> bool:
    return isinstance(way, str) and CIRCUIT in way


def way_kind(way: str) -> str:
    """``relayed`` for a way through a relay, ``direct`` for a HOST:PORT."""
    return RELAYED if is_relayed(way) else DIRECT


def relayed_way(relay_maddr: str, target: str) -> str:
    """The way to the libp2p node ``target`` through the relay at ``relay_maddr`` (/ip4/H/tcp/P/p2p/ID)."""
    way = f"{relay_maddr}{CIRCUIT}{target}"
    parse_relayed(way)
    return way


def parse_relayed(way: str) -> RelayedWay:
    """The parts of a relayed way; ConfigError when ``way`` is not one."""
    if not is_relayed(way):
        raise ConfigError(f"{way!r} is not a relayed way (RELAY_ADDRESS{CIRCUIT}PEER_ID)")
    relay, _, target = way.partition(CIRCUIT)
    found = _RELAY.match(relay)
    if found is None or not _TARGET.match(target) or not 0 < int(found.group(3)) <= 65535:
        raise ConfigError(f"{way!r} is not a relayed way: expected /ip4/HOST/tcp/PORT/p2p/RELAY_ID{CIRCUIT}PEER_ID")
    return RelayedWay(relay=relay.rpartition("/p2p/")[0], relay_id=found.group(4), target=target)


def check_way(way: str) -> None:
    """ConfigError unless ``way`` is a HOST:PORT or a relayed way."""
    if is_relayed(way):
        parse_relayed(way)
    else:
        parse_addr(way)


@dataclass(frozen=True)
class Reachability:
    """What a peer publishes and why: its ways, the preferred first, and how others reach it."""

    ways: tuple[str, ...]
    kind: str  # DIRECT or RELAYED
    checked: bool  # a relay dialled the data port back (False: not checked, or --announce-addr said)
    summary: str  # one line for the log


def choose_ways(local: Sequence[str], *, announce: str | None, relays: Sequence[str],
                observed: Sequence[tuple[str, bool]], target: str | None, max_ways: int = 16) -> Reachability:
    """What a peer publishes.

    local: its data port at its own interfaces' addresses (preferred first); announce: --announce-addr;
    relays: the relays among its initial peers (full addresses) that answered; observed: per answer, the
    HOST:PORT the relay saw the peer at and whether it could connect there; target: its libp2p peer id.

    --announce-addr is trusted as said. A data port a relay reached is published first at the address the relay
    saw, then at the peer's own addresses. A peer no relay could reach (behind a NAT) publishes only its relayed
    ways: its own addresses are private, and a client must never plan on them as a direct hop. Reachable peers
    add relayed ways after their direct ones, so a pusher that cannot reach them directly has another way.
    """
    relayed = [relayed_way(r, target) for r in relays[:MAX_RELAYS]] if target else []
    if announce:
        ways = [announce, *relayed]
        return Reachability(tuple(ways[:max_ways]), DIRECT, False, f"reachable at {announce} (--announce-addr)")
    reached = [addr for addr, ok in observed if ok]
    if reached:
        ways = list(dict.fromkeys([reached[0], *local]))
        ways = [*ways[: max_ways - len(relayed)], *relayed]
        return Reachability(tuple(ways), DIRECT, True,
                            f"reachable at {reached[0]} (a relay connected to it from outside)")
    if relayed:
        seen = ", ".join(sorted({addr for addr, _ in observed})) or "an address no relay could reach"
        relay_list = ", ".join(parse_relayed(w).relay_maddr for w in relayed)
        return Reachability(tuple(relayed), RELAYED, True,
                            f"behind a NAT (relays saw it at {seen} and could not connect there): serving through "
                            f"relay {relay_list}")
    return Reachability(tuple(local[:max_ways]), DIRECT, False,
                        "reachability not checked (no relay among the initial peers): publishing "
                        + (", ".join(local[:3]) or "no address"))


def prefer_connected(ways: Sequence[str], connected: Collection[str]) -> tuple[str, ...]:
    """``ways`` with the relayed ones through relays this peer is no longer connected to (libp2p peer ids not in
    ``connected``) moved last: a lost relay stops being the way clients try first, and comes back when the
    peer reconnects to it."""
    return tuple(sorted(ways, key=lambda w: is_relayed(w) and parse_relayed(w).relay_id not in connected))
