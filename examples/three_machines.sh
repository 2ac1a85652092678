#!/usr/bin/env bash
# A private swarm on three machines: A runs the bootstrap node and the first half of the model, B the second
# half, C asks it a question. Run the roles in this order, each on its own machine (the same checkout and
# `bash run.sh demo --help` once on each, so .venv exists):
#
#   A$ bash examples/three_machines.sh bootstrap                       # prints the swarm's ADDR, keep it running
#   A$ bash examples/three_machines.sh peer  IP_OF_A ADDR 0:15         # layers 0..14, keep it running
#   B$ bash examples/three_machines.sh peer  IP_OF_B ADDR 15:30        # layers 15..29, keep it running
#   C$ bash examples/three_machines.sh client ADDR "Why is the sky blue?"
#
# Ports to open between the machines (TCP): 31337 on A (the bootstrap's DHT), and on A and B 31330 (a peer's
# data port, where clients and other peers send hidden states) and 31331 (the peer's DHT node: data port + 1).
# --announce-addr publishes IP:31330, the address the other machines use; it matters when a machine has
# several addresses (Docker bridges, VPNs) or sits behind a router that forwards the port to it. Behind NATs
# with no port forward, leave it out: the bootstrap relays and peers hole-punch (see the README).
#
# MODEL (default smollm2-135m, 30 layers, shipped offline) may be any alias, hub id or local folder the peers
# and the client can all read. PYTHON defaults to the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
MODEL=${MODEL:-smollm2-135m}
BOOT_PORT=${BOOT_PORT:-31337}
PEER_PORT=${PEER_PORT:-31330}

role=${1:-}
shift || true
case "$role" in
    bootstrap)
        # a fixed identity keeps ADDR the same across restarts of the bootstrap
        mkdir -p "${HOME}/.molink"
        exec "$PYTHON" -m swarm.bootstrap --listen "0.0.0.0:${BOOT_PORT}" --identity "${HOME}/.molink/bootstrap.key"
        ;;
    peer)
        [ $# -eq 3 ] || { echo "usage: $0 peer MY_IP ADDR START:END" >&2; exit 2; }
        exec "$PYTHON" -m swarm.peer --model "$MODEL" --initial-peers "$2" --layers "$3" \
            --listen "0.0.0.0:${PEER_PORT}" --announce-addr "$1:${PEER_PORT}"
        ;;
    client)
        [ $# -ge 1 ] || { echo "usage: $0 client ADDR [PROMPT]" >&2; exit 2; }
        exec "$PYTHON" examples/python_chat.py --model "$MODEL" --initial-peers "$1" \
            --prompt "${2:-What is the capital of France?}" --max-new-tokens "${MAX_NEW_TOKENS:-64}"
        ;;
    *)
        echo "usage: $0 bootstrap | peer MY_IP ADDR START:END | client ADDR [PROMPT]" >&2
        exit 2
        ;;
esac
