"""A peer's record follows the passes it serves (peer/rates.py): decode and prefill figures, and the
throughput placement and routes use, replace the start-up figure."""

from __future__ import annotations

import pytest

from tests.sim.test_failover_sim import DECODE, PREFILL, drive, sim_swarm


async def test_served_steps_keep_the_record_figures_current():
    async with sim_swarm() as sim:
        server = sim.peers["a0"]
        announced = server.record()
        assert announced.rates == {}
        session = await sim.core.open_session(max_length=PREFILL + DECODE)
        await drive(session)
        now = server.record()
    assert set(now.rates) == {"decode@1", "prefill"}
    assert now.throughput == pytest.approx(now.rates["decode@1"])
    assert now.throughput != announced.throughput  # the sim's 100 tok/s start figure gave way to what was served
    assert server.live.passes >= DECODE + 1
