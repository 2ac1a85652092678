"""LogitsBatcher: sessions that ask for logits in the same event-loop turn share one LM-head pass, and each
gets exactly its own rows back."""

from __future__ import annotations

import asyncio

import pytest
import torch

from routing.head_batching import LogitsBatcher

torch.manual_seed(0)
HEAD = torch.nn.Linear(8, 11)


def logits(hidden: torch.Tensor) -> torch.Tensor:
    return HEAD(hidden).detach()


async def test_requests_of_one_turn_share_a_pass_and_get_their_own_rows():
    calls: list[int] = []
    batcher = LogitsBatcher(lambda h: calls.append(h.shape[0]) or logits(h))
    rows = [torch.randn(b, 1, 8) for b in (1, 2, 1)]
    got = await asyncio.gather(*(batcher.logits(h) for h in rows))
    assert calls == [4] and batcher.flushes == 1
    for h, out in zip(rows, got, strict=True):
        assert out.shape == (h.shape[0], 11)
        torch.testing.assert_close(out, logits(h)[:, -1])


async def test_requests_of_later_turns_get_passes_of_their_own():
    batcher = LogitsBatcher(logits)
    await batcher.logits(torch.randn(1, 1, 8))
    await batcher.logits(torch.randn(1, 1, 8))
    assert batcher.flushes == 2


async def test_a_failing_pass_fails_every_waiter_and_the_next_pass_works():
    fail = [True]

    def flaky(h: torch.Tensor) -> torch.Tensor:
        if fail[0]:
            raise RuntimeError("out of memory")
        return logits(h)

    batcher = LogitsBatcher(flaky)
    results = await asyncio.gather(*(batcher.logits(torch.randn(1, 1, 8)) for _ in range(2)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    fail[0] = False
    assert (await batcher.logits(torch.randn(1, 1, 8))).shape == (1, 11)


async def test_a_cancelled_waiter_is_left_out():
    batcher = LogitsBatcher(logits)
    gone = asyncio.ensure_future(batcher.logits(torch.randn(1, 1, 8)))
    await asyncio.sleep(0)  # queued, flush scheduled
    gone.cancel()
    kept = await batcher.logits(torch.randn(2, 1, 8))
    assert kept.shape == (2, 11)
    with pytest.raises(asyncio.CancelledError):
        await gone
