"""Failover decisions: pure functions over a failure history, a route and what a hop reported.

- ``backoff_s``: how long a peer that failed n times is avoided (exponential, capped), so a flapping peer is
  not retried at once yet a restarted one is used again soon.
- ``avoided``: the peers still inside their back-off window at ``now``.
- ``classify_error``: which hop an error frame blames, and whether it is a hop failure (re-route and
  replay) or a mistake of the client's own (raise it).
- ``step_deadline_s``: a per-step deadline derived from the route's expected time, not a fixed minute.
- ``busy_pause_s``: how long to wait before asking peers that answered ``busy`` again. A full peer is not a
  dead one: it is never put in back-off (that would keep it out of every session of this client for seconds
  after it frees up); it is only planned around for the open at hand, and when every route needs a busy peer
  the client waits with its own short, jittered, capped back-off and asks again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from routing.planner import Hop
from swarm.net.protocol import BUSY_CODES, HOP_FAILURE_CODES, Code, Error


class FailureKind(enum.Enum):
    ERROR = "error"          # the hop answered with an error that means it cannot go on
    CLOSED = "closed"        # the connection to the hop was lost
    TIMEOUT = "timeout"      # the step's deadline passed and the hop did not answer a ping
    VANISHED = "vanished"    # the hop's DHT record is gone
    DRAINING = "draining"    # the hop is leaving gracefully and asked the client to move
    BUSY = "busy"            # the hop is alive but full: it cannot take (or keep) this session now


@dataclass(frozen=True)
class HopFailure:
    hop_index: int
    kind: FailureKind
    detail: str = ""


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 1.0      # first failure: avoid for this long
    max_s: float = 60.0      # cap


@dataclass(frozen=True)
class FailureHistory:
    failures: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def record(self, peer_id: str, now: float) -> FailureHistory:
        updated = dict(self.failures)
        updated[peer_id] = (*updated.get(peer_id, ()), now)
        return FailureHistory(MappingProxyType(updated))


def backoff_s(n_failures: int, policy: BackoffPolicy = BackoffPolicy()) -> float:
    if n_failures <= 0:
        return 0.0
    return min(policy.base_s * 2 ** (n_failures - 1), policy.max_s)


def avoided(history: FailureHistory, now: float, policy: BackoffPolicy = BackoffPolicy()) -> frozenset[str]:
    return frozenset(
        peer for peer, times in history.failures.items()
        if times and now < times[-1] + backoff_s(len(times), policy)
    )


def hop_index(hops: Sequence[Hop], addr: str | None = None, peer_id: str | None = None) -> int | None:
    for i, hop in enumerate(hops):
        if (addr is not None and hop.addr == addr) or (peer_id is not None and hop.peer_id == peer_id):
            return i
    return None


def classify_error(hops: Sequence[Hop], from_addr: str, error: Error) -> HopFailure | None:
    """The hop failure an error message reports, or None when the error is the client's own to raise
    (its code is not in ``swarm.net.protocol.HOP_FAILURE_CODES``).

    ``next_hop_failed`` blames the hop named in ``hop`` (the pusher is fine); other hop-failure codes blame the
    hop that sent the message.
    """
    if error.code not in HOP_FAILURE_CODES:
        return None
    blamed = error.hop if error.code == Code.NEXT_HOP_FAILED else from_addr
    index = hop_index(hops, addr=str(blamed))
    if index is None:
        return None
    return HopFailure(index, failure_kind(error.code), f"{error.code}: {error.message}")


def failure_kind(code: str) -> FailureKind:
    """The kind of hop failure an error code reports (ERROR for codes of no special meaning)."""
    if code == Code.DRAINING:
        return FailureKind.DRAINING
    if code in BUSY_CODES:
        return FailureKind.BUSY
    return FailureKind.ERROR


def blamed(kind: FailureKind) -> bool:
    """Whether a failure of this kind puts the peer in back-off (a draining or full peer did nothing wrong)."""
    return kind not in (FailureKind.DRAINING, FailureKind.BUSY)


def step_deadline_s(route_est_s: float, tokens: int, *, floor_s: float, factor: float) -> float:
    """How long a step may take before the client checks whether its hops are alive."""
    return max(floor_s, factor * route_est_s * max(1, tokens))


def busy_pause_s(attempt: int, waited_s: float, *, first_s: float, max_s: float, total_s: float,
                 jitter: float) -> float | None:
    """The pause before asking busy peers again, after ``attempt`` pauses (0-based) that took ``waited_s``;
    None when the wait is over (``total_s`` spent). The pause doubles from ``first_s`` up to ``max_s`` and is
    scaled by 0.5 + 0.5 x ``jitter`` (a number in [0, 1) from the caller's random generator), so clients
    refused together do not all come back in the same instant; the last pause ends the wait exactly."""
    left = total_s - waited_s
    if left <= 0:
        return None
    pause = min(first_s * 2 ** attempt, max_s) * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))
    return min(pause, left)
