"""A peer's compute figures, kept current from the forward passes it actually runs.

A figure measured once at start-up says what the machine could do then, under whatever else it was doing
(identical peers were seen to measure 3 and 1,000 tokens/s side by side). So a peer measures its span once,
keeps that figure per device, model and dtype in a small cache file (``ThroughputCache``: a restart does not
measure again, and starts from the last live figure), and then smooths in every pass it runs
(``LiveRates.observe``): decode passes by batch size (about 1, 2, 4, ... 32 rows), prefill passes apart.
Each figure is kept per layer, so passes over part of the span count too, and given out for the whole span.

The record's ``throughput`` (what routes and placement use) is the batch-1 decode figure; ``rates`` carries
the rest (swarm/net/records.py: RATE_KEYS).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from swarm.net.records import RATE_KEYS

log = logging.getLogger("molink.peer")

WEIGHT = 0.125  # each new pass moves a figure by 1/8 of the difference
BATCHES = tuple(int(k.split("@")[1]) for k in RATE_KEYS if k.startswith("decode@"))


def bucket(rows: int) -> int:
    """The batch size a pass of ``rows`` rows is counted under: the nearest power of two in BATCHES."""
    best = min(BATCHES, key=lambda b: abs(math.log2(max(rows, 1)) - math.log2(b)))
    return best


@dataclass
class LiveRates:
    """Smoothed layer-tokens per second (tokens through one layer): decode by batch bucket, and prefill.

    Rates, not times, are smoothed: one pass stalled by something else on the machine then moves the figure
    by at most 1/8, where smoothing its time would cut the figure many times over."""

    span_layers: int
    decode: dict[int, float] = field(default_factory=dict)  # bucket -> layer-tokens/s
    prefill: float | None = None
    passes: int = 0

    def observe(self, *, prefill: bool, rows: int, tokens: int, layers: int, seconds: float) -> None:
        """One forward pass of ``rows`` rows of ``tokens`` tokens over ``layers`` layers took ``seconds``."""
        if rows < 1 or tokens < 1 or layers < 1 or not seconds > 0:
            return
        self.passes += 1
        rate = rows * tokens * layers / seconds
        if prefill or tokens > 1:
            self.prefill = rate if self.prefill is None else self.prefill + WEIGHT * (rate - self.prefill)
            return
        b = bucket(rows)
        old = self.decode.get(b)
        self.decode[b] = rate if old is None else old + WEIGHT * (rate - old)

    def seconds_per_layer(self) -> float | None:
        """Batch-1 decode seconds per token per layer (what ThroughputCache keeps)."""
        rate = self.decode.get(1)
        return None if rate is None else 1.0 / rate

    def throughput(self) -> float | None:
        """Decode tokens/s through the whole span at batch 1, once a batch-1 pass was seen."""
        rate = self.decode.get(1)
        return None if rate is None else rate / self.span_layers

    def rates(self) -> dict[str, float]:
        """The record's ``rates``: tokens/s through the whole span, by kind."""
        out = {f"decode@{b}": rate / self.span_layers for b, rate in sorted(self.decode.items())}
        if self.prefill is not None:
            out["prefill"] = self.prefill / self.span_layers
        return out


def device_name(device: str) -> str:
    """What the figure depends on: the card's name, or the CPU and the threads torch uses."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu {platform.machine()} {platform.processor() or ''} x{torch.get_num_threads()}".strip()


class ThroughputCache:
    """Seconds per token per layer at batch-1 decode, by model, device and dtype, in a JSON file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        self.path = Path(path) if path is not None else Path(base) / "molink" / "throughput.json"
        # MOLINK_THROUGHPUT_CACHE=off: measure at every start and remember nothing (test swarms, whose peers
        # must each measure themselves rather than inherit another process's figure)
        self.off = path is None and os.environ.get("MOLINK_THROUGHPUT_CACHE", "").lower() == "off"

    @staticmethod
    def key(model_key: str, device: str, dtype: str) -> str:
        return f"{model_key}|{device_name(device)}|{dtype}"

    def _read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0}

    def get(self, key: str) -> float | None:
        return None if self.off else self._read().get(key)

    def put(self, key: str, seconds_per_layer: float) -> None:
        """Remember a figure (best effort: a read-only home only costs a measurement next time)."""
        if self.off:
            return
        data = self._read()
        data[key] = seconds_per_layer
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")  # peers on one machine write apart
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError as e:
            log.warning("could not keep the throughput figure in %s: %s", self.path, e)
