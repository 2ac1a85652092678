"""What every DHT node agrees to store: a signed record under its own peer id, or under its model key
(the swarm-wide listing of models); nothing else."""

from __future__ import annotations

from hivemind.dht.validation import DHTRecord
from hivemind.utils.serializer import MSGPackSerializer

from swarm.net.dht import MolinkRecordValidator
from tests.factories import make_peer_record


def as_dht(subkey: object, value: object) -> DHTRecord:
    return DHTRecord(key=b"k", subkey=MSGPackSerializer.dumps(subkey), value=MSGPackSerializer.dumps(value),
                     expiration_time=0.0)


def test_a_signed_record_is_stored_under_its_peer_id_or_its_model_key_only():
    """Its own peer id or its model key pass; another peer's id, another model, an unsigned record, a plain
    value and bytes that are not msgpack are refused."""
    validator = MolinkRecordValidator()
    record = make_peer_record(model="llama-0123456789abcdef")
    wire = record.to_wire()
    assert validator.validate(as_dht(record.peer_id, wire))
    assert validator.validate(as_dht(record.model, wire))
    assert not validator.validate(as_dht("ab" * 20, wire))
    assert not validator.validate(as_dht("llama-ffffffffffffffff", wire))
    assert not validator.validate(as_dht(record.peer_id, make_peer_record(sign=False).to_wire()))
    assert not validator.validate(DHTRecord(key=b"k", subkey=MSGPackSerializer.dumps(None),
                                            value=MSGPackSerializer.dumps(wire), expiration_time=0.0))
    assert not validator.validate(DHTRecord(key=b"k", subkey=b"\xc1", value=b"\xc1", expiration_time=0.0))
