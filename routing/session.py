"""InferenceSession: one generation's path through the swarm.

The session is opened on every hop of its route (each hop learns the address of the next), then each step
goes to the first hop only and its result comes back from the last hop (DESIGN.md section 2). Steps carry
their index and position, so a peer can tell a retry from a new step.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import torch

from routing.link import PeerLink
from routing.planner import Route
from swarm.errors import MolinkError, SessionError, error_from_wire
from swarm.wire import Frame, tensor_from_wire, tensor_to_wire

log = logging.getLogger("molink.client")


class InferenceSession:
    def __init__(self, route: Route, links: list[PeerLink], *, max_length: int, batch: int,
                 request_timeout_s: float, step_timeout_s: float) -> None:
        self.route = route
        self.links = links
        self.max_length = max_length
        self.batch = batch
        self.session_id = uuid.uuid4().hex
        self.position = 0
        self.step_index = 0
        self.request_timeout_s = request_timeout_s
        self.step_timeout_s = step_timeout_s
        self.closed = True
        self._inbox: asyncio.Queue[Frame | Exception] = asyncio.Queue()

    async def open(self) -> None:
        for link in self.links:
            link.inboxes[self.session_id] = self._inbox
        hops = self.route.hops
        await asyncio.gather(*(
            link.request({
                "type": "open", "session": self.session_id, "start": hop.start, "end": hop.end,
                "max_length": self.max_length, "batch": self.batch,
                "next": hops[i + 1].addr if i + 1 < len(hops) else None,
            }, self.request_timeout_s)
            for i, (hop, link) in enumerate(zip(hops, self.links, strict=True))
        ))
        self.closed = False
        log.debug("session %s open on %s", self.session_id, self.route.describe())

    async def step(self, hidden: torch.Tensor) -> torch.Tensor:
        """Run hidden states [B, T, H] through every hop; returns the last hop's output [B, T, H]."""
        if self.closed:
            raise SessionError("the inference session is closed")
        if hidden.shape[0] != self.batch:
            raise SessionError(f"session batch is {self.batch}, got hidden states for {hidden.shape[0]}")
        if self.position + hidden.shape[1] > self.max_length:
            raise SessionError(
                f"session max_length {self.max_length} exceeded ({self.position} + {hidden.shape[1]} tokens)"
            )
        meta, body = tensor_to_wire(hidden.contiguous())
        step = self.step_index
        await self.links[0].send(
            {"type": "step", "session": self.session_id, "step": step, "position": self.position, "tensor": meta},
            body,
        )
        out = await asyncio.wait_for(self._await_result(step), self.step_timeout_s)
        self.position += hidden.shape[1]
        self.step_index += 1
        return out

    async def _await_result(self, step: int) -> torch.Tensor:
        while True:
            item = await self._inbox.get()
            if isinstance(item, Exception):
                raise item
            h = item.header
            if h.get("step") != step:
                continue  # a late frame of an earlier step
            if h.get("type") == "error":
                raise error_from_wire(str(h.get("code")), str(h.get("message")), str(h.get("hop") or h.get("peer")))
            if h.get("type") == "result":
                return tensor_from_wire(h.get("tensor"), item.body)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for link in self.links:
            link.inboxes.pop(self.session_id, None)
            if link.closed:
                continue
            try:
                await link.request({"type": "close", "session": self.session_id}, self.request_timeout_s)
            except MolinkError as e:  # closing is best effort: peers expire idle sessions anyway
                log.debug("close on %s failed: %s", link.addr, e)


class SyncSession:
    """The blocking face of an InferenceSession, for code outside the client's event loop."""

    def __init__(self, runner: Any, session: InferenceSession) -> None:
        self._run = runner
        self.session = session

    @property
    def position(self) -> int:
        return self.session.position

    @property
    def route(self) -> Route:
        return self.session.route

    def step(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._run(self.session.step(hidden))

    def close(self) -> None:
        self._run(self.session.close())

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
