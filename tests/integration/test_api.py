"""The OpenAI-compatible endpoint (``python -m swarm.api``) over a real local swarm of the embedded
SmolLM2-135M-Instruct, driven by the official ``openai`` SDK: models, chat (streamed and not), completions,
stop sequences, 8 concurrent requests, and the errors (unknown model, bad request, layers nobody serves).
Greedy answers equal local transformers' with the same chat template."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.source import resolve_model
from swarm.launch import LocalSwarm, start_process
from tests.integration.conftest import CHILD_ENV, PEER_ARGS, free_port

QUESTION = "What is the capital of France?"
NEW = 12


@pytest.fixture(scope="module")
def api(bootstrap, tmp_path_factory):
    """(openai client, swarm, local model, tokenizer) with an API server over a 2-peer swarm whose peers serve
    Prometheus metrics (``swarm.metrics_ports``)."""
    ckpt = resolve_model("smollm2-135m")
    logs = tmp_path_factory.mktemp("api")
    port = free_port()
    with LocalSwarm(str(ckpt.path), [], peer_args=PEER_ARGS, log_dir=logs, env=CHILD_ENV,
                    bootstrap_address=bootstrap, ready_timeout_s=180) as swarm:
        swarm.metrics_ports = [free_port(), free_port()]
        for i, span in enumerate(["0:15", "15:30"]):
            swarm.start_peer(span, name=f"peer{i}", wait=False, extra=["--metrics-port", str(swarm.metrics_ports[i])])
        for peer in swarm.peers:
            peer.wait_line("peer ready:", 180)
        swarm.api_port = port
        server = start_process([sys.executable, "-m", "swarm.api", "--model", str(ckpt.path), "--initial-peers",
                                bootstrap, "--listen", f"127.0.0.1:{port}", "--served-name", "smollm2",
                                "--route-wait-s", "5"], "api", logs, CHILD_ENV)
        try:
            server.wait_line("api ready:", 180)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=120,
                                   max_retries=0)
            local = AutoModelForCausalLM.from_pretrained(ckpt.path, dtype=torch.float32).eval()
            yield client, swarm, local, AutoTokenizer.from_pretrained(ckpt.path)
        finally:
            server.stop()


def local_answer(local, tokenizer, ids: list[int]) -> str:
    out = local.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=NEW, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id)
    new = out[0, len(ids):].tolist()
    if tokenizer.eos_token_id in new:
        new = new[:new.index(tokenizer.eos_token_id)]
    return tokenizer.decode(new, skip_special_tokens=True)


def chat_ids(tokenizer) -> list[int]:
    enc = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    return list(enc["input_ids"] if hasattr(enc, "keys") else enc)


def ask(client, **kw):
    return client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}],
                                          max_tokens=NEW, temperature=0, **kw)


def test_chat_completions_and_models_answer_as_local_transformers(api):
    client, _, local, tokenizer = api
    assert [m.id for m in client.models.list().data] == ["smollm2"]
    want = local_answer(local, tokenizer, chat_ids(tokenizer))
    reply = ask(client)
    assert reply.choices[0].message.content == want and reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens == len(chat_ids(tokenizer)) and 0 < reply.usage.completion_tokens <= NEW
    assert reply.choices[0].finish_reason in ("stop", "length")
    pieces, reasons = [], []
    for chunk in ask(client, stream=True):
        pieces.append(chunk.choices[0].delta.content or "")
        reasons.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == want and reasons[-1] == reply.choices[0].finish_reason
    prompt = "The capital of France is"
    text = client.completions.create(model="smollm2", prompt=prompt, max_tokens=NEW, temperature=0)
    assert text.choices[0].text == local_answer(local, tokenizer, tokenizer(prompt)["input_ids"])


def test_a_stop_sequence_ends_the_answer_before_it_streamed_or_not(api):
    client, _, local, tokenizer = api
    want = local_answer(local, tokenizer, chat_ids(tokenizer))
    stop = want.split()[2]  # the third word: the answer ends just before it
    before = want[:want.index(stop)]
    reply = ask(client, stop=[stop])
    assert reply.choices[0].message.content == before and reply.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(client, stop=stop, stream=True))
    assert streamed == before


def test_eight_concurrent_requests_all_get_the_greedy_answer(api):
    client, _, local, tokenizer = api
    want = local_answer(local, tokenizer, chat_ids(tokenizer))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ask(client).choices[0].message.content, range(8)))
    assert answers == [want] * 8


def scrape(port: int, path: str = "/metrics") -> dict[tuple[str, tuple], float]:
    """Prometheus samples at http://127.0.0.1:port/path, by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_of_the_endpoint_and_the_peers_count_the_work(api):
    """After a chat answer: the endpoint counts the request, its tokens and its links' bytes; each peer counts
    steps and tokens by kind, their times, and bytes in and out (peer 0 also on its push link to peer 1)."""
    client, swarm, _, _ = api
    ask(client)
    endpoint = scrape(swarm.api_port)
    assert endpoint[("molink_api_requests_total", (("endpoint", "chat"), ("status", "200")))] >= 1
    assert endpoint[("molink_api_completion_tokens_total", ())] > 0
    assert sum(v for (name, _), v in endpoint.items() if name == "molink_client_bytes_sent_total") > 0
    assert ("molink_client_failovers_total", ()) in endpoint
    for i, port in enumerate(swarm.metrics_ports):
        peer = scrape(port)
        assert peer[("molink_peer_steps_total", (("kind", "decode"),))] > 0
        assert peer[("molink_peer_tokens_total", (("kind", "prefill"),))] > 0
        assert peer[("molink_peer_step_seconds_count", (("kind", "decode"),))] > 0
        assert peer[("molink_peer_bytes_received_total", (("link", "inbound"),))] > 0
        assert ("molink_peer_sessions", ()) in peer and ("molink_peer_queue_depth", ()) in peer
        pushed = [v for (name, labels), v in peer.items()
                  if name == "molink_peer_bytes_sent_total" and dict(labels)["link"] != "inbound"]
        assert (sum(pushed) > 0) is (i == 0), pushed  # only peer 0 pushes (to peer 1)


def test_the_examples_run_against_the_swarm_and_the_endpoint(api, bootstrap):
    """examples/python_chat.py (the Python client) and examples/openai_chat.py (the SDK against the endpoint)
    print the greedy answer."""
    client, swarm, local, tokenizer = api
    want = local_answer(local, tokenizer, chat_ids(tokenizer))
    examples = Path(__file__).resolve().parents[2] / "examples"
    env = {**os.environ, **CHILD_ENV}
    runs = {
        "python_chat.py": ["--model", str(resolve_model("smollm2-135m").path), "--initial-peers", bootstrap,
                           "--prompt", QUESTION, "--max-new-tokens", str(NEW)],
        "openai_chat.py": ["--base-url", f"http://127.0.0.1:{swarm.api_port}/v1", "--model", "smollm2",
                           "--prompt", QUESTION, "--max-tokens", str(NEW)],
    }
    for script, argv in runs.items():
        proc = subprocess.run([sys.executable, str(examples / script), *argv], capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert want.strip() in proc.stdout, (script, proc.stdout)


def test_the_web_chat_example_streams_the_answer(api, bootstrap, tmp_path):
    """examples/web_chat.py serves its page and streams the greedy answer to a posted conversation."""
    import json

    _, _, local, tokenizer = api
    want = local_answer(local, tokenizer, chat_ids(tokenizer))
    script = Path(__file__).resolve().parents[2] / "examples" / "web_chat.py"
    proc = start_process([sys.executable, str(script), "--model", str(resolve_model("smollm2-135m").path),
                          "--initial-peers", bootstrap, "--listen", "127.0.0.1:0"], "web_chat", tmp_path, CHILD_ENV)
    try:
        url = proc.wait_line("web chat ready:", 180).split()[3]
        with urllib.request.urlopen(url, timeout=30) as reply:
            assert "Chat with the swarm" in reply.read().decode()
        body = json.dumps({"messages": [{"role": "user", "content": QUESTION}], "max_new_tokens": NEW}).encode()
        request = urllib.request.Request(url + "chat", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as reply:
            pieces = []
            while chunk := reply.read1(65536):  # as the server flushes them: more than one piece means streaming
                pieces.append(chunk.decode())
        assert "".join(pieces).strip() == want.strip()
        assert len(pieces) > 1, pieces
    finally:
        proc.stop()


def test_errors_come_in_openai_s_shape_with_the_right_codes(api):
    client, swarm, _, _ = api
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="smollm2", messages=[])
    assert err.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert err.value.body["param"] == "temperature"
    swarm.peers[1].kill()  # nobody serves layers 15..29 any more
    with pytest.raises(openai.APIStatusError) as err:
        ask(client)
    assert err.value.status_code == 503 and "15" in err.value.message
