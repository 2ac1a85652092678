"""python -m swarm.peer: serve a span of a model's layers to the swarm.

Examples:
    python -m swarm.peer --model llama-3-8b --initial-peers /ip4/203.0.113.5/tcp/31337/p2p/12D3Koo...
    python -m swarm.peer --model ./my-checkpoint --initial-peers ADDR --layers 0:16 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from swarm import __version__
from swarm.cli_args import add_initial_peers, check_initial_peers_given
from swarm.errors import MolinkError, exit_code
from swarm.net.records import MAX_RECORD_TTL_S

log = logging.getLogger("molink.peer")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m swarm.peer",
        description="Serve a contiguous span of a model's transformer layers to a molink swarm. The peer loads "
        "only its layers' weights, announces its span in the DHT, and runs inference sessions for clients.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=False, help="alias (llama-3-8b), Hugging Face repo id, local directory or .gguf file")
    add_initial_peers(p, required=False)
    span = p.add_mutually_exclusive_group()
    span.add_argument("--layers", metavar="START:END", help="serve layers START..END-1 (END exclusive)")
    span.add_argument("--num-layers", type=int, metavar="N",
                      help="serve N layers where the swarm is weakest (default: as many as fit --max-memory, else 90%% "
                           "of the device's free memory; each layer counts its weights and its KV reserve)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="weights and activations dtype on this peer")
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="data port; 0.0.0.0:PORT accepts other machines and publishes this machine's interface "
                   "addresses (the default route's first), never 0.0.0.0 or 127.0.0.1")
    p.add_argument("--announce-addr", metavar="HOST:PORT",
                   help="the address to publish when others reach this peer elsewhere (a port forward, a link "
                   "emulator), without a reachability check. Without it, the relays among --initial-peers (bootstraps "
                   "run with --relay) connect back to the data port: a peer they cannot reach (behind a NAT) serves "
                   "through them, with nothing to configure")
    p.add_argument("--dht-listen", default=None, metavar="HOST:PORT",
                   help="the DHT node's address (default: the --listen host, port PORT+1 for a fixed PORT, "
                   "else any free port)")
    p.add_argument("--max-memory", type=float, metavar="GB", help="memory budget for weights and KV cache")
    p.add_argument("--identity", metavar="FILE",
                   help="private key file (created if missing); keeps the same peer id across restarts")
    p.add_argument("--announce-interval", type=float, default=5.0, metavar="SECONDS",
                   help="DHT heartbeat; the record expires after 3 intervals without one (at most 40)")
    p.add_argument("--drain-timeout", type=float, default=15.0, metavar="SECONDS",
                   help="on SIGINT/SIGTERM, how long clients get to move their sessions before the peer leaves")
    p.add_argument("--session-timeout", type=float, default=300.0, metavar="SECONDS", help="idle session lifetime")
    p.add_argument("--max-session-tokens", type=int, default=8192, help="longest session (prompt + new tokens)")
    p.add_argument("--kv-reserve-tokens", type=int, default=16384, help="KV cache tokens shared by all sessions")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--cache-dir", help="where converted GGUF checkpoints are kept (default ~/.cache/molink/models)")
    p.add_argument("--upnp", action="store_true", help="ask the home router for a port mapping (UPnP/NAT-PMP)")
    p.add_argument("--no-hole-punching", action="store_true",
                   help="keep connections through relays relayed: neither try nor answer TCP hole punches (by "
                   "default a peer behind a NAT, and the peers pushing to it, try one for every relayed connection)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while loading")
    p.add_argument("--max-client-share", type=float, default=0.5, metavar="FRACTION",
                   help="most of the KV memory the sessions of one client (source address) may hold together, so "
                        "one stranger cannot take it all (default 0.5; 1 for a private swarm)")
    p.add_argument("--batch-wait-ms", type=float, default=50.0,
                   help="a decode pass holding under half of the open sessions' rows waits for more steps, at most "
                        "this long and at most half the time of a pass (default 50; 0 disables)")
    p.add_argument("--no-tune-linears", action="store_true",
                   help="skip the start-up measurement that picks the faster CPU form of linear layers over 2-4 "
                        "rows (batched decode steps); see models/kernels.py")
    p.add_argument("--throughput", type=float, metavar="TOKENS_PER_S",
                   help="announce this speed (tokens/s through the span at batch 1) instead of measuring it at "
                        "start-up; clients time every peer before they prefer it and ban one whose claim is a "
                        "thousand times what they measure")
    p.add_argument("--rebalance-every", type=float, default=120.0, metavar="SECONDS",
                   help="about this often (jittered), check whether moving this peer's span would raise the "
                        "swarm's throughput by a clear margin (20%%), and if so drain, load the new span and "
                        "announce it; never again within 2.5 periods of a move (default 120; 0: never move; a "
                        "span pinned with --layers never moves)")
    p.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics, HOST being --listen's (default: off)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line (time, level, logger, message) for log collectors")
    p.add_argument("--list-models", action="store_true",
                   help="print the model aliases (alias, Hugging Face repo id) grouped by model family, and exit; "
                   "--model is not needed")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_initial_peers_given(parser, args)
    if args.batch_wait_ms < 0:
        parser.error(f"--batch-wait-ms must be >= 0, got {args.batch_wait_ms:g}")
    if args.throughput is not None and not 0 < args.throughput < float("inf"):
        parser.error(f"--throughput must be a positive number of tokens/s, got {args.throughput:g}")
    if not 0 <= args.rebalance_every < float("inf"):
        parser.error(f"--rebalance-every must be a number of seconds >= 0, got {args.rebalance_every:g}")
    if not 0 < args.max_client_share <= 1:
        parser.error(f"--max-client-share must be in (0, 1], got {args.max_client_share:g}")
    longest = MAX_RECORD_TTL_S / 3  # a record lives 3 intervals, and its signed life is capped
    if not 0 < args.announce_interval <= longest:
        parser.error(f"--announce-interval must be in (0, {longest:g}] seconds, got {args.announce_interval:g}")
    from swarm.logging_setup import setup_logging

    setup_logging(args.log_level, json_lines=args.log_json)
    if args.list_models:
        from models.adapters import supported_model_types
        from models.aliases import ALIAS_TABLE, format_alias_table

        print(format_alias_table(ALIAS_TABLE, supported_model_types()), end="")
        return 0
    if not args.model:
        print("error: --model is required (an alias, repo id, directory or .gguf file)", file=sys.stderr)
        return 2
    from peer.config import PeerConfig
    from peer.main import print_moved, print_ready, run_peer

    config = PeerConfig(
        model=args.model, initial_peers=tuple(args.initial_peers), layers=args.layers, num_layers=args.num_layers,
        device=args.device, dtype=args.dtype, listen=args.listen, announce_addr=args.announce_addr,
        dht_listen=args.dht_listen, max_memory_gb=args.max_memory, identity=args.identity,
        announce_interval_s=args.announce_interval, drain_timeout_s=args.drain_timeout,
        session_timeout_s=args.session_timeout,
        max_session_tokens=args.max_session_tokens, kv_reserve_tokens=args.kv_reserve_tokens,
        threads=args.threads, cache_dir=args.cache_dir, upnp=args.upnp, progress=not args.no_progress,
        hole_punching=not args.no_hole_punching,
        tune_linears=not args.no_tune_linears, batch_wait_ms=args.batch_wait_ms,
        max_client_share=args.max_client_share, throughput=args.throughput, metrics_port=args.metrics_port,
        rebalance_every_s=args.rebalance_every,
    )
    try:
        asyncio.run(run_peer(config, ready=print_ready, moved=print_moved, version=__version__))
    except MolinkError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
