"""The public home of molink's exception tree (``from swarm.errors import MissingLayersError``).

The classes live in ``swarm/net/errors.py``, with the tree drawn in its docstring: the ground package
``swarm/net/`` raises them and imports nothing above itself. They are the same objects here.
"""

from swarm.net.errors import (
    ConfigError,
    FrameTooLargeError,
    HopFailedError,
    MissingLayersError,
    ModelNotFoundError,
    MolinkError,
    PeerUnreachableError,
    ProtocolError,
    RecordError,
    RemoteError,
    RoutingError,
    SessionError,
    SpanError,
    SwarmBusyError,
    TransportError,
    UnknownSessionError,
    UnsupportedModelError,
    VerificationError,
    error_from_wire,
    exit_code,
)

__all__ = [
    "ConfigError", "FrameTooLargeError", "HopFailedError", "MissingLayersError", "ModelNotFoundError",
    "MolinkError", "PeerUnreachableError", "ProtocolError", "RecordError", "RemoteError", "RoutingError",
    "SessionError", "SpanError", "SwarmBusyError", "TransportError", "UnknownSessionError",
    "UnsupportedModelError", "VerificationError", "error_from_wire", "exit_code",
]
