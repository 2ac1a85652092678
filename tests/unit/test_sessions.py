"""Step bookkeeping on a peer: in-order steps apply, a retried step replays, anything else is refused."""

from __future__ import annotations

import pytest
import torch

from peer.sessions import Session, StepAction, check_step, expired
from swarm.errors import ProtocolError


def make_session(**kw):
    fields = dict(session_id="s", start=0, end=2, max_length=10, batch=1, cache=None, client=None,
                  next_addr=None, last_used=0.0)
    fields.update(kw)
    return Session(**fields)


def test_first_step_applies():
    assert check_step(make_session(), 0, 0, 4) is StepAction.APPLY


def test_retried_step_replays():
    s = make_session(position=4, next_step=1, last_output=(0, 0, torch.zeros(1)))
    assert check_step(s, 0, 0, 4) is StepAction.REPLAY


@pytest.mark.parametrize(
    ("step", "position", "length", "code"),
    [(2, 4, 1, "bad_step"), (1, 3, 1, "bad_position"), (1, 4, 7, "too_long")],
)
def test_refused_steps(step, position, length, code):
    s = make_session(position=4, next_step=1, last_output=(0, 0, torch.zeros(1)))
    with pytest.raises(ProtocolError) as err:
        check_step(s, step, position, length)
    assert err.value.code == code


def test_expiry():
    sessions = {"old": make_session(last_used=0.0), "new": make_session(last_used=95.0)}
    assert expired(sessions, now=100.0, timeout_s=10.0) == ["old"]


def test_a_rewind_step_may_start_before_the_session_position_and_nowhere_else():
    s = make_session(position=6, next_step=3)
    assert check_step(s, 3, 4, 2, rewind=True) is StepAction.REWIND
    assert check_step(s, 3, 6, 1, rewind=True) is StepAction.APPLY  # at the position: nothing to cut
    for position, length, code in [(4, 2, "bad_position"), (-1, 1, "bad_position"), (7, 1, "bad_position"),
                                   (4, 7, "too_long")]:
        with pytest.raises(ProtocolError) as err:
            check_step(s, 3, position, length, rewind=length == 7 or position != 4)
        assert err.value.code == code


def test_rewinding_a_session_cuts_its_pushed_history_to_the_position():
    parts = [torch.full((1, n, 2), float(i)) for i, n in enumerate((5, 1, 3))]
    s = make_session(position=9, next_step=3, history=[(i, t) for i, t in enumerate(parts)])
    s.rewind(7)
    assert s.position == 7
    assert [(i, t.shape[1]) for i, t in s.history] == [(0, 5), (1, 1), (2, 1)]
    assert s.replay_input(3).shape == (1, 7, 2)
    s.rewind(3)
    assert [(i, t.shape[1]) for i, t in s.history] == [(0, 3)]


def test_a_replay_may_come_in_chunks_before_any_other_step():
    from peer.sessions import check_replay

    fresh = make_session()
    check_replay(fresh, 4, 0, 3)
    half = make_session(position=3, next_step=5)  # after the first chunk of replay step 4
    check_replay(half, 4, 3, 3)
    for session, step, position, code in [
        (half, 4, 2, "bad_replay"),  # not where the last chunk ended
        (half, 6, 3, "bad_replay"),  # another replay's index
        (make_session(position=3, next_step=5, last_output=(4, 2, torch.zeros(1))), 4, 3, "bad_replay"),  # after a step
        (make_session(position=8, next_step=5), 4, 8, "too_long"),  # past max_length 10
    ]:
        with pytest.raises(ProtocolError) as err:
            check_replay(session, step, position, 3)
        assert err.value.code == code, (step, position)


def test_a_reorder_names_every_row_once_per_row_at_the_session_s_position():
    from peer.sessions import check_reorder

    s = make_session(batch=3, position=7)
    assert check_reorder(s, [2, 0, 0], 7).tolist() == [2, 0, 0]
    for rows, position, code in [([0, 1], 7, "bad_message"), ([0, 1, 3], 7, "bad_message"),
                                 ([0, 1, -1], 7, "bad_message"), ([0, 1, True], 7, "bad_message"),
                                 ([0, 1, "2"], 7, "bad_message"), ([0, 1, 2], 6, "bad_position")]:
        with pytest.raises(ProtocolError) as err:
            check_reorder(s, rows, position)
        assert err.value.code == code, (rows, position)


def test_a_reorder_moves_the_kept_outputs_rows_too():
    s = make_session(batch=2)
    s.history = [(0, torch.tensor([[[1.0]], [[2.0]]])), (1, torch.tensor([[[3.0]], [[4.0]]]))]
    s.last_output = (1, 1, torch.zeros(2, 1, 1))
    s.reorder(torch.tensor([1, 1]))
    assert [t.flatten().tolist() for _, t in s.history] == [[2.0, 2.0], [4.0, 4.0]] and s.last_output is None
