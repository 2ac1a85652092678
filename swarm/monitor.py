"""python -m swarm.monitor: a live web page of the swarm (every model, its layer coverage, each peer's span,
state, speed, load, free KV cache and how it is reached), for operators, readable on a phone.

One process, one event loop: uvicorn serves a FastAPI app; a task of the same loop reads the swarm's records
from the DHT every ``--refresh`` seconds (a client-mode DHT node: it stores nothing and is not routed
through). ``/`` is a self-contained page (no external scripts or fonts: a swarm's LAN may have no internet)
that polls ``/api/swarm`` (the JSON ``snapshot`` below) and redraws.

    python -m swarm.monitor --initial-peers /ip4/203.0.113.5/tcp/31337/p2p/Qm... --listen 0.0.0.0:8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from peer.placement import Holding, layer_capacity, swarm_throughput, throughput_bound
from swarm.cli_args import add_initial_peers, check_initial_peers_given
from swarm.net.records import PeerRecord, PeerState
from swarm.status import coverage_report, reached

log = logging.getLogger("molink.monitor")


def peer_view(r: PeerRecord) -> dict[str, Any]:
    """What the page shows of one peer (pure)."""
    how = reached(r)
    return {
        "peer_id": str(r.peer_id), "address": how["address"], "reached": how["reached"],
        "relays": [m.split("/")[2] for m in how["relays"]], "start": r.start, "end": r.end, "state": r.state.value,
        "throughput": round(r.throughput, 2), "load": r.load, "queue": r.queue, "free_kv": r.free_cache_tokens,
        "dtype": r.dtype, "version": r.version, "links": dict(r.links), "subspans": r.subspans,
        "rates": {k: round(v, 2) for k, v in r.rates.items()},
    }


def model_view(model: str, records: Sequence[PeerRecord]) -> dict[str, Any]:
    """One model's part of the page (pure): coverage and capacity per layer, the swarm's throughput with
    sub-span routes and the bound for the same peers (peer/placement.py), and its peers by span."""
    num_layers = max((r.num_layers for r in records), default=0) or max((r.end for r in records), default=0)
    online = [r for r in records if r.state is PeerState.ONLINE]
    held = [Holding(r.start, r.end, r.throughput) for r in online]
    report = coverage_report(records, num_layers)
    return {
        "model": model, "names": sorted({r.model_name for r in records if r.model_name}),
        "num_layers": num_layers, "peers_per_layer": report["peers_per_layer"],
        "capacity": [round(float(c), 2) for c in layer_capacity(held, num_layers)],
        "missing": report["missing"], "complete": report["complete"],
        "throughput": round(swarm_throughput(held, num_layers), 2),
        "bound": round(throughput_bound(held, num_layers), 2),
        "peers": [peer_view(r) for r in sorted(records, key=lambda r: (r.start, r.end, r.peer_id))],
    }


def snapshot(by_model: Mapping[str, Sequence[PeerRecord]], now: float) -> dict[str, Any]:
    """The whole page's data (pure): every model the swarm serves, by key."""
    return {"time": now, "models": [model_view(m, recs) for m, recs in sorted(by_model.items()) if recs]}


class Reader:
    """Keeps the latest snapshot: reads every model's records every ``every_s`` seconds."""

    def __init__(self, initial_peers: Sequence[str], every_s: float) -> None:
        self.initial_peers = list(initial_peers)
        self.every_s = every_s
        self.latest: dict[str, Any] = {"time": 0.0, "models": [], "error": "reading the swarm..."}
        self._discovery: Any = None

    async def read_once(self) -> None:
        listed = await self._discovery.read_models()
        found = await asyncio.gather(*(self._discovery.read(r.model) for r in listed))
        self.latest = snapshot({r.model: recs for r, recs in zip(listed, found, strict=True)}, time.time())

    async def run(self) -> None:
        from swarm.net.dht import HivemindDiscovery

        self._discovery = await HivemindDiscovery.create(self.initial_peers, client_mode=True)
        try:
            while True:
                try:
                    await self.read_once()
                except Exception as e:  # a DHT hiccup: the page keeps the last picture and says why
                    log.warning("could not read the swarm: %s", e)
                    self.latest = {**self.latest, "error": f"could not read the swarm: {e}"}
                await asyncio.sleep(self.every_s)
        finally:
            await self._discovery.shutdown()


def build_app(reader: Reader) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        task = asyncio.ensure_future(reader.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    app = FastAPI(title="molink swarm monitor", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.get("/api/swarm")
    async def data() -> Any:
        return JSONResponse(reader.latest)

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m swarm.monitor",
        description="Serve a live web page of the swarm: each model's layer coverage and every peer's span, "
        "state, speed, load, free KV cache and how it is reached (JSON at /api/swarm).")
    add_initial_peers(p, required=True)
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where the page is served (default 127.0.0.1:8080; 0.0.0.0:PORT to reach it from a phone)")
    p.add_argument("--refresh", type=float, default=2.0, metavar="SECONDS", help="how often the swarm is read (default 2)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    args = p.parse_args(argv)
    check_initial_peers_given(p, args)
    if not args.refresh > 0:
        p.error(f"--refresh must be a positive number of seconds, got {args.refresh:g}")
    from swarm.http import serve_app
    from swarm.logging_setup import setup_logging
    from swarm.net.transport import parse_addr

    setup_logging(args.log_level, json_lines=args.log_json)
    host, port = parse_addr(args.listen)
    serve_app(build_app(Reader(args.initial_peers, args.refresh)), host, port, "monitor ready: {url}/",
              args.log_level.lower())
    return 0


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>molink swarm</title>
<style>
 body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:10px 16px;display:flex;flex-wrap:wrap;gap:12px;align-items:baseline}
 header h1{font-size:18px;margin:0} #when{opacity:.7;font-size:13px}
 main{padding:12px;max-width:1200px;margin:auto}
 .model{background:#fff;border-radius:8px;padding:12px;margin-bottom:16px;box-shadow:0 1px 3px #0002}
 .model h2{font-size:16px;margin:0 0 4px;word-break:break-all}
 .facts{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:13px;margin-bottom:8px}
 .ok{color:#137333} .bad{color:#b3261e}
 .layers{display:flex;height:26px;border-radius:4px;overflow:hidden;margin:6px 0 12px}
 .layers div{flex:1;border-right:1px solid #fff8}
 table{border-collapse:collapse;width:100%;font-size:13px}
 th,td{text-align:left;padding:5px 6px;border-bottom:1px solid #e4e6ea;vertical-align:middle}
 th{color:#5f6570;font-weight:600}
 .bar{position:relative;height:12px;background:#e9ecf1;border-radius:3px;min-width:90px}
 .bar span{position:absolute;top:0;bottom:0;background:#3b6fd8;border-radius:3px}
 .state-online{color:#137333} .state-joining{color:#8a6d00} .state-draining,.state-offline{color:#b3261e}
 code{font-size:12px}
 @media (max-width:700px){
  thead{display:none} table,tbody,tr,td{display:block;width:auto}
  tr{border:1px solid #e4e6ea;border-radius:6px;margin-bottom:8px;padding:4px}
  td{border:none;padding:2px 6px} td::before{content:attr(data-k) ": ";color:#5f6570;font-weight:600}
 }
</style></head>
<body><header><h1>molink swarm</h1><span id="when">connecting...</span></header>
<main id="models"></main>
<script>
const esc = s => String(s).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
function colour(cap, top) {
  if (cap <= 0) return "#b3261e";
  const t = Math.min(cap / (top || 1), 1);
  return `hsl(${Math.round(20 + 100 * t)}, 65%, ${Math.round(62 - 18 * t)}%)`;
}
function cell(k, v) { return `<td data-k="${esc(k)}">${v}</td>`; }
function render(data) {
  const when = data.time ? new Date(data.time * 1000).toLocaleTimeString() : "-";
  document.getElementById("when").textContent =
    (data.error ? data.error + " - " : "") + `${data.models.length} model(s), read at ${when}`;
  document.getElementById("models").innerHTML = data.models.map(m => {
    const top = Math.max(...m.capacity, 0);
    const layers = m.capacity.map((c, i) =>
      `<div title="layer ${i}: ${m.peers_per_layer[i]} peer(s), ${c} tok/s" style="background:${colour(c, top)}"></div>`).join("");
    const gaps = m.missing.map(([a, b]) => `${a}..${b - 1}`).join(", ");
    const rows = m.peers.map(p => {
      const left = 100 * p.start / m.num_layers, width = 100 * (p.end - p.start) / m.num_layers;
      const how = p.reached === "relayed" ? `relayed via ${esc(p.relays[0] || "?")}` : esc(p.reached);
      return `<tr class="peer" data-peer="${esc(p.peer_id)}">` +
        cell("peer", `<code>${esc(p.peer_id.slice(0, 12))}</code>`) +
        cell("layers", `${p.start}:${p.end}<div class="bar"><span style="left:${left}%;width:${width}%"></span></div>`) +
        cell("state", `<span class="state-${esc(p.state)}">${esc(p.state)}</span>`) +
        cell("tok/s", p.throughput) + cell("sessions", `${p.load} (${p.queue} queued)`) +
        cell("free KV", p.free_kv) + cell("reached", `${how} <code>${esc(p.address)}</code>`) +
        cell("dtype", esc(p.dtype)) + `</tr>`;
    }).join("");
    return `<section class="model" data-model="${esc(m.model)}"><h2>${esc(m.names.join(", ") || m.model)}</h2>
      <div class="facts"><span><code>${esc(m.model)}</code></span><span>${m.num_layers} layers</span>
      <span>${m.peers.length} peer(s)</span>
      <span class="${m.complete ? "ok" : "bad"}">${m.complete ? "every layer served" : "missing layers " + gaps}</span>
      <span>${m.throughput} tok/s of ${m.bound} possible</span></div>
      <div class="layers">${layers}</div>
      <table><thead><tr><th>peer</th><th>layers</th><th>state</th><th>tok/s</th><th>sessions</th><th>free KV</th>
      <th>reached</th><th>dtype</th></tr></thead><tbody>${rows}</tbody></table></section>`;
  }).join("") || "<p>No model is served through these initial peers yet.</p>";
}
async function poll() {
  try { render(await (await fetch("api/swarm", {cache: "no-store"})).json()); }
  catch (e) { document.getElementById("when").textContent = "monitor unreachable: " + e; }
  setTimeout(poll, 2000);
}
poll();
</script></body></html>
"""


if __name__ == "__main__":
    sys.exit(main())
