"""examples/three_machines.sh on three machines (network namespaces on one bridge, tests/integration/netns.py):
the bootstrap and the first half on A, the second half on B, the client on C, each role exactly as the
script's comments say; C prints the greedy answer of local transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.source import resolve_model
from swarm.demo import chat_ids
from swarm.launch import ManagedProcess, bootstrap_address, start_process, stop_all
from tests.integration.conftest import CHILD_ENV
from tests.integration.netns import Lan, netns_usable

pytestmark = pytest.mark.skipif(netns_usable() is not None, reason=str(netns_usable()))

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "examples" / "three_machines.sh")
QUESTION = "What is the capital of France?"
NEW = 12


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Lan(["a", "b", "c"], first_octet=40) as made:
        yield made


def test_the_three_machine_example_answers_like_local_transformers(lan: Lan, tmp_path: Path):
    env = {**CHILD_ENV, "PYTHON": sys.executable, "HOME": str(tmp_path), "MAX_NEW_TOKENS": str(NEW)}
    procs: list[ManagedProcess] = []

    def role(host: str, name: str, *args: str) -> ManagedProcess:
        proc = start_process(lan.wrap(host, ["bash", SCRIPT, *args]), name, tmp_path, env)
        procs.append(proc)
        return proc

    ckpt = resolve_model("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(ckpt.path)
    ids = chat_ids(tokenizer, QUESTION)
    out = AutoModelForCausalLM.from_pretrained(ckpt.path, dtype=torch.float32).generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False,
        pad_token_id=tokenizer.eos_token_id)
    want = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    try:
        addr = bootstrap_address(role("a", "bootstrap", "bootstrap"), 120)
        peers = [role("a", "peer-a", "peer", lan.addr("a"), addr, "0:15"),
                 role("b", "peer-b", "peer", lan.addr("b"), addr, "15:30")]
        for peer in peers:
            ready = peer.wait_line("peer ready:", 240)
            assert ready.split()[2] == f"{lan.addr(peer.name[-1])}:31330"  # the announced address
        client = subprocess.run(lan.wrap("c", ["bash", SCRIPT, "client", addr, QUESTION]), capture_output=True,
                                text=True, timeout=300, env={**os.environ, **env})
        assert client.returncode == 0, client.stderr[-3000:]
        assert want in client.stdout, client.stdout
        assert f"{lan.addr('a')}:31330[0:15] -> {lan.addr('b')}:31330[15:30]" in client.stdout
    finally:
        stop_all(procs)
