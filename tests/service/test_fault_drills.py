"""Fault drills of `gridctl run` in its own process against the simulated ZAC de la Haute-Deûle, on
TimescaleDB, through TCP fault proxies (sim/drills.py; bench/faults.py runs the longer ones):

- the database network goes silent, then its connections are reset: the history_unavailable alarm comes
  within 30 s, live values and alarms keep answering, the spool starts draining within 5 s of the
  database answering and drains faster than readings arrive, and every reading gridctl took in is stored
  once;
- the PV inverter goes silent: its device_offline alarm, its readings stored as bad, the other devices on
  their poll period, every write the devices received audited.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sim.drills import DrillHost, db_outage, device_silent, run_counts

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "sites" / "zac-haute-deule"

pytestmark = [pytest.mark.timescale, pytest.mark.slow]


async def test_database_outage_and_a_silent_device(timescale_db: str, tmp_path: Path) -> None:
    host = DrillHost(SITE, timescale_db, tmp_path, silent_device="pv-inverter")
    await host.start()
    try:
        run = host.launch()
        await host.ready()
        outages = [await db_outage(host, "blackhole", 20.0), await db_outage(host, "reset", 10.0)]
        silence = await device_silent(host, 20.0)
        # In a thread: the simulated devices share this event loop and must answer the relinquishes at stop.
        assert await asyncio.to_thread(host.stop, run) == 0
    finally:
        await host.close()
    counts = run_counts(host, run)
    print(outages, silence, counts)
    for outage in outages:
        assert outage["alarm_latency_s"] < 30
        assert outage["drain_start_s"] < 5
        assert outage["spooled_at_recovery"] > 0
        assert outage["drain_readings_per_s"] >= outage["ingest_readings_per_s"] / 2
        assert outage["api_during_outage"]["statuses"] == [200]
        assert outage["api_during_outage"]["slowest_s"] < 10
    # Every reading gridctl took in is stored, once.
    assert counts["readings_expected"] > 0
    assert counts["readings_stored"] == counts["readings_expected"]
    assert counts["readings_duplicated"] == 0
    assert counts["leases_lapsed"] == 0
    # Every write that reached a device is audited (through the journal, whatever the database did), and
    # nothing is audited as sent that no device received.
    assert counts["writes_sent"] > 0
    assert counts["writes_audited"] == counts["writes_sent"]
    assert silence["offline_alarm_s"] < 30
    assert silence["silent_device_readings"].get("bad", 0) > 0
    # Nobody waited for the silent device: every other point kept its poll period (a tick of slack).
    assert silence["others_poll_gap_ratio"] <= 2.5
