"""A swarm across several machines, started exactly as the README says, and a bootstrap that restarts.

The machines are network namespaces on one bridge (tests/integration/netns.py): a bootstrap host, three
peer hosts and a client host, each with its own address. Every process listens on 0.0.0.0 with no
--announce-addr, and each peer has the checkpoint under a different folder name; the peers and the client
must still find one another (the model key comes from the checkpoint's content) at the addresses the
peers published (their interfaces' addresses, never 0.0.0.0 or 127.0.0.1). Output is compared with local
transformers. Then the bootstrap is restarted with the same identity and port: the swarm must be whole
again through it, and a new client's generation exact.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from swarm.launch import ManagedProcess, bootstrap_address
from tests.integration.conftest import PEER_ARGS
from tests.integration.netns import Hosts, Lan, netns_usable

pytestmark = pytest.mark.skipif(netns_usable() is not None, reason=str(netns_usable()))

HOSTS = ["boot", "peer1", "peer2", "peer3", "client"]
SPANS = {"peer1": "0:2", "peer2": "2:3", "peer3": "3:5"}
BOOT_PORT, PEER_PORT = 31337, 31400
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Lan(HOSTS) as made:
        yield made


def bootstrap_on(hosts: Hosts, key: Path, name: str) -> tuple[ManagedProcess, str, list[str]]:
    proc = hosts.start("boot", name, ["-m", "swarm.bootstrap", "--listen", f"0.0.0.0:{BOOT_PORT}",
                                      "--identity", str(key)])
    address = bootstrap_address(proc, 120)
    others = []
    with contextlib.suppress(Exception):  # the other lines, if any, follow at once
        while not proc.lines.empty():
            line = proc.lines.get_nowait()
            if line and line.startswith("also reachable at:"):
                others.append(line.split(":", 1)[1].strip())
    return proc, address, others


def unused_peer_id(tmp_path: Path) -> str:
    """The DHT peer id of a fresh key that no node uses: an initial peer that is down."""
    from hivemind.p2p import P2P, PeerID

    path = tmp_path / "nobody.key"
    P2P.generate_identity(str(path))
    return PeerID.from_identity(path.read_bytes()).to_base58()


def swarm_models(hosts: Hosts, address: str) -> list[dict]:
    result = hosts.run("client", ["-m", "swarm.status", "--initial-peers", address, "--json"], timeout=120)
    if result.returncode not in (0, 3):
        raise AssertionError(f"status failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout)["models"]


def generate_on_client(hosts: Hosts, model: Path, peers: list[str], ids: list[int]) -> dict:
    result = hosts.run("client", ["-m", "tests.integration.remote_client", str(model), *peers,
                                  "--ids", ",".join(map(str, ids)), "--max-new-tokens", "12"])
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_swarm_across_hosts_survives_a_bootstrap_restart(lan, checkpoints, tmp_path):
    """Peers on three hosts (0.0.0.0, no --announce-addr, the checkpoint under three folder names) serve a
    client on a fourth exactly; after the bootstrap restarts with its identity the swarm is whole again."""
    source = checkpoints("llama", num_layers=5)
    folders = {}
    for name in [*SPANS, "client"]:  # the same checkpoint, saved under another name on each machine
        folders[name] = shutil.copytree(source, tmp_path / "machines" / name / f"weights-of-{name}")
    local = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    prompt = torch.randint(3, local.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(7))
    expected = local.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False)
    hosts = Hosts(lan, tmp_path)
    key = tmp_path / "bootstrap.key"
    try:
        boot, address, others = bootstrap_on(hosts, key, "bootstrap")
        assert address.startswith(f"/ip4/{lan.addr('boot')}/tcp/{BOOT_PORT}/p2p/"), address
        assert all("/127.0.0.1/" not in a and "/0.0.0.0/" not in a for a in [address, *others])

        peers = {name: hosts.start(name, name, [
            "-m", "swarm.peer", "--model", str(folders[name]), "--initial-peers", address,
            "--listen", f"0.0.0.0:{PEER_PORT}", "--layers", span, "--no-progress", *PEER_ARGS])
            for name, span in SPANS.items()}
        for name, proc in peers.items():
            proc.wait_line("peer ready:", 240)
            assert proc.data_addr == f"{lan.addr(name)}:{PEER_PORT}", proc.ready

        got = generate_on_client(hosts, folders["client"], [address], prompt[0].tolist())
        assert got["ids"] == expected[0].tolist()
        assert [h["addr"] for h in got["hops"]] == [f"{lan.addr(n)}:{PEER_PORT}" for n in SPANS]

        [model] = swarm_models(hosts, address)
        assert model["complete"] and model["peers"] == 3
        assert model["names"] == sorted(f"weights-of-{n}" for n in SPANS)

        boot.stop()
        boot, again, _ = bootstrap_on(hosts, key, "bootstrap-restarted")
        assert again == address  # same identity and port: the address every peer was given still holds
        restarted = time.monotonic()
        deadline = restarted + 120  # generous on a busy machine; the figure is printed, not asserted
        while True:
            models = swarm_models(hosts, address)
            if models and models[0]["complete"] and models[0]["peers"] == 3:
                break
            assert time.monotonic() < deadline, f"swarm not whole again through the restarted bootstrap: {models}"
        print(f"swarm whole again {time.monotonic() - restarted:.1f} s after the bootstrap restarted")

        # a dead initial peer first: the client must use the live one after it
        dead = f"/ip4/{lan.addr('boot')}/tcp/{BOOT_PORT + 1}/p2p/{unused_peer_id(tmp_path)}"
        got = generate_on_client(hosts, folders["client"], [dead, address], prompt[0].tolist())
        assert got["ids"] == expected[0].tolist()
    finally:
        hosts.stop_all()
