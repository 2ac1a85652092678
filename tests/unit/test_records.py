"""Unit tests of peer records (swarm.net.records): signing, validation of untrusted values, identities on disk."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import replace

import msgpack
import pytest

from swarm.errors import ConfigError, RecordError
from swarm.net.records import (
    RECORD_VERSION,
    Identity,
    PeerState,
    record_from_wire,
    records_from_dht,
)
from tests.factories import make_peer_record


def through_msgpack(value):
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


def test_signed_record_round_trips_through_msgpack():
    """A signed record survives to_wire -> msgpack -> record_from_wire unchanged."""
    record = make_peer_record(
        rtts={"ab" * 20: 0.012}, addrs=("127.0.0.1:1", "[::1]:2"), state=PeerState.DRAINING,
        links={"ab" * 20: "punched", "cd" * 20: "relayed"},
    )
    back = record_from_wire(through_msgpack(record.to_wire()))
    assert back == record
    assert back.state is PeerState.DRAINING
    assert back.to_wire()["record_version"] == RECORD_VERSION


def test_integer_figures_are_accepted_and_signed_as_floats():
    """throughput=100 (int) and 100.0 sign the same, so a peer's int is no reason to drop its record."""
    record = make_peer_record(throughput=100, net_throughput=10)
    assert record_from_wire(through_msgpack(record.to_wire())).throughput == 100.0


def test_identity_peer_id_is_sha256_prefix_of_public_key():
    import hashlib

    identity = Identity.generate()
    assert len(identity.public_key) == 32
    assert identity.peer_id == hashlib.sha256(identity.public_key).digest()[:20].hex()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model", "other-model"),
        ("addrs", ["10.0.0.1:1"]),
        ("start", 1),
        ("end", 3),
        ("state", "draining"),
        ("throughput", 1e9),
        ("net_throughput", 1.0),
        ("free_cache_tokens", 1),
        ("load", 5),
        ("dtype", "bfloat16"),
        ("num_layers", 30),
        ("model_name", "someone-else"),
        ("queue", 3),
        ("version", "9.9"),
        ("rtts", {"x": 0.5}),
        ("links", {"ab" * 20: "direct"}),
        ("mbits", {"ab" * 20: 95.0}),
    ],
)
def test_tampered_field_breaks_the_signature(name, value):
    wire = make_peer_record().to_wire()
    wire[name] = value
    with pytest.raises(RecordError, match="signature"):
        record_from_wire(wire)


def test_signature_from_another_key_is_refused():
    """A record signed by key B while carrying key A is refused."""
    victim, forger = Identity.generate(), Identity.generate()
    record = make_peer_record(identity=victim)
    forged = forger.sign_record(replace(record, peer_id=forger.peer_id))
    wire = record.to_wire()
    wire["signature"] = forged.signature
    with pytest.raises(RecordError, match="signature"):
        record_from_wire(wire)


def test_peer_id_not_derived_from_the_key_is_refused():
    """A forger who signs a record naming another peer's id with its own key is refused."""
    victim = Identity.generate()
    forged = make_peer_record(peer_id=victim.peer_id)  # signed by a fresh key, claims the victim's id
    with pytest.raises(RecordError, match="peer id"):
        record_from_wire(forged.to_wire())


def test_sign_record_refuses_another_peers_record():
    with pytest.raises(RecordError):
        Identity.generate().sign_record(make_peer_record())


def test_unsigned_record_is_refused():
    with pytest.raises(RecordError, match="unsigned"):
        record_from_wire(make_peer_record(sign=False).to_wire())


@pytest.mark.parametrize(
    "field",
    [
        "record_version",
        "peer_id",
        "model",
        "addrs",
        "start",
        "end",
        "state",
        "throughput",
        "rtts",
        "links",
        "mbits",
        "rates",
        "subspans",
        "signature",
    ],
)
def test_missing_field_is_refused(field):
    wire = make_peer_record().to_wire()
    del wire[field]
    with pytest.raises(RecordError, match="missing"):
        record_from_wire(wire)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("peer_id", 5),
        ("model", b"bytes-model"),
        ("addrs", "127.0.0.1:1"),
        ("start", "0"),
        ("start", 0.0),
        ("end", True),
        ("state", 1),
        ("throughput", "fast"),
        ("free_cache_tokens", 1.5),
        ("num_layers", "30"),
        ("model_name", None),
        ("rtts", [["a", 1.0]]),
        ("links", [["a", "direct"]]),
        ("mbits", [["a", 1.0]]),
        ("public_key", "key"),
        ("signature", None),
    ],
)
def test_field_of_the_wrong_type_is_refused(name, value):
    wire = make_peer_record().to_wire()
    wire[name] = value
    with pytest.raises(RecordError):
        record_from_wire(wire)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"start": -1, "end": 2}, "span"),
        ({"start": 3, "end": 3}, "span"),
        ({"start": 4, "end": 2}, "span"),
        ({"addrs": ()}, "addrs"),
        ({"addrs": tuple(f"127.0.0.1:{p}" for p in range(17))}, "addrs"),
        ({"model": "m" * 257}, "model"),
        ({"dtype": ""}, "dtype"),
        ({"version": "v" * 1000}, "version"),
        ({"addrs": ("h" * 300 + ":1",)}, "addr"),
        ({"rtts": {f"p{i}": 0.1 for i in range(65)}}, "rtts"),
        ({"num_layers": 3, "end": 4}, "num_layers"),
        ({"num_layers": -1}, "num_layers"),
        ({"model_name": "n" * 257}, "model_name"),
        ({"rtts": {"p": float("nan")}}, "rtt"),
        ({"links": {f"p{i}": "direct" for i in range(9)}}, "links"),
        ({"links": {"p": "teleported"}}, "links"),
        ({"links": {"": "direct"}}, "link peer id"),
        ({"mbits": {f"p{i}": 10.0 for i in range(9)}}, "mbits"),
        ({"mbits": {"p": -3.0}}, "mbit"),
        ({"mbits": {"p": float("inf")}}, "mbit"),
        ({"rates": {"decode@3": 10.0}}, "rates"),
        ({"rates": {"prefill": -1.0}}, "rate"),
        ({"throughput": float("inf")}, "throughput"),
        ({"net_throughput": -1.0}, "net_throughput"),
        ({"load": -1}, "load"),
        ({"queue": -1}, "queue"),
        # every field within its bounds, the whole over MAX_RECORD_BYTES: what a flood would fill the DHT with
        ({"addrs": tuple("h" * 200 + f":{p}" for p in range(16))}, "too large"),
    ],
)
def test_values_out_of_bounds_are_refused_even_when_signed(overrides, match):
    """The signer is not trusted to be sane: bounds hold for correctly signed records too."""
    with pytest.raises(RecordError, match=match):
        record_from_wire(make_peer_record(**overrides).to_wire())


def test_unknown_state_version_mismatch_and_extra_fields_are_refused():
    for change, match in [
        ({"state": "sleeping"}, "state"),
        ({"record_version": 2}, "version"),
        ({"record_version": 3}, "version"),
        ({"record_version": 4}, "version"),
        ({"record_version": 5}, "version"),
        ({"record_version": 6}, "version"),
        ({"record_version": 8}, "version"),
        ({"x": 1}, "unexpected"),
    ]:
        wire = {**make_peer_record().to_wire(), **change}
        with pytest.raises(RecordError, match=match):
            record_from_wire(wire)
    with pytest.raises(RecordError, match="map"):
        record_from_wire([1, 2])


def test_records_from_dht_keeps_good_and_drops_bad_entries(caplog):
    """Valid records under their own peer id are kept; malformed, forged and misfiled ones are dropped."""
    good_a, good_b, misfiled = make_peer_record(), make_peer_record(start=4, end=8), make_peer_record()
    tampered = {**make_peer_record().to_wire(), "load": 99}
    victim = Identity.generate()
    impostor = make_peer_record(peer_id=victim.peer_id)
    entries = {
        good_a.peer_id: through_msgpack(good_a.to_wire()),
        good_b.peer_id: good_b.to_wire(),
        good_a.peer_id[::-1]: misfiled.to_wire(),  # valid record under someone else's subkey
        tampered["peer_id"]: tampered,
        victim.peer_id: impostor.to_wire(),
        "garbage": b"\x00\x01",
        "none": None,
    }
    with caplog.at_level(logging.DEBUG, logger="swarm.net.records"):
        kept = records_from_dht(entries)
    assert sorted(kept, key=lambda r: r.start) == [good_a, good_b]
    dropped = [r for r in caplog.records if "dropped DHT record" in r.getMessage()]
    assert len(dropped) == 5


def test_records_from_dht_warns_once_per_reason(caplog):
    """The same kind of breakage logs one warning, later ones go to debug."""
    bad = {**make_peer_record().to_wire(), "start": 7, "end": 2}
    with caplog.at_level(logging.DEBUG, logger="swarm.net.records"):
        records_from_dht({bad["peer_id"]: bad})
        records_from_dht({bad["peer_id"]: bad})
    levels = [r.levelno for r in caplog.records if "bad span" in r.getMessage()]
    assert levels[-1] == logging.DEBUG
    assert levels.count(logging.WARNING) <= 1


def test_identity_persists_across_loads(tmp_path):
    """load_or_create writes the key once (mode 0600) and later loads give the same peer id."""
    path = tmp_path / "peer.key"
    first = Identity.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = Identity.load_or_create(str(path))
    assert second.peer_id == first.peer_id and second.public_key == first.public_key
    record = make_peer_record(identity=first)
    assert (
        record_from_wire(replace(record, signature=second.sign_record(record).signature).to_wire()) == record
    )
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_identity_none_is_fresh_and_bad_files_are_config_errors(tmp_path):
    assert Identity.load_or_create(None).peer_id != Identity.load_or_create(None).peer_id
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"short")
    with pytest.raises(ConfigError):
        Identity.load_or_create(bad)
    with pytest.raises(ConfigError):
        Identity.load_or_create(tmp_path / "no-such-dir" / "k.key")


def test_subspans_must_be_a_bool():
    wire = {**make_peer_record().to_wire(), "subspans": 1}
    with pytest.raises(RecordError, match="subspans"):
        record_from_wire(wire)
    assert record_from_wire(make_peer_record(subspans=True).to_wire()).subspans is True
