"""Does py-libp2p relay and hole-punch between homes behind NATs? A probe, not part of molink's runtime.

It builds the NAT namespaces of tests/integration/natnet.py (a public relay, a listener behind a cone or a
symmetric NAT, a dialer behind a cone NAT) and runs py-libp2p's circuit relay v2 and DCUtR there: the listener
reserves a slot on the relay, the dialer dials it through the relay, echoes 10 B, 60 KB and 1 MiB over the
relayed stream, then asks DCUtR for a hole punch and reports whether it holds a direct connection. Each step's
time is printed. molink does not depend on py-libp2p (a trio library), so it runs from its own environment:

    python -m venv /tmp/plv && /tmp/plv/bin/pip install libp2p==0.8.1
    .venv/bin/python benchmarks/libp2p_nat_probe.py --python /tmp/plv/bin/python [--listener-nat symmetric]

Needs root, iproute2 and nftables, like the NAT tests. docs/architecture.md ("Peers behind NATs") has what it
showed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTS = {"relay": 4001, "listener": 4002, "dialer": 4003}

NODE = r'''
import sys, time, logging
import multiaddr, trio
from libp2p import new_host
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.discovery import RelayDiscovery
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID, STOP_PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

logging.basicConfig(level=logging.ERROR)
ECHO = TProtocol("/probe-echo/1")
role, port = sys.argv[1], int(sys.argv[2])
T0 = time.monotonic()

def say(*what):
    print(f"[{time.monotonic() - T0:6.2f}] {role}:", *what, flush=True)

async def echo(stream):
    try:
        while data := await stream.read(65536):
            await stream.write(data)
    finally:
        await stream.close()

async def main():
    host = new_host(key_pair=create_new_key_pair())
    limits = RelayLimits(duration=3600, data=1 << 30, max_circuit_conns=16, max_reservations=16)
    hop = role == "relay"
    roles = RelayRole.HOP | RelayRole.STOP | RelayRole.CLIENT if hop else RelayRole.STOP | RelayRole.CLIENT
    protocol = CircuitV2Protocol(host, limits=limits, allow_hop=hop)
    async with host.run(listen_addrs=[multiaddr.Multiaddr(f"/ip4/0.0.0.0/tcp/{port}")]):
        host.set_stream_handler(ECHO, echo)
        host.set_stream_handler(PROTOCOL_ID, protocol._handle_hop_stream)
        host.set_stream_handler(STOP_PROTOCOL_ID, protocol._handle_stop_stream)
        async with background_trio_service(protocol):
            transport = CircuitV2Transport(host, protocol, RelayConfig(roles=roles, limits=limits))
            if hop:
                say("ID", host.get_id())
                await trio.sleep(600)
                return
            transport.discovery = RelayDiscovery(host, auto_reserve=True)
            dcutr = DCUtRProtocol(host)
            async with background_trio_service(transport.discovery), background_trio_service(dcutr):
                relay = info_from_p2p_addr(multiaddr.Multiaddr(sys.argv[3]))
                await host.connect(relay)
                if role == "listener":
                    began = time.monotonic()
                    async with trio.open_nursery() as nursery:
                        stream = await host.new_stream(relay.peer_id, [PROTOCOL_ID])
                        reserved = await transport.reserve(stream, relay.peer_id, nursery)
                        say("reservation", reserved, f"after {time.monotonic() - began:.2f} s")
                        say("ID", host.get_id())
                        await trio.sleep(600)
                    return
                target = ID.from_base58(sys.argv[4])
                began = time.monotonic()
                await transport.dial(multiaddr.Multiaddr(f"{sys.argv[3]}/p2p-circuit/p2p/{target}"))
                say(f"dialled through the relay in {time.monotonic() - began:.2f} s")
                stream = await host.new_stream(target, [ECHO])
                for size in (10, 60_000, 1 << 20):
                    began, got = time.monotonic(), 0
                    await stream.write(b"x" * size)
                    with trio.move_on_after(60):
                        while got < size and (data := await stream.read(65536)):
                            got += len(data)
                    say(f"relayed echo of {size} B: {got} B back in {time.monotonic() - began:.3f} s")
                await dcutr.event_started.wait()
                began, punched = time.monotonic(), None
                with trio.move_on_after(60):
                    punched = await dcutr.initiate_hole_punch(target)
                say(f"hole punch: {punched} after {time.monotonic() - began:.2f} s")
                say("direct connection held:", await dcutr._have_direct_connection(target))

trio.run(main)
'''


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from tests.integration.natnet import Internet, natnet_usable

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", required=True, help="a Python with libp2p (py-libp2p) installed")
    p.add_argument("--listener-nat", choices=["cone", "symmetric"], default="cone")
    args = p.parse_args()
    why = natnet_usable()
    if why is not None:
        print(f"cannot build the NATed machines here: {why}", file=sys.stderr)
        return 2
    script = Path("/tmp") / f"libp2p-probe-{time.time_ns()}.py"
    script.write_text(NODE)
    procs: list[subprocess.Popen[str]] = []
    try:
        with Internet(["relay"], {"a": args.listener_nat, "c": "cone"}) as net:
            def start(host: str, role: str, *extra: str) -> subprocess.Popen[str]:
                proc = subprocess.Popen(net.wrap(host, [args.python, str(script), role, str(PORTS[role]), *extra]),
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                procs.append(proc)
                return proc

            def identity(proc: subprocess.Popen[str]) -> str:
                assert proc.stdout is not None
                for line in proc.stdout:
                    print(line, end="")
                    if " ID " in line:
                        return line.split()[-1]
                raise RuntimeError("a node exited before it said its id")

            relay = f"/ip4/{net.addr('relay')}/tcp/{PORTS['relay']}/p2p/{identity(start('relay', 'relay'))}"
            listener = identity(start("a", "listener", relay))
            dialer = start("c", "dialer", relay, listener)
            out, _ = dialer.communicate(timeout=240)
            print(out, end="")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        script.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
