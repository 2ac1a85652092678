"""Builders of valid test objects, so each test states only what it changes.

``make_peer_record()`` returns a signed record that ``record_from_wire`` accepts; pass any field to
override it, and ``identity=`` to sign with a known key (its peer id is used unless ``peer_id=`` is
given too, which makes a record whose peer id does not match its key). ``sign=False`` leaves it unsigned.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from swarm.net.records import Identity, PeerRecord, PeerState


def make_peer_record(*, identity: Identity | None = None, sign: bool = True, **overrides: Any) -> PeerRecord:
    identity = identity if identity is not None else Identity.generate()
    fields: dict[str, Any] = {
        "peer_id": identity.peer_id,
        "model": "tiny-llama",
        "addrs": ("127.0.0.1:40000",),
        "start": 0,
        "end": 4,
        "state": PeerState.ONLINE,
        "throughput": 100.0,
        "net_throughput": 1000.0,
        "free_cache_tokens": 4096,
        "load": 0,
        "dtype": "float32",
        "version": "0.1.0",
        "rtts": {},
        "num_layers": 8,
        "model_name": "tiny-llama",
    }
    fields.update({k: v for k, v in overrides.items() if k not in ("public_key", "signature")})
    record = PeerRecord(**fields)
    if sign:
        # sign under our own peer id, then put back an overridden one: a deliberately mismatched record
        record = replace(
            identity.sign_record(replace(record, peer_id=identity.peer_id)), peer_id=fields["peer_id"]
        )
    for name in ("public_key", "signature"):
        if name in overrides:
            record = replace(record, **{name: overrides[name]})
    return record
