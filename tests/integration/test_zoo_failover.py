"""Failover for one family of each kind: a peer is killed (kill -9) mid-generation and the text does not change.

Dense (llama), MoE (mixtral), state-space (mamba: conv and SSM states only) and hybrid (bamba: Mamba-2 and
attention layers) rows of the zoo, each served by three replicas of layers 0:3 and three of 3:5. The hosts
(tests/integration/zoo_host.py) serve all four models, one PeerServer per model. For each row the client
generates 16 greedy tokens; when the 6th arrives, the host serving one hop of its route is killed. The client
re-routes and replays the session's inputs to the replacement, which rebuilds keys, values and recurrent states
from them (tests/unit/test_state_replay.py checks those states against token-by-token ones); the ids must
equal local transformers' generate().
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from routing.config import ClientConfig
from swarm import AutoDistributedModelForCausalLM
from swarm.launch import ManagedProcess, bootstrap_address, start_bootstrap, start_process, stop_all
from tests.conftest_models import local_greedy, make_zoo_checkpoint
from tests.integration.conftest import CHILD_ENV

pytestmark = pytest.mark.zoo

KINDS = {"dense": "llama", "moe": "mixtral", "state-space": "mamba", "hybrid": "bamba"}
SPANS = ("0:3", "0:3", "0:3", "3:5", "3:5", "3:5")
PROMPT_LEN, NEW_TOKENS, KILL_AT = 20, 16, 6


class KillAt:
    """A generate() streamer that runs ``action`` when new token ``step`` (0-based) arrives."""

    def __init__(self, step: int, action) -> None:
        self.step, self.action, self.seen = step, action, -1

    def put(self, _value) -> None:
        self.seen += 1  # -1: the prompt
        if self.seen == self.step:
            self.action()

    def end(self) -> None:
        pass


@pytest.fixture(scope="module")
def failover_swarm(tmp_path_factory: pytest.TempPathFactory, logs_dir: Path) -> Iterator[tuple]:
    """(checkpoint dirs by kind, bootstrap address, host processes), every model served by all six hosts."""
    root = tmp_path_factory.mktemp("zoo-failover")
    paths = {kind: make_zoo_checkpoint(root, row) for kind, row in KINDS.items()}
    with contextlib.ExitStack() as stack:
        boot = start_bootstrap(tmp_path_factory.mktemp("zoo-failover-logs"), env=CHILD_ENV)
        stack.callback(boot.stop)
        address = bootstrap_address(boot, 60)
        hosts: list[ManagedProcess] = []
        stack.callback(stop_all, hosts)  # side by side, before the bootstrap
        for i, span in enumerate(SPANS):
            argv = [sys.executable, "-m", "tests.integration.zoo_host", "--initial-peer", address, "--layers", span,
                    "--announce-interval", "30", *map(str, paths.values())]
            hosts.append(start_process(argv, f"failover-host-{i}", logs_dir, env=CHILD_ENV))
        for host in hosts:
            host.wait_line("zoo host ready:", 600)
        yield paths, address, hosts


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_killed_peer_does_not_change_the_text(kind: str, failover_swarm: tuple) -> None:
    paths, address, hosts = failover_swarm
    path = paths[kind]
    ids = torch.randint(3, 160, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))
    want, _ = local_greedy(path, ids, NEW_TOKENS)
    config = ClientConfig(route_wait_s=60, route_tolerance=0.0)
    with AutoDistributedModelForCausalLM.from_pretrained(str(path), initial_peers=[address], config=config) as model:
        model.generation_config.eos_token_id = None
        route = model.client.run(model.client.wait_route())
        hop = route.hops[list(KINDS).index(kind) % len(route.hops)]  # alternate: first hop, then second, ...
        victim = next(h for h in hosts if h.popen.poll() is None and hop.addr in h.ready.split())

        def kill() -> None:
            victim.popen.send_signal(signal.SIGKILL)
            victim.popen.wait(timeout=30)

        got = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, streamer=KillAt(KILL_AT, kill))
        assert victim.popen.poll() is not None, "the host was not killed during generation"
        assert hop.addr not in model.last_route.describe()
    assert got.tolist() == want.tolist()
