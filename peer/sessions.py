"""Inference sessions held by a peer: their KV caches, step bookkeeping and idle expiry.

``check_open`` decides whether a peer can open a session as asked (span, lengths, batch, its state and
limits). A step carries its index and the position of its first token. ``check_step`` is a pure decision over
the session's state: apply the step, replay the stored output of a retried step (so a retry never doubles a
position), or refuse it. Each refusal is a ProtocolError with the wire code the client acts on.
"""

from __future__ import annotations

import enum
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import torch

from peer.config import PeerConfig
from swarm.errors import ConfigError, ProtocolError
from swarm.net.protocol import SECRET_CHARS, Code, Open, session_tag
from swarm.net.ways import check_way
from swarm.net.wire import check_codec
from swarm.positions import first_positions

MAX_SESSION_ID = 128
MAX_PEER_ID = 64


class StepAction(enum.Enum):
    APPLY = "apply"
    REPLAY = "replay"
    REWIND = "rewind"  # drop the cache from the step's position on, then apply


@dataclass
class Session:
    session_id: str
    start: int
    end: int
    max_length: int
    batch: int
    cache: Any
    client: Any                      # the Channel the session was opened on: results and errors go there
    next_addr: str | None            # next hop of the route; None -> this peer is the last hop
    last_used: float
    secret: str = field(default="", repr=False)  # this hop's capability (steps, close, rebind carry it)
    next_secret: str | None = field(default=None, repr=False)  # the next hop's, carried by our pushes
    next_peer: str | None = None     # the next hop's peer id (next_addr is the client's address for it)
    codec: str = "raw"               # how its outputs are encoded on the way on (to the next hop or the client)
    bulk_only: bool = False          # pushed a replay: every later push takes the bulk lane too, so none
                                     # overtakes it (peer/relay.py)
    rebinds: int = 0                 # times the client moved its next hop (bounded: each re-sends the history)
    queued: int = 0                  # steps received and not yet applied (bounded per session)
    position: int = 0                # tokens in the cache
    next_step: int = 0
    last_output: tuple[int, int, torch.Tensor] | None = field(default=None, repr=False)  # (step, position, out)
    # outputs pushed downstream, by step: what a replacement of the next hop replays to rebuild its KV cache
    history: list[tuple[int, torch.Tensor]] = field(default_factory=list, repr=False)
    model: Any = field(default=None, repr=False)  # what runs its layers: the span, or its view [start, end)

    def rewind(self, position: int) -> None:
        """Forget every position from ``position`` on (the span's cache is cut by the caller)."""
        self.position = position
        steps = [s for s, _ in self.history]
        self.history = list(zip(steps, first_positions([t for _, t in self.history], position), strict=False))

    def reorder(self, rows: torch.Tensor) -> None:
        """Rows of the outputs kept for replays take the order ``rows`` gives (the cache is reordered by the
        caller); the last output no longer answers a repeated step."""
        self.history = [(s, t.index_select(0, rows)) for s, t in self.history]
        self.last_output = None

    def replay_input(self, upto_step: int) -> torch.Tensor | None:
        """The outputs of steps before ``upto_step``, joined along tokens: [B, P, H]; None if there are none."""
        parts = [t for s, t in self.history if s < upto_step]
        return torch.cat(parts, dim=1) if parts else None


def check_open(msg: Open, *, span: tuple[int, int], config: PeerConfig, accepting: str | None,
               open_sessions: Container[str], n_open: int, own_addrs: Container[str] = (), own_id: str = "",
               subspans: bool = False) -> None:
    """Refuse (ProtocolError) an Open this peer cannot serve. ``accepting`` is None when the peer takes new
    sessions, else why not (its state); a full peer answers ``busy``, which the client plans around.
    ``subspans``: the session may ask for any contiguous part of the span, else for all of it."""
    if not 0 < len(msg.session) <= MAX_SESSION_ID:
        raise ProtocolError(f"session id must be 1..{MAX_SESSION_ID} characters", code=Code.BAD_MESSAGE)
    check_secret(msg.secret, "secret")
    if not (msg.next is None) == (msg.next_secret is None) == (msg.next_peer is None):
        raise ProtocolError("next, next_secret and next_peer go together", code=Code.BAD_MESSAGE)
    if msg.next_secret is not None and msg.next_peer is not None:
        check_secret(msg.next_secret, "next_secret")
        check_next_peer(msg.next_peer, own_id)
    inside = span[0] <= msg.start < msg.end <= span[1]
    if (msg.start, msg.end) != span and not (subspans and inside):
        what = "any part of" if subspans else "exactly"
        raise ProtocolError(f"this peer serves {what} layers {span[0]}:{span[1]}, not {msg.start}:{msg.end}",
                            code=Code.BAD_SPAN)
    if not 0 < msg.max_length <= config.max_session_tokens:
        raise ProtocolError(f"max_length {msg.max_length} outside 1..{config.max_session_tokens}", code=Code.TOO_LONG)
    if not 0 < msg.batch <= config.max_batch:
        raise ProtocolError(f"batch {msg.batch} outside 1..{config.max_batch}", code=Code.BAD_BATCH)
    if msg.next is not None:
        check_addr(msg.next, own_addrs)
    check_codec(msg.codec, Code.BAD_MESSAGE)
    if accepting is not None:
        raise ProtocolError(f"peer is {accepting}: not taking new sessions", code=Code.DRAINING)
    if msg.session in open_sessions:
        raise ProtocolError(f"session {session_tag(msg.session)} is already open", code=Code.SESSION_EXISTS)
    if n_open >= config.max_sessions:
        raise ProtocolError(f"peer is full ({config.max_sessions} sessions)", code=Code.BUSY)


def check_reorder(session: Session, rows: list[Any], position: int) -> torch.Tensor:
    """The row order of a Reorder as a tensor, or ProtocolError: one index per row of the session, each a row
    of it, at the session's own position."""
    if len(rows) != session.batch or not all(type(r) is int and 0 <= r < session.batch for r in rows):
        raise ProtocolError(f"rows must be {session.batch} row indices in 0..{session.batch - 1}",
                            code=Code.BAD_MESSAGE)
    if position != session.position:
        raise ProtocolError(f"the session is at position {session.position}, not {position}", code=Code.BAD_POSITION)
    return torch.tensor(rows, dtype=torch.long)


def check_secret(secret: str, name: str) -> None:
    low, high = SECRET_CHARS
    if not low <= len(secret) <= high:
        raise ProtocolError(f"{name} must be {low}..{high} characters", code=Code.BAD_MESSAGE)


def check_next_peer(peer_id: str, own_id: str) -> None:
    """A next hop's peer id from the network: a peer id, and not this peer's own (no loop to itself)."""
    if not 0 < len(peer_id) <= MAX_PEER_ID:
        raise ProtocolError(f"next_peer must be a peer id of 1..{MAX_PEER_ID} characters", code=Code.BAD_MESSAGE)
    if peer_id == own_id:
        raise ProtocolError("a session's next hop cannot be this peer itself", code=Code.BAD_MESSAGE)


def check_addr(addr: str, own_addrs: Container[str] = ()) -> None:
    """A next hop's way from the network must be a HOST:PORT or a relayed way (``swarm/net/ways.py``) and not one
    of this peer's own ``own_addrs`` (ProtocolError, never a crash, otherwise)."""
    try:
        check_way(addr)
    except ConfigError as e:
        raise ProtocolError(f"next hop: {e}", code=Code.BAD_MESSAGE) from e
    if addr in own_addrs:
        raise ProtocolError("a session's next hop cannot be this peer itself", code=Code.BAD_MESSAGE)


def check_step(session: Session, step: int, position: int, length: int, rewind: bool = False) -> StepAction:
    """Decide what to do with step ``step`` of ``length`` tokens starting at ``position``; a ``rewind`` step may
    start before the session's position (REWIND: the positions from there on are dropped first)."""
    if session.last_output is not None and step == session.last_output[0] and position == session.last_output[1]:
        return StepAction.REPLAY
    if step != session.next_step:
        raise ProtocolError(f"step {step} out of order: session expects step {session.next_step}", code=Code.BAD_STEP)
    action = StepAction.APPLY
    if rewind and 0 <= position < session.position:
        action = StepAction.REWIND
    elif position != session.position:
        raise ProtocolError(
            f"step {step} starts at position {position} but the session holds {session.position} tokens",
            code=Code.BAD_POSITION,
        )
    if position + length > session.max_length:
        raise ProtocolError(
            f"step {step} would grow the session to {position + length} tokens, over its max_length "
            f"{session.max_length}",
            code=Code.TOO_LONG,
        )
    return action


def check_replay(session: Session, step: int, position: int, length: int) -> None:
    """A replay rebuilds a fresh session's cache from position 0, in one step or in chunks that each carry the
    replay's step index and continue where the one before ended, before any other step."""
    first = session.position == 0 and session.next_step == 0
    more = session.position > 0 and session.last_output is None and session.next_step == step + 1
    if not (first or more):
        raise ProtocolError("a replay must come before any other step of a session", code=Code.BAD_REPLAY)
    if position != session.position or step < 0:
        raise ProtocolError(f"a replay continues at position {session.position} with a step index >= 0, got "
                            f"{position}", code=Code.BAD_REPLAY)
    if position + length > session.max_length:
        raise ProtocolError(f"replay to {position + length} tokens is over max_length {session.max_length}",
                            code=Code.TOO_LONG)


def expired(sessions: dict[str, Session], now: float, timeout_s: float) -> list[str]:
    """Ids of sessions idle for longer than timeout_s."""
    return [sid for sid, s in sessions.items() if now - s.last_used > timeout_s]
