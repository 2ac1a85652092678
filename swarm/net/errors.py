"""The one exception tree of molink.

Every error that crosses a module boundary is one of these, so callers can catch by meaning::

    MolinkError
    ├── ConfigError                 bad settings or CLI flags (a peer exits non-zero with one line)
    │   ├── ModelNotFoundError      a model name that is no alias, directory, GGUF file or reachable repo
    │   ├── UnsupportedModelError   an architecture without an adapter
    │   └── SpanError               layers outside the model, or an empty span
    ├── ProtocolError               a malformed, oversized or wrongly shaped message (carries ``code``)
    │   └── FrameTooLargeError      a frame over the size limit: the connection cannot be resynced
    ├── RecordError                 a DHT record that is malformed, unsigned or forged
    ├── TransportError              a connection that cannot be opened or was lost
    │   ├── PeerUnreachableError    an address that does not answer
    │   └── HopFailedError          a hop of a route failed (``failure`` says which and how); the client
    │                               re-routes around it, and raises it only after too many failovers
    ├── RemoteError                 a peer answered a request with an error (``code``, ``message``)
    │   └── UnknownSessionError     the peer has no such session (expired or never opened)
    ├── RoutingError                the client cannot build a route
    │   ├── MissingLayersError      no live peer serves some layers (``missing``: list of (start, end))
    │   ├── SwarmBusyError          every route goes through peers that answered ``busy`` (full) for as long
    │                               as the client waited (``busy``: peer id -> address)
    │   └── VerificationError       a spot check found peers that disagree on the same layers and the
    │                               client cannot tell which is right (no third peer, or three answers)
    └── SessionError                an inference session used wrongly (closed, over its max length)

Error codes on the wire are the members of ``Code`` (a ProtocolError's ``code``, an Error message's ``code``);
``error_from_wire`` maps them back to classes.
"""

from __future__ import annotations

import enum
import re


class Code(enum.StrEnum):
    """Every error code a peer sends (a StrEnum: members compare equal to their wire strings)."""

    # the frame itself
    BAD_MAGIC = "bad_magic"              # not our protocol: the connection is closed
    BAD_PREFIX = "bad_prefix"
    FRAME_TOO_LARGE = "frame_too_large"  # over the size limit: the connection is closed
    BAD_HEADER = "bad_header"
    BAD_MESSAGE = "bad_message"          # a field missing or of the wrong type
    UNKNOWN_TYPE = "unknown_type"
    # what a message asks
    BAD_SPAN = "bad_span"
    TOO_LONG = "too_long"
    BAD_BATCH = "bad_batch"
    BAD_SHAPE = "bad_shape"
    BAD_DTYPE = "bad_dtype"
    NON_FINITE = "non_finite"
    BAD_STEP = "bad_step"
    BAD_POSITION = "bad_position"
    BAD_REPLAY = "bad_replay"
    SESSION_EXISTS = "session_exists"
    # the hop cannot go on with the session
    UNKNOWN_SESSION = "unknown_session"
    COMPUTE_FAILED = "compute_failed"
    NEXT_HOP_FAILED = "next_hop_failed"  # blames the hop named in the error's "hop", not its sender
    DRAINING = "draining"
    BUSY = "busy"                        # alive but full: try another peer or wait
    NO_MEMORY = "no_memory"              # older peers' word for busy

    @property
    def hop_failed(self) -> bool:
        return self in HOP_FAILURE_CODES


BUSY_CODES: frozenset[str] = frozenset({Code.BUSY, Code.NO_MEMORY})
HOP_FAILURE_CODES: frozenset[str] = frozenset(
    {Code.UNKNOWN_SESSION, Code.COMPUTE_FAILED, Code.NEXT_HOP_FAILED, Code.DRAINING}) | BUSY_CODES
FATAL_CODES: frozenset[str] = frozenset({Code.BAD_MAGIC, Code.FRAME_TOO_LARGE})


class MolinkError(Exception):
    """Base of every error molink raises on purpose."""


class ConfigError(MolinkError):
    """Settings or flags that cannot work."""


class ModelNotFoundError(ConfigError):
    """A model name that resolves to nothing loadable."""


class UnsupportedModelError(ConfigError):
    """A model architecture that molink has no adapter for."""


class SpanError(ConfigError):
    """A span of layers outside the model, or empty."""


class ProtocolError(MolinkError):
    """A message that breaks the wire contract. ``code`` names the kind of breakage."""

    def __init__(self, message: str, code: str = "bad_message") -> None:  # a Code (a str)
        super().__init__(message)
        self.code = code


class FrameTooLargeError(ProtocolError):
    """A frame whose declared size is over the limit; the stream cannot be trusted after it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=Code.FRAME_TOO_LARGE)


class RecordError(MolinkError):
    """A DHT record that must not be trusted."""


class TransportError(MolinkError):
    """A connection failed or was lost."""


class PeerUnreachableError(TransportError):
    """An address that does not accept connections."""


class HopFailedError(TransportError):
    """A hop of an inference session's route failed; ``failure`` is routing.failover.HopFailure, and
    ``failures`` every hop that failed at once (opening a session asks every hop together)."""

    def __init__(self, message: str, failure: object = None, failures: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.failure = failure
        self.failures = failures or ((failure,) if failure is not None else ())


class RemoteError(MolinkError):
    """A peer's error reply."""

    def __init__(self, message: str, code: str = "remote_error", peer: str | None = None) -> None:
        super().__init__(f"{peer}: {message}" if peer else message)
        self.code = code
        self.peer = peer
        self.remote_message = message


class UnknownSessionError(RemoteError):
    """The peer holds no session of that id."""


class RoutingError(MolinkError):
    """No route can be built."""


class MissingLayersError(RoutingError):
    """Some layers are served by no live peer."""

    def __init__(self, missing: list[tuple[int, int]], model: str = "") -> None:
        ranges = ", ".join(f"{a}..{b - 1}" if b - a > 1 else f"{a}" for a, b in missing)
        where = f" of {model}" if model else ""
        super().__init__(f"no live peer serves layers {ranges}{where}")
        self.missing = list(missing)


class SwarmBusyError(RoutingError):
    """Peers that could serve the session are alive but full (they answered ``busy``), and none freed up
    while the client waited. Not a failure of theirs: try again later, or add peers."""

    def __init__(self, busy: dict[str, str], waited_s: float, layers: tuple[int, int] | None = None) -> None:
        where = f" for layers {layers[0]}..{layers[1] - 1}" if layers else ""
        names = ", ".join(f"{addr} ({peer_id[:8]})" for peer_id, addr in sorted(busy.items(), key=lambda kv: kv[1]))
        super().__init__(f"the swarm is busy{where}: {names} answered busy, and no route freed up in "
                         f"{waited_s:.1f} s of waiting")
        self.busy = dict(busy)
        self.waited_s = waited_s


class VerificationError(RoutingError):
    """Peers serving the same layers computed different outputs for the same input, and no other peer could
    tell which is right: the client will not route through either (``peers``: their ids)."""

    def __init__(self, message: str, peers: list[str]) -> None:
        super().__init__(message)
        self.peers = list(peers)


class SessionError(MolinkError):
    """An inference session used out of its contract."""


_REMOTE_CODES: dict[str, type[RemoteError]] = {Code.UNKNOWN_SESSION: UnknownSessionError}


def error_from_wire(code: str, message: str, peer: str | None = None) -> RemoteError:
    """The exception a client raises for a peer's error reply."""
    return _REMOTE_CODES.get(code, RemoteError)(message, code=code, peer=peer)


def exit_code(error: MolinkError) -> int:
    """A CLI's exit status for an error: 2 for what the user can fix (settings, unreachable addresses)."""
    return 2 if isinstance(error, ConfigError | TransportError) else 1


def one_line(exc: BaseException) -> str:
    """The last non-empty line of an error, without the Go daemon's timestamp (libp2p daemon errors end in one
    line that says what went wrong); the exception's type name when it says nothing."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return re.sub(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ", "", lines[-1])
