"""Peers behind real NATs (tests/integration/natnet.py): homes behind nftables masquerade, one of them symmetric.

Two bootstraps run with ``--relay`` on public hosts; a 3-peer chain serves from two NATed homes (a cone one and
a symmetric one) and a public host, and a client generates from a third home. Every peer must find out by
itself whether it can be reached (the relays connect back to its data port): the two behind NATs serve through
the relays, and nobody may plan their private addresses as direct hops; the public one is reached directly
(the NATed peer before it pushes to it over TCP). The client, behind a cone NAT, gets a direct connection to the
cone-NAT peer by a TCP hole punch; the punch to the symmetric-NAT peer fails and that one stays relayed. The
tokens must equal local transformers; ``swarm.status`` shows how each peer is reached and how each edge between
peers was made. Then the relay that carries the relayed hop is stopped in the middle of a generation: the client
and the pushing peer move to the other relay, and the text does not change.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from swarm.launch import ManagedProcess, bootstrap_address
from swarm.net.ways import is_relayed, parse_relayed
from tests.integration.conftest import PEER_ARGS
from tests.integration.natnet import Internet, natnet_usable
from tests.integration.netns import Hosts

pytestmark = [pytest.mark.skipif(natnet_usable() is not None, reason=str(natnet_usable())), pytest.mark.nat]

BOOT_PORT = 31337
# name -> (host, layers, data port); hosts a and b are homes behind NATs, pub a public host
PEERS = {"peer1": ("a", "0:2", 31400), "peer2": ("b", "2:3", 31400), "peer3": ("pub", "3:5", 31400)}
BEHIND_NAT = {"peer1", "peer2"}
NEW_TOKENS = 12


def relay_on(hosts: Hosts, host: str, key: Path, initial: list[str]) -> tuple[ManagedProcess, str]:
    extra = ["--initial-peers", *initial] if initial else []
    proc = hosts.start(host, f"relay-{host}", ["-m", "swarm.bootstrap", "--listen", f"0.0.0.0:{BOOT_PORT}",
                                               "--identity", str(key), "--relay", *extra])
    return proc, bootstrap_address(proc, 120)


def status(hosts: Hosts, model: Path, relays: list[str]) -> dict:
    result = hosts.run("c", ["-m", "swarm.status", "--initial-peers", *relays, "--model", str(model), "--json"],
                       timeout=120)
    assert result.returncode in (0, 3), result.stderr[-2000:]
    return json.loads(result.stdout)


def test_peers_behind_nats_serve_through_relays_and_survive_losing_one(checkpoints, tmp_path):
    source = checkpoints("llama", num_layers=5)
    folders = {name: shutil.copytree(source, tmp_path / name / "weights") for name in [*PEERS, "client"]}
    local = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    prompt = torch.randint(3, local.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(11))
    expected = local.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS,
                              do_sample=False)[0].tolist()
    with Internet(["boot", "boot2", "pub"], {"a": "cone", "b": "symmetric", "c": "cone"}) as net:
        hosts = Hosts(net, tmp_path)
        try:
            boot, first = relay_on(hosts, "boot", tmp_path / "boot.key", [])
            boot2, second = relay_on(hosts, "boot2", tmp_path / "boot2.key", [first])
            relays = [first, second]
            peers = {name: hosts.start(home, name, [
                "-m", "swarm.peer", "--model", str(folders[name]), "--initial-peers", *relays,
                "--listen", f"0.0.0.0:{port}", "--layers", span, "--no-progress", *PEER_ARGS])
                for name, (home, span, port) in PEERS.items()}
            for name, proc in peers.items():
                proc.wait_line("peer ready:", 240)
                said = "behind a NAT" if name in BEHIND_NAT else f"reachable at {net.addr('pub')}:31400"
                assert said in proc.log_path.read_text(), proc.tail()

            # the peers behind NATs are listed as reached through the relays, never at their private addresses;
            # the public one directly, with the relays as its second ways
            report = status(hosts, folders["client"], relays)
            assert report["complete"], report
            by_span = {f"{p['start']}:{p['end']}": p for p in report["peers"]}
            for name, (_, span, _) in PEERS.items():
                peer = by_span[span]
                assert sorted(peer["relays"]) == sorted(relays), peer
                assert not any(way.startswith("198.51.100.") for way in peer["addrs"]), peer["addrs"]
                if name in BEHIND_NAT:
                    assert peer["reached"] == "relayed" and all(is_relayed(w) for w in peer["addrs"]), peer
                else:
                    assert peer["reached"] == "direct" and peer["addrs"][0] == f"{net.addr('pub')}:31400", peer

            # a generation through the relays, paused in the middle while the first relay is stopped
            go = tmp_path / "go"
            client = hosts.start("c", "client", [
                "-m", "tests.integration.remote_client", str(folders["client"]), *relays,
                "--ids", ",".join(map(str, prompt[0].tolist())), "--max-new-tokens", str(NEW_TOKENS),
                "--pause-after", "4", "--go-file", str(go)])
            paused = json.loads(client.wait_line("paused", 240).split(" ", 1)[1])
            # the client reaches the cone-NAT peer by a hole punch, the symmetric-NAT one through a relay (a punch
            # there fails: its NAT maps every connection to a new port), the public one directly
            assert [h["how"] for h in paused] == ["punched", "relayed", "direct"], paused
            assert paused[0]["via"].startswith(net.router_addrs["a"] + ":"), paused
            # stop the relay that carries the relayed hop (peers may list either relay first)
            lost, kept = (boot, second) if parse_relayed(paused[1]["via"]).relay_maddr == first else (boot2, first)
            lost.stop()
            stopped = time.time()
            go.touch()
            line = client.wait_line("{", 240)
            got = json.loads(line)
            assert got["ids"] == expected
            assert "opening the route again" in client.log_path.read_text()  # the loss was seen and survived
            assert [is_relayed(h["addr"]) for h in got["hops"]] == [n in BEHIND_NAT for n in PEERS], got["hops"]
            assert [h["how"] for h in got["hops"]] == ["punched", "relayed", "direct"], got["hops"]
            kept_proc = boot2 if kept == second else boot
            relay_log = kept_proc.log_path.read_text()
            assert "circuit" in relay_log and "open" in relay_log, kept_proc.tail()

            # the peers keep announcing through the relay that is left: records signed well after the loss; and
            # their records show how each edge between peers was made: the cone-NAT peer pushes to the symmetric
            # one through a relay (the punch fails), that one to the public peer directly
            ids = {name: by_span[span]["peer_id"] for name, (_, span, _) in PEERS.items()}
            edges = {ids["peer1"]: {ids["peer2"]: "relayed"}, ids["peer2"]: {ids["peer3"]: "direct"}}
            deadline = time.monotonic() + 120  # generous on a busy machine
            while True:
                report = status(hosts, folders["client"], [kept])
                fresh = [p for p in report["peers"] if p["expires_at"] > stopped + 12]  # signed 3 beats after
                links = {p["peer_id"]: p["links"] for p in report["peers"] if p["links"]}
                if len(fresh) == len(PEERS) and report["complete"] and links == edges:
                    break
                assert time.monotonic() < deadline, f"peers stopped announcing after the relay was lost: {report}"
            got = json.loads(hosts.run("c", [
                "-m", "tests.integration.remote_client", str(folders["client"]), kept,
                "--ids", ",".join(map(str, prompt[0].tolist())), "--max-new-tokens", str(NEW_TOKENS),
            ]).stdout.strip().splitlines()[-1])
            assert got["ids"] == expected
            assert {parse_relayed(h["addr"]).relay_maddr for h in got["hops"] if is_relayed(h["addr"])} == {kept}
        finally:
            hosts.stop_all()
