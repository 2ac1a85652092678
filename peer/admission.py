"""KV admission: whether a new session's memory fits what the peer may spend on sessions, and what is left.

A session is promised its worst case when it opens: ``max_length`` tokens for each of its ``rows``, each
token holding a key and a value in every layer of the span, plus, when the session has a next hop, the hidden
state the peer keeps for every pushed token so that a replacement of the next hop can be rebuilt by replay
(docs/architecture.md, failover). Reserving the worst case up front means an admitted session never runs out
of memory mid-generation (a step refused halfway costs the client a failover); the price is memory held for
tokens not generated yet. A refused session gets ``Busy`` with the sizes, so the client can try another peer.

Reservations are plain values: the shell keeps one per open session and drops it on close or expiry, so
admission is a pure function of the list it holds. ``free_tokens`` is what the DHT record advertises.

The budget (``kv_budget_bytes``): with ``--max-memory``, what that leaves after the weights; without it, the
configured KV reserve (``--kv-reserve-tokens`` over the span's layers). Either way never more than the device
has free once the weights are loaded: a promise of memory the device does not have fails as an out-of-memory
error in the middle of a step instead of as a clean refusal at open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KVBudget:
    """What a peer may spend on its sessions, and what one token costs."""

    total_bytes: int          # what the peer may spend on sessions: KV caches + replay history
    kv_bytes_per_token: int   # one token's K and V over ALL of the span's layers
    history_bytes_per_token: int  # one token's hidden state kept for replay (hidden x dtype size), if the
                                  # session has a next hop

    def __post_init__(self) -> None:
        if self.total_bytes < 0 or self.kv_bytes_per_token < 1 or self.history_bytes_per_token < 0:
            raise ValueError(f"a KV budget needs total_bytes >= 0, kv_bytes_per_token >= 1 and "
                             f"history_bytes_per_token >= 0: {self}")


@dataclass(frozen=True)
class Reservation:
    """The bytes promised to one open session."""

    session_id: str
    bytes: int
    client: str = ""  # who opened it (the source address): a client's sessions together have a quota


@dataclass(frozen=True)
class Busy:
    """A refused session: why, and how much is free (so a client can pick a peer with more)."""

    reason: str       # e.g. "session needs 1.20 GB of KV cache, 0.30 GB free of 4.00 GB"
    free_bytes: int


def session_bytes(budget: KVBudget, max_length: int, rows: int, keeps_history: bool) -> int:
    """Bytes a session of ``rows`` x ``max_length`` tokens may grow to: its KV cache, plus its replay history
    when it has a next hop (``keeps_history``)."""
    if max_length < 1 or rows < 1:
        raise ValueError(f"a session needs max_length >= 1 and rows >= 1, not {max_length} and {rows}")
    per_token = budget.kv_bytes_per_token + (budget.history_bytes_per_token if keeps_history else 0)
    return rows * max_length * per_token


def unreserved_bytes(budget: KVBudget, held: Sequence[Reservation]) -> int:
    """Bytes of the budget not promised to any held reservation (0 when over-committed)."""
    return max(budget.total_bytes - sum(r.bytes for r in held), 0)


def admit(budget: KVBudget, held: Sequence[Reservation], session_id: str, max_length: int, rows: int,
          keeps_history: bool, *, client: str = "", client_share: float = 1.0) -> Reservation | Busy:
    """A reservation for the new session when it fits beside ``held``, and ``client``'s sessions together
    stay within ``client_share`` of the budget (so one stranger cannot take a peer's whole memory with one
    long ``max_length``); else Busy saying what it lacks.

    ``held`` must not hold ``session_id`` already: the shell refuses a second open of a session before."""
    if any(r.session_id == session_id for r in held):
        raise ValueError(f"session {session_id} already holds a reservation")
    need = session_bytes(budget, max_length, rows, keeps_history)
    free = unreserved_bytes(budget, held)
    what = "KV cache and replay history" if keeps_history else "KV cache"
    if need > free:
        return Busy(f"session needs {size(need)} of {what}, {size(free)} free of {size(budget.total_bytes)}",
                    free)
    quota = int(client_share * budget.total_bytes)
    mine = sum(r.bytes for r in held if r.client == client)
    if mine + need > quota:
        return Busy(f"session needs {size(need)} of {what}; this client holds {size(mine)} of its "
                    f"{client_share:.0%} share ({size(quota)})", min(free, max(quota - mine, 0)))
    return Reservation(session_id, need, client)


def free_tokens(budget: KVBudget, held: Sequence[Reservation]) -> int:
    """Tokens of KV cache the unreserved bytes still hold (without replay history): the DHT record's field."""
    return unreserved_bytes(budget, held) // budget.kv_bytes_per_token


def kv_budget_bytes(max_memory_bytes: float | None, free_device_bytes: float, weight_bytes: int,
                    reserve_tokens: int, kv_bytes_per_token: int) -> int:
    """Bytes the peer may spend on sessions (see the module docstring).

    ``free_device_bytes`` is what the device has free after the weights are loaded; ``kv_bytes_per_token``
    counts all of the span's layers, as in ``KVBudget``."""
    if max_memory_bytes is not None:
        wanted = max_memory_bytes - weight_bytes
    else:
        wanted = reserve_tokens * kv_bytes_per_token
    return max(int(min(wanted, free_device_bytes)), 0)


def size(n: float) -> str:
    """Bytes for people: "1.20 GB", "3.0 MB", "512 B"."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale / 10:
            return f"{n / scale:.2f} {unit}" if unit == "GB" else f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
