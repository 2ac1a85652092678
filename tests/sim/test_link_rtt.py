"""PeerLink measures the round trip of its small requests (ping, open, close) on an injected clock and
smooths it as TCP's SRTT (EWMA, weight 1/8); the planner reads it through SwarmCore.rtts()."""

from __future__ import annotations

import asyncio

import pytest

from routing.link import PeerLink, ewma
from swarm.errors import RemoteError
from swarm.net.protocol import Close, Error, Ok, Open, Ping, Rebind
from swarm.net.wire import Frame


class ScriptedChannel:
    """Answers each request after ``delays`` seconds of fake time (the clock moves when the reply leaves)."""

    def __init__(self, clock: list[float], delays: list[float], code: str | None = None) -> None:
        self.clock, self.delays, self.code = clock, list(delays), code
        self.replies: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.closed = False

    async def send(self, header, body=b"") -> None:
        self.clock[0] += self.delays.pop(0)
        reply = Error(code=self.code, message="full", id=header["id"]) if self.code else Ok(id=header["id"])
        self.replies.put_nowait(Frame(reply.to_header(), b""))

    async def recv(self) -> Frame | None:
        return await self.replies.get()

    async def close(self) -> None:
        self.closed = True


def test_ewma_starts_at_the_first_sample_then_weighs_new_ones_by_an_eighth():
    assert ewma(None, 0.2) == 0.2
    assert ewma(0.2, 0.1) == pytest.approx(0.2 * 7 / 8 + 0.1 / 8)


async def test_round_trips_of_small_requests_are_smoothed():
    """Three pings answered after 10, 10 and 90 ms of fake time: the estimate is 10 ms, 10 ms, then 20 ms."""
    clock = [100.0]
    link = PeerLink(ScriptedChannel(clock, [0.01, 0.01, 0.09]), "p:1", clock=lambda: clock[0])
    assert link.rtt_s is None
    await link.request(Ping(), timeout=1)
    await link.request(Ping(), timeout=1)
    assert link.rtt_s == pytest.approx(0.01)
    await link.request(Close(session="s", secret="k" * 22), timeout=1)
    assert link.rtt_s == pytest.approx(0.02)
    await link.close()


async def test_an_error_answer_is_a_round_trip_too_and_rebind_is_not_sampled():
    """A busy answer to open still measures the link; a rebind (which waits on a push) leaves it alone."""
    clock = [0.0]
    link = PeerLink(ScriptedChannel(clock, [0.03, 5.0], code="busy"), "p:1", clock=lambda: clock[0])
    with pytest.raises(RemoteError):
        await link.request(Open(session="s", secret="k" * 22, start=0, end=1, max_length=4, batch=1), timeout=1)
    assert link.rtt_s == pytest.approx(0.03)
    with pytest.raises(RemoteError):
        await link.request(Rebind(session="s", secret="k" * 22, next="p:2", next_secret="j" * 22,
                                        next_peer="cd" * 20, upto_step=1), timeout=1)
    assert link.rtt_s == pytest.approx(0.03)
    await link.close()
