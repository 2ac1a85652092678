"""The status report: coverage per layer and missing ranges."""

from __future__ import annotations

from swarm.net.records import PeerState
from swarm.status import coverage_report, render_table
from tests.factories import make_peer_record


def test_coverage_report_and_table():
    recs = [make_peer_record(start=0, end=2, sign=False),
            make_peer_record(start=3, end=4, sign=False),
            make_peer_record(start=2, end=3, sign=False, state=PeerState.DRAINING)]
    report = coverage_report(recs, 4)
    assert report["peers_per_layer"] == [1, 1, 0, 1]
    assert report["missing"] == [[2, 3]]
    assert not report["complete"]
    text = render_table("m", recs, report)
    assert "INCOMPLETE" in text and "2..2" in text and "0:2" in text


def test_models_report_groups_the_swarm_by_model_key():
    """Without --model, status lists each model key once with its peers' names and whether it is covered."""
    from swarm.status import models_report, render_models

    recs = [make_peer_record(model="llama-aaaa", model_name="./ckpt-a", num_layers=4, start=0, end=2, sign=False),
            make_peer_record(model="llama-aaaa", model_name="copy-b", num_layers=4, start=2, end=4, sign=False),
            make_peer_record(model="qwen2-bbbb", model_name="qwen", num_layers=6, start=0, end=3, sign=False)]
    models = models_report(recs)
    assert [m["model"] for m in models] == ["llama-aaaa", "qwen2-bbbb"]
    assert models[0]["names"] == ["./ckpt-a", "copy-b"] and models[0]["peers"] == 2 and models[0]["complete"]
    assert not models[1]["complete"] and models[1]["missing"] == [[3, 6]]
    text = render_models(models)
    assert "2 model(s)" in text and "missing 3..5" in text and "complete" in text
    assert "serves no model" in render_models([])


def test_status_shows_how_each_peer_is_reached():
    from swarm.net.ways import relayed_way
    from swarm.status import reached

    relay1 = "/ip4/203.0.113.10/tcp/31337/p2p/QmfQrZF4AykDfJ5cV3qadVHqfQvqwmyfvZFvfiozRzTUKT"
    relay2 = "/ip4/203.0.113.11/tcp/31337/p2p/QmSCu27VD2Td9dLdUowH7kh7DdDSu2WzKv4Se6PXbCbnMK"
    node = "12D3KooWRch1rxjvgvMT7s4KP2Tsy1bfZeMUVND4a9xbrB16LJ9m"
    behind_nat = make_peer_record(start=0, end=2, sign=False,
                                  addrs=(relayed_way(relay1, node), relayed_way(relay2, node)),
                                  links={"9f" * 20: "punched", "ab" * 20: "relayed"})
    public = make_peer_record(start=2, end=4, sign=False, addrs=("203.0.113.12:31400", relayed_way(relay1, node)))
    assert reached(behind_nat) == {"reached": "relayed", "address": f"p2p:{node[-12:]}", "relays": [relay1, relay2]}
    assert reached(public) == {"reached": "direct", "address": "203.0.113.12:31400", "relays": [relay1]}
    text = render_table("m", [behind_nat, public], coverage_report([behind_nat, public], 4))
    assert "relayed via 203.0.113.10 (+1)" in text and "REACHED" in text
    assert "203.0.113.12:31400" in text and "direct" in text
    assert "PUSHES TO" in text and f"{'9f' * 6} punched, {'ab' * 6} relayed" in text  # how each edge was made
