"""PeerConfig: every setting of a peer process, with its unit. CLI flags map onto it one to one."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PeerConfig:
    model: str                                   # alias, repo id, local directory or .gguf file
    initial_peers: tuple[str, ...] = ()          # DHT multiaddrs of a bootstrap node or any peer
    layers: str | None = None                    # "START:END"; None -> chosen by placement
    num_layers: int | None = None                # span length when layers is None
    device: str = "cpu"
    dtype: str = "float32"
    listen: str = "127.0.0.1:0"                  # data port (host:port); port 0 -> any free port
    announce_addr: str | None = None             # address published in the DHT when it differs from listen
    dht_listen: str | None = None                # the DHT node's host:port; None -> --listen host, port+1 (or any)
    max_memory_gb: float | None = None           # weights + KV reserve budget; None -> no limit
    identity: str | None = None                  # key file; the same file keeps the same peer id across restarts
    announce_interval_s: float = 5.0             # heartbeat period; records expire after 3 periods
    drain_timeout_s: float = 15.0                # on SIGTERM: how long clients get to move their sessions
    session_timeout_s: float = 300.0             # an idle session is closed after this
    max_session_tokens: int = 8192               # longest session (prompt + generated) a peer accepts
    max_sessions: int = 64
    max_batch: int = 32
    batch_wait_ms: float = 50.0                  # a decode pass of under half the open sessions' rows waits for
                                                 # more, at most this long and half a pass (0: never)
    kv_reserve_tokens: int = 16384               # KV cache tokens reserved for sessions (memory planning)
    max_client_share: float = 0.5                # most of the KV budget one client (source address) may hold
    inline_step_tokens: int = 8                  # steps of at most batch*tokens this many run on the event loop:
                                                 # a thread handoff costs ~2 ms on a busy CPU, more than such a step
    threads: int | None = None                   # torch intra-op threads; None -> torch default
    cache_dir: str | None = None                 # where converted GGUF checkpoints are kept
    upnp: bool = False                           # let the DHT daemon ask the home router for a port mapping
    hole_punching: bool = True                   # try, and answer, TCP hole punches over relayed connections
    progress: bool = True
    tune_linears: bool = True                    # CPU spans: measure and pick the faster linear form for 2-4 rows
    throughput: float | None = None              # announced tokens/s; None: measured at start-up
    rebalance_every_s: float = 120.0             # mean time between checks whether to move the span (0: never;
                                                 # a pinned --layers never moves; peer/placement.py)
    subspans: bool = True                        # run any contiguous part of the span a session asks for, when
                                                 # the family's views are exact (models/span.py: check_views)
    metrics_port: int = 0                        # serve Prometheus metrics on this port (0: off; peer/metrics.py)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ttl_s(self) -> float:
        return 3 * self.announce_interval_s
