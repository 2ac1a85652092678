"""Next hops are peers: resolved from records, proved on connect, one error text whatever failed."""

from __future__ import annotations

import asyncio

import pytest

from peer.nexthop import Directory, NextHop, candidate_addrs, dial
from peer.sessions import check_next_peer
from swarm.errors import PeerUnreachableError, ProtocolError
from swarm.net.loglimit import LogLimiter
from swarm.net.probe import PROBE_BYTES
from swarm.net.protocol import Ok, Ping, Pong, check_pong, new_secret, parse
from swarm.net.records import Identity, PeerRecord, PeerState, proof_holds
from swarm.net.wire import Frame

ME = Identity.generate()
OTHER = Identity.generate()


def record(identity: Identity, addrs: tuple[str, ...]) -> PeerRecord:
    return identity.sign_record(PeerRecord(peer_id=identity.peer_id, model="m", addrs=addrs, start=2, end=4,
                                           state=PeerState.ONLINE, throughput=1.0, net_throughput=1.0,
                                           free_cache_tokens=1, load=0, dtype="float32", version="0"))


def pong(identity: Identity, nonce: str, *, model: str = "m", start: int = 2, claim: str | None = None) -> Pong:
    return Pong(id=0, peer_id=claim or identity.peer_id, model=model, start=start, end=start + 2,
                public_key=identity.public_key, proof=identity.prove(nonce, model, start))


def test_a_proof_binds_the_key_the_nonce_the_model_and_the_first_layer():
    nonce = new_secret()
    proof = ME.prove(nonce, "m", 2)
    assert proof_holds(ME.public_key, proof, nonce=nonce, peer_id=ME.peer_id, model="m", start=2)
    for changed in [dict(nonce=new_secret()), dict(model="n"), dict(start=3), dict(peer_id=OTHER.peer_id)]:
        args = dict(nonce=nonce, peer_id=ME.peer_id, model="m", start=2) | changed
        assert not proof_holds(ME.public_key, proof, **args)
    assert not proof_holds(OTHER.public_key, proof, nonce=nonce, peer_id=OTHER.peer_id, model="m", start=2)
    assert not proof_holds(ME.public_key, b"short", nonce=nonce, peer_id=ME.peer_id, model="m", start=2)


def test_check_pong_accepts_only_the_named_peer_with_a_fresh_proof_for_this_model_and_layer():
    nonce = new_secret()
    ok = dict(peer_id=ME.peer_id, model="m", start=2, nonce=nonce)
    assert check_pong(pong(ME, nonce), **ok) is None
    assert "not a pong" in check_pong(Ok(id=0), **ok)
    assert "not a pong" in check_pong(None, **ok)
    assert "answered as peer" in check_pong(pong(OTHER, nonce), **ok)
    # a stranger claiming the id, with its own key: the key does not derive the id
    assert "proof" in check_pong(pong(OTHER, nonce, claim=ME.peer_id), **ok)
    assert "proof" in check_pong(pong(ME, new_secret()), **ok)  # an old answer replayed
    assert "layers 5:" in check_pong(pong(ME, nonce, start=5), **ok)  # a loop back to an earlier hop
    assert check_pong(pong(ME, nonce, start=1), **ok) is None  # layer 2 inside the span 1:4: a sub-span route
    assert "serves n" in check_pong(pong(ME, nonce, model="n"), **ok)
    bare = Pong(id=0, peer_id=ME.peer_id, model="m", start=2, end=4)
    assert "no proof" in check_pong(bare, **ok)


def test_candidate_addresses_come_from_the_record_and_the_hint_only_orders_them():
    rec = record(OTHER, ("10.0.0.1:1", "10.0.0.2:1"))
    assert candidate_addrs(rec, "10.0.0.2:1", have_records=True) == ["10.0.0.2:1", "10.0.0.1:1"]
    assert candidate_addrs(rec, "192.0.2.9:22", have_records=True) == ["10.0.0.1:1", "10.0.0.2:1"]
    assert candidate_addrs(None, "192.0.2.9:22", have_records=True) == []  # no record: nothing is dialled
    assert candidate_addrs(None, "192.0.2.9:22", have_records=False) == ["192.0.2.9:22"]  # no DHT at all


def test_a_next_peer_must_be_an_id_and_not_this_peer():
    check_next_peer(OTHER.peer_id, ME.peer_id)
    for bad in ["", "x" * 65, ME.peer_id]:
        with pytest.raises(ProtocolError):
            check_next_peer(bad, ME.peer_id)


class FakeChannel:
    """Answers a Ping as ``identity`` would (or with ``answer`` when given)."""

    def __init__(self, identity: Identity, answer: dict | None = None) -> None:
        self.identity, self.answer = identity, answer
        self.sent: list[dict] = []
        self.closed = False
        self.kind, self.remote, self.rtt_s, self.bps = "direct", "fake", None, None
        self.bodies: list[int] = []
        self._reply: Frame | None = None

    async def send(self, header: dict, body: bytes = b"") -> None:
        self.sent.append(header)
        self.bodies.append(len(body))
        msg = parse(header)
        assert isinstance(msg, Ping)
        if msg.nonce is None:  # the bandwidth probe after the proof: any answer times it
            self._reply = Frame(Pong(id=msg.id, peer_id=self.identity.peer_id, model="m", start=2, end=4).to_header(), b"")
            return
        self._reply = Frame(self.answer or pong(self.identity, msg.nonce).to_header(), b"")

    async def recv(self) -> Frame | None:
        return self._reply

    async def close(self) -> None:
        self.closed = True


def run_dial(hop: NextHop, records: dict, channels: dict) -> tuple[object, list[str]]:
    dialled: list[str] = []

    async def lookup(peer_id: str, hint: str):
        return records.get(peer_id)

    async def connect(addr: str):
        dialled.append(addr)
        if addr not in channels:
            from swarm.errors import PeerUnreachableError as Refused
            raise Refused(f"cannot connect to {addr}: refused")
        return channels[addr]

    async def go():
        try:
            return await dial(hop, lookup=lookup, have_records=lambda: True, connect=connect, model="m", start=2,
                              quiet=LogLimiter(), timeout_s=1)
        except PeerUnreachableError as e:
            return e

    return asyncio.run(go()), dialled


def test_dial_returns_the_proved_peer_and_fails_alike_for_every_other_reason():
    good = FakeChannel(OTHER)
    rec = record(OTHER, ("10.0.0.1:1", "10.0.0.2:1"))
    got, dialled = run_dial(NextHop(OTHER.peer_id, "10.0.0.2:1"), {OTHER.peer_id: rec}, {"10.0.0.2:1": good})
    assert got is good and dialled == ["10.0.0.2:1"] and not good.closed
    assert good.bodies == [0, PROBE_BYTES] and good.bps is not None  # the proof, then the bandwidth probe

    failures = []
    # no record of the id: nothing dialled, however tempting the hint
    failures.append(run_dial(NextHop(OTHER.peer_id, "192.0.2.9:22"), {}, {}))
    assert failures[-1][1] == []
    # the record's addresses refuse; then one answers as somebody else, then not at all like a peer
    failures.append(run_dial(NextHop(OTHER.peer_id, "10.0.0.1:1"), {OTHER.peer_id: rec}, {}))
    impostor = FakeChannel(ME)
    failures.append(run_dial(NextHop(OTHER.peer_id, "10.0.0.1:1"), {OTHER.peer_id: rec}, {"10.0.0.1:1": impostor}))
    assert impostor.closed
    garbage = FakeChannel(OTHER, answer={"type": "ok", "id": 0})
    failures.append(run_dial(NextHop(OTHER.peer_id, "10.0.0.1:1"), {OTHER.peer_id: rec}, {"10.0.0.1:1": garbage}))
    texts = {str(err) for err, _ in failures}
    assert all(isinstance(err, PeerUnreachableError) for err, _ in failures)
    assert texts == {f"next hop {OTHER.peer_id[:16]} could not be reached"}  # no oracle in the words


def test_the_directory_reads_on_a_miss_at_most_once_a_second_and_keeps_what_it_saw():
    now = [0.0]
    reads: list[float] = []
    listing = [record(OTHER, ("10.0.0.1:1",))]

    async def read():
        reads.append(now[0])
        return list(listing)

    directory = Directory(read, clock=lambda: now[0])

    async def go():
        assert (await directory.lookup(OTHER.peer_id)).peer_id == OTHER.peer_id
        assert await directory.lookup(ME.peer_id) is None  # within the gap: no second read
        assert len(reads) == 1
        assert directory.have_records
        listing.clear()  # a DHT read that comes back empty (a busy machine)
        now[0] = 40.0
        assert (await directory.lookup(OTHER.peer_id)).peer_id == OTHER.peer_id  # still known
        assert len(reads) == 2
        assert not directory.have_records  # blind: the client's hint is dialled (the proof still decides)
        listing.append(record(OTHER, ("10.0.0.1:1",)))
        now[0] = 80.0
        await directory.lookup(OTHER.peer_id)
        assert directory.have_records
        # a hint the cached record does not list: the peer moved, read again (once the gap has passed)
        listing[:] = [record(OTHER, ("10.0.0.9:1",))]
        now[0] = 81.0
        assert (await directory.lookup(OTHER.peer_id, "10.0.0.9:1")).addrs == ("10.0.0.9:1",)
        listing[:] = [record(ME, ("10.0.0.2:1",))]
        now[0] = 700.0
        await directory.lookup(ME.peer_id)
        assert await directory.lookup(OTHER.peer_id) is None  # gone after KEEP_S unseen

    asyncio.run(go())

