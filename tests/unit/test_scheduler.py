"""The pass scheduler: one token count per pass, long steps chunked, oldest first, decodes right after a chunk."""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil

import pytest

from peer.scheduler import Budget, Plan, QueuedStep, Slice, schedule, wait_s


def step(req_id: int, tokens: int, rows: int = 1, session: str | None = None, done: int = 0) -> QueuedStep:
    return QueuedStep(req_id, session or f"s{req_id}", rows, tokens, done)


def ids(plan: Plan | None) -> list[int]:
    assert plan is not None
    return [s.req_id for s in plan.slices]


def test_empty_queue_gives_no_plan():
    """Nothing queued, nothing to run."""
    assert schedule([], Budget(), last_was_prefill=False) is None
    assert schedule([], Budget(), last_was_prefill=True) is None


def test_decodes_batch_together_oldest_first():
    """Steps with the same token count share one pass, slices in arrival order whatever the queue's order."""
    plan = schedule([step(3, 1), step(1, 1, rows=2), step(2, 1)], Budget(), False)
    assert plan == Plan((Slice(1, 0, 1), Slice(2, 0, 1), Slice(3, 0, 1)), prefill=False)
    assert plan.tokens == 1


def test_mixed_prompt_and_decodes_run_in_separate_passes_oldest_first():
    """A short prompt and decodes differ in token count: the oldest request's count goes first, then the other."""
    queue = [step(1, 1), step(2, 40), step(3, 1), step(4, 40)]
    assert ids(schedule(queue, Budget(), False)) == [1, 3]
    queue = [step(2, 40), step(4, 40), step(5, 1)]
    plan = schedule(queue, Budget(), False)
    assert ids(plan) == [2, 4] and plan.tokens == 40 and not plan.prefill  # a short prompt is not a chunk


def test_rows_budget_ends_the_pass_without_overtaking():
    """Rows are counted per step; the first step that does not fit ends the pass, a younger one never skips it."""
    queue = [step(1, 1, rows=2), step(2, 1, rows=1), step(3, 1, rows=2), step(4, 1, rows=1)]
    assert ids(schedule(queue, Budget(max_rows=4), False)) == [1, 2]
    assert ids(schedule(queue, Budget(max_rows=5), False)) == [1, 2, 3]


def test_tokens_budget_caps_rows_times_tokens():
    """rows x T stays within max_tokens: 100-token steps of 1, 2 and 1 rows under 300 tokens -> the first two."""
    queue = [step(1, 100), step(2, 100, rows=2), step(3, 100)]
    plan = schedule(queue, Budget(max_tokens=300), False)
    assert ids(plan) == [1, 2]
    assert sum(2 if s.req_id == 2 else 1 for s in plan.slices) * plan.tokens <= 300


def test_oversized_step_runs_alone():
    """A step over the budget by itself still runs (alone), so it is never starved; younger ones wait."""
    wide = [step(1, 1, rows=40), step(2, 1)]
    assert ids(schedule(wide, Budget(max_rows=32), False)) == [1]
    heavy = [step(1, 256, rows=16), step(2, 256)]          # 16 x 256 = 4096 tokens > 2048
    assert ids(schedule(heavy, Budget(), False)) == [1]
    behind = [step(1, 1), step(2, 1, rows=40)]             # behind a small one it waits for the next pass
    assert ids(schedule(behind, Budget(max_rows=32), False)) == [1]


def test_long_step_is_chunked_with_offsets():
    """A 600-token step runs as 256 + 256 + 88 from offsets 0, 256, 512, each pass a prefill pass."""
    budget = Budget(chunk_tokens=256)
    s = step(7, 600)
    seen = []
    while s is not None:
        plan = schedule([s], budget, False)
        (sl,) = plan.slices
        seen.append((sl.offset, sl.tokens, plan.prefill))
        left = s.tokens_left - sl.tokens
        s = replace(s, tokens_left=left, done=s.done + sl.tokens) if left else None
    assert seen == [(0, 256, True), (256, 256, True), (512, 88, True)]


def test_one_token_last_chunk_is_not_a_prefill_pass():
    """257 tokens: a 256 chunk, then a last chunk of 1 that batches with decodes and costs what they do."""
    budget = Budget(chunk_tokens=256)
    plan = schedule([step(1, 1, done=256), step(2, 1)], budget, False)
    assert plan == Plan((Slice(1, 256, 1), Slice(2, 0, 1)), prefill=False)


def test_long_steps_with_equal_chunks_share_a_pass():
    """Chunks of the same size batch; a long step whose next chunk differs waits for its own pass."""
    budget = Budget(chunk_tokens=64)
    queue = [step(1, 500), step(2, 64, done=64), step(3, 30, done=128), step(4, 64)]
    plan = schedule(queue, budget, False)
    assert plan == Plan((Slice(1, 0, 64), Slice(2, 64, 64), Slice(4, 0, 64)), prefill=True)
    assert ids(schedule([step(3, 30, done=128), step(5, 30)], budget, False)) == [3, 5]


def test_long_prefill_alternates_with_waiting_decodes():
    """An older long prefill runs a chunk, then the waiting decodes, then the next chunk: never two in a row."""
    queue = [step(1, 1000), step(2, 1), step(3, 1)]
    first = schedule(queue, Budget(), False)
    assert ids(first) == [1] and first.prefill
    second = schedule(queue, Budget(), first.prefill)
    assert ids(second) == [2, 3] and not second.prefill
    third = schedule([replace(queue[0], tokens_left=744, done=256)], Budget(), second.prefill)
    assert third.slices == (Slice(1, 256, 256),)


def test_after_a_chunk_the_fewest_token_short_steps_go():
    """After a chunk, decodes (fewest tokens) go before an older short prompt; chunks never join that pass."""
    budget = Budget(chunk_tokens=64)
    queue = [step(1, 64, done=64), step(2, 30), step(3, 1), step(4, 1)]
    plan = schedule(queue, budget, True)
    assert ids(plan) == [3, 4] and not plan.prefill
    assert ids(schedule(queue, budget, False)) == [1]      # without a chunk just before: the oldest


def test_prefill_flag_without_waiting_short_steps_keeps_serving_chunks():
    """After a chunk with no short step waiting, the long step simply goes on."""
    assert ids(schedule([step(1, 300, done=256)], Budget(), True)) == [1]


def test_one_step_per_session():
    """A session's later step waits for its earlier one, whatever their sizes: it needs the earlier step's KV."""
    queue = [step(1, 50, session="a"), step(2, 1, session="a"), step(3, 1, session="b")]
    assert ids(schedule(queue, Budget(), True)) == [3]
    assert ids(schedule(queue, Budget(), False)) == [1]


def test_bad_input_is_refused():
    """Empty steps, negative offsets, duplicate request ids and zero budgets are caller bugs."""
    with pytest.raises(ValueError):
        QueuedStep(1, "a", 1, 0)
    with pytest.raises(ValueError):
        QueuedStep(1, "a", 0, 1)
    with pytest.raises(ValueError):
        QueuedStep(1, "a", 1, 1, done=-1)
    with pytest.raises(ValueError):
        schedule([step(1, 1), step(1, 2, session="b")], Budget(), False)
    with pytest.raises(ValueError):
        Budget(chunk_tokens=0)


# ---- many rounds: a small pure driver applies each plan as the engine would --------------------------------


@dataclass(frozen=True)
class Client:
    arrival: int   # round its prompt arrives
    rows: int
    prompt: int    # prompt tokens
    decodes: int   # one-token steps after the prompt, each arriving the round after the previous one finished


@dataclass
class Record:
    arrival: int
    work: int              # passes the queue needed at arrival, this request included (ceil(tokens / chunk) each)
    decode: bool
    finish: int | None = None
    chunk_passes: int = 0  # prefill passes run while it waited


def simulate(clients: list[Client], budget: Budget, max_rounds: int = 5000):
    """One plan per round: apply it (advance done, drop finished steps, send the session's next decode).

    Returns the records by request id and, per round, (plan, whether a short step waited before it)."""
    arrivals: dict[int, list[tuple[str, int, int, bool]]] = {}
    for i, c in enumerate(clients):
        arrivals.setdefault(c.arrival, []).append((f"c{i}", c.rows, c.prompt, False))
    decodes_left = {f"c{i}": c.decodes for i, c in enumerate(clients)}
    queue: dict[int, QueuedStep] = {}
    records: dict[int, Record] = {}
    rounds: list[tuple[Plan | None, bool]] = []
    next_id, last = 0, False
    for rnd in range(max_rounds):
        for sid, rows, tokens, decode in arrivals.pop(rnd, []):
            queue[next_id] = QueuedStep(next_id, sid, rows, tokens)
            work = sum(ceil(s.tokens_left / budget.chunk_tokens) for s in queue.values())
            records[next_id] = Record(rnd, work, decode)
            next_id += 1
        if not queue and not arrivals:
            break
        short_waits = any(s.done == 0 and s.tokens_left <= budget.chunk_tokens for s in queue.values())
        plan = schedule(list(queue.values()), budget, last)
        rounds.append((plan, short_waits))
        if plan is None:
            continue
        served = {s.req_id for s in plan.slices}
        for rid in queue.keys() - served:
            records[rid].chunk_passes += plan.prefill
        for sl in plan.slices:
            s = queue[sl.req_id]
            assert sl.offset == s.done and sl.tokens <= s.tokens_left
            if s.tokens_left > sl.tokens:
                queue[sl.req_id] = replace(s, tokens_left=s.tokens_left - sl.tokens, done=s.done + sl.tokens)
                continue
            del queue[sl.req_id]
            records[sl.req_id].finish = rnd
            if decodes_left[s.session_id]:
                decodes_left[s.session_id] -= 1
                arrivals.setdefault(rnd + 1, []).append((s.session_id, s.rows, 1, True))
        last = plan.prefill
    return records, rounds


MIXED = [  # long and short prompts, a prompt of exactly one chunk and one just over, staggered arrivals
    Client(0, 1, 1000, 30), Client(0, 2, 5, 60), Client(1, 1, 3, 60), Client(2, 3, 700, 20),
    Client(4, 1, 64, 40), Client(6, 2, 65, 30), Client(10, 1, 2000, 10), Client(15, 2, 30, 50),
    Client(20, 1, 300, 25), Client(40, 2, 1, 20),
]


def test_no_request_starves_over_many_rounds():
    """Every request finishes within 2 x the passes of work queued at its arrival (its own included).

    Why the bound holds: a pass that is not the decode pass after a chunk serves the oldest request, which is
    this one or an older one, and removes a pass of their work; a decode pass after a chunk comes at most once
    per such pass. The mix adds an over-wide session (12 rows > max_rows) and an over-heavy prompt."""
    budget = Budget(max_rows=8, max_tokens=256, chunk_tokens=32)
    clients = [*MIXED, Client(3, 12, 20, 15), Client(8, 10, 32, 5), Client(9, 4, 100, 12)]
    records, rounds = simulate(clients, budget)
    assert sum(c.decodes + 1 for c in clients) == len(records)
    for rid, r in records.items():
        assert r.finish is not None, f"request {rid} never finished"
        assert r.finish - r.arrival + 1 <= 2 * r.work, (rid, r)
    assert max(r.finish - r.arrival for r in records.values()) > 20  # the chunks really made some wait


def test_decodes_wait_at_most_one_chunk_pass():
    """With every session's decode rows fitting one pass, no decode waits through two chunk passes, and a
    chunk pass is never followed by another while a short step waits."""
    budget = Budget(max_rows=16, max_tokens=1024, chunk_tokens=64)
    assert sum(c.rows for c in MIXED) <= budget.max_rows
    records, rounds = simulate(MIXED, budget)
    decodes = [r for r in records.values() if r.decode]
    assert all(r.finish is not None for r in records.values())
    assert max(r.chunk_passes for r in decodes) == 1        # some decode did wait behind a chunk, none for two
    assert sum(p.prefill for p, _ in rounds if p) >= 30     # while long prefills ran many chunk passes
    for (before, _), (plan, short_waits) in zip(rounds, rounds[1:], strict=False):
        if before and before.prefill and short_waits:
            assert plan is not None and not plan.prefill


# ---- rule 7: a small decode pass may wait a little for more rows ---------------------------------------------

WAITING = Budget(max_wait_s=0.05, wait_fraction=0.5)


def _wait(queue, budget=WAITING, *, open_rows, waited_s=0.0, pass_s=0.04, last_was_prefill=False):
    plan = schedule(queue, budget, last_was_prefill)
    assert plan is not None
    return wait_s(plan, queue, budget, open_rows=open_rows, waited_s=waited_s, pass_s=pass_s)


def test_a_decode_pass_under_half_the_open_rows_waits_at_most_half_a_pass():
    """2 of 8 open sessions queued: wait, but no longer than half the measured pass (20 ms of 40)."""
    assert _wait([step(1, 1), step(2, 1)], open_rows=8) == pytest.approx(0.02)
    assert _wait([step(1, 1), step(2, 1)], open_rows=8, waited_s=0.015) == pytest.approx(0.005)
    assert _wait([step(1, 1), step(2, 1)], open_rows=8, waited_s=0.03) == 0.0  # waited enough: run
    assert _wait([step(1, 1)], open_rows=8, pass_s=1.0) == pytest.approx(0.05)  # and never over max_wait_s


def test_half_the_open_rows_or_a_lone_session_run_at_once():
    assert _wait([step(1, 1), step(2, 1)], open_rows=4) == 0.0
    assert _wait([step(1, 1, rows=4)], open_rows=8) == 0.0  # rows count, not steps
    assert _wait([step(1, 1)], open_rows=1) == 0.0  # one client: no wait, decode as fast as before
    assert _wait([step(1, 1)], open_rows=2) == 0.0


def test_prefills_full_passes_and_a_disabled_wait_run_at_once():
    assert _wait([step(1, 16)], open_rows=8) == 0.0  # a prompt is not a decode pass
    assert _wait([step(1, 1)], Budget(max_wait_s=0.0), open_rows=8) == 0.0
    assert _wait([step(1, 1, rows=2)], Budget(max_rows=2, max_wait_s=0.05), open_rows=8) == 0.0  # pass is full
    with pytest.raises(ValueError):
        Budget(max_wait_s=-1)
