"""Records are not taken at their word (routing/trust.py): in an in-memory swarm with real PeerServers and a
real client core, a flood of validly signed records at dead or borrowed addresses, and a peer that lies about
its speed, leave the output exactly what an honest swarm gives."""

from __future__ import annotations

import time

import torch

from routing.config import ClientConfig
from routing.swarm_client import SwarmCore
from routing.trust import MAX_PROBES
from swarm.net.records import Identity, PeerRecord, PeerState
from tests.sim.memnet import HIDDEN, FakeDiscovery, FakeSpan, MemNetwork, add_peer, reference

LAYERS = 8
CONFIG = ClientConfig(route_wait_s=30, ping_timeout_s=1.0, probe_timeout_s=5.0)


def forged(start: int, end: int, addr: str, throughput: float = 1e9) -> PeerRecord:
    """A stranger's record, validly signed with a fresh key."""
    key = Identity.generate()
    return key.sign_record(PeerRecord(peer_id=key.peer_id, model="sim", addrs=(addr,), start=start, end=end,
                                      state=PeerState.ONLINE, throughput=throughput, net_throughput=1e3,
                                      free_cache_tokens=10**6, load=0, dtype="float32", version="0"))


async def generate(core: SwarmCore) -> tuple[torch.Tensor, list[str]]:
    x = torch.randn(1, 6, HIDDEN, generator=torch.Generator().manual_seed(0))
    session = await core.open_session(max_length=8)
    try:
        out = torch.cat([await session.step(x[:, :4]), await session.step(x[:, 4:5]), await session.step(x[:, 5:6])],
                        dim=1)
        return out, [h.peer_id for h in session.hops]
    finally:
        await session.close()


async def test_a_flood_of_signed_records_at_dead_or_borrowed_addresses_changes_nothing():
    """Before, 20 signed records of fresh keys claiming absurd throughput at dead addresses made generation
    fail. Now only peers that prove their key at their address are planned with, a bounded number per read."""
    net, dht = MemNetwork(), FakeDiscovery()
    a = await add_peer(net, dht, "a", 0, 4, throughput=10)
    b = await add_peer(net, dht, "b", 4, 8, throughput=10)
    flood = [forged(0, 4, f"dead{i}:1") for i in range(12)] + [forged(4, 8, f"dead{i}:2") for i in range(12)]
    flood += [forged(0, 4, a.addr), forged(4, 8, b.addr)]  # an honest peer's address under a stranger's key
    for record in flood:
        dht.records[record.peer_id] = record
    assert len(flood) > MAX_PROBES  # more than one read's worth of proofs
    core = SwarmCore("sim", LAYERS, dht, CONFIG, connect=net.connector("client"))
    try:
        out, route = await generate(core)
    finally:
        await core.aclose()
        await net.shutdown()
    assert route == [a.identity.peer_id, b.identity.peer_id]
    assert torch.allclose(out, reference(torch.randn(1, 6, HIDDEN, generator=torch.Generator().manual_seed(0)),
                                         LAYERS), atol=1e-6)
    strangers = {r.peer_id for r in flood}
    assert not strangers & {key[0] for key in core.proven}  # none of them proved anything


class SlowSpan(FakeSpan):
    """Honest arithmetic, slow compute: a peer on a weak machine (or one that lies about it)."""

    def forward(self, hidden, cache):
        time.sleep(0.05)
        return super().forward(hidden, cache)


async def test_a_peer_that_lies_about_its_throughput_is_measured_and_banned():
    """Before, a peer claiming 1e9 tokens/s was chosen for every route. Now the client times a few steps
    through each peer before it prefers it: the claim a thousand times over what ran is a lie, and the peer
    is banned."""
    net, dht = MemNetwork(), FakeDiscovery()
    honest = await add_peer(net, dht, "honest", 0, 4, throughput=10)
    liar = await add_peer(net, dht, "liar", 0, 4, throughput=1e9, span=SlowSpan(0, 4))
    tail = await add_peer(net, dht, "tail", 4, 8, throughput=10)
    core = SwarmCore("sim", LAYERS, dht, CONFIG, hidden_size=HIDDEN, connect=net.connector("client"))
    try:
        out, route = await generate(core)
        again, _ = await generate(core)
    finally:
        await core.aclose()
        await net.shutdown()
    assert core.banned == {liar.identity.peer_id}
    assert route == [honest.identity.peer_id, tail.identity.peer_id]
    assert torch.equal(out, again)
    assert core.measured[(honest.identity.peer_id, 0)] > 10  # timed faster than it claims: the claim stands
    assert liar.sessions == {}  # its measuring session was closed


class StalledSpan(FakeSpan):
    """Honest and fast, but stalled for its first ``stalled`` forward passes (a busy moment of its machine)."""

    def __init__(self, start: int, end: int, stalled: int) -> None:
        super().__init__(start, end)
        self.stalled = stalled

    def forward(self, hidden, cache):
        if self.stalled > 0:
            self.stalled -= 1
            time.sleep(0.5)
        return super().forward(hidden, cache)


async def test_an_honest_peer_stalled_while_it_is_timed_is_timed_again_and_kept():
    """Before, an honest peer whose machine stalled through the client's one timing (4 one-token steps) ran a
    thousand times under its claim there and was banned for the client's life. Now a timing that says "lie"
    is taken again a moment later and the faster decides: the peer is kept, and routed through for its
    speed."""
    net, dht = MemNetwork(), FakeDiscovery()
    # claims 5000 tokens/s: a lie against 2 tokens/s (a stalled step takes 0.5 s), the truth when it is fast
    stalled = await add_peer(net, dht, "stalled", 0, 4, throughput=5000, span=StalledSpan(0, 4, stalled=4))
    await add_peer(net, dht, "other", 0, 4, throughput=10)
    tail = await add_peer(net, dht, "tail", 4, 8, throughput=10)
    core = SwarmCore("sim", LAYERS, dht, CONFIG, hidden_size=HIDDEN, connect=net.connector("client"))
    try:
        out, route = await generate(core)
    finally:
        await core.aclose()
        await net.shutdown()
    assert core.banned == set()
    assert stalled.span.stalled == 0  # the first timing did stall
    assert core.measured[(stalled.identity.peer_id, 0)] > 5  # the second timing is the one kept
    assert route == [stalled.identity.peer_id, tail.identity.peer_id]
    assert torch.allclose(out, reference(torch.randn(1, 6, HIDDEN, generator=torch.Generator().manual_seed(0)),
                                         LAYERS), atol=1e-6)
