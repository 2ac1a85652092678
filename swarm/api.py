"""``python -m swarm.api``: an OpenAI-compatible HTTP endpoint backed by a swarm.

    python -m swarm.api --model MODEL --initial-peers ADDR [--listen 127.0.0.1:8000] [--served-name NAME]

Point the official ``openai`` SDK (``base_url="http://HOST:PORT/v1"``), a chat UI or an agent framework at it:

- ``GET /v1/models``: the one model this server serves (``--served-name``, default the name given to --model);
- ``POST /v1/chat/completions``: ``messages`` through the tokenizer's chat template; ``stream: true`` sends
  server-sent events (``chat.completion.chunk``, then ``data: [DONE]``);
- ``POST /v1/completions``: a ``prompt`` string continued as is;

with ``max_tokens`` (or ``max_completion_tokens``), ``temperature`` (0: greedy), ``top_p``, ``seed``, ``stop``
(up to 4 strings: the text ends before the first, which is not returned), ``usage`` counts and
``finish_reason`` ``stop`` or ``length``; ``GET /metrics`` gives Prometheus metrics. Each request is its own generate() call on the one client, run on a
worker thread, so many requests are served at once and the peers batch their steps. Errors come in OpenAI's
shape (``{"error": {"message", "type", "param", "code"}}``): 400 for a bad request, 404 for a model this server
does not serve, 503 when no peer serves some layers or every route is busy, 500 otherwise.

Built on FastAPI (routing, request validation) and uvicorn (the ASGI server). ``build_app`` takes any object
with ``generate`` and a tokenizer, so the request handling is tested without a swarm too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi import (
    Request as HTTPRequest,  # FastAPI reads handler annotations: this name must be module-level
)
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from swarm.errors import MolinkError
from swarm.http import serve_app

log = logging.getLogger("molink.api")

MAX_STOPS = 4  # OpenAI's limit on stop sequences
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class Request:
    """One completion request, validated: what generate() needs and what the answer reports."""

    model: str
    ids: list[int]             # the prompt's token ids (chat template applied for chat)
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stops: tuple[str, ...]
    stream: bool


class BadRequestError(MolinkError):
    """A request this server cannot take as sent (HTTP 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def parse_request(body: Any, *, chat: bool, tokenizer: Any, served: str) -> Request:
    """A Request from a JSON body (BadRequestError saying what is wrong; LookupError for another model)."""
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError("'model' is required", "model")
    if model != served:
        raise LookupError(f"The model '{model}' does not exist on this server; it serves '{served}'")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequestError("'messages' must be a non-empty list", "messages")
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise BadRequestError("each message needs a string 'role' and string 'content'", "messages")
        ids = chat_template_ids(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages])
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise BadRequestError("'prompt' must be a non-empty string", "prompt")
        ids = list(tokenizer(prompt)["input_ids"])
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", DEFAULT_MAX_TOKENS))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequestError("'max_tokens' must be a whole number of at least 1", "max_tokens")
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        raise BadRequestError("'top_p' must be above 0", "top_p")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRequestError("'seed' must be an integer", "seed")
    n = body.get("n", 1)
    if n != 1:
        raise BadRequestError("only n=1 is supported", "n")
    stop = body.get("stop")
    stops: tuple[str, ...] = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop) \
        if isinstance(stop, list) else ("",)
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise BadRequestError(f"'stop' must be a non-empty string or a list of at most {MAX_STOPS} of them", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequestError("'stream' must be true or false", "stream")
    return Request(model, ids, max_tokens, temperature, top_p, seed, stops, stream)


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequestError(f"'{name}' must be a number from {low:g} to {high:g}", name)
    return float(value)


def chat_template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    ids = enc["input_ids"] if hasattr(enc, "keys") else enc
    return list(ids)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first stop string (not included), and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


def safe_prefix(text: str, stops: tuple[str, ...]) -> str:
    """What may be shown of a growing text: none of a trailing partial character or of a trailing piece that
    could still become a stop string."""
    text = text.removesuffix("\ufffd")  # half of a multi-byte character: wait for the rest
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return text[:len(text) - hold]


class TokenStream:
    """A generate() streamer that hands each new token to an asyncio queue (None at the end)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._prompt_seen = False
        self.cancelled = threading.Event()

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first put is the prompt
            self._prompt_seen = True
            return
        if self.cancelled.is_set():
            raise StreamCancelledError()
        for token in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, int(token))

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class StreamCancelledError(MolinkError):
    """The HTTP client went away: generate() stops at the next token."""


class Generator:
    """Runs requests through a model's generate() on worker threads and shapes OpenAI's answers."""

    def __init__(self, model: Any, tokenizer: Any, served: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.served = served
        self.eos = tokenizer.eos_token_id

    def _generate(self, req: Request, streamer: Any, stop_checker: Any) -> list[int]:
        import torch
        from transformers import StoppingCriteriaList

        kwargs: dict[str, Any] = {"max_new_tokens": req.max_tokens, "do_sample": req.temperature > 0}
        if req.temperature > 0:
            kwargs.update(temperature=req.temperature, top_p=req.top_p, top_k=0)
        if self.eos is not None:
            kwargs.update(eos_token_id=self.eos, pad_token_id=self.eos)
        generator = torch.Generator().manual_seed(req.seed) if req.seed is not None else None
        ids = torch.tensor([req.ids])
        out = self.model.generate(ids, streamer=streamer, generator=generator,
                                  stopping_criteria=StoppingCriteriaList([stop_checker]) if req.stops else None,
                                  **kwargs)
        return out[0, len(req.ids):].tolist()

    def finish(self, req: Request, new: list[int]) -> tuple[str, str, int]:
        """(text, finish_reason, completion tokens) of a finished generation."""
        ended_by_eos = self.eos is not None and self.eos in new
        if ended_by_eos:
            new = new[:new.index(self.eos)]
        text, stopped = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), req.stops)
        reason = "stop" if ended_by_eos or stopped or len(new) < req.max_tokens else "length"
        return text, reason, len(new) + ended_by_eos

    async def complete(self, req: Request) -> tuple[str, str, int]:
        stop_checker = StopChecker(self.tokenizer, req.stops, len(req.ids))
        new = await asyncio.to_thread(self._generate, req, None, stop_checker)
        return self.finish(req, new)

    async def stream(self, req: Request) -> AsyncIterator[tuple[str, str | None, int]]:
        """(text piece, finish_reason on the last piece, completion tokens so far) as tokens arrive."""
        streamer = TokenStream(asyncio.get_running_loop())
        stop_checker = StopChecker(self.tokenizer, req.stops, len(req.ids))
        task = asyncio.ensure_future(asyncio.to_thread(self._generate, req, streamer, stop_checker))
        tokens: list[int] = []
        shown = ""
        try:
            while (token := await streamer.queue.get()) is not None:
                if self.eos is not None and token == self.eos:
                    continue
                tokens.append(token)
                text, stopped = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), req.stops)
                visible = text if stopped else safe_prefix(text, req.stops)
                if len(visible) > len(shown):
                    yield visible[len(shown):], None, len(tokens)
                    shown = visible
            new = await task
        except BaseException:  # the HTTP client went away: stop generating at the next token
            streamer.cancelled.set()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # its StreamCancelledError is expected
            raise
        text, reason, count = self.finish(req, new)
        yield text[len(shown):], reason, count


class StopChecker:
    """A transformers StoppingCriteria: true once the new text contains one of the stop strings."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], prompt_len: int) -> None:
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        text = self.tokenizer.decode(input_ids[0, self.prompt_len:].tolist(), skip_special_tokens=True)
        return torch.tensor([cut_at_stop(text, self.stops)[1]] * input_ids.shape[0])


class ApiMetrics:
    """The endpoint's Prometheus metrics, served at /metrics: requests by endpoint and HTTP status, their time,
    completion tokens, and from the client: failovers (a hop replaced), reroutes (a route opened again) and the
    bytes on its link to each peer."""

    def __init__(self, model: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("molink_api_requests", "requests answered, by endpoint and HTTP status",
                                ["endpoint", "status"], registry=self.registry)
        self.seconds = Histogram("molink_api_request_seconds", "time to answer a request (to the headers, when "
                                 "streamed)", ["endpoint"], registry=self.registry)
        self.tokens = Counter("molink_api_completion_tokens", "tokens generated", registry=self.registry)
        self.registry.register(_ClientCollector(model))


class _ClientCollector(Collector):
    def __init__(self, model: Any) -> None:
        self.client = getattr(model, "client", None)

    def collect(self) -> Any:
        stats = getattr(self.client, "stats", {})
        for name in ("failovers", "reroutes"):
            yield CounterMetricFamily(f"molink_client_{name}", f"sessions' {name}", value=stats.get(name, 0))
        sent = CounterMetricFamily("molink_client_bytes_sent", "bytes sent on the link to a peer", labels=["peer"])
        received = CounterMetricFamily("molink_client_bytes_received", "bytes received on the link to a peer",
                                       labels=["peer"])
        link_bytes = getattr(self.client, "link_bytes", dict)
        for addr, (out, back) in sorted(link_bytes().items()):
            sent.add_metric([addr], out)
            received.add_metric([addr], back)
        yield sent
        yield received


def build_app(model: Any, tokenizer: Any, served: str) -> Any:
    """The FastAPI app serving ``model`` (anything with generate()) under the name ``served``."""

    from swarm.errors import MissingLayersError, SwarmBusyError

    app = FastAPI(title="molink", description="OpenAI-compatible endpoint over a molink swarm")
    gen = Generator(model, tokenizer, served)
    metrics = ApiMetrics(model)
    app.mount("/metrics", make_asgi_app(metrics.registry))
    created = int(time.time())

    def fail(status: int, message: str, kind: str, param: str | None = None, code: str | None = None) -> Any:
        return JSONResponse(error_body(message, kind, param, code), status_code=status)

    async def parsed(http: HTTPRequest, chat: bool) -> Request | Any:
        try:
            body = await http.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return fail(400, "the request body is not valid JSON", "invalid_request_error")
        try:
            return parse_request(body, chat=chat, tokenizer=tokenizer, served=served)
        except BadRequestError as e:
            return fail(400, str(e), "invalid_request_error", e.param)
        except LookupError as e:
            return fail(404, str(e.args[0]), "invalid_request_error", "model", "model_not_found")

    def swarm_error(e: Exception) -> Any:
        if isinstance(e, SwarmBusyError):  # every peer of some layers is full: try again later
            return fail(503, str(e), "server_error", code="overloaded")
        if isinstance(e, MissingLayersError):  # nobody serves some layers now
            return fail(503, str(e), "server_error", code="swarm_unavailable")
        log.exception("generation failed")
        return fail(500, f"{type(e).__name__}: {e}", "server_error")

    def usage(req: Request, completion: int) -> dict[str, int]:
        return {"prompt_tokens": len(req.ids), "completion_tokens": completion,
                "total_tokens": len(req.ids) + completion}

    async def answer(http: HTTPRequest, chat: bool) -> Any:
        began = time.monotonic()
        endpoint = "chat" if chat else "completions"
        reply = await answer_once(http, chat)
        status = getattr(reply, "status_code", 200)
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.seconds.labels(endpoint).observe(time.monotonic() - began)
        return reply

    async def answer_once(http: HTTPRequest, chat: bool) -> Any:
        req = await parsed(http, chat)
        if not isinstance(req, Request):
            return req
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        kind = "chat.completion" if chat else "text_completion"
        if req.stream:
            return StreamingResponse(events(req, rid, chat), media_type="text/event-stream")
        try:
            text, reason, count = await gen.complete(req)
        except (MolinkError, RuntimeError, ValueError) as e:
            return swarm_error(e)
        metrics.tokens.inc(count)
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        return {"id": rid, "object": kind, "created": int(time.time()), "model": served, "choices": [choice],
                "usage": usage(req, count)}

    async def events(req: Request, rid: str, chat: bool) -> AsyncIterator[str]:
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(piece: str | None, reason: str | None, role: bool = False) -> str:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else (
                    {} if piece is None else {"content": piece})
                choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": reason}
            return "data: " + json.dumps({"id": rid, "object": kind, "created": int(time.time()), "model": served,
                                          "choices": [choice]}) + "\n\n"

        if chat:
            yield chunk(None, None, role=True)
        try:
            async for piece, reason, count in gen.stream(req):
                if piece:
                    yield chunk(piece, None)
                if reason is not None:
                    metrics.tokens.inc(count)
                    yield chunk(None, reason)
        except (MolinkError, RuntimeError, ValueError) as e:  # headers are sent: the error goes as an event
            log.warning("streamed generation failed: %s", e)
            yield "data: " + json.dumps(error_body(str(e), "server_error")) + "\n\n"
        yield "data: [DONE]\n\n"

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": served, "object": "model", "created": created,
                                             "owned_by": "molink"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HTTPRequest) -> Any:
        return await answer(http, chat=True)

    @app.post("/v1/completions")
    async def completions(http: HTTPRequest) -> Any:
        return await answer(http, chat=False)

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m swarm.api", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the model the swarm serves: a folder, an alias or a hub id "
                   "(its tokenizer and chat template are read from it)")
    p.add_argument("--initial-peers", nargs="+", required=True, metavar="ADDR",
                   help="bootstrap or peer addresses of the swarm (as python -m swarm.bootstrap prints them)")
    p.add_argument("--listen", default="127.0.0.1:8000", metavar="HOST:PORT",
                   help="where to serve HTTP (default 127.0.0.1:8000; 0.0.0.0:PORT to serve other machines)")
    p.add_argument("--served-name", default=None, help="the model name clients ask for (default: --model)")
    p.add_argument("--route-wait-s", type=float, default=30.0,
                   help="how long a request waits for the swarm to cover every layer before a 503 (default 30)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line (time, level, logger, message) for log collectors")
    args = p.parse_args(argv)

    from transformers import AutoTokenizer

    from routing.config import ClientConfig
    from swarm import AutoDistributedModelForCausalLM
    from swarm.errors import exit_code
    from swarm.logging_setup import setup_logging

    setup_logging(args.log_level, json_lines=args.log_json)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"--listen must be HOST:PORT, got {args.listen!r}")
    try:
        model = AutoDistributedModelForCausalLM.from_pretrained(
            args.model, initial_peers=args.initial_peers, config=ClientConfig(route_wait_s=args.route_wait_s))
    except MolinkError as e:
        print(f"error: {e}", flush=True)
        return exit_code(e)
    tokenizer = AutoTokenizer.from_pretrained(model.checkpoint.path)
    served = args.served_name or args.model
    app = build_app(model, tokenizer, served)
    try:
        serve(app, host, int(port), f"serving {served!r}", args.log_level.lower())
    finally:
        model.close()
    return 0


def serve(app: Any, host: str, port: int, what: str, log_level: str = "warning") -> None:
    """Serve ``app`` until Ctrl-C; "api ready: URL/v1 WHAT" is printed once the port listens."""
    serve_app(app, host, port, "api ready: {url}/v1 " + what.replace("{", "{{").replace("}", "}}"), log_level)


if __name__ == "__main__":
    raise SystemExit(main())
