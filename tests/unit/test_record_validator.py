"""What every DHT node agrees to store: a signed record under its own peer id, or under its model key
(the swarm-wide listing of models), for no longer than its signed expiry, which is near; nothing else."""

from __future__ import annotations

from hivemind.dht.validation import DHTRecord
from hivemind.utils.serializer import MSGPackSerializer
from hivemind.utils.timed_storage import get_dht_time

from swarm.net.dht import MolinkRecordValidator
from swarm.net.records import CLOCK_SLACK_S, MAX_RECORD_TTL_S
from tests.factories import make_peer_record


def as_dht(subkey: object, value: object, expiration: float) -> DHTRecord:
    return DHTRecord(key=b"k", subkey=MSGPackSerializer.dumps(subkey), value=MSGPackSerializer.dumps(value),
                     expiration_time=expiration)


def test_a_signed_record_is_stored_under_its_peer_id_or_its_model_key_only():
    """Its own peer id or its model key pass; another peer's id, another model, an unsigned record, a plain
    value and bytes that are not msgpack are refused."""
    validator = MolinkRecordValidator()
    NOW = get_dht_time()  # noqa: N806 - read when the test runs, not when the module was collected
    record = make_peer_record(model="llama-0123456789abcdef", expires_at=NOW + 15)
    wire = record.to_wire()
    assert validator.validate(as_dht(record.peer_id, wire, NOW + 15))
    assert validator.validate(as_dht(record.model, wire, NOW + 15))
    assert not validator.validate(as_dht("ab" * 20, wire, NOW + 15))
    assert not validator.validate(as_dht("llama-ffffffffffffffff", wire, NOW + 15))
    unsigned = make_peer_record(sign=False, expires_at=NOW + 15).to_wire()
    assert not validator.validate(as_dht(record.peer_id, unsigned, NOW + 15))
    assert not validator.validate(DHTRecord(key=b"k", subkey=MSGPackSerializer.dumps(None),
                                            value=MSGPackSerializer.dumps(wire), expiration_time=0.0))
    assert not validator.validate(DHTRecord(key=b"k", subkey=b"\xc1", value=b"\xc1", expiration_time=0.0))


def test_a_record_is_kept_no_longer_than_its_signed_expiry_and_that_is_near():
    """A replayed record cannot outlive what its peer signed: a longer DHT expiration than the signed one (the
    attack: a peer's own old record stored for 10 years), an expiry already past, one too far ahead, or an
    expiry edited after signing are all refused."""
    validator = MolinkRecordValidator()
    NOW = get_dht_time()  # noqa: N806
    fresh = make_peer_record(expires_at=NOW + 15)
    assert validator.validate(as_dht(fresh.peer_id, fresh.to_wire(), NOW + 15))
    assert validator.validate(as_dht(fresh.peer_id, fresh.to_wire(), NOW + 5))  # shorter is fine
    assert not validator.validate(as_dht(fresh.peer_id, fresh.to_wire(), NOW + 10 * 365 * 86400))
    old = make_peer_record(expires_at=NOW - CLOCK_SLACK_S - 60)
    assert not validator.validate(as_dht(old.peer_id, old.to_wire(), NOW - CLOCK_SLACK_S - 60))
    far = make_peer_record(expires_at=NOW + MAX_RECORD_TTL_S + CLOCK_SLACK_S + 60)
    assert not validator.validate(as_dht(far.peer_id, far.to_wire(), NOW + 60))
    edited = dict(fresh.to_wire(), expires_at=NOW + 10 * 365 * 86400)
    assert not validator.validate(as_dht(fresh.peer_id, edited, NOW + 10 * 365 * 86400))  # signature breaks


def test_a_node_holds_at_most_max_entries_under_one_key_and_listed_peers_keep_refreshing():
    """Before, 422 maximum-size records of fresh keys made every lookup of a model return nothing. Now a node
    refuses new subkeys under a key that holds ``max_entries`` live ones (records are also capped at 2 KiB),
    while the peers already listed keep refreshing their own."""
    from hivemind.dht.routing import DHTID
    from hivemind.dht.storage import DHTLocalStorage

    storage = DHTLocalStorage()
    validator = MolinkRecordValidator(max_entries=3)
    validator.storage = storage
    key = DHTID.generate()
    NOW = get_dht_time()  # noqa: N806

    def offer(record) -> bool:
        dht = DHTRecord(key=key.to_bytes(), subkey=MSGPackSerializer.dumps(record.peer_id),
                        value=MSGPackSerializer.dumps(record.to_wire()), expiration_time=NOW + 15)
        ok = validator.validate(dht)
        if ok:
            storage.store_subkey(key, record.peer_id, dht.value, NOW + 15)
        return ok

    listed = [make_peer_record(expires_at=NOW + 15) for _ in range(3)]
    assert all(offer(r) for r in listed)
    assert not offer(make_peer_record(expires_at=NOW + 15))  # a newcomer beyond the cap
    assert offer(listed[0])  # a listed peer's refresh
    other = DHTRecord(key=DHTID.generate().to_bytes(), subkey=MSGPackSerializer.dumps(listed[0].peer_id),
                      value=MSGPackSerializer.dumps(listed[0].to_wire()), expiration_time=NOW + 15)
    assert validator.validate(other)  # another key has room of its own
