"""What the swarm page shows, from records (swarm/monitor.py: snapshot is pure)."""

from __future__ import annotations

from swarm.monitor import PAGE, snapshot
from swarm.net.records import PeerState
from tests.factories import make_peer_record


def test_snapshot_has_coverage_capacity_and_peers_by_span():
    a = make_peer_record(start=0, end=4, throughput=10.0, num_layers=8, model_name="tiny")
    b = make_peer_record(start=2, end=6, throughput=5.0, num_layers=8, load=3, queue=1)
    gone = make_peer_record(start=6, end=8, throughput=5.0, num_layers=8, state=PeerState.DRAINING)
    data = snapshot({"tiny-llama": [b, gone, a]}, now=123.0)
    (model,) = data["models"]
    assert data["time"] == 123.0 and model["names"] == ["tiny", "tiny-llama"]  # what each operator called it
    assert model["peers_per_layer"] == [1, 1, 2, 2, 1, 1, 0, 0]
    assert model["capacity"] == [10.0, 10.0, 15.0, 15.0, 5.0, 5.0, 0.0, 0.0]
    assert model["missing"] == [[6, 8]] and not model["complete"] and model["throughput"] == 0.0
    assert [p["peer_id"] for p in model["peers"]] == [a.peer_id, b.peer_id, gone.peer_id]
    assert model["peers"][1]["load"] == 3 and model["peers"][2]["state"] == "draining"


def test_empty_models_are_left_out_and_the_page_is_self_contained():
    assert snapshot({"m": []}, now=0.0)["models"] == []
    assert "<script src" not in PAGE and "http" not in PAGE.split("<script>")[1]  # nothing fetched from outside
