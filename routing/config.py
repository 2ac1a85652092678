"""ClientConfig: every setting of a client, with its unit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientConfig:
    request_timeout_s: float = 30.0      # open/close/ping replies
    step_timeout_s: float = 120.0        # one step through the whole route (prefill of a long prompt included)
    connect_timeout_s: float = 10.0
    route_wait_s: float = 30.0           # how long to wait for the swarm to cover every layer before failing
    dht_listen: str = "127.0.0.1:0"      # the client's own DHT node (client mode: it stores nothing)
    max_length: int = 2048               # default session length when generate() cannot tell
