"""A 3-peer chain whose every hop crosses an emulated link (``python -m swarm.linkem`` in front of each peer, which
publishes it with --announce-addr): a chunked, pipelined prefill that returns only the last position gives the
same tokens as local transformers and as the same client with chunking and trimming off; the client and the
peers measure the links' bandwidth (swarm/net/probe.py)."""

from __future__ import annotations

import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.launch import LocalSwarm, start_process
from tests.integration.conftest import CHILD_ENV, PEER_ARGS, free_port

pytestmark = pytest.mark.linkem

SPANS = ["0:2", "2:3", "3:5"]
PROMPT, NEW, CHUNK = 96, 8, 16


def mbit(bps: float) -> float:
    return bps * 8 / 1e6


def assert_links_measured(model, addrs: list[str], timeout_s: float = 60.0) -> None:
    """The client measured its links to the emulated peers, and the first two peers published their push
    edges' bandwidth: each near the emulated 50 Mbit/s, far below an unshaped loopback's (the probe's timing
    on a busy machine only makes a figure lower, so the bounds are wide)."""
    client = model.client
    by_addr = {a: i for i, a in enumerate(addrs)}
    deadline = time.monotonic() + timeout_s
    while True:
        measured = client.bandwidths()
        records = {by_addr[r.addrs[0]]: r for r in client.run(client.records()) if r.addrs[0] in by_addr}
        edges = {i: records[i].mbits.get(records[i + 1].peer_id) for i in (0, 1) if i in records and i + 1 in records}
        if set(measured) >= set(addrs) and len(edges) == 2 and None not in edges.values():
            break
        assert time.monotonic() < deadline, f"bandwidths never all measured: client {measured}, peers {edges}"
        time.sleep(0.2)  # between DHT reads: peers announce every few seconds
    for addr in addrs:
        assert 5 < mbit(measured[addr]) < 200, (addr, mbit(measured[addr]))
    for i, figure in edges.items():
        assert 5 < figure < 200, (i, figure)


def test_a_chunked_prefill_over_emulated_links_gives_the_same_tokens(checkpoints, bootstrap, tmp_path):
    path = checkpoints("llama", num_layers=5)
    local = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = torch.randint(3, local.config.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(5))
    expected = local.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False)[0]
    ports = [(free_port(), free_port()) for _ in SPANS]  # (data port, emulator port)
    with LocalSwarm(str(path), [], peer_args=PEER_ARGS, log_dir=tmp_path, env=CHILD_ENV,
                    bootstrap_address=bootstrap, ready_timeout_s=120) as swarm:
        emulators = [start_process([sys.executable, "-m", "swarm.linkem", "--listen", f"127.0.0.1:{link}",
                                    "--target", f"127.0.0.1:{data}", "--delay-ms", "5", "--rate-mbit", "50"],
                                   f"linkem{i}", tmp_path, CHILD_ENV) for i, (data, link) in enumerate(ports)]
        try:
            for proc in emulators:
                proc.wait_line("linkem ready:", 60)
            for i, (span, (data, link)) in enumerate(zip(SPANS, ports, strict=True)):
                swarm.start_peer(span, name=f"peer{i}", wait=False, extra=[
                    "--listen", f"127.0.0.1:{data}", "--announce-addr", f"127.0.0.1:{link}",
                    # any free DHT port: the default (the data port + 1) may be another port picked here
                    "--dht-listen", "127.0.0.1:0"])
            for peer in swarm.peers:
                peer.wait_line("peer ready:", 120)
            got = {}
            for name, config in {"chunked": ClientConfig(route_wait_s=60, prefill_chunk_tokens=CHUNK,
                                                         adapt_prefill_chunks=False),
                                 "whole": ClientConfig(route_wait_s=60, prefill_chunk_tokens=0,
                                                       trim_results=False)}.items():
                with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[bootstrap],
                                                                     config=config) as model:
                    got[name] = model.generate(ids, max_new_tokens=NEW, do_sample=False)[0]
                    assert [h.addr for h in model.last_route.hops] == [f"127.0.0.1:{link}" for _, link in ports]
                    if name == "chunked":  # the prompt went as PROMPT / CHUNK steps, and one position came back
                        with model.inference_session(PROMPT + 1) as session:
                            last = session.step(model.head.embed(ids), keep=1)
                            assert last.shape == (1, 1, local.config.hidden_size)
                            assert session.session.step_index == PROMPT // CHUNK
                            assert int(model.head.logits(last)[0, -1].argmax()) == int(expected[PROMPT])
                    if name == "whole":
                        assert_links_measured(model, [f"127.0.0.1:{link}" for _, link in ports])
            assert got["chunked"].tolist() == expected.tolist() == got["whole"].tolist()
        finally:
            for proc in emulators:
                proc.stop()
