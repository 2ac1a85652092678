"""Output spot checks: a peer that computes wrong outputs is caught, banned, and the step redone.

After a step, with probability ``ClientConfig.verify_fraction``, the client checks one hop of the route,
drawn at random (``InferenceSession._spot_check`` in ``routing/session.py``; ``spot_check`` here):

1. The hop's input for every position so far: the session's own inputs for the first hop, else what the
   route's earlier hops make of them (one session over those hops, result to the client).
2. That input through the hop and the rest of the route, and through another peer (or chain) serving the
   hop's layers and the same rest of the route: two fresh sessions that look to the hop like any session
   (a prefill from position 0 pushed on to a real next hop).
3. Outputs within ``verify_tolerance`` (relative L2) agree. Otherwise a third peer for those layers judges:
   the side it disagrees with is banned for the client's life. With no third peer, or three different
   answers, ``VerificationError`` names them all: the client will not guess which to believe.

When a route's own hop is caught, the session moves to a route without it, rebuilt from the session's inputs,
and the step is computed again, so the step's output is the honest one. What a check costs (positions
recomputed, seconds) is counted in ``AuditStats`` and logged when a client closes.

What this does not catch (docs/architecture.md, "Strangers' records"): a peer that lies only on steps that
are not checked lets those through (1 in 50 steps is checked by default; a peer that always lies is caught
within a few dozen steps), and a peer's outputs are compared with another peer's, not with a proof.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from routing.failover import avoided
from routing.planner import Hop, Route
from swarm.errors import RoutingError, VerificationError

if TYPE_CHECKING:
    from routing.swarm_client import SwarmCore

log = logging.getLogger("molink.client")


@dataclass
class AuditStats:
    """What this client's spot checks did and cost."""

    checks: int = 0
    passed: int = 0
    unverifiable: int = 0  # no other peer served the drawn hop's layers
    caught: list[str] = field(default_factory=list)  # peer ids banned for wrong outputs
    positions: int = 0  # token positions recomputed by checks, over all their hops
    seconds: float = 0.0

    def describe(self) -> str:
        return (f"{self.checks} spot checks ({self.passed} passed, {self.unverifiable} with no other peer to "
                f"compare, {len(self.caught)} peers caught): {self.positions} positions recomputed in "
                f"{self.seconds:.2f} s")


def disagreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 difference of two outputs (0 when equal; inf for different shapes or non-finite values)."""
    if a.shape != b.shape:
        return float("inf")
    a, b = a.double(), b.double()
    diff = float(torch.linalg.vector_norm(a - b))
    scale = max(float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b)), 1e-12)
    value = diff / scale
    return value if value == value else float("inf")  # NaN -> inf


async def run_route(core: SwarmCore, hops: Sequence[Hop], x: torch.Tensor, est_time_s: float) -> torch.Tensor:
    """``x`` [B, P, H] through ``hops`` as one fresh session (one prefill step); the last hop's output."""
    from routing.session import InferenceSession

    session = InferenceSession(core, Route(tuple(hops), est_time_s), max_length=x.shape[1], batch=x.shape[0],
                               verify=False)
    await session.open()
    try:
        return await session.step(x)
    finally:
        await session.close()


async def spot_check(core: SwarmCore, hops: Sequence[Hop], index: int, inputs: torch.Tensor,
                     est_time_s: float) -> list[str]:
    """Check hop ``index`` of ``hops`` on the session's ``inputs`` [B, P, H] (see the module docstring);
    returns the peer ids caught (now banned), [] when the check passed or could not be made."""
    stats, tolerance = core.audits, core.config.verify_tolerance
    hop = hops[index]
    started = core.clock()
    stats.checks += 1
    avoid = set(core.banned) | avoided(core.failures, core.clock(), core.config.backoff) | {hop.peer_id}

    def other(exclude: set[str]) -> Route | None:
        try:
            return core.plan_from(core.known, hop.start, hop.end, exclude)
        except RoutingError:
            return None

    alternative = other(avoid)
    if alternative is None:
        stats.unverifiable += 1
        return []
    try:
        x = inputs if index == 0 else await run_route(core, hops[:index], inputs, est_time_s)
        tail = tuple(hops[index + 1:])
        mine = await run_route(core, (hop, *tail), x, est_time_s)
        theirs = await run_route(core, (*alternative.hops, *tail), x, est_time_s)
        stats.positions += inputs.shape[1] * (index + 1 + len(alternative.hops) + 2 * len(tail))
        gap = disagreement(mine, theirs)
        if gap <= tolerance:
            stats.passed += 1
            return []
        suspects = [hop.peer_id, *alternative.peer_ids]
        log.warning("spot check: layers %d:%d from %s and from %s differ by %.3g (tolerance %.3g); asking a third "
                    "peer", hop.start, hop.end, hop.addr, alternative.describe(), gap, tolerance)
        judge_route = other(avoid | set(alternative.peer_ids))
        if judge_route is None:
            core.banned.update(suspects)
            raise VerificationError(
                f"peers disagree on layers {hop.start}:{hop.end} ({hop.addr} and {alternative.describe()}: "
                f"relative difference {gap:.3g}) and no third peer serves them to tell which is right; "
                "neither is used again", suspects)
        judge = await run_route(core, (*judge_route.hops, *tail), x, est_time_s)
        stats.positions += inputs.shape[1] * (len(judge_route.hops) + len(tail))
        if disagreement(judge, theirs) <= tolerance:
            caught = [hop.peer_id]
        elif disagreement(judge, mine) <= tolerance:
            caught = list(alternative.peer_ids)
        else:
            suspects += judge_route.peer_ids
            core.banned.update(suspects)
            raise VerificationError(f"three answers for layers {hop.start}:{hop.end} differ; none of their "
                                    "peers is used again", suspects)
    finally:
        stats.seconds += core.clock() - started
    core.banned.update(caught)
    stats.caught.extend(caught)
    log.warning("spot check: peer(s) %s computed wrong outputs for layers %d:%d: banned",
                ", ".join(p[:16] for p in caught), hop.start, hop.end)
    return caught
