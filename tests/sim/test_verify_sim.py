"""Output spot checks (routing/verify.py) in an in-memory swarm: real PeerServers and a real client core; a
peer that noises its outputs is caught, banned, and the step computed again, so the output is exact."""

from __future__ import annotations

import random

import pytest
import torch

from routing.config import ClientConfig
from routing.swarm_client import SwarmCore
from swarm.errors import VerificationError
from tests.sim.memnet import HIDDEN, FakeDiscovery, FakeSpan, MemNetwork, add_peer, reference

LAYERS = 8
CHECK_ALL = ClientConfig(route_wait_s=10, verify_fraction=1.0)


class NoisySpan(FakeSpan):
    """Right arithmetic plus noise: a peer that saves compute or tampers with what it returns."""

    def forward(self, hidden, cache):
        out = super().forward(hidden, cache)
        return out + 0.1 * torch.randn_like(out)


def inputs() -> torch.Tensor:
    return torch.randn(1, 7, HIDDEN, generator=torch.Generator().manual_seed(0))


async def generate(core: SwarmCore) -> torch.Tensor:
    x = inputs()
    session = await core.open_session(max_length=8)
    try:
        return torch.cat([await session.step(x[:, :4]), *[await session.step(x[:, i:i + 1]) for i in range(4, 7)]],
                         dim=1)
    finally:
        await session.close()


async def test_a_peer_that_noises_its_outputs_is_caught_banned_and_the_step_redone():
    """Before, a peer adding noise to its outputs was used for every route, every output wrong, no warning.
    Now the client checks its outputs against two other peers serving its layers."""
    net, dht = MemNetwork(), FakeDiscovery()
    liar = await add_peer(net, dht, "liar", 0, LAYERS, throughput=1000, span=NoisySpan(0, LAYERS))
    await add_peer(net, dht, "honest1", 0, LAYERS, throughput=100)
    await add_peer(net, dht, "honest2", 0, LAYERS, throughput=50)
    core = SwarmCore("sim", LAYERS, dht, CHECK_ALL, connect=net.connector("client"), rng=random.Random(0))
    try:
        out = await generate(core)
        again = await generate(core)
    finally:
        await core.aclose()
        await net.shutdown()
    want = reference(inputs(), LAYERS)
    assert torch.allclose(out, want, atol=1e-6), (out - want).abs().max()
    assert torch.allclose(again, want, atol=1e-6)
    assert core.banned == {liar.identity.peer_id}
    assert core.audits.caught == [liar.identity.peer_id]
    assert core.audits.checks >= 4 and core.audits.positions > 0 and core.audits.seconds >= 0
    assert "1 peers caught" in core.audits.describe()


async def test_two_peers_that_disagree_with_no_third_to_judge_are_a_clear_error():
    net, dht = MemNetwork(), FakeDiscovery()
    liar = await add_peer(net, dht, "liar", 0, LAYERS, throughput=1000, span=NoisySpan(0, LAYERS))
    honest = await add_peer(net, dht, "honest", 0, LAYERS, throughput=100)
    core = SwarmCore("sim", LAYERS, dht, CHECK_ALL, connect=net.connector("client"), rng=random.Random(0))
    try:
        with pytest.raises(VerificationError, match="no third peer") as info:
            await generate(core)
    finally:
        await core.aclose()
        await net.shutdown()
    assert set(info.value.peers) == {liar.identity.peer_id, honest.identity.peer_id}
    assert liar.sessions == {} and honest.sessions == {}  # nothing left open


async def test_honest_replicas_pass_every_check_and_the_checks_change_no_output():
    net, dht = MemNetwork(), FakeDiscovery()
    for name, (start, end) in {"a0": (0, 4), "a1": (0, 4), "b0": (4, 8), "b1": (4, 8)}.items():
        await add_peer(net, dht, name, start, end, throughput=100)
    core = SwarmCore("sim", LAYERS, dht, CHECK_ALL, connect=net.connector("client"), rng=random.Random(1))
    try:
        out = await generate(core)
    finally:
        await core.aclose()
        await net.shutdown()
    assert torch.allclose(out, reference(inputs(), LAYERS), atol=1e-6)
    assert core.audits.checks == 4 and core.audits.passed == 4 and not core.banned
