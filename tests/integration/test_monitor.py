"""The live swarm page (swarm/monitor.py) in Debian's headless Chromium: it renders every peer of a real local
swarm, and a phone-sized and a desktop-sized screenshot are written to the test's output folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from swarm.launch import LocalSwarm, start_process
from tests.integration.conftest import CHILD_ENV

BROWSERS = ("chromium-headless-shell", "chromium")


def browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    assert found, "no headless Chromium: install Debian's chromium-headless-shell (bash run.sh test does, as root)"
    return found


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the browser on ``url`` with a virtual time budget, so the page's script fetches and draws first."""
    return subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=6000", *args, url], capture_output=True, text=True, timeout=120)


def test_the_swarm_page_shows_every_peer(checkpoints, swarm_of, bootstrap, tmp_path: Path):
    path = checkpoints("qwen3", num_layers=4)
    swarm: LocalSwarm = swarm_of(path, ["0:2", "2:4", "0:4"])
    ids = {p.ready.split("peer_id ")[1].split()[0] for p in swarm.peers}
    monitor = start_process([sys.executable, "-m", "swarm.monitor", "--initial-peers", bootstrap, "--listen",
                             "127.0.0.1:0", "--refresh", "1"], "monitor", tmp_path, CHILD_ENV)
    try:
        url = monitor.wait_line("monitor ready:", 60).split()[2]
        deadline = time.monotonic() + 60  # the records reach the monitor's DHT reads within a few refreshes
        while True:
            data = json.loads(urllib.request.urlopen(url + "api/swarm", timeout=10).read())
            listed = {p["peer_id"] for m in data["models"] for p in m["peers"]}
            if ids <= listed:
                break
            assert time.monotonic() < deadline, f"the monitor lists {listed}, not {ids}"
            time.sleep(0.5)  # between reads of the monitor's JSON
        (model,) = data["models"]
        assert model["complete"] and model["num_layers"] == 4 and model["throughput"] > 0

        dom = chromium(url, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        for peer_id in ids:
            assert f'data-peer="{peer_id}"' in dom.stdout, dom.stdout[-3000:]
        assert "every layer served" in dom.stdout
        for name, size in [("swarm-page-phone.png", "412,915"), ("swarm-page-desktop.png", "1280,800")]:
            shot = tmp_path / name
            run = chromium(url, f"--screenshot={shot}", f"--window-size={size}")
            assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
            print(f"screenshot: {shot}")
    finally:
        monitor.stop()
