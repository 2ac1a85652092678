"""Next hops: which peer a session pushes into, where that peer is, and proof that the one answering is it.

A client names a session's next hop by peer id (``Open.next_peer``) and adds the address it knows for it (a
hint). A hop never just dials what a stranger wrote:

- **Resolved from records.** The hop looks the peer id up in its own view of its model's records
  (``Directory``, read from the DHT, refreshed at most once a second on a miss, a peer kept for
  ``KEEP_S`` after it was last seen so a slow DHT read does not lose it). It dials only that record's
  addresses, the client's hint first when it is one of them. A peer id it has no record of is refused while
  its DHT reads list peers. Without a DHT (a local test swarm), or while its last read listed nobody at all
  (a DHT that lost its records on a busy machine: clients then keep to the peers they last saw), the hint
  is the only address there is; the proof below still decides.
- **Proved on connect.** Before any session data goes out, the hop sends a Ping with a fresh nonce; the answer
  must be a Pong of the named peer with a signature by that peer's key over the nonce, the model and a first
  layer equal to the hop's own last (``check_pong``). So a record that lists someone else's address, a port
  that is no molink peer, a peer of another model or span, or a loop back to an earlier hop all fail here.
- **Measured.** The proof's round trip and a padded ping's (``swarm/net/probe.py``) give the edge's round trip
  and bandwidth, which this peer publishes (``rtts``, ``mbits``) for the planner.
- **One answer for every failure.** The caller gets "could not be reached" whatever went wrong; the reason is
  logged (rate-limited), so error replies are no oracle for scanning ports.

``candidate_addrs`` and ``check_pong`` (``swarm/net/protocol.py``, the client proves peers with it too) are
pure; ``dial`` and ``Directory`` do the I/O with injected reads,
connects and clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from swarm.errors import PeerUnreachableError, ProtocolError, TransportError
from swarm.net.loglimit import LogLimiter
from swarm.net.probe import PADDING, bandwidth_bps
from swarm.net.protocol import Ping, check_pong, new_secret, parse
from swarm.net.records import PeerRecord
from swarm.net.transport import Channel
from swarm.net.ways import DIRECT

log = logging.getLogger("molink.peer")

HANDSHAKE_TIMEOUT_S = 10.0  # for the proof after a connect (a busy peer answers a ping within a loop turn)
PROBE_ID = 1  # the bandwidth probe's Ping id (the proof's is 0)
KEEP_S = 600.0  # a peer stays in a Directory this long after a DHT read last listed it
FRESH_S = 30.0  # a record listed longer ago than this is read again before it is used (a peer may have moved)
REFRESH_GAP_S = 1.0  # at most one DHT read per this many seconds, however many lookups miss


@dataclass(frozen=True)
class NextHop:
    peer_id: str
    hint: str  # the client's address for it; errors about the hop name it (the client knows hops by address)
    layer: int = -1  # the layer pushes to it enter (its span must hold it); -1: this peer's span's end


def candidate_addrs(record: PeerRecord | None, hint: str, *, have_records: bool) -> list[str]:
    """The addresses to dial for a next hop: its record's (the hint first when it is one of them); none when
    there are records but not this peer's; just the hint when this peer reads no records at all."""
    if record is None:
        return [] if have_records else [hint]
    return sorted(record.addrs, key=lambda a: a != hint)  # stable: the record's own order otherwise


class Directory:
    """This peer's view of the peers of its model: peer id -> the latest record a DHT read gave."""

    def __init__(self, read: Callable[[], Awaitable[list[PeerRecord]]] | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._clock = clock
        self._seen: dict[str, tuple[float, PeerRecord]] = {}  # peer id -> (when last listed, record)
        self._last_read = -float("inf")
        self._blind = False  # the last read listed nobody (or failed)
        self._reading: asyncio.Lock | None = None

    @property
    def have_records(self) -> bool:
        """Whether this peer can tell who is in the swarm: it reads a DHT and its last read listed peers."""
        return self._read is not None and not self._blind

    def update(self, records: list[PeerRecord]) -> None:
        now = self._clock()
        self._blind = not records
        for record in records:
            self._seen[record.peer_id] = (now, record)
        for peer_id in [p for p, (seen, _) in self._seen.items() if now - seen > KEEP_S]:
            del self._seen[peer_id]

    async def lookup(self, peer_id: str, hint: str = "") -> PeerRecord | None:
        """The latest record of ``peer_id``, read again first when there is none, when it is older than
        ``FRESH_S``, or when it does not list ``hint`` (the client read a newer one: the peer moved)."""
        found = self._seen.get(peer_id)
        stale = found is not None and (self._clock() - found[0] > FRESH_S or (hint and hint not in found[1].addrs))
        if self._read is not None and (found is None or stale):
            self._reading = self._reading or asyncio.Lock()
            async with self._reading:  # many sessions naming an unknown id make one read, not one each
                if self._clock() - self._last_read >= REFRESH_GAP_S:
                    self._last_read = self._clock()
                    try:
                        self.update(await self._read())
                    except Exception as e:  # a DHT hiccup: the peers already known still resolve
                        log.info("could not read the swarm's records: %s", e)
                        self._blind = True
            found = self._seen.get(peer_id)
        return found[1] if found is not None else None


async def _probe(channel: Channel, timeout_s: float) -> None:
    """The connection's bandwidth toward the next hop (``swarm/net/probe.py``), left in ``channel.bps``; a
    probe that fails leaves it unmeasured (the connection is proved: it is used all the same)."""
    try:
        began = time.monotonic()
        await channel.send(Ping(id=PROBE_ID).to_header(), PADDING)
        frame = await asyncio.wait_for(channel.recv(), timeout_s)
        if frame is not None and channel.rtt_s is not None:
            channel.bps = bandwidth_bps(channel.rtt_s, time.monotonic() - began)
    except (TransportError, asyncio.TimeoutError) as e:
        log.debug("bandwidth probe to %s failed: %s", channel.remote, e)


async def dial(hop: NextHop, *, lookup: Callable[[str, str], Awaitable[PeerRecord | None]],
               have_records: Callable[[], bool],
               connect: Callable[[str], Awaitable[Channel]], model: str, start: int, quiet: LogLimiter,
               timeout_s: float = HANDSHAKE_TIMEOUT_S) -> Channel:
    """A channel to the peer ``hop`` names, proved to be it (serving ``model`` from layer ``start``);
    PeerUnreachableError, with the same words whatever the reason, when there is none."""
    reasons: list[str] = []
    found = await lookup(hop.peer_id, hop.hint)
    for addr in candidate_addrs(found, hop.hint, have_records=have_records()):
        try:
            channel = await connect(addr)
        except TransportError as e:
            reasons.append(f"{addr}: {e}")
            continue
        nonce = new_secret()
        try:
            began = time.monotonic()
            await channel.send(Ping(nonce=nonce).to_header())
            frame = await asyncio.wait_for(channel.recv(), timeout_s)
            channel.rtt_s = time.monotonic() - began  # the edge's round trip, published in this peer's record
            why = check_pong(parse(frame.header) if frame is not None else None, peer_id=hop.peer_id,
                             model=model, start=start, nonce=nonce)
        except (TransportError, ProtocolError, asyncio.TimeoutError) as e:
            why = str(e) or type(e).__name__
        if why is None:
            await _probe(channel, timeout_s)
            if channel.kind != DIRECT:
                log.info("next hop %s reached %s (%s)", hop.peer_id[:16], channel.kind, channel.remote)
            return channel
        reasons.append(f"{addr}: {why}")
        await channel.close()
    if not reasons:
        reasons.append("no record of this peer among the swarm's records of the model")
    quiet.log(log, logging.WARNING, f"next hop {hop.peer_id}", "next hop %s (client said %s) is not reachable: %s",
              hop.peer_id[:16], hop.hint, "; ".join(reasons))
    raise PeerUnreachableError(f"next hop {hop.peer_id[:16]} could not be reached")
