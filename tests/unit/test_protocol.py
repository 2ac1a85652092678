"""The protocol module: every message survives the wire (msgpack) as the same record, fields are checked on
the way in, and the error-code sets say which codes mean a hop failed."""

from __future__ import annotations

import dataclasses

import pytest

from swarm.errors import ProtocolError
from swarm.net.protocol import (
    BUSY_CODES,
    FATAL_CODES,
    HOP_FAILURE_CODES,
    MESSAGES,
    Close,
    Code,
    Connect,
    Dialback,
    Draining,
    Error,
    Joined,
    Ok,
    Open,
    Ping,
    Pong,
    Punch,
    Reach,
    Rebind,
    Relayed,
    Reorder,
    Replayed,
    Result,
    Step,
    new_secret,
    parse,
    secret_matches,
    session_tag,
)
from swarm.net.wire import decode_header, encode_frame

META = {"dtype": "float32", "shape": [1, 2, 4]}
SECRET, SECRET2 = new_secret(), new_secret()
SAMPLES = [
    Open(session="s1", secret=SECRET, start=0, end=4, max_length=64, batch=2, next="10.0.0.2:7000",
         next_secret=SECRET2, next_peer="cd" * 20, id=3),
    Open(session="s1", secret=SECRET, start=4, end=8, max_length=64, batch=1, id=4),  # the last hop: no next
    Close(session="s1", secret=SECRET, id=5),
    Ping(id=6),
    Ping(nonce=SECRET2, id=12),
    Rebind(session="s1", secret=SECRET, next="10.0.0.3:7000", next_secret=SECRET2, next_peer="cd" * 20,
           upto_step=7, replay_until="10.0.0.4:7000", id=7),
    Reorder(session="s1", secret=SECRET, rows=[2, 0, 0], position=12, id=9),
    Rebind(session="s1", secret=SECRET, next="10.0.0.3:7000", next_secret=SECRET2, next_peer="cd" * 20, upto_step=7,
           id=8),
    Ok(id=9),
    Pong(id=10, peer_id="ab" * 20, model="llama-0123456789abcdef", start=0, end=4, load=2, free_cache_tokens=99,
         queue=1, passes=12, batched_steps=8),
    Pong(id=13, peer_id="ab" * 20, model="m", start=0, end=4, public_key=b"k" * 32, proof=b"p" * 64),
    Error(code=Code.NEXT_HOP_FAILED, message="gone", peer="p", session="s1", step=3, hop="10.0.0.2:7000"),
    Error(code="a_code_from_a_newer_peer", message="?", id=11),
    Step(session="s1", secret=SECRET, layer=4, step=0, position=0, tensor=META),
    Step(session="s1", secret=SECRET, layer=4, step=2, position=0, tensor=META, replay=True,
         replay_until="10.0.0.4:7000"),
    Result(session="s1", step=2, position=5, tensor=META),
    Replayed(session="s1", step=2, positions=5),
    Draining(session="s1"),
    Connect(peer="12D3KooWRch1rxjvgvMT7s4KP2Tsy1bfZeMUVND4a9xbrB16LJ9m"),
    Dialback(port=31400, id=14),
    Reach(addr="203.0.113.200:31400", reachable=False, id=14),
    Relayed(source="12D3KooWRch1rxjvgvMT7s4KP2Tsy1bfZeMUVND4a9xbrB16LJ9m"),
    Connect(peer="12D3KooWRch1rxjvgvMT7s4KP2Tsy1bfZeMUVND4a9xbrB16LJ9m", punch=40123),
    Joined(host="203.0.113.201"),
    Relayed(source="12D3KooWRch1rxjvgvMT7s4KP2Tsy1bfZeMUVND4a9xbrB16LJ9m", punch="203.0.113.200:40123"),
    Punch(port=40200),
]


def _through_the_wire(header: dict) -> dict:
    first = encode_frame(header)[0]
    return decode_header(bytes(first[12:]))


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.TYPE)
def test_every_message_round_trips_through_msgpack(msg):
    header = msg.to_header()
    assert header["type"] == msg.TYPE
    assert None not in header.values()  # absent optional fields are left out, not sent as nil
    assert parse(_through_the_wire(header)) == msg


def test_every_message_type_has_a_sample():
    assert {m.TYPE for m in SAMPLES} == set(MESSAGES)


@pytest.mark.parametrize(("header", "code"), [
    ({"type": "launch_missiles"}, Code.UNKNOWN_TYPE),
    ({"type": "open", "session": "s", "start": 0, "end": 4, "max_length": 8}, Code.BAD_MESSAGE),  # no batch
    ({"type": "open", "session": "s", "start": "0", "end": 4, "max_length": 8, "batch": 1}, Code.BAD_MESSAGE),
    ({"type": "open", "session": "s", "start": True, "end": 4, "max_length": 8, "batch": 1}, Code.BAD_MESSAGE),
    ({"type": "step", "session": "s", "step": 0, "position": 0, "tensor": [1, 2]}, Code.BAD_MESSAGE),
    ({"type": "step", "session": "s", "step": 0, "position": 0, "tensor": {}, "replay": 1}, Code.BAD_MESSAGE),
    ({"type": "rebind", "session": "s", "next": 5, "upto_step": 1}, Code.BAD_MESSAGE),
    ({"type": "error", "message": "no code"}, Code.BAD_MESSAGE),
])
def test_malformed_messages_are_protocol_errors_with_a_code(header, code):
    with pytest.raises(ProtocolError) as info:
        parse(header)
    assert info.value.code == code


def test_optional_fields_may_be_nil_or_absent():
    base = {"type": "open", "session": "s", "secret": SECRET, "start": 0, "end": 4, "max_length": 8, "batch": 1}
    assert parse({**base, "next": None}) == parse(base) == Open("s", 0, 4, 8, 1, SECRET)


def test_codes_say_which_errors_mean_the_hop_failed():
    assert BUSY_CODES <= HOP_FAILURE_CODES
    for code in (Code.UNKNOWN_SESSION, Code.COMPUTE_FAILED, Code.NEXT_HOP_FAILED, Code.DRAINING, Code.BUSY):
        assert code.hop_failed and Error(code=code, message="").hop_failed
    for code in (Code.BAD_SHAPE, Code.TOO_LONG, Code.BAD_STEP, Code.NON_FINITE, Code.SESSION_EXISTS):
        assert not code.hop_failed  # the client's own mistake: raised to the caller, not re-routed
    assert not Error(code="a_code_from_a_newer_peer", message="").hop_failed
    assert {Code.BAD_MAGIC, Code.FRAME_TOO_LARGE} == FATAL_CODES
    assert Code.BUSY == "busy" and "busy" in BUSY_CODES  # members are their wire strings


def test_requests_take_their_id_from_the_link():
    msg = dataclasses.replace(Ping(), id=42)
    assert msg.to_header() == {"type": "ping", "id": 42}


def test_secrets_are_fresh_compared_in_constant_time_and_never_what_logs_show():
    a, b = new_secret(), new_secret()
    assert a != b and len(a) >= 16
    assert secret_matches(a, a) and not secret_matches(a, b) and not secret_matches(a, "")
    tag = session_tag("0123456789abcdef")
    assert tag == session_tag("0123456789abcdef") and "0123456789abcdef" not in tag and len(tag) == 10
