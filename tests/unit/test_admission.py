"""KV admission: a session is admitted only if its worst case fits beside the sessions already held."""

from __future__ import annotations

import pytest

from peer.admission import (
    Busy,
    KVBudget,
    Reservation,
    admit,
    free_tokens,
    kv_budget_bytes,
    session_bytes,
    size,
)

GB = 2**30
MB = 2**20

# 30 layers x (K and V) x 3 KV heads x 64 x 4 bytes (SmolLM2-135M in float32); hidden 576 x 4 bytes of history
KV = 30 * 2 * 3 * 64 * 4
HIST = 576 * 4


def test_session_bytes_are_rows_times_length_times_token_cost():
    """A session costs rows x max_length tokens of KV over the span's layers."""
    budget = KVBudget(GB, KV, HIST)
    assert session_bytes(budget, max_length=1000, rows=2, keeps_history=False) == 2 * 1000 * KV


def test_history_counts_only_when_the_session_keeps_it():
    """The last hop keeps no replay history; a hop with a next hop keeps hidden x dtype bytes per token."""
    budget = KVBudget(GB, KV, HIST)
    last = session_bytes(budget, 1000, 2, keeps_history=False)
    middle = session_bytes(budget, 1000, 2, keeps_history=True)
    assert middle - last == 2 * 1000 * HIST


def test_admit_when_it_fits():
    """A session that fits gets a reservation of exactly its bytes, up to the last byte of the budget."""
    budget = KVBudget(10 * 1000 * KV, KV, HIST)
    held = [Reservation("a", 6 * 1000 * KV)]
    assert admit(budget, held, "b", 1000, 4, False) == Reservation("b", 4 * 1000 * KV)


def test_busy_when_it_does_not_fit():
    """Busy says what the session needs, what is free and of how much, and carries the free bytes."""
    budget = KVBudget(4 * GB, KV, HIST)
    held = [Reservation("a", int(3.7 * GB))]
    out = admit(budget, held, "b", max_length=8192, rows=32, keeps_history=False)
    assert isinstance(out, Busy)
    assert out.free_bytes == 4 * GB - int(3.7 * GB)
    assert out.reason == "session needs 11.25 GB of KV cache, 0.30 GB free of 4.00 GB"


def test_busy_names_the_history_when_it_is_what_tips_it():
    """KV alone would fit; with the replay history it does not, and the reason says so."""
    budget = KVBudget(1000 * KV, KV, HIST)
    assert isinstance(admit(budget, [], "a", 1000, 1, False), Reservation)
    out = admit(budget, [], "a", 1000, 1, True)
    assert isinstance(out, Busy) and "KV cache and replay history" in out.reason


def test_released_reservation_frees_its_bytes():
    """Releasing a session is the held list without it: the same session then fits again."""
    budget = KVBudget(8 * 100 * KV, KV, 0)
    held = [admit(budget, [], "a", 100, 4, False)]
    held.append(admit(budget, held, "b", 100, 4, False))
    assert all(isinstance(r, Reservation) for r in held)
    assert isinstance(admit(budget, held, "c", 100, 1, False), Busy)
    held = [r for r in held if r.session_id != "a"]
    assert admit(budget, held, "c", 100, 4, False) == Reservation("c", 4 * 100 * KV)


def test_a_session_is_reserved_once():
    """A second reservation for an open session is the caller's bug (it refuses the second open first)."""
    budget = KVBudget(GB, KV, HIST)
    with pytest.raises(ValueError):
        admit(budget, [Reservation("a", 1)], "a", 10, 1, False)


def test_free_tokens_for_the_record():
    """Free tokens are the unreserved bytes over one token's KV, rounded down, never negative."""
    budget = KVBudget(10_000 * KV + KV // 2, KV, HIST)
    assert free_tokens(budget, []) == 10_000
    assert free_tokens(budget, [Reservation("a", 2_500 * KV), Reservation("b", 500 * KV)]) == 7_000
    assert free_tokens(budget, [Reservation("a", 20_000 * KV)]) == 0


def test_budget_with_max_memory_is_what_the_weights_leave():
    """--max-memory 4 GB with 1.5 GB of weights leaves 2.5 GB for sessions, whatever the reserve says."""
    assert kv_budget_bytes(4 * GB, 20 * GB, int(1.5 * GB), 16384, KV) == int(2.5 * GB)
    assert kv_budget_bytes(1 * GB, 20 * GB, 2 * GB, 16384, KV) == 0


def test_budget_without_max_memory_is_the_reserve():
    """Without --max-memory the budget is reserve_tokens x one token's KV over the span."""
    assert kv_budget_bytes(None, 20 * GB, GB, 16384, KV) == 16384 * KV


def test_budget_never_exceeds_free_device_memory():
    """A reserve (or a --max-memory remainder) larger than the device's free memory is cut to it."""
    assert kv_budget_bytes(None, 100 * MB, GB, 16384, KV) == 100 * MB
    assert kv_budget_bytes(8 * GB, 1.5 * GB, GB, 0, KV) == int(1.5 * GB)
    assert kv_budget_bytes(None, 0.0, GB, 16384, KV) == 0


def test_sizes_read_naturally():
    """Sizes in reasons pick a unit a person reads at a glance."""
    assert [size(3 * GB // 2), size(3 * MB), size(2048), size(50)] == ["1.50 GB", "3.0 MB", "2.0 KB", "50 B"]


def test_bad_budgets_and_sessions_are_refused():
    """A token must cost something (free_tokens divides by it); sessions have at least one row and token."""
    with pytest.raises(ValueError):
        KVBudget(GB, 0, 0)
    with pytest.raises(ValueError):
        session_bytes(KVBudget(GB, KV, 0), 0, 1, False)
