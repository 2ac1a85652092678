"""A swarm of unlike peers joining, leaving and rebalancing over simulated hours: no sockets, a fake clock.

Each simulated peer decides exactly as a real one does (``peer/placement.py``): it joins where the swarm's
throughput gains most (exactly in a small swarm, by layer capacity in a large one), checks at jittered intervals whether moving would raise the weakest layer by more than
the margin, waits ``MIN_DWELL_S`` after a move, and while it drains and reloads it counts for placement at its
new span but serves nothing. What is left out: link latency and bandwidth, and the few seconds records take
to spread (peers here see each other's changes at once).

Used by ``tests/sim/test_placement_sim.py`` and ``benchmarks/placement.py``::

    sim = Simulator(num_layers=80, rng=random.Random(1))
    sim.add_peers(100, over_s=600)
    sim.run_until(3600)
    sim.report()  # throughput vs the bound, moves per peer-hour, coverage
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from peer.placement import (
    EXACT_PEERS,
    MIN_DWELL_S,
    MOVE_MARGIN,
    Holding,
    best_start,
    choose_start,
    next_check_s,
    plan_move,
    plan_move_exact,
    swarm_throughput,
    throughput_bound,
)

MEMORY_LAYERS = (3, 4, 6, 8, 13, 26)  # layers of a 70B model in 16 bits (1.7 GB each) on 6, 8, 12, 16, 24, 48 GB cards
LOAD_S_PER_LAYER = 1.5  # reading one layer's weights from disk
DRAIN_S = 15.0  # a moving peer's sessions get this long to move


@dataclass
class SimPeer:
    pid: int
    rate: float  # layer-tokens/s: what it can compute, spread over its span
    size: int  # layers it holds (what fits its memory)
    start: int = -1
    state: str = "joining"  # joining (loading or reloading), online, gone
    ready_at: float = 0.0
    last_move: float = -math.inf
    moves: int = 0
    joined_at: float = 0.0
    left_at: float | None = None

    @property
    def throughput(self) -> float:
        return self.rate / self.size

    def holding(self) -> Holding:
        return Holding(self.start, self.start + self.size, self.throughput)


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    pid: int = field(compare=False)


def random_peer(pid: int, num_layers: int, rng: random.Random) -> SimPeer:
    """A home machine: memory from a 6 GB laptop to a 48 GB card, speed spread over ~2 orders of magnitude."""
    size = min(rng.choice(MEMORY_LAYERS), num_layers)
    return SimPeer(pid=pid, rate=1000.0 * rng.lognormvariate(0.0, 0.8), size=size)


class Simulator:
    def __init__(self, num_layers: int, rng: random.Random, *, margin: float = MOVE_MARGIN,
                 check_every_s: float = 120.0, make_peer: Callable[[int, int, random.Random], SimPeer] = random_peer) -> None:
        self.num_layers = num_layers
        self.rng = rng
        self.margin = margin
        self.check_every_s = check_every_s
        self.make_peer = make_peer
        self.now = 0.0
        self.peers: dict[int, SimPeer] = {}
        self.capacity = np.zeros(num_layers)  # placement's view: joining and online peers at their spans
        self._events: list[_Event] = []
        self._seq = itertools.count()
        self._ids = itertools.count()
        self.samples: list[tuple[float, float]] = []  # (time, throughput / bound)

    # ---- events ----------------------------------------------------------------------------------------

    def _at(self, at: float, kind: str, pid: int) -> None:
        heapq.heappush(self._events, _Event(at, next(self._seq), kind, pid))

    def add_peers(self, count: int, *, over_s: float = 0.0) -> list[int]:
        """``count`` new peers joining at uniform random times within the next ``over_s`` seconds."""
        pids = []
        for _ in range(count):
            peer = self.make_peer(next(self._ids), self.num_layers, self.rng)
            self.peers[peer.pid] = peer
            peer.state = "pending"
            self._at(self.now + self.rng.uniform(0, over_s), "join", peer.pid)
            pids.append(peer.pid)
        return pids

    def remove_peers(self, fraction: float) -> list[int]:
        """A ``fraction`` of the present peers leave now, at once (a power cut, a closed laptop)."""
        present = [p for p in self.peers.values() if p.state in ("joining", "online")]
        gone = self.rng.sample(present, round(fraction * len(present)))
        for peer in gone:
            self._leave(peer)
        return [p.pid for p in gone]

    def churn(self, per_hour: float, until_s: float) -> None:
        """Poisson churn until ``until_s``: about ``per_hour`` of the peers leave each hour and as many join."""
        present = sum(p.state in ("joining", "online") for p in self.peers.values())
        rate = per_hour * max(present, 1) / 3600.0
        t = self.now
        while True:
            t += self.rng.expovariate(rate)
            if t >= until_s:
                break
            self._at(t, "churn", -1)

    def _leave(self, peer: SimPeer) -> None:
        if peer.state in ("joining", "online"):
            self.capacity[peer.start:peer.start + peer.size] -= peer.throughput
        peer.state, peer.left_at = "gone", self.now

    def _place(self, peer: SimPeer, start: int, wait_s: float) -> None:
        peer.start = start
        self.capacity[start:start + peer.size] += peer.throughput
        peer.state, peer.ready_at = "joining", self.now + wait_s
        self._at(peer.ready_at, "ready", peer.pid)

    def run_until(self, until_s: float, *, sample_every_s: float = 300.0) -> None:
        next_sample = self.now + sample_every_s
        while self._events and self._events[0].at <= until_s:
            event = heapq.heappop(self._events)
            while next_sample <= event.at:
                self.now = next_sample
                self.samples.append((self.now, self.fraction()))
                next_sample += sample_every_s
            self.now = event.at
            self._handle(event)
        while next_sample <= until_s:
            self.now = next_sample
            self.samples.append((self.now, self.fraction()))
            next_sample += sample_every_s
        self.now = until_s

    def _handle(self, event: _Event) -> None:
        if event.kind == "churn":
            present = [p for p in self.peers.values() if p.state in ("joining", "online")]
            if present:
                self._leave(self.rng.choice(present))
            self.add_peers(1)
            return
        peer = self.peers[event.pid]
        if peer.state == "gone":
            return
        if event.kind == "join":
            peer.joined_at = self.now
            others = self._others(peer)
            start = (choose_start(self.capacity, peer.size) if others is None
                     else best_start(others, self.num_layers, peer.size, peer.throughput))
            self._place(peer, start, LOAD_S_PER_LAYER * peer.size)
            self._at(self.now + next_check_s(self.rng, self.check_every_s), "check", peer.pid)
        elif event.kind == "ready" and peer.state == "joining" and self.now >= peer.ready_at:
            peer.state = "online"
        elif event.kind == "check":
            self._check(peer)
            self._at(self.now + next_check_s(self.rng, self.check_every_s), "check", peer.pid)

    def _check(self, peer: SimPeer) -> None:
        if peer.state != "online" or self.now - peer.last_move < MIN_DWELL_S:
            return
        others = self._others(peer)
        start = (plan_move(self.capacity, peer.holding(), self.margin) if others is None
                 else plan_move_exact(others, peer.holding(), self.num_layers, self.margin))
        if start is None:
            return
        self.capacity[peer.start:peer.start + peer.size] -= peer.throughput
        peer.moves += 1
        peer.last_move = self.now
        self._place(peer, start, DRAIN_S + LOAD_S_PER_LAYER * peer.size)

    def _others(self, peer: SimPeer) -> list[Holding] | None:
        """The other placed peers, when few enough for exact decisions (as a real peer decides); else None."""
        placed = [p for p in self.peers.values() if p.state in ("joining", "online") and p.pid != peer.pid]
        return [p.holding() for p in placed] if len(placed) <= EXACT_PEERS else None

    # ---- measures --------------------------------------------------------------------------------------

    def online(self) -> list[SimPeer]:
        return [p for p in self.peers.values() if p.state == "online"]

    def covered(self) -> bool:
        """Whether online peers hold every layer."""
        held = np.zeros(self.num_layers, dtype=bool)
        for p in self.online():
            held[p.start:p.start + p.size] = True
        return bool(held.all())

    def fraction(self) -> float:
        """The online swarm's throughput as a fraction of the bound for the same peers (0 with a gap)."""
        held = [p.holding() for p in self.online()]
        bound = throughput_bound(held, self.num_layers)
        return swarm_throughput(held, self.num_layers) / bound if bound > 0 else 0.0

    def time_to_cover(self, limit_s: float, step_s: float = 5.0) -> float | None:
        """Run on until online peers hold every layer again; the seconds it took, or None past ``limit_s``."""
        began = self.now
        while not self.covered():
            if self.now - began >= limit_s:
                return None
            self.run_until(self.now + step_s, sample_every_s=math.inf)
        return self.now - began

    def moves_per_peer_hour(self) -> float:
        hours = sum(((p.left_at if p.left_at is not None else self.now) - p.joined_at) / 3600.0
                    for p in self.peers.values() if p.state != "pending")
        return sum(p.moves for p in self.peers.values()) / hours if hours > 0 else 0.0
