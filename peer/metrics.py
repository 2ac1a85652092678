"""A peer's Prometheus metrics (``--metrics-port``; the prometheus-client library).

Counted as work is done: steps and tokens served by kind (``decode``: one token per row, ``prefill``: more,
``replay``: a failover's rebuild) and each step's time from its turn to its output being passed on (a
histogram by kind), rebinds (failovers of a session's next hop). Read at scrape time from the server's state:
open sessions, steps queued in the engine, forward passes, KV tokens promised to sessions and free, and the
bytes sent and received on its connections (inbound ones together, each next hop's push connections by peer
id and lane).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def step_kind(tokens: int, replay: bool) -> str:
    return "replay" if replay else "decode" if tokens == 1 else "prefill"


class PeerMetrics:
    def __init__(self, server: Any) -> None:
        self.registry = CollectorRegistry()
        self.steps = Counter("molink_peer_steps", "steps served, by kind", ["kind"], registry=self.registry)
        self.tokens = Counter("molink_peer_tokens", "token positions computed, by step kind", ["kind"],
                              registry=self.registry)
        self.step_seconds = Histogram("molink_peer_step_seconds", "a step's time from its turn to its output passed "
                                      "on, by kind", ["kind"], buckets=STEP_BUCKETS, registry=self.registry)
        self.rebinds = Counter("molink_peer_rebinds", "failovers of a session's next hop (rebind requests served)",
                               registry=self.registry)
        self.registry.register(_StateCollector(server))

    def observe_step(self, tokens: int, replay: bool, seconds: float) -> None:
        kind = step_kind(tokens, replay)
        self.steps.labels(kind).inc()
        self.tokens.labels(kind).inc(tokens)
        self.step_seconds.labels(kind).observe(seconds)


class _StateCollector(Collector):
    """Gauges and byte counters read from the server when scraped."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        s = self.server
        yield GaugeMetricFamily("molink_peer_sessions", "open sessions", value=len(s.sessions))
        yield GaugeMetricFamily("molink_peer_queue_depth", "steps waiting for or in a forward pass",
                                value=s.engine.queue_depth)
        yield CounterMetricFamily("molink_peer_passes", "forward passes run", value=s.engine.passes)
        yield GaugeMetricFamily("molink_peer_free_cache_tokens", "KV cache tokens not promised to a session",
                                value=s.free_cache_tokens())
        yield GaugeMetricFamily("molink_peer_kv_tokens_in_use", "KV cache tokens held by open sessions",
                                value=sum(x.position * x.batch for x in s.sessions.values()))
        inbound = list(s.inbound)
        sent = CounterMetricFamily("molink_peer_bytes_sent", "frame bytes sent", labels=["link"])
        received = CounterMetricFamily("molink_peer_bytes_received", "frame bytes received", labels=["link"])
        sent.add_metric(["inbound"], s.inbound_bytes[0] + sum(getattr(c, "bytes_sent", 0) for c in inbound))
        received.add_metric(["inbound"], s.inbound_bytes[1] + sum(getattr(c, "bytes_received", 0) for c in inbound))
        for (peer, lane), channel in sorted(s.relay.channels().items()):
            link = f"{peer[:16]}/{lane}"
            sent.add_metric([link], getattr(channel, "bytes_sent", 0))
            received.add_metric([link], getattr(channel, "bytes_received", 0))
        yield sent
        yield received
