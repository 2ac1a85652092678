"""The status report: coverage per layer and missing ranges."""

from __future__ import annotations

from swarm.records import PeerState
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
