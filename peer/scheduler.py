"""Which queued steps the next forward pass computes: a pure decision over the peer's step queue.

In the spirit of vLLM v1's ``schedule() -> SchedulerOutput``: the batching engine (a compute thread) calls
``schedule(queue, budget, last_was_prefill)`` before every pass, runs the returned ``Plan`` as one forward
pass, advances ``done`` and ``tokens_left`` of every step in it, drops the finished ones and calls again with
``last_was_prefill=plan.prefill``. No clock, randomness or IO here: the same queue gives the same plan.

Rules, each with its reason:

1. **One token count per pass.** Every slice of a pass computes the same number ``T`` of new tokens, so a
   pass is one ``[rows, T]`` tensor. The engine pads rows to one length of *past* only, never of new tokens:
   padding between a row's past and its new tokens would leave holes that sliding-window attention counts.
2. **Short steps whole, long steps in chunks.** A step with nothing computed yet and ``tokens_left <=
   chunk_tokens`` is *short* and runs in one pass. A longer step is *chunked*: each pass computes
   ``min(tokens_left, chunk_tokens)`` of its tokens from ``offset = done`` (the last chunk may be shorter), so
   one long prompt never holds the peer for more than a chunk. Steps batch when their next slices have the
   same size: short steps with equal ``tokens_left``, a chunk with other chunks (or short steps) of its size.
3. **Oldest first.** A pass serves the token count of the oldest waiting request, and takes the requests
   of that count oldest first. Every such pass makes progress on the oldest request, so every request
   finishes within a bounded number of passes (no starvation), and nothing depends on arrival timing.
4. **A decode waits at most one chunk pass.** After a prefill pass (a pass holding a chunk of a long step,
   ``Plan.prefill``), if any short step waits, the next pass serves short steps only: those with the fewest
   tokens (decodes, one token per row), oldest first. A long prefill is the oldest request for many passes;
   without this rule every decode would wait for all its chunks. With it, chunks and short passes alternate,
   so the decodes that fit one pass wait for at most one chunk (bounded decode latency), and the oldest
   request still gets at least every other pass. Short prompts (more tokens) take their turn by age (rule 3).
5. **The budget caps batching, not admission.** Requests join a pass while its rows stay within
   ``max_rows`` and rows x T within ``max_tokens``; the first that does not fit ends the pass, so a younger
   request never overtakes an older one of the same size. The first request is always taken, alone if it is
   over the budget by itself: refusing it would starve it forever.
6. **One step per session at a time.** Only a session's oldest queued step may run: step N+1 attends over
   the keys and values that step N writes.
7. **A small decode pass may wait a little for more rows** (``wait_s``). When a decode pass would hold fewer
   than half of the rows of the sessions open at this peer, the others are on their way (at another hop, or
   at their client), and a pass costs far less than twice a pass of half the rows (on the CPU 4 rows cost
   about 1.5 passes of 1; on a GPU about 1). Running the few rows now splits the sessions into more, smaller
   convoys, each paying a whole pass. So the engine waits for more steps, at most ``max_wait_s`` and at most
   ``wait_fraction`` of the time a pass takes (measured): the wait costs a session at most that share of one
   hop's time. A lone session (or two) never waits, and neither does a prefill. (Triton's dynamic batcher
   has the same kind of bounded queue delay.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class QueuedStep:
    """One step request waiting at this peer."""

    req_id: int            # unique, increasing in arrival order (the engine's counter): older = smaller
    session_id: str
    rows: int              # batch rows of the session (a client may send a batch of b prompts)
    tokens_left: int       # tokens of this step not yet computed (a long prefill is chunked)
    done: int = 0          # tokens of this step already computed in earlier passes

    def __post_init__(self) -> None:
        if self.rows < 1 or self.tokens_left < 1 or self.done < 0:
            raise ValueError(f"step {self.req_id}: rows and tokens_left must be >= 1 and done >= 0, got "
                             f"rows={self.rows}, tokens_left={self.tokens_left}, done={self.done}")


@dataclass(frozen=True)
class Budget:
    """How much one forward pass may hold, and the chunk size of long steps."""

    max_rows: int = 32          # rows in one forward pass
    max_tokens: int = 2048      # rows x tokens in one pass
    chunk_tokens: int = 256     # a step longer than this is computed in chunks of this many tokens
    max_wait_s: float = 0.0     # rule 7: longest wait for more decode rows (0: never wait)
    wait_fraction: float = 0.5  # rule 7: and at most this share of a pass's measured time

    def __post_init__(self) -> None:
        if min(self.max_rows, self.max_tokens, self.chunk_tokens) < 1:
            raise ValueError(f"every budget limit must be >= 1: {self}")
        if self.max_wait_s < 0 or not 0 <= self.wait_fraction <= 1:
            raise ValueError(f"max_wait_s must be >= 0 and wait_fraction in [0, 1]: {self}")


@dataclass(frozen=True)
class Slice:
    """Tokens [offset, offset + tokens) of request ``req_id``'s step, computed in this pass."""

    req_id: int
    offset: int    # first token of the step computed in this pass (== QueuedStep.done)
    tokens: int


@dataclass(frozen=True)
class Plan:
    """One forward pass: slices oldest first, all with the same ``tokens`` count (one [rows, T] shape)."""

    slices: tuple[Slice, ...]
    prefill: bool               # whether this pass holds a chunk of a long step (T > 1 and chunked): the
                                # engine passes it back as last_was_prefill, so short steps go next (rule 4)

    @property
    def tokens(self) -> int:
        """T, the new tokens of every row of the pass."""
        return self.slices[0].tokens


def chunked(step: QueuedStep, budget: Budget) -> bool:
    """Whether the step runs in chunks: longer than one chunk, or already partly computed."""
    return step.done > 0 or step.tokens_left > budget.chunk_tokens


def next_tokens(step: QueuedStep, budget: Budget) -> int:
    """Tokens of the step's next slice: all of a short step, the next chunk of a long one."""
    return min(step.tokens_left, budget.chunk_tokens)


def eligible(queue: Sequence[QueuedStep]) -> list[QueuedStep]:
    """The oldest queued step of each session (rule 6), oldest first."""
    ordered = sorted(queue, key=lambda s: s.req_id)
    if len({s.req_id for s in ordered}) != len(ordered):
        raise ValueError("req_id must be unique in the queue")
    seen: set[str] = set()
    firsts = []
    for step in ordered:
        if step.session_id not in seen:
            seen.add(step.session_id)
            firsts.append(step)
    return firsts


def schedule(queue: Sequence[QueuedStep], budget: Budget, last_was_prefill: bool) -> Plan | None:
    """The next forward pass over ``queue`` under the module's rules; None when the queue is empty."""
    candidates = eligible(queue)
    if not candidates:
        return None
    shorts = [s for s in candidates if not chunked(s, budget)]
    if last_was_prefill and shorts:            # rule 4: decodes go right after a chunk
        tokens = min(s.tokens_left for s in shorts)
        group = [s for s in shorts if s.tokens_left == tokens]
    else:                                      # rule 3: the oldest request's token count
        tokens = next_tokens(candidates[0], budget)
        group = [s for s in candidates if next_tokens(s, budget) == tokens]
    taken: list[QueuedStep] = []
    rows = 0
    for step in group:                         # rule 5: oldest first, the first always
        if taken and (rows + step.rows > budget.max_rows or (rows + step.rows) * tokens > budget.max_tokens):
            break
        taken.append(step)
        rows += step.rows
    prefill = tokens > 1 and any(chunked(s, budget) for s in taken)
    return Plan(tuple(Slice(s.req_id, s.done, tokens) for s in taken), prefill)


def wait_s(plan: Plan, queue: Sequence[QueuedStep], budget: Budget, *, open_rows: int, waited_s: float,
           pass_s: float) -> float:
    """Rule 7: how much longer to wait for more decode rows before running ``plan`` (0.0: run it now).

    ``open_rows``: rows of every session open at this peer; ``waited_s``: how long the engine has already
    waited for this pass; ``pass_s``: the measured time of a forward pass.
    """
    if plan.prefill or plan.tokens != 1 or budget.max_wait_s <= 0:
        return 0.0
    planned = {s.req_id for s in plan.slices}
    rows = sum(s.rows for s in queue if s.req_id in planned)
    if rows >= budget.max_rows or 2 * rows >= open_rows:
        return 0.0
    return max(0.0, min(budget.max_wait_s, budget.wait_fraction * pass_s) - waited_s)
