"""InferenceSession: one generation's path through the swarm, kept alive through peer failures.

The session is opened on every hop of its route (each hop learns the address of the next), then each step
goes to the first hop only and its result comes back from the last hop (DESIGN.md section 2). Steps carry
their index and position, so a peer can tell a retry from a new step.

Failover (routing/failover.py decides, this module carries it out): when a hop fails (error, lost
connection, missed deadline with no answer to a ping, vanished DHT record) or announces it is draining,
the client plans a replacement for exactly that hop's layers, opens the session there, and rebuilds the
replacement's KV cache by replaying the inputs that hop had seen: for the first hop from the client's own
copy of what it sent, for any other hop from the upstream peer, which keeps the outputs it pushed (the
``rebind`` message). Then the step is retried with the same index; hops that already applied it replay
their stored output, so no position is doubled. Other hops keep their sessions and caches.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from routing.codecs import AUTO, codec_for
from routing.failover import (
    FailureKind,
    HopFailure,
    blamed,
    classify_error,
    hop_index,
    step_deadline_s,
)
from routing.link import PeerLink, Received
from routing.planner import Hop, Route
from routing.prefill import BYTES_PER_VALUE, Chunk, chunk_size, plan_chunks
from swarm.errors import (
    HopFailedError,
    MolinkError,
    RemoteError,
    SessionError,
    TransportError,
    VerificationError,
    error_from_wire,
)
from swarm.net.protocol import (
    BUSY_CODES,
    Close,
    Draining,
    Error,
    Open,
    Ping,
    Rebind,
    Reorder,
    Result,
    Step,
    new_secret,
    session_tag,
)
from swarm.net.ways import is_relayed
from swarm.net.wire import RAW, tensor_from_wire, tensor_to_wire
from swarm.positions import first_positions

if TYPE_CHECKING:
    from routing.swarm_client import SwarmCore

log = logging.getLogger("molink.client")


def hop_failed(failure: HopFailure) -> HopFailedError:
    return HopFailedError(f"hop {failure.hop_index} {failure.kind.value}: {failure.detail}", failure)


class InferenceSession:
    def __init__(self, client: SwarmCore, route: Route, *, max_length: int, batch: int, verify: bool = True) -> None:
        self.client = client
        self.verify = verify  # spot-check steps (routing/verify.py); off for the checks' own sessions
        self.config = client.config
        self.route = route
        self.hops: list[Hop] = list(route.hops)
        self.links: list[PeerLink] = []
        self.max_length = max_length
        self.batch = batch
        self.session_id = uuid.uuid4().hex
        self.secrets: list[str] = [new_secret() for _ in self.hops]  # each hop's capability, by hop index
        self.position = 0
        self.step_index = 0
        self.closed = True
        self.failovers = 0
        self._inputs: list[torch.Tensor] = []  # what the first hop was sent, by step: replayed if it fails
        self._rewound = False  # the next step starts before the hops' position: it carries ``rewind``
        self._moving: set[str] = set()  # addresses of hops that asked us to move (draining)
        self._inbox: asyncio.Queue[tuple[str, Received | Exception]] = asyncio.Queue()

    # ---- open / close ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the session on every hop; HopFailedError names the hops that could not take it (a dead peer
        whose record is stale, a full peer answering busy), after the hops that did take it have been closed
        again."""
        self.client.sessions.add(self)  # counted as this client's load on its hops from now on
        links: list[PeerLink] = []
        for i, hop in enumerate(self.hops):
            try:
                links.append(await self.client.link(hop.addr))
            except MolinkError as e:
                self.client.sessions.discard(self)
                raise hop_failed(HopFailure(i, FailureKind.CLOSED, str(e))) from e
        self.links = links
        self.closed = False
        try:
            await self._open_hops(self.hops, self.links, self.secrets, None, None)
        except HopFailedError:  # closed again where it had opened
            self.closed = True
            self.client.sessions.discard(self)
            raise
        except BaseException:
            await self.close()
            raise
        log.debug("session %s open on %s", session_tag(self.session_id), self.route.describe())

    def _codec_into(self, hop: Hop | None, source: Hop | None) -> str:
        """The codec hidden states travel in from ``source`` to ``hop`` (None: this client; a hop of None is
        the way back, and this client decodes every codec): the configured one ("auto": by the link's measured
        bandwidth, ``routing/codecs.py``) where the receiving peer listed it in its Pong, else raw."""
        want = self.config.wire_codec
        if want == AUTO:
            want = codec_for(self.client.link_mbit(source, hop))
        if want == RAW or hop is None or want in self.client.codecs.get(hop.peer_id, ()):
            return want
        return RAW

    async def _open_hops(self, hops: list[Hop], links: list[PeerLink], secrets: list[str], next_after: Hop | None,
                         next_secret: str | None) -> None:
        """Open the session on ``hops`` (with their ``secrets``; the hop after the last is ``next_after``,
        whose secret is ``next_secret``) together. When some cannot take it, close it again on those that did
        and raise HopFailedError listing every hop that failed (indices into ``hops``), a real failure first:
        BUSY for a full peer, ERROR for any other answer (a draining peer too: it is leaving, avoid it)."""
        for link in links:
            link.inboxes[self.session_id] = self._inbox
        def opening(i: int, hop: Hop) -> Open:
            after = hops[i + 1] if i + 1 < len(hops) else next_after
            return Open(session=self.session_id, secret=secrets[i], start=hop.start, end=hop.end,
                        max_length=self.max_length, batch=self.batch,
                        next=None if after is None else after.addr,
                        next_peer=None if after is None else after.peer_id,
                        next_secret=None if after is None else (secrets[i + 1] if i + 1 < len(hops) else next_secret),
                        codec=self._codec_into(after, hop))

        requests = [link.request(opening(i, hop), self.config.request_timeout_s)
                    for i, (hop, link) in enumerate(zip(hops, links, strict=True))]
        results = await asyncio.gather(*requests, return_exceptions=True)
        errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        if not errors:
            return
        opened = [(link, secret) for link, secret, r in zip(links, secrets, results, strict=True)
                  if not isinstance(r, BaseException)]
        await asyncio.gather(*(self._close_on(link, secret) for link, secret in opened))
        for link in links:
            link.inboxes.pop(self.session_id, None)
        unexpected = [e for _, e in errors if not isinstance(e, MolinkError)]
        if unexpected:
            raise unexpected[0]
        failures = sorted(
            (HopFailure(i, FailureKind.BUSY if isinstance(e, RemoteError) and e.code in BUSY_CODES
                        else FailureKind.ERROR, str(e)) for i, e in errors),
            key=lambda f: (f.kind is FailureKind.BUSY, f.hop_index))
        first = failures[0]
        raise HopFailedError(f"hop {first.hop_index} {first.kind.value}: {first.detail}", first,
                             tuple(failures)) from errors[0][1]

    async def close(self) -> None:
        self.client.sessions.discard(self)
        if self.closed:
            return
        self.closed = True
        await asyncio.gather(*(self._close_on(link, secret) for link, secret in zip(self.links, self.secrets,
                                                                                     strict=True)))

    async def _close_on(self, link: PeerLink, secret: str) -> None:
        link.inboxes.pop(self.session_id, None)
        if link.closed:
            return
        try:
            await link.request(Close(session=self.session_id, secret=secret), self.config.request_timeout_s)
        except MolinkError as e:  # best effort: peers expire idle sessions anyway
            log.debug("close on %s failed: %s", link.addr, e)

    # ---- steps ------------------------------------------------------------------------------------------

    async def step(self, hidden: torch.Tensor, keep: int = 0) -> torch.Tensor:
        """Run hidden states [B, T, H] through every hop; returns the last hop's output [B, T, H], or only its
        last ``keep`` positions [B, min(keep, T), H] (generate() needs the last one: the rest stays on the
        last hop instead of crossing the link back)."""
        if keep < 0:
            raise SessionError(f"keep must be 0 (every position) or a count of last positions, got {keep}")
        if self.closed:
            raise SessionError("the inference session is closed")
        if hidden.shape[0] != self.batch:
            raise SessionError(f"session batch is {self.batch}, got hidden states for {hidden.shape[0]}")
        if self.position + hidden.shape[1] > self.max_length:
            raise SessionError(
                f"session max_length {self.max_length} exceeded ({self.position} + {hidden.shape[1]} tokens)"
            )
        hidden = hidden.contiguous()
        out, used = await self._compute(hidden, keep)
        if self.verify and self.config.verify_fraction > 0 and self.client.rng.random() < self.config.verify_fraction:
            out, used = await self._spot_check(hidden, out, used, keep)
        self._inputs.append(hidden)
        self.position += hidden.shape[1]
        self._rewound = False
        self.step_index += used  # a chunked prefill took one step index per chunk
        return out

    async def reorder(self, rows: Sequence[int]) -> None:
        """Beam search: row i of the session becomes what row ``rows[i]`` was, on every hop (their caches and
        the outputs they keep for replays) and in the inputs kept here, before the next step. All hops take it
        at once; if one cannot (gone, refused), the route is opened again and every cache rebuilt from the
        reordered inputs, so no hop is left in the old order."""
        rows = [int(r) for r in rows]
        if len(rows) != self.batch or not all(0 <= r < self.batch for r in rows):
            raise SessionError(f"reorder needs {self.batch} row indices in 0..{self.batch - 1}, got {rows}")
        if self.closed:
            raise SessionError("the inference session is closed")
        if self._rewound:
            raise SessionError("a rewound session takes a step before it can be reordered")
        if rows == list(range(self.batch)):
            return
        index = torch.tensor(rows, dtype=torch.long)
        self._inputs = [t.index_select(0, index) for t in self._inputs]
        try:
            await asyncio.gather(*(link.request(Reorder(session=self.session_id, secret=secret, rows=rows,
                                                        position=self.position), self.config.request_timeout_s)
                                   for link, secret in zip(self.links, self.secrets, strict=True)))
        except MolinkError as e:
            log.warning("session %s: a hop did not reorder its rows (%s); opening the route again",
                        session_tag(self.session_id), e)
            await self._restart()
            self.failovers += 1

    def rewind(self, position: int) -> None:
        """Forget every position from ``position`` on (speculative decoding drops the rejected draft tokens):
        the next step starts there, and each hop cuts its cache back to it when that step arrives."""
        if not 0 <= position <= self.position:
            raise SessionError(f"cannot rewind a session at position {self.position} to {position}")
        if position == self.position:
            return
        self.position = position
        self._inputs = first_positions(self._inputs, position)
        self._rewound = True

    async def _compute(self, hidden: torch.Tensor, keep: int) -> tuple[torch.Tensor, int]:
        """The step's output and the step indices it took: a long prefill goes as a pipeline of chunks
        (``routing/prefill.py``). A hop that fails during one may hold some of the chunks and not others: the
        route is opened again, its caches rebuilt from the session's inputs, and the step computed again in
        one piece with the usual failover, so the text does not change."""
        chunks = plan_chunks(hidden.shape[1], keep, self._chunk_tokens(hidden))
        if len(chunks) == 1:
            return await self._run_step(hidden, keep), 1
        try:
            return await self._attempt(hidden, chunks), len(chunks)
        except HopFailedError as e:
            failure = e.failure
            if isinstance(failure, HopFailure) and blamed(failure.kind):
                self.client.failures = self.client.failures.record(self.hops[failure.hop_index].peer_id,
                                                                   self.client.clock())
            log.warning("session %s: %s during a prefill of %d chunks; opening the route again",
                        session_tag(self.session_id), e, len(chunks))
            await self._restart()
            self.failovers += 1
            return await self._run_step(hidden, keep), 1

    def _chunk_tokens(self, hidden: torch.Tensor) -> int:
        """A prefill chunk's length on this route (``routing/prefill.py: chunk_size``): the slowest hop's decode
        step as a pass's fixed cost, a token's bytes over the slowest measured link."""
        least = self.config.prefill_chunk_tokens
        if not self.config.adapt_prefill_chunks:
            return least
        records = {r.peer_id: r for r in self.client.known}
        pass_s = max((1 / max(records[h.peer_id].throughput, 1e-3) for h in self.hops if h.peer_id in records),
                     default=0.0)
        mbits = [self.client.link_mbit(prev, hop) for prev, hop in zip([None, *self.hops[:-1]], self.hops,
                                                                        strict=True)]
        slowest = min((m for m in mbits if m), default=None)
        if slowest is None:
            return least
        codec = self._codec_into(self.hops[0], None)
        token_s = hidden.shape[0] * hidden.shape[2] * BYTES_PER_VALUE.get(codec, 4.0) / (slowest * 1e6 / 8)
        return chunk_size(hidden.shape[1], 2 * len(self.hops), pass_s, token_s, least)

    async def _run_step(self, hidden: torch.Tensor, keep: int = 0) -> torch.Tensor:
        """The step through the route, failing over as hops fail (at most ``max_recoveries`` times)."""
        recoveries = 0
        pending: HopFailure | None = None
        while True:
            try:
                if pending is not None:
                    await self._recover(pending)
                    pending = None
                for addr in list(self._moving):
                    self._moving.discard(addr)
                    index = hop_index(self.hops, addr=addr)
                    if index is not None:
                        await self._recover(HopFailure(index, FailureKind.DRAINING, f"{addr} is draining"))
                out = await self._attempt(hidden, plan_chunks(hidden.shape[1], keep, 0))
                break
            except HopFailedError as e:  # a hop (or its replacement) failed: re-route and try the step again
                recoveries += 1
                if recoveries > self.config.max_recoveries:
                    raise
                pending = e.failure
        return out

    async def _spot_check(self, hidden: torch.Tensor, out: torch.Tensor, used: int,
                          keep: int) -> tuple[torch.Tensor, int]:
        """Check a random hop of the route on this session's inputs so far (routing/verify.py); when one of the
        route's own peers is caught, move to a route without it and compute the step again."""
        from routing.verify import spot_check

        index = self.client.rng.randrange(len(self.hops))
        try:
            caught = await spot_check(self.client, self.hops, index, torch.cat([*self._inputs, hidden], dim=1),
                                      self.route.est_time_s)
        except VerificationError:
            await self.close()
            raise
        except MolinkError as e:  # a peer of the check failed or was busy: this step goes unchecked
            log.info("spot check of hop %d skipped: %s", index, e)
            return out, used
        if not set(caught) & {h.peer_id for h in self.hops}:
            return out, used
        log.warning("session %s: a hop of the route was caught computing wrong outputs; moving to a new route "
                    "and computing the step again", session_tag(self.session_id))
        await self._restart()
        return await self._run_step(hidden, keep), 1

    async def _restart(self) -> None:
        """Leave every hop and open the session afresh on a new route (the banned peers left out), its caches
        rebuilt from the session's own inputs: the outputs of a caught peer may have reached every later hop."""
        self.client.stats["reroutes"] += 1  # the whole route opened again
        await asyncio.gather(*(self._close_on(link, secret) for link, secret in zip(self.links, self.secrets,
                                                                                     strict=True)))
        self.session_id = uuid.uuid4().hex
        while not self._inbox.empty():  # news about the old session's hops: none of it applies any more
            self._inbox.get_nowait()
        secrets: list[str] = []
        try:
            route, links = await self.client.open_route(self._opener(secrets, None, None),
                                                        need_tokens=self.max_length * self.batch)
        except MolinkError:
            self.closed = True
            self.client.sessions.discard(self)
            raise
        self.route, self.hops, self.links, self.secrets = route, list(route.hops), links, secrets
        if self._inputs:  # one replay through every hop, ending at the last: rebuilds all their caches
            await self._replay(self.links[0], self.hops[0], self.secrets[0], None)
        log.warning("session %s re-routed: %s", session_tag(self.session_id), self.route.describe())

    def _opener(self, secrets: list[str], next_after: Hop | None,
                next_secret: str | None) -> Callable[[Route], Awaitable[list[PeerLink]]]:
        """An opener for ``SwarmCore.open_route``: links to the route's hops, a fresh capability for each on every
        attempt (left in ``secrets``), and the session opened there, pushing on to ``next_after``."""

        async def opener(route: Route) -> list[PeerLink]:
            links: list[PeerLink] = []
            for i, hop in enumerate(route.hops):
                try:
                    links.append(await self.client.link(hop.addr))
                except MolinkError as e:
                    raise hop_failed(HopFailure(i, FailureKind.CLOSED, str(e))) from e
            secrets[:] = [new_secret() for _ in route.hops]
            await self._open_hops(list(route.hops), links, secrets, next_after, next_secret)
            return links

        return opener

    async def _attempt(self, hidden: torch.Tensor, chunks: list[Chunk]) -> torch.Tensor:
        """Send the step as ``chunks`` (consecutive steps, all at once) and assemble the positions kept."""
        first = self.step_index
        try:
            for i, chunk in enumerate(chunks):
                meta, body = tensor_to_wire(hidden[:, chunk.start:chunk.end], self._codec_into(self.hops[0], None))
                await self.links[0].send(
                    Step(session=self.session_id, secret=self.secrets[0], layer=self.hops[0].start, step=first + i,
                         position=self.position + chunk.start, tensor=meta, keep=chunk.keep,
                         rewind=self._rewound and i == 0), body)
        except TransportError as e:
            raise hop_failed(HopFailure(0, FailureKind.CLOSED, str(e))) from e
        deadline = step_deadline_s(self.route_est_s(), hidden.shape[1], floor_s=self.config.min_step_timeout_s,
                                   factor=self.config.step_timeout_factor)
        results: dict[int, torch.Tensor] = {}
        slow_checks = 0
        while len(results) < len(chunks):
            try:
                addr, item = await asyncio.wait_for(self._inbox.get(), deadline)
            except asyncio.TimeoutError:
                failure = await self._probe()
                if failure is not None:
                    raise hop_failed(failure) from None
                slow_checks += 1
                if slow_checks > self.config.max_slow_checks:
                    raise TransportError(
                        f"step {first + len(results)} got no result in {deadline * slow_checks:.0f} s though every "
                        f"hop is alive") from None
                log.info("step %d is late but every hop answers a ping: waiting longer", first + len(results))
                continue
            step = getattr(item.msg, "step", None) if isinstance(item, Received) else None
            if not isinstance(step, int) or not first <= step < first + len(chunks) or step in results:
                step = first  # not one of these steps: _handle drops it (or raises for a lost link)
            result = self._handle(step, addr, item)
            if result is None:
                continue
            chunk = chunks[step - first]
            want = (hidden.shape[0], chunk.reply_tokens(), hidden.shape[2])
            if tuple(result.shape) != want:  # a last hop that answers out of shape cannot go on
                raise hop_failed(HopFailure(len(self.hops) - 1, FailureKind.ERROR,
                                            f"result of shape {tuple(result.shape)}, expected {want}"))
            results[step] = result
        kept = [results[first + i][:, results[first + i].shape[1] - c.wanted:] for i, c in enumerate(chunks)
                if c.wanted]
        return kept[0] if len(kept) == 1 else torch.cat(kept, dim=1)

    def _handle(self, step: int, addr: str, item: Received | Exception) -> torch.Tensor | None:
        """A result for this step, None to keep waiting; raises HopFailed or the client's own error."""
        index = hop_index(self.hops, addr=addr)
        if isinstance(item, Exception):
            if index is None:
                return None  # a link of a hop this session no longer uses
            raise hop_failed(HopFailure(index, FailureKind.CLOSED, str(item)))
        msg = item.msg
        if isinstance(msg, Draining):
            self._moving.add(addr)
            return None
        if getattr(msg, "step", None) != step:
            return None  # a late message of an earlier attempt or step
        if isinstance(msg, Error):
            if msg.hop_failed:
                failure = classify_error(self.hops, addr, msg)
                if failure is None:
                    return None  # blames a hop this session no longer uses: news of a failure handled already
                raise hop_failed(failure)
            raise error_from_wire(msg.code, msg.message, msg.hop or addr)
        if isinstance(msg, Result) and index == len(self.hops) - 1:
            return tensor_from_wire(msg.tensor, item.body)
        return None

    async def _probe(self) -> HopFailure | None:
        """After a missed deadline: a hop that does not answer a ping has failed (VANISHED when its DHT
        record is gone too, TIMEOUT otherwise). A hop that answers is alive, whatever one DHT read says:
        a read can miss records while some DHT node is unresponsive. Pings and the read run together."""

        async def ping(i: int) -> bool:
            try:
                await self.links[i].request(Ping(), self.config.ping_timeout_s)
            except MolinkError:
                return False
            return True

        async def live_ids() -> set[str]:
            try:
                return {r.peer_id for r in await asyncio.wait_for(self.client.records(), self.config.ping_timeout_s)}
            except (MolinkError, asyncio.TimeoutError):  # the DHT is slow or unreachable: the pings decide
                return {h.peer_id for h in self.hops}

        live, *alive = await asyncio.gather(live_ids(), *(ping(i) for i in range(len(self.hops))))
        dead = [i for i, ok in enumerate(alive) if not ok]
        if not dead:
            return None
        i = dead[0]
        if self.hops[i].peer_id not in live:
            return HopFailure(i, FailureKind.VANISHED, f"{self.hops[i].addr}: no ping answer, DHT record gone")
        return HopFailure(i, FailureKind.TIMEOUT, f"{self.hops[i].addr}: no answer to a ping")

    def route_est_s(self) -> float:
        return self.route.est_time_s

    # ---- failover -----------------------------------------------------------------------------------------

    async def _recover(self, failure: HopFailure) -> None:
        k = failure.hop_index
        failed, failed_link = self.hops[k], self.links[k]
        if failure.kind is FailureKind.CLOSED and is_relayed(failed.addr):
            # the relay may be what was lost, not the peer, and every hop this client reaches through it lost
            # its connection (and so this session) too: open the whole route again, each peer over the next of
            # its ways, and rebuild the caches from the session's inputs
            log.warning("hop %d (layers %d:%d) was reached through a relay and its connection was lost (%s); "
                        "opening the route again", k, failed.start, failed.end, failure.detail)
            await self._restart()
            self.failovers += 1
            return
        if blamed(failure.kind):  # a draining or full peer did nothing wrong: no back-off
            self.client.failures = self.client.failures.record(failed.peer_id, self.client.clock())
        log.warning("hop %d (%s, layers %d:%d) failed: %s %s; re-routing", k, failed.addr, failed.start,
                    failed.end, failure.kind.value, failure.detail)
        next_after = self.hops[k + 1] if k + 1 < len(self.hops) else None
        next_secret = self.secrets[k + 1] if k + 1 < len(self.hops) else None
        new_secrets: list[str] = []
        try:
            replacement, new_links = await self.client.open_route(
                self._opener(new_secrets, next_after, next_secret), start=failed.start, end=failed.end, avoid={failed.peer_id},
                need_tokens=self.max_length * self.batch, replacement=True, max_failures=0)
        except HopFailedError as e:  # the replacement could not take the session (now in back-off)
            raise hop_failed(HopFailure(k, failure.kind, f"replacement failed: {e}")) from e
        except MolinkError:
            await self.close()  # no way out (layers missing, or every replica busy): free the session everywhere
            raise
        new_hops = list(replacement.hops)
        try:
            await self._rebuild(k, new_hops[0], new_links[0], new_secrets[0], next_after)
        except MolinkError as e:  # the upstream hop asked to replay failed, or the replacement did
            for hop in new_hops:  # its record may be stale (a dead peer's record lives until it expires)
                self.client.failures = self.client.failures.record(hop.peer_id, self.client.clock())
            await asyncio.gather(*(self._close_on(link, secret) for link, secret in zip(new_links, new_secrets,
                                                                                         strict=True)))
            raise hop_failed(HopFailure(k, FailureKind.ERROR, f"replacement failed: {e}")) from e
        failed_secret = self.secrets[k]
        self.hops[k:k + 1] = new_hops
        self.links[k:k + 1] = new_links
        self.secrets[k:k + 1] = new_secrets
        self.route = Route(tuple(self.hops), self.route.est_time_s)
        self.failovers += 1
        self.client.stats["failovers"] += 1  # one hop replaced
        asyncio.ensure_future(self._close_on(failed_link, failed_secret))  # a draining hop frees the session now
        log.warning("session %s re-routed: %s", session_tag(self.session_id), self.route.describe())

    async def _replay(self, link: PeerLink, hop: Hop, secret: str, replay_until: str | None) -> None:
        """Send the session's inputs so far to a fresh session on ``hop`` as replay steps, in chunks as a prefill
        goes (``routing/prefill.py``), so the hops it flows through compute one while the next travels."""
        replay = torch.cat(self._inputs, dim=1)
        for chunk in plan_chunks(replay.shape[1], 0, self._chunk_tokens(replay)):
            meta, body = tensor_to_wire(replay[:, chunk.start:chunk.end])
            await link.send(Step(session=self.session_id, secret=secret, layer=hop.start, step=self.step_index - 1,
                                 position=chunk.start, tensor=meta, replay=True, replay_until=replay_until), body)

    async def _rebuild(self, k: int, first: Hop, first_link: PeerLink, first_secret: str,
                       next_after: Hop | None) -> None:
        """Bring the replacement's KV cache to this session's position, then splice it into the route."""
        if k == 0:
            if self._inputs:
                await self._replay(first_link, first, first_secret, None if next_after is None else next_after.addr)
            return
        await self.links[k - 1].request(Rebind(
            session=self.session_id, secret=self.secrets[k - 1], next=first.addr, next_secret=first_secret,
            next_peer=first.peer_id, upto_step=self.step_index,
            replay_until=None if next_after is None else next_after.addr,
        ), self.config.request_timeout_s)


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

    def step(self, hidden: torch.Tensor, keep: int = 0) -> torch.Tensor:
        return self._run(self.session.step(hidden, keep))

    def reorder(self, rows: Sequence[int]) -> None:
        self._run(self.session.reorder(rows))

    def close(self) -> None:
        self._run(self.session.close())

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
