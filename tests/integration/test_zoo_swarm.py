"""The zoo matrix through real peers: every architecture row, 3 peers with uneven spans, exact against transformers.

Each row of tests/conftest_models.ZOO is a tiny random checkpoint made here. Three real host processes
(tests/integration/zoo_host.py) serve layers 0:1, 1:3 and 3:5 of every row, each model behind its own
PeerServer, TCP port and signed DHT record; the client finds them through the real DHT like any swarm.

- float32: a 20-token prompt and 16 greedy steps give generate()'s ids, prompt logits within 1e-4.
- float16 / bfloat16 (peers and client head in that dtype, hidden states on the wire in it too): the top-1
  next token of each of 4 fixed prompts equals local transformers' in the same dtype; any divergence is
  listed in the failure and in the recorded results (docs/models.md is generated from them).

A row's three checks run side by side in one test, each with its own client.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from models.source import resolve_model
from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.launch import bootstrap_address, start_bootstrap, start_process, stop_all
from tests.conftest_models import ZOO, local_greedy, make_zoo_checkpoint, wire_dtype
from tests.integration.conftest import CHILD_ENV

pytestmark = pytest.mark.zoo

SPANS = ("0:1", "1:3", "3:5")
HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16}
PROMPT_LEN, NEW_TOKENS, HALF_PROMPTS = 20, 16, 4
# MOLINK_ZOO_ROWS=llama,mamba runs the matrix for those rows only (while working on a family).
# Loading a model sets torch's default dtype for the whole process while it builds: one load at a time.
LOADING = threading.Lock()
ROWS = sorted(ZOO) if not os.environ.get("MOLINK_ZOO_ROWS") else os.environ["MOLINK_ZOO_ROWS"].split(",")


def _dtype_copy(path: Path, dtype: str) -> Path:
    """The same checkpoint under another directory name (files linked): the same model key, served by peers
    of another dtype; clients keep to peers of their own dtype (routing.planner.prefer_dtype)."""
    copy = path.with_name(f"{path.name}-{dtype}")
    copy.mkdir()
    for file in path.iterdir():
        (copy / file.name).symlink_to(file)
    return copy


@pytest.fixture(scope="module")
def zoo_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A bootstrap node of the matrix's own: its DHT holds only the hosts and the matrix's clients, not the
    nodes other tests' peers left behind when they were killed."""
    proc = start_bootstrap(tmp_path_factory.mktemp("zoo-logs"), env=CHILD_ENV)
    try:
        yield bootstrap_address(proc, 60)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def zoo_swarm(zoo_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[dict]:
    """{(row, dtype name): checkpoint dir}, every one served by three real host processes."""
    root = tmp_path_factory.mktemp("zoo-matrix")
    dirs: dict[tuple[str, str], Path] = {}
    for row in ROWS:
        dirs[(row, "float32")] = path = make_zoo_checkpoint(root, row)
        for dtype in HALF:
            dirs[(row, dtype)] = _dtype_copy(path, dtype)
    entries = [f"{path}@{dtype}" for (_, dtype), path in dirs.items()]
    with contextlib.ExitStack() as stack:
        hosts: list = []
        stack.callback(stop_all, hosts)  # the hosts withdraw their 360 records side by side
        for i, span in enumerate(SPANS):
            argv = [sys.executable, "-m", "tests.integration.zoo_host", "--initial-peer", zoo_bootstrap,
                    "--layers", span, "--announce-interval", "40", *entries]
            hosts.append(start_process(argv, f"zoo-host-{i}", logs_dir, env=CHILD_ENV))
        for host in hosts:
            host.wait_line("zoo host ready:", 600)
        yield dirs


def _client(path: Path, bootstrap: str, dtype: torch.dtype = torch.float32) -> AutoDistributedModelForCausalLM:
    return AutoDistributedModelForCausalLM.from_pretrained(
        str(path), initial_peers=[bootstrap], dtype=dtype, config=ClientConfig(route_wait_s=60)
    )


def _prompts(vocab: int, batch: int) -> torch.Tensor:
    return torch.randint(3, vocab, (batch, PROMPT_LEN), generator=torch.Generator().manual_seed(1))


def _float32(row: str, path: Path, bootstrap: str) -> tuple[dict, list[str]]:
    """Greedy ids equal local generate(), prompt logits within 1e-4, route [0:1] -> [1:3] -> [3:5]."""
    ids = _prompts(resolve_model(str(path)).config.vocab_size, 1)
    with LOADING:
        want, want_logits = local_greedy(path, ids, NEW_TOKENS)
        client = _client(path, bootstrap)
    with client as model:
        model.generation_config.eos_token_id = None
        got = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        hops = [f"{h.start}:{h.end}" for h in model.last_route.hops]
        logits = model(ids).logits
    diff = float((logits - want_logits).abs().max())
    result = {"ids_equal": got.tolist() == want.tolist(), "max_logit_diff": diff, "hops": hops}
    problems = [f"float32: route {hops}"] if hops != list(SPANS) else []
    problems += [f"float32: ids {got.tolist()} != {want.tolist()}"] if not result["ids_equal"] else []
    problems += [f"float32: prompt logits differ by {diff}"] if diff >= 1e-4 else []
    return result, problems


def _half(row: str, dtype: str, path: Path, bootstrap: str) -> tuple[dict, list[str]]:
    """Hidden states come back in the peers' dtype (float32 for a float32 residual) and every prompt's top-1
    token agrees with local transformers in that dtype."""
    with LOADING:
        local = AutoModelForCausalLM.from_pretrained(path, dtype=HALF[dtype]).eval()
        client = _client(path, bootstrap, HALF[dtype])
    ids = _prompts(local.config.vocab_size, HALF_PROMPTS)
    with torch.no_grad():
        want = local(ids).logits[:, -1].argmax(-1)  # [P]
    with client as model, model.inference_session(PROMPT_LEN, HALF_PROMPTS) as sess:
        hidden = sess.step(model.head.embed(ids))  # [P, T, H], as the last peer sent it
        got = model.head.logits(hidden)[:, -1].argmax(-1)  # [P]
    divergent = [i for i in range(HALF_PROMPTS) if int(got[i]) != int(want[i])]
    wire = str(hidden.dtype).removeprefix("torch.")
    result = {"top1_agree": HALF_PROMPTS - len(divergent), "prompts": HALF_PROMPTS, "wire_dtype": wire}
    problems = [f"{dtype}: hidden states came back in {wire}"] if wire != wire_dtype(row, dtype) else []
    problems += [f"{dtype}: top-1 differs on prompts {divergent}: {got.tolist()} vs {want.tolist()}"] if divergent else []
    return result, problems


@pytest.mark.parametrize("row", ROWS)
def test_zoo_row_through_three_peers(row: str, zoo_swarm: dict, zoo_bootstrap: str, zoo_results: dict) -> None:
    """float32 exactness and bfloat16 / float16 top-1 for one row. The three checks run side by side, each with its
    own client and peers: a client spends most of its time waiting on the network, and this keeps the matrix
    within the suite's time on two cores."""
    checks = {"float32": partial(_float32, row, zoo_swarm[(row, "float32")], zoo_bootstrap)}
    checks |= {dtype: partial(_half, row, dtype, zoo_swarm[(row, dtype)], zoo_bootstrap) for dtype in sorted(HALF)}
    with ThreadPoolExecutor(len(checks)) as pool:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        outcomes = {name: future.result() for name, future in futures.items()}
    problems = []
    for name, (result, found) in outcomes.items():
        zoo_results[row][name] = result
        problems += found
    assert not problems, f"{row}: {problems}"
