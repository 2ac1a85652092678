"""One LM-head pass for every session that needs logits in the same event-loop turn.

Concurrent ``generate()`` calls on one model run as tasks on the client's one event loop. When the last hop
finishes a batched pass, its results for several sessions arrive together and wake those sessions in one loop
turn. Each needs logits for its last position: alone, each would read the whole LM head (vocab x hidden, the
largest matrix a client holds) for one row, one session after another, and send its next step only when its
own turn came, so steps reached the first peer one by one. ``LogitsBatcher.logits`` queues the request and
the first request of a turn schedules one flush after every task woken in that turn has queued its own: one
matrix product over all their rows, and all of their next steps leave together, so the peers see them
together and batch them too.

Rows are independent in the LM head (the final norm is per row), so each session's logits are those of its
rows alone, to float rounding, as in any batched forward pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import torch


class LogitsBatcher:
    def __init__(self, logits: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._logits = logits  # hidden [B, T, H] -> logits [B, T, V]
        self._waiting: list[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]] = []
        self.flushes = 0  # LM-head passes run (for tests and metrics)

    async def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: [b, 1, H], one session's last position -> logits [b, V] (float32)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[torch.Tensor] = loop.create_future()
        self._waiting.append((hidden, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)  # after the tasks already woken in this turn
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        live = [(h, f) for h, f in waiting if not f.cancelled()]
        if not live:
            return
        self.flushes += 1
        try:
            rows = torch.cat([h for h, _ in live]) if len(live) > 1 else live[0][0]
            out = self._logits(rows)[:, -1]  # [sum b, V]
        except Exception as exc:  # noqa: BLE001 - every waiter gets the error, the loop goes on
            for _, f in live:
                f.set_exception(exc)
            return
        start = 0
        for h, f in live:
            f.set_result(out[start:start + h.shape[0]])
            start += h.shape[0]
