"""Row-count-aware linear layers for spans on the CPU.

A peer that batches decode steps runs its linear layers over a few rows at a time (one per session in the
pass). On the CPU, torch computes ``linear(x, W) = x Wᵀ`` through its BLAS, and for 2 or 3 rows some builds
take a path that is slower than the same product written the other way round, ``(W xᵀ)ᵀ``: on the 2-core
machine of ``benchmarks/results/`` the 56 linear layers of 8 medium Llama layers (hidden 1024, one thread)
take 55 ms for 2 rows as ``x Wᵀ`` against 28 ms as ``W xᵀ`` (29 ms for one row), and 70 ms against 40 ms for
3 rows; from 4 rows on ``x Wᵀ`` is the faster one. The effect shows only when the weights stream from memory,
as a real span's do, not on one matrix that stays in the cache.

Which form wins depends on the BLAS and the processor, so ``tune_linears`` measures both on the span's own
weights at start-up (a sweep over every linear layer, a fraction of a second) and switches only the row
counts where ``W xᵀ`` is clearly faster. Both forms compute the same sums in another order: outputs agree to
float rounding, as a batched pass agrees with a lone one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("molink.models")

CANDIDATE_ROWS = (2, 3, 4)  # the row counts measured; beyond them x Wᵀ is the BLAS's strong case
MIN_GAIN = 0.85  # W xᵀ must take at most this share of x Wᵀ's time to be switched on
SWEEP_BYTES = 256 << 20  # weights timed per sweep: more than any cache, few enough that a large span tunes fast


class RowAwareLinear(nn.Linear):
    """An ``nn.Linear`` that computes ``(W xᵀ)ᵀ`` when its input has one of ``transposed_rows`` rows."""

    transposed_rows: frozenset[int] = frozenset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if rows not in self.transposed_rows:
            return F.linear(x, self.weight, self.bias)
        # contiguous out: the next layer's input must be row-major again for its own W xᵀ to be the fast one
        y = (self.weight @ x.reshape(rows, x.shape[-1]).T).T.contiguous()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.weight.shape[0])


@dataclass(frozen=True)
class LinearTuning:
    """What ``tune_linears`` measured (ms for one sweep over every linear layer) and switched on."""

    layers: int
    timings_ms: dict[int, tuple[float, float]]  # rows -> (x Wᵀ, W xᵀ)
    transposed_rows: frozenset[int]

    def describe(self) -> str:
        if not self.layers:
            return "no linear layers to tune"
        parts = [f"{r} rows {a:.1f}/{b:.1f} ms" for r, (a, b) in sorted(self.timings_ms.items())]
        chosen = ", ".join(str(r) for r in sorted(self.transposed_rows)) or "none"
        return f"linear layers over few rows (x·Wᵀ / W·xᵀ, {self.layers} layers): {'; '.join(parts)}; " \
               f"W·xᵀ for rows: {chosen}"


def _plain_linears(module: nn.Module) -> list[nn.Linear]:
    """The float linear layers of ``module`` whose forward is nn.Linear's own (quantized or replaced ones are
    left alone)."""
    return [m for m in module.modules()
            if type(m) in (nn.Linear, RowAwareLinear) and m.weight.is_floating_point() and m.weight.device.type == "cpu"]


def _sweep_ms(weights: Iterable[torch.Tensor], inputs: dict[int, torch.Tensor],
              product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              clock: Callable[[], float], repeats: int) -> float:
    best = float("inf")
    weights = list(weights)
    for _ in range(repeats):
        t0 = clock()
        for w in weights:
            product(inputs[w.shape[1]], w)
        best = min(best, clock() - t0)
    return best * 1000


def tune_linears(module: nn.Module, *, rows: Iterable[int] = CANDIDATE_ROWS, repeats: int = 2,
                 clock: Callable[[], float] = time.perf_counter) -> LinearTuning:
    """Measure ``x Wᵀ`` against ``W xᵀ`` over ``module``'s CPU linear layers for each row count in ``rows``
    and make those layers compute ``W xᵀ`` for the row counts where it is clearly faster (see the module
    docstring). Returns what was measured and chosen; calling it again re-measures."""
    linears = _plain_linears(module)
    if not linears:
        return LinearTuning(0, {}, frozenset())
    weights, total = [], 0
    for m in linears:  # enough layers to stream from memory as a pass does, not all of a large span
        weights.append(m.weight)
        total += m.weight.numel() * m.weight.element_size()
        if total >= SWEEP_BYTES:
            break
    dtype = weights[0].dtype
    timings: dict[int, tuple[float, float]] = {}
    with torch.inference_mode():
        for n in rows:
            inputs = {k: torch.randn(n, k, dtype=dtype) for k in {w.shape[1] for w in weights}}
            plain = _sweep_ms(weights, inputs, lambda x, w: F.linear(x, w), clock, repeats)
            flipped = _sweep_ms(weights, inputs, lambda x, w: w @ x.T, clock, repeats)
            timings[n] = (plain, flipped)
    chosen = frozenset(n for n, (plain, flipped) in timings.items() if flipped <= MIN_GAIN * plain)
    use_rows(module, chosen)
    return LinearTuning(len(linears), timings, chosen)


def use_rows(module: nn.Module, transposed_rows: Iterable[int]) -> int:
    """Make ``module``'s CPU linear layers compute ``W xᵀ`` for inputs of these row counts (none: plain
    ``nn.Linear`` again). Returns how many layers were set."""
    chosen = frozenset(transposed_rows)
    linears = _plain_linears(module)
    for m in linears:
        if chosen:
            m.__class__ = RowAwareLinear
            m.transposed_rows = chosen
        elif type(m) is RowAwareLinear:
            del m.transposed_rows
            m.__class__ = nn.Linear
    return len(linears)
