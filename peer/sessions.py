"""Inference sessions held by a peer: their KV caches, step bookkeeping and idle expiry.

A step carries its index and the position of its first token. ``check_step`` is a pure decision over the
session's state: apply the step, replay the stored output of a retried step (so a retry never doubles a
position), or refuse it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

from swarm.errors import ProtocolError


class StepAction(enum.Enum):
    APPLY = "apply"
    REPLAY = "replay"


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
    position: int = 0                # tokens in the cache
    next_step: int = 0
    last_output: tuple[int, int, torch.Tensor] | None = field(default=None, repr=False)  # (step, position, out)
    # outputs pushed downstream, by step: what a replacement of the next hop replays to rebuild its KV cache
    history: list[tuple[int, torch.Tensor]] = field(default_factory=list, repr=False)

    def replay_input(self, upto_step: int) -> torch.Tensor | None:
        """The outputs of steps before ``upto_step``, joined along tokens: [B, P, H]; None if there are none."""
        parts = [t for s, t in self.history if s < upto_step]
        return torch.cat(parts, dim=1) if parts else None


def check_step(session: Session, step: int, position: int, length: int) -> StepAction:
    """Decide what to do with step ``step`` of ``length`` tokens starting at ``position``."""
    if session.last_output is not None and step == session.last_output[0] and position == session.last_output[1]:
        return StepAction.REPLAY
    if step != session.next_step:
        raise ProtocolError(f"step {step} out of order: session expects step {session.next_step}", code="bad_step")
    if position != session.position:
        raise ProtocolError(
            f"step {step} starts at position {position} but the session holds {session.position} tokens",
            code="bad_position",
        )
    if position + length > session.max_length:
        raise ProtocolError(
            f"step {step} would grow the session to {position + length} tokens, over its max_length "
            f"{session.max_length}",
            code="too_long",
        )
    return StepAction.APPLY


def check_replay(session: Session, step: int, position: int, length: int) -> None:
    """A replay rebuilds a fresh session's cache from position 0 in one step, ending at ``step``."""
    if session.position != 0 or session.next_step != 0:
        raise ProtocolError("a replay must be the first step of a session", code="bad_replay")
    if position != 0 or step < 0:
        raise ProtocolError("a replay starts at position 0 with a step index >= 0", code="bad_replay")
    if length > session.max_length:
        raise ProtocolError(f"replay of {length} tokens is over max_length {session.max_length}", code="too_long")


def expired(sessions: dict[str, Session], now: float, timeout_s: float) -> list[str]:
    """Ids of sessions idle for longer than timeout_s."""
    return [sid for sid, s in sessions.items() if now - s.last_used > timeout_s]
