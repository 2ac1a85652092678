"""The OpenAI-compatible endpoint's pure parts (swarm/api.py): request validation, stop strings, streaming
text that never shows half a stop string or half a character."""

from __future__ import annotations

import pytest

from swarm.api import BadRequestError, cut_at_stop, error_body, parse_request, safe_prefix


class Tok:
    """A tokenizer stand-in: one id per character."""

    def __call__(self, text: str) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def apply_chat_template(self, messages, add_generation_prompt: bool = True):
        return [ord(c) for m in messages for c in f"<{m['role']}>{m['content']}"] + [0]


def parse(body, chat=True):
    return parse_request(body, chat=chat, tokenizer=Tok(), served="m")


def test_a_chat_request_becomes_template_ids_and_settings():
    req = parse({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
                 "temperature": 0, "stop": "\n", "seed": 7, "stream": True})
    assert req.ids == [ord(c) for c in "<user>hi"] + [0]
    assert (req.max_tokens, req.temperature, req.top_p, req.seed, req.stops, req.stream) == (5, 0.0, 1.0, 7,
                                                                                               ("\n",), True)
    assert parse({"model": "m", "prompt": "ab"}, chat=False).ids == [97, 98]
    assert parse({"model": "m", "prompt": "ab", "max_completion_tokens": 3, "max_tokens": 9}, chat=False).max_tokens == 3


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": [{"role": "user"}]}, "messages"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}, "stop"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [""]}, "stop"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": "7"}, "seed"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
])
def test_bad_requests_name_the_parameter(body, param):
    with pytest.raises(BadRequestError) as err:
        parse(body)
    assert err.value.param == param


def test_another_model_is_not_found_and_errors_have_openai_s_shape():
    with pytest.raises(LookupError, match="does not exist"):
        parse({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})
    assert error_body("no", "invalid_request_error", "model", "model_not_found") == {
        "error": {"message": "no", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}


def test_text_ends_before_the_first_stop_string():
    assert cut_at_stop("one two. three", ("three", ".")) == ("one two", True)
    assert cut_at_stop("one two", ("three",)) == ("one two", False)


def test_a_stream_holds_back_what_could_become_a_stop_string_or_a_character():
    assert safe_prefix("hello wor", ("world!",)) == "hello "
    assert safe_prefix("hello w", ("xyz",)) == "hello w"
    assert safe_prefix("caf\ufffd", ()) == "caf"


@pytest.mark.parametrize(("error", "code"), [("busy", "overloaded"), ("missing", "swarm_unavailable")])
def test_a_full_or_incomplete_swarm_is_a_503_that_says_which(error, code):
    """Every peer of some layers busy (retry later) and layers nobody serves both answer 503, told apart by code."""
    from fastapi.testclient import TestClient

    from swarm.api import build_app
    from swarm.errors import MissingLayersError, SwarmBusyError

    class Failing:
        def generate(self, *args, **kwargs):
            if error == "busy":
                raise SwarmBusyError({"ab" * 20: "198.51.100.7:31330"}, 5.0, (3, 6))
            raise MissingLayersError([(3, 5)], model="m")

    tok = Tok()
    tok.eos_token_id = None
    client = TestClient(build_app(Failing(), tok, "m"))
    reply = client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 503 and reply.json()["error"]["code"] == code, reply.json()
