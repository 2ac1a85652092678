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
