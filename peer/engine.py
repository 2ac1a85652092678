"""The peer's engine: every session's steps go into one queue, and forward passes serve many at once.

``submit()`` queues a step (a session's hidden states and its cache) and waits for its output. One task,
``run()``, takes a snapshot of the queue, asks the pure ``peer.scheduler.schedule()`` what the next forward
pass serves, runs that pass and hands each finished step its output. A pass holds steps of the same token
count (decode steps of many sessions together, or one chunk of a long prefill), so a long prompt never holds
the decode steps of other sessions back by more than one chunk.

Passes run on the compute thread, off the event loop, so pings, opens and pushes are answered meanwhile;
only a single tiny step (at most ``inline_tokens`` rows x tokens: a lone decode step) runs inline, because
handing it to a thread costs more than computing it. Inputs are moved to the span's device and dtype before
a pass and outputs come back to the CPU for the wire, so a CUDA peer gets CPU tensors in and out.

The engine owns no session state beyond its queue: the caller (PeerServer) holds each session's lock while
its step is queued, so a cache is never touched by two passes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import torch

from peer.scheduler import Budget, Plan, QueuedStep, schedule, wait_s

log = logging.getLogger("molink.peer")


@dataclass
class _Request:
    """A queued step: its input, the session's cache, what has been computed so far, and who waits."""

    req_id: int
    session_id: str
    hidden: torch.Tensor  # [b, T, H] on the span's device, in its dtype
    cache: Any
    future: asyncio.Future[torch.Tensor]
    done: int = 0
    parts: list[torch.Tensor] = field(default_factory=list)
    model: Any = None  # what runs it: the span, or a view of part of it (a sub-span session); None: the span

    def snapshot(self) -> QueuedStep:
        return QueuedStep(req_id=self.req_id, session_id=self.session_id, rows=self.hidden.shape[0],
                          tokens_left=self.hidden.shape[1] - self.done, done=self.done)


class Engine:
    """A queue of steps and the loop that serves it in batched forward passes (see the module docstring)."""

    def __init__(self, span: Any, *, budget: Budget = Budget(), inline_tokens: int = 8,
                 run_compute: Callable[..., Any] | None = None, executor: Executor | None = None,
                 open_rows: Callable[[], int] = lambda: 0, clock: Callable[[], float] = time.monotonic,
                 on_pass: Callable[..., None] | None = None) -> None:
        self.span = span
        self.on_pass = on_pass  # on_pass(prefill=, rows=, tokens=, layers=, seconds=) after each pass (peer/rates.py)
        self.budget = budget
        self.open_rows = open_rows  # rows of the sessions open at this peer (rule 7 of the scheduler)
        self.clock = clock
        self.pass_s = 0.0  # smoothed time of a forward pass (EWMA, weight 1/8)
        self._waiting_since: float | None = None
        self.inline_tokens = inline_tokens
        self._executor = executor
        self._run_compute = run_compute
        self._queue: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._last_was_prefill = False
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # forward passes run (for tests and metrics)
        self.batched_rows = 0  # steps that shared a pass with another step

    @property
    def queue_depth(self) -> int:
        """Steps waiting or in progress."""
        return len(self._queue)

    async def submit(self, session_id: str, hidden: torch.Tensor, cache: Any, model: Any = None) -> torch.Tensor:
        """Queue one step of a session (hidden: [b, T, H]) and wait for its output [b, T, H] on the CPU.
        ``model``: the session's view of the span when it runs part of it (models/span.py: view)."""
        device = getattr(self.span, "device", hidden.device)
        x = hidden.to(device=device, dtype=self.span.dtype)
        request = _Request(next(self._ids), session_id, x, cache, asyncio.get_running_loop().create_future(),
                           model=model)
        self._queue[request.req_id] = request
        self._wake.set()
        if self._task is None or self._task.done():  # the loop starts with the first step and runs until close()
            self._task = asyncio.ensure_future(self.run())
        return await request.future

    def close(self) -> None:
        """Stop serving; steps still queued are abandoned (their sessions are being dropped too)."""
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        """Serve the queue until cancelled (``submit`` starts it)."""
        while True:
            await self._wake.wait()
            queue = [r.snapshot() for r in self._queue.values()]
            plan = schedule(queue, self.budget, self._last_was_prefill)
            if plan is None:
                self._wake.clear()
                continue
            now = self.clock()
            if self._waiting_since is None:
                self._waiting_since = now
            delay = wait_s(plan, queue, self.budget, open_rows=self.open_rows(), waited_s=now - self._waiting_since,
                           pass_s=self.pass_s)
            if delay > 0:  # a small decode pass: give the other sessions' steps a moment to arrive
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.set()  # plan again, whether a step came or the wait ran out
                continue
            self._waiting_since = None
            started = self.clock()
            rows, layers = await self._run_plan(plan)
            elapsed = self.clock() - started
            self.pass_s = elapsed if self.passes == 1 else 0.875 * self.pass_s + 0.125 * elapsed
            if self.on_pass is not None and rows:
                self.on_pass(prefill=plan.prefill, rows=rows, tokens=plan.tokens, layers=layers, seconds=elapsed)

    async def _run_plan(self, plan: Plan) -> tuple[int, float]:
        """Run one pass; the rows it computed (0 when it failed) and the layers a row ran, on average."""
        requests = [self._queue[s.req_id] for s in plan.slices]
        rows = [(r.hidden[:, s.offset:s.offset + s.tokens], r.cache, r.model or self.span)
                for r, s in zip(requests, plan.slices, strict=True)]
        self._last_was_prefill = plan.prefill
        self.passes += 1
        if len(rows) > 1:
            self.batched_rows += len(rows)
        try:
            if len(rows) == 1 and rows[0][0].shape[0] * rows[0][0].shape[1] <= self.inline_tokens:
                outputs = self._compute(rows)  # a lone decode step: cheaper than a thread handoff
            else:
                outputs = await self._off_loop(self._compute, rows)
        except Exception as exc:  # noqa: BLE001 - a failed pass fails its steps; the engine goes on serving
            log.exception("forward pass over %d step(s) failed", len(rows))
            for r in requests:
                self._finish(r, error=exc)
            return 0, 0.0
        for r, s, out in zip(requests, plan.slices, outputs, strict=True):
            r.parts.append(out)
            r.done = s.offset + s.tokens
            if r.done >= r.hidden.shape[1]:
                self._finish(r, result=r.parts[0] if len(r.parts) == 1 else torch.cat(r.parts, dim=1))
        count = sum(int(hidden.shape[0]) for hidden, _, _ in rows)
        layers = sum(int(hidden.shape[0]) * _layers(model) for hidden, _, model in rows) / max(count, 1)
        return count, layers

    def _compute(self, rows: list[tuple[torch.Tensor, Any, Any]]) -> list[torch.Tensor]:
        """Rows (hidden, cache, model): those of one model (the span, or one view of it) share a pass."""
        groups: dict[int, list[int]] = {}
        for i, (_, _, model) in enumerate(rows):
            groups.setdefault(id(model), []).append(i)
        outputs: list[torch.Tensor | None] = [None] * len(rows)
        for members in groups.values():
            model = rows[members[0]][2]
            part = [(rows[i][0], rows[i][1]) for i in members]
            if len(part) == 1:
                results = [model.forward(*part[0])]
            elif getattr(model, "batchable", False):
                results = model.forward_batch(part)
            else:  # a family whose caches cannot be padded into one batch: one pass per step, still one handoff
                results = [model.forward(hidden, cache) for hidden, cache in part]
            for i, out in zip(members, results, strict=True):
                outputs[i] = out.to("cpu")
        return outputs  # type: ignore[return-value]

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._run_compute is not None:
            return await self._run_compute(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _finish(self, request: _Request, *, result: torch.Tensor | None = None, error: BaseException | None = None) -> None:
        self._queue.pop(request.req_id, None)
        if request.future.done():  # the waiter was cancelled (its session closed): nothing to hand over
            return
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(result)


def _layers(model: Any) -> int:
    return max(getattr(model, "end", 1) - getattr(model, "start", 0), 1)


def measure_throughput(span: Any, steps: int = 3) -> float:
    """Decode tokens per second through the whole span at batch 1 (one warm-up step, then ``steps``)."""
    cache = span.new_cache()
    x = torch.zeros(1, 1, span.hidden_size, dtype=span.dtype, device=getattr(span, "device", "cpu"))
    span.forward(x, cache)
    t0 = time.perf_counter()
    for _ in range(steps):
        span.forward(x, cache)
    return steps / max(time.perf_counter() - t0, 1e-9)
