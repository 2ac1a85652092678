"""Peer records: what a peer announces about itself in the DHT, signed so that nobody can speak for it.

Each peer owns an Ed25519 key (RFC 8032); its peer id is the first 20 bytes of SHA-256 of the raw
public key, in hex. A record lists the peer's addresses, its span of layers, its state and its
measured figures, and is signed over a canonical msgpack encoding of every field but the signature.

A record carries its own expiry (``expires_at``, DHT time), signed with the rest: ``storable`` accepts a
record for the DHT only with a DHT expiration no later than that, and that no more than ``MAX_RECORD_TTL_S``
away. Every announcement is newer and expires later than the last, and the DHT keeps the latest expiration
per peer, so a replayed old record can never shadow a peer's current one.

Everything read from the DHT is untrusted: ``record_from_wire`` checks types, bounds, the record
version, that the peer id derives from the public key and that the signature holds, and raises
``RecordError`` otherwise. ``records_from_dht`` turns one DHT lookup (subkey -> value) into the
valid records, dropping the rest with a warning, so a forged or malformed entry is never routed to.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, NewType

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from swarm.net.errors import ConfigError, RecordError

logger = logging.getLogger(__name__)

PeerId = NewType("PeerId", str)

RECORD_VERSION = 7  # 2: num_layers and model_name; 3: queue; 4: expires_at, signed; 5: links; 6: mbits;
# 7: rates and subspans
_SIGNING_DOMAIN = b"molink-peer-record"  # a signature over a record can never be mistaken for another message
_PROOF_DOMAIN = b"molink-peer-proof"  # nor one that answers a challenge (``Identity.prove``) for a record

# bounds on untrusted records: enough for any real peer, small enough that a lookup stays cheap
MAX_STR = 256  # characters in model, dtype, version, each address and each rtt key
MAX_ADDRS = 16
MAX_RTTS = 64
MAX_LINKS = 8
LINK_KINDS = ("direct", "punched", "relayed")
# what a peer measured on the steps it served (peer/rates.py): prefill tokens/s, and decode tokens/s at batch
# sizes of about 1, 2, 4, ... 32 rows
RATE_KEYS = ("prefill", "decode@1", "decode@2", "decode@4", "decode@8", "decode@16", "decode@32")  # how a push connection was made (swarm/net/ways.py)
# a whole record, encoded: a real one is a few hundred bytes; the cap keeps what a flood of fresh keys can put
# under one model's DHT key (every lookup returns all of it) ten times smaller than the field bounds allow
MAX_RECORD_BYTES = 2048
MAX_LAYER = 100_000
PEER_ID_BYTES = 20
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
# A record's expiry is signed and at most this far in the future when it is stored, so an old record replayed
# into the DHT (with any expiration the replayer likes) is refused; a peer re-announces every few seconds.
MAX_RECORD_TTL_S = 120.0
CLOCK_SLACK_S = 30.0  # tolerated difference between DHT nodes' clocks (DHT time is wall-clock time)


class PeerState(str, Enum):
    JOINING = "joining"
    ONLINE = "online"
    DRAINING = "draining"
    OFFLINE = "offline"


@dataclass(frozen=True)
class PeerRecord:
    """One peer's announcement for one model."""

    peer_id: PeerId
    model: str  # model key the peer serves
    addrs: tuple[str, ...]  # "host:port" of its data port, the announce address first
    start: int  # span [start, end) of global layer indices
    end: int
    state: PeerState
    throughput: float  # tokens/s through its whole span at batch 1 (measured)
    net_throughput: float  # Mbit/s (measured or configured)
    free_cache_tokens: int
    load: int  # active sessions
    dtype: str
    version: str  # software version
    rtts: Mapping[str, float] = field(default_factory=dict)  # peer_id -> seconds
    num_layers: int = 0  # the whole model's layer count (0: not said), so listings can show coverage
    model_name: str = ""  # what the peer's operator called the model (alias, repo id, folder): a hint only
    queue: int = 0  # steps waiting for or in a forward pass when the record was made
    expires_at: float = 0.0  # DHT time (wall clock) after which the record is void; set when it is stored
    links: Mapping[str, str] = field(default_factory=dict)  # peer_id -> how this peer's push connection to it
    # was made: direct, punched (a TCP hole punch) or relayed; at most MAX_LINKS, the ones open when it was made
    mbits: Mapping[str, float] = field(default_factory=dict)  # peer_id -> Mbit/s this peer measured on its push
    # connection to it (swarm/net/probe.py); at most MAX_LINKS
    rates: Mapping[str, float] = field(default_factory=dict)  # RATE_KEYS -> tokens/s through the whole span,
    # measured on the steps it served (peer/rates.py)
    subspans: bool = False  # whether it runs any contiguous part of its span for a session (models/span.py: view)
    public_key: bytes = b""  # raw Ed25519 public key, 32 bytes
    signature: bytes = b""  # Ed25519 signature over signing_payload(), 64 bytes

    def signing_payload(self) -> bytes:
        """The canonical bytes the signature covers: every field but the signature, in a fixed order."""
        fields = [
            RECORD_VERSION,
            str(self.peer_id),
            self.model,
            list(self.addrs),
            self.start,
            self.end,
            PeerState(self.state).value,
            float(self.throughput),
            float(self.net_throughput),
            self.free_cache_tokens,
            self.load,
            self.dtype,
            self.version,
            sorted([str(k), float(v)] for k, v in self.rtts.items()),
            self.num_layers,
            self.model_name,
            self.queue,
            float(self.expires_at),
            sorted([str(k), str(v)] for k, v in self.links.items()),
            sorted([str(k), float(v)] for k, v in self.mbits.items()),
            sorted([str(k), float(v)] for k, v in self.rates.items()),
            bool(self.subspans),
            bytes(self.public_key),
        ]
        return _SIGNING_DOMAIN + msgpack.packb(fields, use_bin_type=True)

    def to_wire(self) -> dict[str, Any]:
        """A plain msgpack-able dict (bytes stay bytes); ``record_from_wire`` reverses it."""
        return {
            "record_version": RECORD_VERSION,
            "peer_id": str(self.peer_id),
            "model": self.model,
            "addrs": list(self.addrs),
            "start": self.start,
            "end": self.end,
            "state": PeerState(self.state).value,
            "throughput": float(self.throughput),
            "net_throughput": float(self.net_throughput),
            "free_cache_tokens": self.free_cache_tokens,
            "load": self.load,
            "dtype": self.dtype,
            "version": self.version,
            "rtts": {str(k): float(v) for k, v in self.rtts.items()},
            "num_layers": self.num_layers,
            "model_name": self.model_name,
            "queue": self.queue,
            "expires_at": float(self.expires_at),
            "links": {str(k): str(v) for k, v in self.links.items()},
            "mbits": {str(k): float(v) for k, v in self.mbits.items()},
            "rates": {str(k): float(v) for k, v in self.rates.items()},
            "subspans": bool(self.subspans),
            "public_key": bytes(self.public_key),
            "signature": bytes(self.signature),
        }


def peer_id_from_public_key(public_key: bytes) -> PeerId:
    return PeerId(hashlib.sha256(public_key).digest()[:PEER_ID_BYTES].hex())


@dataclass(frozen=True)
class Identity:
    """A peer's Ed25519 key pair and the peer id derived from it."""

    private_key: Ed25519PrivateKey = field(repr=False)
    public_key: bytes  # raw 32 bytes
    peer_id: PeerId

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        private_key = Ed25519PrivateKey.from_private_bytes(raw)
        public_key = private_key.public_key().public_bytes_raw()
        return cls(
            private_key=private_key, public_key=public_key, peer_id=peer_id_from_public_key(public_key)
        )

    @classmethod
    def generate(cls) -> Identity:
        return cls.from_private_bytes(Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def load_or_create(cls, path: str | os.PathLike | None) -> Identity:
        """A fresh in-memory identity for None; else the key in ``path``, created there (mode 0600) if absent.

        The file holds the raw 32-byte private key. It is written under a temporary name and linked into
        place, so two processes starting at once end up with the same key and no reader sees half a file.
        """
        if path is None:
            return cls.generate()
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                return cls._from_file_bytes(f.read(), path)
        except FileNotFoundError:
            pass  # first start: create it below
        identity = cls.generate()
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".identity-", dir=directory)  # mkstemp creates with mode 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(identity.private_key.private_bytes_raw())
                os.link(tmp, path)  # fails if another process created the file meanwhile
            finally:
                os.unlink(tmp)
        except FileExistsError:
            with open(path, "rb") as f:
                return cls._from_file_bytes(f.read(), path)
        except OSError as exc:  # missing directory, no permission
            raise ConfigError(f"cannot create identity file {path}: {exc}") from exc
        return identity

    @classmethod
    def _from_file_bytes(cls, raw: bytes, path: str) -> Identity:
        if len(raw) != 32:
            raise ConfigError(f"identity file {path} is not a 32-byte Ed25519 private key")
        return cls.from_private_bytes(raw)

    def sign_record(self, record: PeerRecord) -> PeerRecord:
        """A copy of ``record`` with this identity's public key and a fresh signature (peer_id must be ours)."""
        if record.peer_id != self.peer_id:
            raise RecordError(f"cannot sign a record of peer {record.peer_id} with the key of {self.peer_id}")
        unsigned = replace(record, public_key=self.public_key, signature=b"")
        return replace(unsigned, signature=self.private_key.sign(unsigned.signing_payload()))

    def prove(self, nonce: str, model: str, start: int) -> bytes:
        """The answer to a challenge ``nonce``: a signature saying this peer serves ``model`` from layer
        ``start`` (``proof_holds`` checks it against the public key)."""
        return self.private_key.sign(_proof_payload(nonce, self.peer_id, model, start))


def _proof_payload(nonce: str, peer_id: str, model: str, start: int) -> bytes:
    return _PROOF_DOMAIN + msgpack.packb([nonce, peer_id, model, start], use_bin_type=True)


def proof_holds(public_key: bytes, proof: bytes, *, nonce: str, peer_id: str, model: str, start: int) -> bool:
    """Whether ``proof`` shows that the holder of ``public_key`` is peer ``peer_id`` serving ``model`` from
    layer ``start``, answering the challenge ``nonce`` (so it cannot be an old answer replayed)."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(proof) != SIGNATURE_BYTES:
        return False
    if peer_id_from_public_key(public_key) != peer_id:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(proof, _proof_payload(nonce, peer_id, model, start))
    except (InvalidSignature, ValueError):
        return False
    return True


def _invalid(reason: str, detail: str) -> RecordError:
    """A RecordError whose ``reason`` is a fixed phrase, so log lines can be deduplicated by it."""
    exc = RecordError(f"{reason}: {detail}")
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "record_version": (int,),
    "peer_id": (str,),
    "model": (str,),
    "addrs": (list, tuple),
    "start": (int,),
    "end": (int,),
    "state": (str,),
    "throughput": (float, int),
    "net_throughput": (float, int),
    "free_cache_tokens": (int,),
    "load": (int,),
    "dtype": (str,),
    "version": (str,),
    "rtts": (dict,),
    "num_layers": (int,),
    "model_name": (str,),
    "queue": (int,),
    "expires_at": (float, int),
    "links": (dict,),
    "mbits": (dict,),
    "rates": (dict,),
    "subspans": (bool,),
    "public_key": (bytes,),
    "signature": (bytes,),
}


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_STR:
        raise _invalid("bad string", f"{name} must be a str of 1..{MAX_STR} characters")
    return value


def _check_number(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise _invalid("bad number", f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_types(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid("not a map", f"a record must be a map, got {type(value).__name__}")
    missing = sorted(set(_FIELD_TYPES) - set(value))
    if missing:
        raise _invalid("missing fields", ", ".join(missing))
    extra = sorted(str(k) for k in set(value) - set(_FIELD_TYPES))
    if extra:
        raise _invalid("unexpected fields", ", ".join(extra))
    for name, types in _FIELD_TYPES.items():
        item = value[name]
        if (isinstance(item, bool) and bool not in types) or not isinstance(item, types):
            raise _invalid("wrong field type", f"{name} is {type(item).__name__}")
    if value["record_version"] != RECORD_VERSION:
        raise _invalid(
            "version mismatch", f"record version {value['record_version']}, expected {RECORD_VERSION}"
        )
    return value


def record_from_wire(value: Any) -> PeerRecord:
    """A PeerRecord from an untrusted DHT value, or RecordError saying why it cannot be trusted."""
    value = _check_types(value)
    size = len(msgpack.packb(value, use_bin_type=True))
    if size > MAX_RECORD_BYTES:
        raise _invalid("too large", f"{size} bytes encoded, at most {MAX_RECORD_BYTES}")
    try:
        state = PeerState(value["state"])
    except ValueError as exc:
        raise _invalid("unknown state", repr(value["state"])) from exc
    start, end = value["start"], value["end"]
    if not 0 <= start < end <= MAX_LAYER:
        raise _invalid("bad span", f"[{start}, {end}) must satisfy 0 <= start < end <= {MAX_LAYER}")
    addrs = value["addrs"]
    if not 0 < len(addrs) <= MAX_ADDRS:
        raise _invalid("bad addrs", f"{len(addrs)} addresses, expected 1..{MAX_ADDRS}")
    for addr in addrs:
        _check_str("addr", addr)
    rtts = value["rtts"]
    if len(rtts) > MAX_RTTS:
        raise _invalid("bad rtts", f"{len(rtts)} entries, at most {MAX_RTTS}")
    rtts = {_check_str("rtt peer id", k): _check_number("rtt", v) for k, v in rtts.items()}
    links = value["links"]
    if len(links) > MAX_LINKS:
        raise _invalid("bad links", f"{len(links)} entries, at most {MAX_LINKS}")
    for k, v in links.items():
        _check_str("link peer id", k)
        if v not in LINK_KINDS:
            raise _invalid("bad links", f"a link is one of {', '.join(LINK_KINDS)}, got {v!r:.40}")
    mbits = value["mbits"]
    if len(mbits) > MAX_LINKS:
        raise _invalid("bad mbits", f"{len(mbits)} entries, at most {MAX_LINKS}")
    mbits = {_check_str("mbit peer id", k): _check_number("mbit", v) for k, v in mbits.items()}
    rates = value["rates"]
    if not set(rates) <= set(RATE_KEYS):
        raise _invalid("bad rates", f"rates are named {', '.join(RATE_KEYS)}")
    rates = {k: _check_number("rate", v) for k, v in rates.items()}
    for name in ("free_cache_tokens", "load", "queue"):
        if value[name] < 0:
            raise _invalid("bad number", f"{name} must be >= 0")
    if value["num_layers"] != 0 and not end <= value["num_layers"] <= MAX_LAYER:
        raise _invalid("bad span", f"num_layers {value['num_layers']} must be 0 or in [{end}, {MAX_LAYER}]")
    if len(value["model_name"]) > MAX_STR:
        raise _invalid("bad string", f"model_name must be at most {MAX_STR} characters")
    public_key, signature = value["public_key"], value["signature"]
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise _invalid("unsigned", "public key or signature missing or of the wrong size")
    record = PeerRecord(
        peer_id=PeerId(_check_str("peer_id", value["peer_id"])),
        model=_check_str("model", value["model"]),
        addrs=tuple(addrs),
        start=start,
        end=end,
        state=state,
        throughput=_check_number("throughput", value["throughput"]),
        net_throughput=_check_number("net_throughput", value["net_throughput"]),
        free_cache_tokens=value["free_cache_tokens"],
        load=value["load"],
        dtype=_check_str("dtype", value["dtype"]),
        version=_check_str("version", value["version"]),
        rtts=rtts,
        num_layers=value["num_layers"],
        model_name=value["model_name"],
        queue=value["queue"],
        expires_at=_check_number("expires_at", value["expires_at"]),
        links=dict(links),
        mbits=mbits,
        rates=rates,
        subspans=value["subspans"],
        public_key=public_key,
        signature=signature,
    )
    if record.peer_id != peer_id_from_public_key(public_key):
        raise _invalid("peer id mismatch", f"{record.peer_id} is not derived from the record's public key")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, record.signing_payload())
    except InvalidSignature as exc:
        raise _invalid("bad signature", f"record of {record.peer_id}") from exc
    return record


_warned_reasons: set[str] = set()


def records_from_dht(entries: Mapping[str, Any], *, filed_under: str = "peer_id") -> list[PeerRecord]:
    """The valid records of one DHT lookup (subkey -> raw value); each subkey must be the record's peer id
    (``filed_under="model"``: its model key, as in the swarm-wide listing of models).

    Invalid entries are dropped; the first drop for each reason is logged at warning, later ones at debug,
    so a swarm with one broken peer does not flood the log on every lookup.
    """
    records = []
    for subkey, raw in entries.items():
        try:
            record = record_from_wire(raw)
            if getattr(record, filed_under) != subkey:
                raise _invalid(
                    "subkey mismatch", f"record of {record.peer_id} stored under subkey {subkey!r}"
                )
        except RecordError as exc:
            reason = getattr(exc, "reason", "invalid record")
            level = logging.DEBUG if reason in _warned_reasons else logging.WARNING
            _warned_reasons.add(reason)
            logger.log(level, "dropped DHT record under subkey %.64r: %s", subkey, exc)
            continue
        records.append(record)
    return records


def storable(record: PeerRecord, dht_expiration: float, now: float) -> bool:
    """Whether a DHT node may store or accept ``record`` with ``dht_expiration`` at DHT time ``now``: not
    past its signed expiry, not kept beyond it, and that expiry not over ``MAX_RECORD_TTL_S`` away (give or
    take ``CLOCK_SLACK_S`` of clock difference between nodes)."""
    return (dht_expiration <= record.expires_at
            and record.expires_at > now - CLOCK_SLACK_S
            and record.expires_at <= now + MAX_RECORD_TTL_S + CLOCK_SLACK_S)
