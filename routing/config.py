"""ClientConfig: every setting of a client, with its unit."""

from __future__ import annotations

from dataclasses import dataclass, field

from routing.failover import BackoffPolicy


@dataclass(frozen=True)
class ClientConfig:
    request_timeout_s: float = 30.0      # open/close/ping replies
    min_step_timeout_s: float = 1.0      # a step's deadline is max(this, factor x the route's expected time
    step_timeout_factor: float = 20.0    # x tokens); past it the client pings every hop
    max_slow_checks: int = 60            # deadlines in a row with every hop alive before giving up on a step
    ping_timeout_s: float = 1.0          # a live peer answers at once: compute runs off its loop
    probe_timeout_s: float = 5.0         # a new peer's proof of identity (routing/trust.py), on a busy machine
    max_recoveries: int = 8              # failovers within one step before the step fails
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)  # how long a failed peer is avoided
    connect_timeout_s: float = 10.0
    prefill_chunk_tokens: int = 64       # a longer prefill flows through the route as a pipeline of chunks of
                                         # at least this many tokens (more on fast links: sized from the measured
                                         # links and passes), at most 8 (routing/prefill.py); 0: whole
    adapt_prefill_chunks: bool = True    # False: chunks of exactly prefill_chunk_tokens (or the 8-chunk cap)
    wire_codec: str = "raw"              # how the session's hidden states travel: raw (exact), float16, bfloat16
                                         # or int8 (a scale per 32 values, 28% of float32's bytes), or "auto": per
                                         # link by its measured bandwidth (routing/codecs.py); a peer that did
                                         # not list a codec in its Pong is sent raw (swarm/net/wire.py)
    max_draft_tokens: int = 8            # generate(assistant_model=...): most draft tokens checked in one round;
                                         # each round picks k <= this from the measured round trip, draft speed
                                         # and acceptance (routing/speculative.py)
    trim_results: bool = True            # generate(): the last hop returns only the last position of a prefill
                                         # (False: every position, as before; benchmarks/weak_links.py compares)
    hole_punching: bool = True           # a peer reached through a relay: try a TCP hole punch for a direct link
    route_wait_s: float = 30.0           # how long to wait for the swarm to cover every layer before failing
    dht_listen: str = "127.0.0.1:0"      # the client's own DHT node (client mode: it stores nothing)
    peer_dtype: str | None = None        # route through peers of this dtype when they cover the model (None:
                                         # any); from_pretrained sets the client's own dtype
    max_length: int = 2048               # default session length when generate() cannot tell
    busy_wait_s: float = 30.0            # how long to keep asking when every route needs a full ("busy") peer,
                                         # in total, before SwarmBusyError
    busy_pause_s: float = 0.2            # first pause before asking busy peers again; doubles (with jitter)
    busy_max_pause_s: float = 3.0        # longest single pause
    route_tolerance: float = 0.05        # routes within this fraction of the cheapest cost are drawn at random,
                                         # so clients starting together spread over equal replicas
    micro_batch_rows: int = 0            # generate() on an equal-length batch: 0 = one session for all rows;
                                         # N = sessions of at most N rows, run concurrently (pipelined)
    max_row_sessions: int = 16           # most sessions one generate() call runs at once (padded rows,
                                         # micro-batches); the others start as these finish
    verify_fraction: float = 0.02        # steps spot-checked: a random hop's output recomputed on another peer
                                         # serving its layers (routing/verify.py); 0 turns checks off
    verify_tolerance: float = 0.02       # relative L2 difference past which two peers' outputs disagree
    tune_linears: bool = True            # CPU: time the LM head's two matmul forms at load and use the faster
                                         # for 2-4 rows (models/kernels.py)
