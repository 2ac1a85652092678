"""Discovery over real hivemind daemons on 127.0.0.1: a bootstrap process and two in-loop DHT nodes.

The bootstrap is the real CLI (``python -m swarm.bootstrap``); its address is read from its stdout line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from swarm.errors import PeerUnreachableError
from swarm.net.dht import HivemindDiscovery, dht_key
from swarm.net.records import Identity, PeerRecord
from tests.factories import make_peer_record
from tests.integration.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama"


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@pytest.fixture
async def bootstrap(tmp_path: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process, Path]]:
    """A running ``python -m swarm.bootstrap``; yields (address, process, addr file); stopped with SIGTERM."""
    async with running_bootstrap(tmp_path) as found:
        yield found


@contextlib.asynccontextmanager
async def running_bootstrap(tmp_path: Path, *extra: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process,
                                                                                  Path]]:
    addr_file = tmp_path / "bootstrap.addr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm.bootstrap",
        "--addr-file",
        str(addr_file),
        "--log-level",
        "WARNING",
        *extra,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, so teardown can also reach its libp2p daemon
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("swarm address: /ip4/127.0.0.1/tcp/"), line
        yield line.removeprefix("swarm address: ").strip(), proc, addr_file
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created above, and nothing else
                await proc.wait()


def unsigned(record: PeerRecord) -> PeerRecord:
    """A record without what announcing adds to it (its signed expiry), to compare fields."""
    return replace(record, expires_at=0.0, signature=b"")


@pytest.fixture
async def two_nodes(bootstrap) -> AsyncIterator[tuple[HivemindDiscovery, HivemindDiscovery, Identity]]:
    """Two discovery nodes joined through the bootstrap; the first signs with the yielded identity."""
    address = bootstrap[0]
    identity = Identity.generate()
    first = await HivemindDiscovery.create([address], signer=identity)
    try:
        second = await HivemindDiscovery.create([address])
        try:
            yield first, second, identity
        finally:
            await second.shutdown()
    finally:
        await first.shutdown()


async def test_bootstrap_prints_its_address_writes_the_file_and_exits_zero_on_sigterm(bootstrap):
    """The stdout line and --addr-file agree, and SIGTERM ends the process with status 0."""
    address, proc, addr_file = bootstrap
    assert addr_file.read_text() == address + "\n"
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_record_announced_by_one_node_is_read_by_another(two_nodes):
    """One lookup on another node returns the announced record, field for field."""
    first, second, identity = two_nodes
    record = make_peer_record(identity=identity, model=MODEL, rtts={"ab" * 20: 0.01})
    await first.announce(record, ttl=60)
    [got] = await second.read(MODEL)
    assert unsigned(got) == unsigned(record)  # the announcing node signed its expiry into it
    assert time.time() + 50 < got.expires_at <= time.time() + 60
    assert await second.read("another-model") == []


async def test_withdraw_removes_the_record(two_nodes):
    """A withdrawn peer's OFFLINE tombstone replaces its live record, so readers stop seeing it."""
    first, second, identity = two_nodes
    record = make_peer_record(identity=identity, model=MODEL)
    await first.announce(record, ttl=60)
    assert [unsigned(r) for r in await second.read(MODEL)] == [unsigned(record)]
    await first.withdraw(record, ttl=5)  # shorter than the live record's: the tombstone must still win

    async def gone() -> bool:
        return await second.read(MODEL) == []

    await wait_until(gone, timeout=10)


async def test_record_with_a_short_ttl_expires(two_nodes):
    """A record announced with ttl=1 s disappears from reads once it expires."""
    first, second, identity = two_nodes
    record = make_peer_record(identity=identity, model=MODEL)
    await first.announce(record, ttl=1.0)
    assert [unsigned(r) for r in await second.read(MODEL)] in ([unsigned(record)], [])  # or gone already

    async def expired() -> bool:
        return await second.read(MODEL) == []

    await wait_until(expired, timeout=10)


async def test_forged_records_are_dropped(two_nodes):
    """Records stored straight through the hivemind node under another peer's subkey never reach readers.

    A forger signs a record that claims the victim's peer id (later expiry, so it would win hivemind's
    merge), and files its own valid record under the victim's subkey; readers still get the victim's record.
    """
    first, second, identity = two_nodes
    genuine = make_peer_record(identity=identity, model=MODEL)
    await first.announce(genuine, ttl=60)
    forger = Identity.generate()
    claims_victim = make_peer_record(identity=forger, model=MODEL, peer_id=identity.peer_id, start=0, end=99)
    misfiled = make_peer_record(identity=forger, model=MODEL)
    node = second.dht_node
    expiration = time.time() + 600
    for forged in (claims_victim, misfiled):
        stored = await node.store(dht_key(MODEL), forged.to_wire(), expiration, subkey=identity.peer_id)
        assert not stored
    for reader in (first, second):
        assert [unsigned(r) for r in await reader.read(MODEL)] == [unsigned(genuine)]


async def test_unreachable_initial_peer_fails_fast_with_one_line():
    """Joining through an address where nobody listens raises PeerUnreachableError, not a hang."""
    dead = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWQdi41KUvZgKVgYgCwK5aKuwDTLvWLtJFa5iWMtDv4uBs"
    with pytest.raises(PeerUnreachableError) as info:
        await asyncio.wait_for(HivemindDiscovery.create([dead], join_timeout=20), 40)
    assert "\n" not in str(info.value)


async def test_the_swarm_listing_has_one_entry_per_model_however_many_peers(two_nodes):
    """Two peers of one model and one of another: read_models() returns one record per model, and the
    model's own key still lists both of its peers."""
    first, second, identity = two_nodes
    other = Identity.generate()
    await first.announce(make_peer_record(identity=identity, model=MODEL), ttl=30)
    # records of other identities than a node's own keep the expiry they were signed with
    await first.announce(make_peer_record(identity=other, model=MODEL, start=4, end=8,
                                          expires_at=time.time() + 60), ttl=30)
    third = Identity.generate()
    await second.announce(make_peer_record(identity=third, model="other-model", expires_at=time.time() + 60),
                          ttl=30)

    async def listed() -> bool:
        return sorted(r.model for r in await second.read_models()) == sorted([MODEL, "other-model"])

    await wait_until(listed, 30)
    assert {r.peer_id for r in await second.read(MODEL)} == {identity.peer_id, other.peer_id}


async def test_bootstrap_metrics_count_its_dht_neighbours_and_relay(tmp_path):
    """--metrics-port: a scrape shows the DHT neighbours (two nodes joined through it) and, with --relay, the
    relay's circuit and byte counters."""
    import urllib.request

    port = free_port()

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    async with running_bootstrap(tmp_path, "--metrics-port", str(port), "--relay") as (address, _, _):
        nodes = [await HivemindDiscovery.create([address]) for _ in range(2)]
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                text = await asyncio.to_thread(scrape)
                line = next(x for x in text.splitlines() if x.startswith("molink_bootstrap_dht_neighbours "))
                if float(line.split()[1]) >= 2:
                    break
                assert asyncio.get_running_loop().time() < deadline, line
                await asyncio.sleep(0.2)  # between scrapes
            for name in ("molink_relay_circuits_open", "molink_relay_circuits_total", "molink_relay_bytes_total"):
                assert any(x.startswith(name + " ") for x in text.splitlines()), name
        finally:
            for node in nodes:
                await node.shutdown()
