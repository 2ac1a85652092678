"""The peer protocol: every message a client and a peer exchange, and every error code, defined once.

Each message is a frozen record; ``to_header()`` gives the frame header (``"type"`` plus its fields, absent
optional fields left out) and ``parse(header)`` gives the record back, checking every field's type, so no
side reads or builds a header by hand. Tensors travel in the frame body; a message that carries one has a
``tensor`` field with the wire meta of ``swarm/net/wire.py`` (checked when the body is decoded).

Session flow (the peer's side is ``peer/server.py``, the client's ``routing/session.py``)::

    client -> every hop   Open {id, session, secret, start, end, max_length, batch, next, next_secret, next_peer}
                          -> Ok {id} | Error
    client -> first hop   Step {session, secret, layer, step, position, tensor} + body
    hop    -> next hop    Step (pushed on, with the next hop's secret and layer = its own end)
    last   -> client      Result {session, step, position, tensor} + body
    client -> a hop       Close {id, session, secret} -> Ok | Error
    client -> a hop       Ping {id, nonce?} -> Pong {id, peer_id, model, start, end, load, ..., public_key?, proof?}
    client -> a hop       Rebind {id, session, secret, next, next_secret, next_peer, upto_step, replay_until} -> Ok
                          (failover: the hop pushes the outputs of steps before upto_step to its new next hop
                          as one replay Step)
    client -> every hop   Reorder {id, session, secret, rows, position} -> Ok | Error (beam search: between two
                          steps, every hop's rows take the order given)

Session capabilities: the client draws a secret for every hop of a session. A hop takes a Step, Close or
Rebind of the session only with its own secret; the client knows every hop's secret and each hop knows only
its own and its next hop's (it pushes into it). Knowing a session id, which every hop of the route sees, is
not enough to step, close or redirect a session; a wrong secret is answered as an unknown session.

Next hops are peers, not addresses: ``next_peer`` names the peer a hop pushes into. The hop finds that peer's
addresses in its own copy of the swarm's records (``peer/nexthop.py``; the client's ``next`` only orders
them), and before any session data goes out it sends a Ping with a fresh ``nonce``: the answer must carry a
signature by the named peer's key over the nonce, its model and its first layer, which must be the hop's own
last. Anything else (a port that is not a molink peer, a stranger claiming the id, a peer of another model
or span) gets the same "could not be reached" error, so the error text is no port scanner.
    hop    -> client      Replayed {session, step, positions} (a replay reached the hop that had the positions)
    hop    -> client      Draining {session} (the peer is leaving: move the session)
    anyone -> anyone      Error {code, message, peer, id?, session?, step?, hop?}

``Code`` lists the error codes (kept in ``swarm/net/errors.py``, below the wire, and re-exported here);
``HOP_FAILURE_CODES`` are those that mean "this hop cannot go on with the
session" (the client re-routes around it and replays), ``BUSY_CODES`` the subset that means "alive but full"
(plan around it, never blame it), ``FATAL_CODES`` those after which the byte stream cannot be trusted (the
connection is closed). Codes from a newer peer that this version does not know stay plain strings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from swarm.net.errors import BUSY_CODES, FATAL_CODES, HOP_FAILURE_CODES, Code, ProtocolError
from swarm.net.records import proof_holds
from swarm.net.wire import header_field


def _kinds(annotation: Any) -> tuple[tuple[type, ...], bool]:
    """(accepted types, optional) of a message field's annotation."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):  # X | None
        args = typing.get_args(annotation)
        kinds = tuple(a for a in args if a is not type(None))
        return tuple(typing.get_origin(k) or k for k in kinds), type(None) in args
    return (typing.get_origin(annotation) or annotation,), False  # dict[str, Any] -> dict


class Message:
    """Base of every message record: ``TYPE`` is its wire ``"type"``."""

    TYPE: ClassVar[str]
    _FIELDS: ClassVar[tuple[tuple[str, tuple[type, ...], bool, bool], ...]]  # name, types, optional, defaulted

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            MESSAGES[cls.TYPE] = cls

    @classmethod
    def _fields(cls) -> tuple[tuple[str, tuple[type, ...], bool, bool], ...]:
        if "_FIELDS" not in cls.__dict__:
            hints = typing.get_type_hints(cls)
            cls._FIELDS = tuple(
                (f.name, *_kinds(hints[f.name]),
                 f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
                for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        return cls._FIELDS

    def to_header(self) -> dict[str, Any]:
        header: dict[str, Any] = {"type": self.TYPE}
        for name, _, _, _ in self._fields():
            value = getattr(self, name)
            if value is not None:
                header[name] = value
        return header

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Any:
        """The record a header carries; ProtocolError (bad_message) for a missing or mistyped field."""
        values = {}
        for name, kinds, optional, defaulted in cls._fields():
            if name not in header and defaulted:
                continue
            values[name] = header_field(header, name, kinds, optional=optional)
        return cls(**values)


MESSAGES: dict[str, type[Message]] = {}


def parse(header: dict[str, Any]) -> Message:
    """The message record of a frame header; ProtocolError (unknown_type, bad_message) when it is not one."""
    kind = header.get("type")
    cls = MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}", code=Code.UNKNOWN_TYPE)
    return cls.from_header(header)


SECRET_CHARS = (16, 128)  # a session capability's length bounds (new_secret() makes 22 characters, 128 bits)


def new_secret() -> str:
    """A fresh session capability: 128 random bits."""
    return secrets.token_urlsafe(16)


def secret_matches(expected: str, given: str) -> bool:
    """Whether ``given`` is the capability ``expected``, compared in constant time."""
    return hmac.compare_digest(expected.encode(), given.encode())


def session_tag(session_id: str) -> str:
    """What logs show for a session: a short hash of its id, so a log never hands out a usable id."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:10]


# ---- requests (a reply comes back with the same id) -----------------------------------------------------------

@dataclass(frozen=True)
class Open(Message):
    TYPE: ClassVar[str] = "open"
    session: str
    start: int
    end: int
    max_length: int
    batch: int
    secret: str                     # this hop's capability: steps, close and rebind must carry it
    next: str | None = None         # the next hop's address as the client knows it (a hint); None: last hop
    next_secret: str | None = None  # the next hop's capability, which this hop's pushes carry
    next_peer: str | None = None    # the next hop's peer id: the hop resolves it and checks who answers
    id: int = 0
    codec: str = "raw"              # how this hop encodes what it sends on (swarm/net/wire.py: CODECS); a
                                    # client names only a codec the receiver listed in its Pong


@dataclass(frozen=True)
class Close(Message):
    TYPE: ClassVar[str] = "close"
    session: str
    secret: str
    id: int = 0


@dataclass(frozen=True)
class Ping(Message):
    TYPE: ClassVar[str] = "ping"
    nonce: str | None = None  # a challenge: the Pong then proves the peer holds its identity key
    id: int = 0


@dataclass(frozen=True)
class Rebind(Message):
    TYPE: ClassVar[str] = "rebind"
    session: str
    secret: str
    next: str
    next_secret: str
    next_peer: str
    upto_step: int
    replay_until: str | None = None  # the replay stops at this hop (it holds the positions already)
    id: int = 0


@dataclass(frozen=True)
class Reorder(Message):
    """Beam search keeps the best rows: row i of the session becomes what row ``rows[i]`` was, in the hop's
    cache and in the outputs it keeps for replays, before any further step. ``position``: the session's
    position, which the hop's must equal (a reorder lands between two steps, never inside one)."""

    TYPE: ClassVar[str] = "reorder"
    session: str
    secret: str
    rows: list[int]
    position: int
    id: int = 0


REQUESTS: tuple[type[Message], ...] = (Open, Close, Ping, Rebind, Reorder)


# ---- replies ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ok(Message):
    TYPE: ClassVar[str] = "ok"
    id: int


@dataclass(frozen=True)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    id: int
    peer_id: str
    model: str
    start: int
    end: int
    load: int = 0               # sessions open
    free_cache_tokens: int = 0  # KV tokens not promised to a session
    queue: int = 0              # steps waiting or in progress
    passes: int = 0             # forward passes run so far
    batched_steps: int = 0      # steps that shared a pass with another
    public_key: bytes | None = None  # with a Ping's nonce: the peer's Ed25519 key (its id derives from it)
    proof: bytes | None = None       # and its signature over the nonce and who it says it is
    codecs: list[str] | None = None  # the tensor codecs it decodes (None: raw only, an older peer)


@dataclass(frozen=True)
class Error(Message):
    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    peer: str = ""
    id: int | None = None       # the request it answers
    session: str | None = None  # the session it is about
    step: int | None = None
    hop: str | None = None      # next_hop_failed: the address of the hop that failed

    @property
    def hop_failed(self) -> bool:
        return self.code in HOP_FAILURE_CODES


# ---- relays (swarm/net/circuits.py): on a libp2p stream to a relay, then from the relay to the peer ----------

@dataclass(frozen=True)
class Connect(Message):
    """To a relay: join this stream to the peer whose libp2p node is ``peer``; answered ``joined`` or ``error``.
    ``punch``: the local port the asker will try a hole punch from (0: none; ``swarm/net/punch.py``)."""
    TYPE: ClassVar[str] = "connect"
    peer: str
    id: int = 0
    punch: int = 0


@dataclass(frozen=True)
class Joined(Message):
    """From a relay: the stream is joined to the peer; ``host``: the address the relay sees that peer at (where a
    hole punch goes), when the asker asked for one and the relay knows it."""
    TYPE: ClassVar[str] = "joined"
    id: int = 0
    host: str | None = None


@dataclass(frozen=True)
class Dialback(Message):
    """To a relay: connect to my data ``port`` at the address you see me at; answered ``reach``."""
    TYPE: ClassVar[str] = "dialback"
    port: int
    id: int = 0


@dataclass(frozen=True)
class Reach(Message):
    TYPE: ClassVar[str] = "reach"
    addr: str         # HOST:PORT the relay tried: the asker's address as the relay saw it
    reachable: bool   # whether a connection there was accepted
    id: int = 0


@dataclass(frozen=True)
class Relayed(Message):
    """From a relay to the peer, first on a joined stream: who dialled (a libp2p peer id) and, when it asked for a
    hole punch, HOST:PORT to punch to: the host the relay sees it at and the port it said."""
    TYPE: ClassVar[str] = "relayed"
    source: str
    punch: str | None = None


@dataclass(frozen=True)
class Punch(Message):
    """From the peer to the dialler, first on a joined stream whose dialler asked for a hole punch: the local
    port the peer tries it from (0: it will not try)."""
    TYPE: ClassVar[str] = "punch"
    port: int


__all__ = ["SECRET_CHARS", "new_secret", "secret_matches", "session_tag", "BUSY_CODES", "FATAL_CODES", "HOP_FAILURE_CODES", "MESSAGES", "REQUESTS", "Reorder", "Close", "Code", "Connect", "Dialback", "Draining",
           "Error", "Joined", "Message", "Ok", "Open", "Ping", "Pong", "Punch", "Reach", "Rebind", "Relayed", "Replayed", "Result", "Step", "parse", "check_pong"]


# ---- session traffic ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step(Message):
    TYPE: ClassVar[str] = "step"
    session: str
    secret: str                 # the capability of the hop it is sent to
    layer: int                  # the layer these hidden states enter: the receiving hop's start (a pushing
                                # hop sends its end), so a route only ever moves up the layers: no cycles
    step: int
    position: int
    tensor: dict[str, Any]      # wire meta of the body's hidden states [batch, tokens, hidden]
    replay: bool = False        # rebuilds a fresh session's cache; produces no result
    replay_until: str | None = None
    keep: int = 0               # the last hop returns only the last ``keep`` positions (0: every position);
                                # generate() needs one: a long prompt's hidden states do not travel back
    rewind: bool = False        # ``position`` may be below the hop's: it first drops its cache from there on
                                # (speculative decoding discards the rejected draft tokens this way)


@dataclass(frozen=True)
class Result(Message):
    TYPE: ClassVar[str] = "result"
    session: str
    step: int
    position: int
    tensor: dict[str, Any]


@dataclass(frozen=True)
class Replayed(Message):
    TYPE: ClassVar[str] = "replayed"
    session: str
    step: int
    positions: int


@dataclass(frozen=True)
class Draining(Message):
    TYPE: ClassVar[str] = "draining"
    session: str


def check_pong(msg: Message | None, *, peer_id: str, model: str, start: int, nonce: str) -> str | None:
    """Why ``msg`` does not prove that the peer answering is ``peer_id`` serving ``model`` with layer ``start``
    in its span (a route may enter a span anywhere: sub-span routes); None when it does. The proof covers the
    span's own first layer, which the pong names."""
    if not isinstance(msg, Pong):
        return f"answered {getattr(msg, 'TYPE', 'nothing')!r}, not a pong"
    if msg.peer_id != peer_id:
        return f"answered as peer {msg.peer_id[:16]}"
    if msg.public_key is None or msg.proof is None:
        return "gave no proof of its identity"
    if msg.model != model or not msg.start <= start < msg.end:
        return f"serves {msg.model[:32]} layers {msg.start}:{msg.end}, not {model[:32]} layer {start}"
    if not proof_holds(msg.public_key, msg.proof, nonce=nonce, peer_id=peer_id, model=model, start=msg.start):
        return "its proof does not hold"
    return None
