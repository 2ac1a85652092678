"""Peer discovery: announce this peer's record and read the records of a model's swarm.

``Discovery`` is the small interface the rest of molink uses, so another backend (a fake for the
simulator, a different DHT) can take hivemind's place. ``HivemindDiscovery`` is the real one: a
hivemind Kademlia ``DHTNode`` run inside the caller's asyncio loop (not the ``hivemind.DHT`` wrapper,
which forks a process), on a libp2p daemon we start ourselves so that UPnP stays off unless asked.

All records of one model live under one DHT key, ``molink/<model>``, as a dictionary keyed by peer id,
so one lookup returns the whole swarm of that model. Under ``molink/_swarm`` each model has one entry
(subkey: the model key) that every peer serving it refreshes with its own record, so one lookup lists the
models a swarm serves (``swarm.status`` without --model) at a cost that grows with models, not peers.
A node keeps its initial peers dialled (``rejoin``): a bootstrap restarted with the same identity and port
comes back with an empty routing table, and would otherwise stay cut off from the swarm it started. Hivemind keeps, per subkey, the value with the
latest expiration time; a graceful leave therefore stores an OFFLINE tombstone that expires no earlier
than the live record it replaces.

Records are checked twice. Every node (the bootstrap included) runs ``MolinkRecordValidator``, so an
honest node refuses to store or accept a record whose signature fails or whose subkey is not its
signer's peer id; without it a forger could displace a live record by storing a later-expiring one
under its subkey. ``read`` validates again (``records_from_dht``) because a lookup may pass through
nodes that do not run the validator.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import msgpack
from hivemind.dht.node import DHTNode
from hivemind.dht.routing import DHTID
from hivemind.dht.storage import DictionaryDHTValue
from hivemind.dht.validation import DHTRecord, RecordValidatorBase
from hivemind.p2p import P2P, P2PDaemonError, PeerID
from hivemind.utils.multiaddr import Multiaddr
from hivemind.utils.serializer import MSGPackSerializer
from hivemind.utils.timed_storage import ValueWithExpiration, get_dht_time

from swarm.net.addresses import advertised_hosts, check_port_free, is_loopback, is_wildcard
from swarm.net.errors import ConfigError, PeerUnreachableError, RecordError, TransportError, one_line
from swarm.net.records import (
    MAX_RECORD_BYTES,
    MAX_RECORD_TTL_S,
    Identity,
    PeerRecord,
    PeerState,
    record_from_wire,
    records_from_dht,
    storable,
)
from swarm.net.transport import parse_addr

logger = logging.getLogger(__name__)

KEY_PREFIX = "molink/"
SHUTDOWN_TIMEOUT = 3.0  # s to leave the DHT before the daemon is stopped anyway
REJOIN_TIMEOUT = 5.0  # s to dial one initial peer during rejoin()
_TOMBSTONE_MARGIN = 1e-3  # s: a tombstone must expire strictly after the record it replaces


MODELS_KEY = "molink/_swarm"  # one entry per model (subkey: model key), so one lookup lists a swarm's models


def dht_key(model: str) -> str:
    """The DHT key under which all records of ``model`` are stored."""
    return f"{KEY_PREFIX}{model}"


class Discovery(Protocol):
    async def announce(self, record: PeerRecord, ttl: float) -> None:
        """Store ``record`` under its model's key and its peer id, expiring ``ttl`` seconds from now."""

    async def withdraw(self, record: PeerRecord, ttl: float) -> None:
        """Graceful leave: replace the live record with an OFFLINE tombstone."""

    async def read(self, model: str) -> list[PeerRecord]:
        """The validated, unexpired records of ``model``'s swarm, OFFLINE ones left out."""

    async def rejoin(self) -> int:
        """Reconnect to initial peers this node lost (a restarted bootstrap); returns how many other DHT
        nodes it knows now (0: it cannot see the swarm)."""

    @property
    def swarm_addrs(self) -> list[str]:
        """Full addresses another node passes as --initial-peers."""

    async def shutdown(self) -> None: ...


_REGULAR_VALUE_SUBKEY = MSGPackSerializer.dumps(None)  # how hivemind marks a value stored without subkey


MAX_ENTRIES_PER_KEY = 1024  # records one node holds under one key (one model's peers, or the model listing)


class MolinkRecordValidator(RecordValidatorBase):
    """Lets a DHT node store and accept only signed peer records filed under their own peer id.

    Only molink uses this DHT, so anything else (plain values, foreign formats) is refused as well. Once it
    knows its node's ``storage``, it also refuses a new subkey under a key that already holds
    ``max_entries`` live ones: a flood of records from fresh keys cannot grow one model's entry (which every
    lookup returns whole) past what a lookup can carry, and peers already listed keep refreshing theirs.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES_PER_KEY) -> None:
        self.storage: Any = None  # hivemind's DHTLocalStorage of the node, set once the node exists
        self.max_entries = max_entries

    def _has_room(self, key: bytes, subkey: Any) -> bool:
        if self.storage is None:
            return True
        held = self.storage.get(DHTID.from_bytes(key))
        if held is None or not isinstance(held.value, DictionaryDHTValue):
            return True
        return subkey in held.value or len(held.value) < self.max_entries

    def validate(self, record: DHTRecord) -> bool:
        if record.subkey == _REGULAR_VALUE_SUBKEY:
            return False  # a plain value, not a subkey of a model's dictionary
        if len(record.value) > MAX_RECORD_BYTES:
            return False  # refused before it is even decoded
        try:
            subkey = MSGPackSerializer.loads(record.subkey)
            peer = record_from_wire(MSGPackSerializer.loads(record.value))
        except (
            RecordError,
            ValueError,
            TypeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
        ):
            return False  # malformed bytes or an untrustworthy record: not stored, not accepted
        # filed under its own peer id (a model's swarm), or under its model key (the swarm-wide listing,
        # where any peer serving a model may refresh that model's entry); kept no longer than it says
        return (subkey in (peer.peer_id, peer.model) and storable(peer, record.expiration_time, get_dht_time())
                and self._has_room(record.key, subkey))


def _host_maddr(host: str, port: int) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"/dns/{host}/tcp/{port}"
    return f"/ip{ip.version}/{host}/tcp/{port}"


def _check_initial_peers(initial_peers: Sequence[str]) -> list[str]:
    checked = []
    for item in initial_peers:
        try:
            maddr = Multiaddr(str(item))
            PeerID.from_base58(maddr["p2p"])  # raises unless the address names a valid peer
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"initial peer {item!r} is not a full swarm address like /ip4/HOST/tcp/PORT/p2p/ID"
            ) from exc
        if str(maddr) not in checked:
            checked.append(str(maddr))
    return checked


def _maddr_host(maddr: str) -> str | None:
    """The IP host of a multiaddr like /ip4/HOST/tcp/PORT/p2p/ID; None for other forms (/dns, relays)."""
    parts = maddr.split("/")
    return parts[2] if len(parts) > 2 and parts[1] in ("ip4", "ip6") else None


def order_swarm_addrs(maddrs: Sequence[str], listen_host: str, preferred_hosts: Sequence[str]) -> list[str]:
    """The node's own multiaddrs as others should see them: for a wildcard listener, the hosts in
    ``preferred_hosts`` order (loopback dropped while any other is left); a concrete listener keeps its own."""
    if not is_wildcard(listen_host):
        return list(maddrs)
    rank = {host: i for i, host in enumerate(preferred_hosts)}
    outside = [m for m in maddrs if not is_loopback(_maddr_host(m) or "")]
    chosen = outside or list(maddrs)
    return sorted(chosen, key=lambda m: rank.get(_maddr_host(m) or "", len(rank)))


class HivemindDiscovery:
    """Discovery over a hivemind DHTNode running in this process's event loop."""

    def __init__(
        self,
        node: DHTNode,
        p2p: P2P,
        swarm_addrs: list[str],
        signer: Identity | None = None,
        initial_peers: Sequence[str] = (),
    ) -> None:
        self._node = node
        self._p2p = p2p
        self._swarm_addrs = swarm_addrs
        self._signer = signer
        self._initial = [(PeerID.from_base58(Multiaddr(m)["p2p"]), Multiaddr(m)) for m in initial_peers]
        self._expirations: dict[tuple[str, str], float] = {}  # (model, peer id) -> last announced expiration
        self._closed = False

    @classmethod
    async def create(
        cls,
        initial_peers: Sequence[str] = (),
        *,
        listen: str = "127.0.0.1:0",
        client_mode: bool = False,
        identity_path: str | None = None,
        announce_addr: str | None = None,
        upnp: bool = False,
        signer: Identity | None = None,
        join_timeout: float = 30.0,
    ) -> HivemindDiscovery:
        """Start a libp2p daemon and a DHT node, joined to ``initial_peers`` (none: a new swarm).

        identity_path: libp2p key file, so this node keeps its swarm address across restarts.
        signer: the peer's record identity; lets ``withdraw`` re-sign the OFFLINE tombstone.
        join_timeout: seconds to reach the initial peers before PeerUnreachableError.
        """
        peers = _check_initial_peers(initial_peers)
        host, port = parse_addr(listen)
        if not client_mode:
            check_port_free(host, port, "DHT port")
        # The daemon's TCP listener would otherwise set SO_REUSEPORT, and a second daemon on the same port
        # would start without complaint and take half of the first one's connections.
        os.environ.setdefault("LIBP2P_TCP_REUSEPORT", "false")
        announce = None
        if announce_addr is not None:
            a_host, a_port = parse_addr(announce_addr)
            if a_port == 0:
                raise ConfigError(f"--announce-addr {announce_addr} needs an explicit port")
            announce = [_host_maddr(a_host, a_port)]
        where = ", ".join(peers) if peers else "no initial peers"
        try:
            p2p = await asyncio.wait_for(
                P2P.create(
                    initial_peers=peers or None,
                    host_maddrs=[_host_maddr(host, port)],
                    announce_maddrs=announce,
                    nat_port_map=upnp,
                    identity_path=identity_path,
                    dht_mode="client" if client_mode else "server",
                    startup_timeout=join_timeout,
                ),
                join_timeout,
            )
        except TimeoutError as exc:
            raise PeerUnreachableError(
                f"DHT daemon did not start within {join_timeout:g} s ({where})"
            ) from exc
        except P2PDaemonError as exc:
            reason = one_line(exc)
            if peers and "bootstrap" in reason:
                raise PeerUnreachableError(f"cannot reach any initial peer ({where}): {reason}") from exc
            raise ConfigError(f"cannot start the DHT daemon on {listen}: {reason}") from exc
        validator = MolinkRecordValidator()
        try:
            node = await asyncio.wait_for(
                DHTNode.create(
                    p2p=p2p,
                    initial_peers=peers or None,
                    client_mode=client_mode,
                    record_validator=validator,
                ),
                join_timeout,
            )
            validator.storage = node.protocol.storage  # from now on, entries per key are capped
            maddrs = order_swarm_addrs(
                [str(m) for m in await p2p.get_visible_maddrs()], host, advertised_hosts(host)
            )
        except (TimeoutError, RuntimeError, P2PDaemonError, OSError) as exc:
            # RuntimeError: hivemind's "bootstrap failed: none of the initial_peers responded"
            await p2p.shutdown()
            raise PeerUnreachableError(f"cannot join the swarm through {where}: {one_line(exc)}") from exc
        except BaseException:
            await p2p.shutdown()  # cancelled while joining: never leave the daemon process behind
            raise
        if announce is not None:  # what the user said others reach this node at comes first
            maddrs = sorted(maddrs, key=lambda m: not m.startswith(announce[0] + "/"))
        return cls(node, p2p, maddrs, signer=signer, initial_peers=peers)

    @property
    def swarm_addrs(self) -> list[str]:
        return list(self._swarm_addrs)

    @property
    def p2p(self) -> P2P:
        """This node's libp2p daemon (hivemind's P2P): relayed connections go through it (swarm/net/circuits.py)."""
        return self._p2p

    @property
    def p2p_id(self) -> str:
        """This node's libp2p peer id (base58), what a relayed way to it names."""
        return str(self._p2p.peer_id)

    @property
    def dht_node(self) -> DHTNode:
        """The underlying hivemind node, for tools and tests that need raw DHT access."""
        return self._node

    async def rejoin(self) -> int:
        """Dial and ping every initial peer the daemon is not connected to, so that a restarted bootstrap
        (same identity and address, empty routing table) learns of this node again and a lost link comes
        back; returns the number of other DHT nodes in this node's routing table."""
        if self._closed:
            raise TransportError("discovery is shut down")
        if self._initial:
            connected = await self.connected()
            known = self._node.protocol.routing_table.peer_id_to_uid
            # not connected, or connected but missing from the routing table (a node behind a NAT can be left with
            # only the initial peer that answered first; losing that one must not cut it off from the others)
            lost = [(pid, maddr) for pid, maddr in self._initial if str(pid) not in connected or pid not in known]
            await asyncio.gather(*(self._reconnect(pid, maddr) for pid, maddr in lost))
        return len(self._node.protocol.routing_table.peer_id_to_uid)

    def neighbours(self) -> int:
        """Other DHT nodes in this node's routing table (0 once shut down)."""
        return 0 if self._closed else len(self._node.protocol.routing_table.peer_id_to_uid)

    async def connected(self) -> set[str]:
        """The libp2p peer ids this node's daemon holds a connection to (empty when it cannot tell)."""
        try:
            return {str(info.peer_id) for info in await self._p2p.list_peers()}
        except (P2PDaemonError, ConnectionError, OSError) as exc:
            logger.warning("cannot list the DHT daemon's connections: %s", one_line(exc))
            return set()

    async def _reconnect(self, peer_id: PeerID, maddr: Multiaddr) -> None:
        was_known = peer_id in self._node.protocol.routing_table.peer_id_to_uid
        try:
            # without its /p2p/ part: the daemon reads that part in another form than hivemind writes it
            plain = Multiaddr(str(maddr).rpartition("/p2p/")[0])
            await asyncio.wait_for(self._p2p._client.connect(peer_id, [plain]), REJOIN_TIMEOUT)
        except (TimeoutError, P2PDaemonError, ConnectionError, OSError, ValueError) as exc:
            logger.debug("initial peer %s unreachable: %s", maddr, one_line(exc))
        # pinged either way: an answer puts it back in the routing table, silence takes it out
        if await self._node.protocol.call_ping(peer_id) is not None:
            # back in the routing table; forget earlier failures so searches use it again at once
            if peer_id in self._node.blacklist:
                self._node.blacklist.register_success(peer_id)
            logger.log(logging.DEBUG if was_known else logging.INFO, "rejoined the DHT through %s", maddr)

    async def announce(self, record: PeerRecord, ttl: float) -> None:
        record, expiration = self._expiring(record, get_dht_time() + _check_ttl(ttl))
        await asyncio.gather(self._store(record, expiration), self._list_model(record, expiration))

    def _expiring(self, record: PeerRecord, expiration: float) -> tuple[PeerRecord, float]:
        """The record to store and its DHT expiration: with this node's key (the record's peer), re-signed to
        expire at ``expiration``; a record of another identity (one node serving several) cannot be re-signed,
        so it is stored to expire when its signature says, if that comes first."""
        if self._signer is not None and self._signer.peer_id == record.peer_id:
            return self._signer.sign_record(replace(record, expires_at=expiration)), expiration
        return record, min(expiration, record.expires_at)

    async def _list_model(self, record: PeerRecord, expiration: float) -> None:
        """Refresh the model's entry in the swarm-wide listing: one small entry per model however many peers
        serve it (they overwrite one another; the latest expiration stays). Only ``swarm.status`` without
        --model reads it, so a failure is logged and serving goes on."""
        try:
            listed = await self._node.store(MODELS_KEY, record.to_wire(), expiration, subkey=record.model)
        except (P2PDaemonError, ConnectionError, OSError, TimeoutError) as exc:
            listed = False
            logger.debug("listing %s failed: %s", record.model, one_line(exc))
        if not listed:
            logger.debug("the DHT did not take the swarm-wide listing entry of %s", record.model)

    async def withdraw(self, record: PeerRecord, ttl: float) -> None:
        tombstone = replace(record, state=PeerState.OFFLINE)
        if self._signer is not None and self._signer.peer_id == record.peer_id:
            tombstone = self._signer.sign_record(tombstone)
        elif record.state is not PeerState.OFFLINE:
            logger.warning(
                "withdrawing %s without its key: the tombstone is unsigned and honest nodes refuse it",
                record.peer_id,
            )
        last = self._expirations.get((record.model, record.peer_id), float("-inf"))
        await self._store(*self._expiring(tombstone, max(get_dht_time() + _check_ttl(ttl), last + _TOMBSTONE_MARGIN)))

    async def _store(self, record: PeerRecord, expiration: float) -> None:
        if self._closed:
            raise TransportError("discovery is shut down")
        stored = await self._node.store(
            dht_key(record.model), record.to_wire(), expiration, subkey=str(record.peer_id)
        )
        if not stored:
            raise TransportError(
                f"the DHT refused or did not take the {record.state.value} record of {record.peer_id} "
                f"for {record.model} (unreachable nodes, a newer entry, or an invalid record)"
            )
        self._expirations[(record.model, str(record.peer_id))] = expiration

    async def read(self, model: str) -> list[PeerRecord]:
        return [r for r in await self._read_key(dht_key(model)) if r.model == model]

    async def read_models(self) -> list[PeerRecord]:
        """One live record per model the swarm serves (from the swarm-wide listing), any of its peers'."""
        return await self._read_key(MODELS_KEY, filed_under="model")

    async def _read_key(self, key: str, filed_under: str = "peer_id") -> list[PeerRecord]:
        if self._closed:
            raise TransportError("discovery is shut down")
        found = await self._node.get(key, latest=True)
        if found is None:
            return []
        if not isinstance(found.value, dict):
            logger.warning(
                "DHT key %s holds a %s, not a dictionary of peer records", key, type(found.value).__name__
            )
            return []
        now = get_dht_time()
        entries: dict[Any, Any] = {
            subkey: item.value
            for subkey, item in found.value.items()
            if isinstance(item, ValueWithExpiration) and item.expiration_time > now
        }
        return [r for r in records_from_dht(entries, filed_under=filed_under) if r.state is not PeerState.OFFLINE]

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A Ctrl-C in a terminal reaches the libp2p daemon too (same process group); hivemind's node
        # shutdown then waits forever for a dead daemon to answer, so it is skipped or bounded.
        child = getattr(self._p2p, "_child", None)  # hivemind keeps the daemon process private
        daemon_alive = child is not None and child.returncode is None
        try:
            if daemon_alive:
                await asyncio.wait_for(self._node.shutdown(), SHUTDOWN_TIMEOUT)
            else:
                self._node.is_alive = False  # stops the node's background jobs, as its shutdown() would
        except (TimeoutError, P2PDaemonError, ConnectionError, OSError) as exc:
            logger.warning("DHT node did not shut down cleanly: %s", one_line(exc))
        finally:
            await asyncio.wait_for(self._p2p.shutdown(), SHUTDOWN_TIMEOUT)


def _check_ttl(ttl: float) -> float:
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 0 < ttl <= MAX_RECORD_TTL_S:
        raise ConfigError(f"ttl must be a positive number of seconds up to {MAX_RECORD_TTL_S:g} (a record's "
                          f"longest signed life), got {ttl!r}")
    return float(ttl)
