"""The historian's behaviour, the same on SQLite and on TimescaleDB: schema, ingest, quarantine, queries."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from drivers.base import Quality, Reading
from gridctl.history import Historian, SiteReadings
from gridctl.history.migrations import MIGRATIONS

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SITE = "test-site"
PV = "meters/pv_power"
TEMP = "meters/temperature"
ZONE = ZoneInfo("Europe/Paris")


async def write(h: Historian, readings: list[Reading]):
    """Writes as if received right after the newest reading (the data here lies in the past)."""
    return await h.write([SiteReadings(SITE, readings)], received_at=max(r.ts for r in readings))


def good(address: str, ts: datetime, value: float) -> Reading:
    return Reading(address, ts, value, Quality.GOOD)


async def test_upgrade_is_versioned_and_idempotent(historian: Historian):
    latest = max(m.version for m in MIGRATIONS)
    assert await historian.schema_version() == latest
    assert await historian.upgrade() == []
    assert await historian.schema_version() == latest


async def test_fresh_database_upgrades_to_latest(backend: str, make_historian):
    h = make_historian(backend)
    await h.open()
    try:
        assert await h.schema_version() == 0
        applied = await h.upgrade()
        assert applied == sorted(applied) and applied[0] == 1
        assert await h.schema_version() == applied[-1]
    finally:
        await h.close()


async def test_retried_writes_never_duplicate(historian: Historian):
    batch = [good(PV, T0 + timedelta(minutes=i), float(i)) for i in range(60)]
    first = await write(historian, batch)
    assert (first.received, first.stored, first.quarantined) == (60, 60, 0)
    # The same readings again, and a batch overlapping half of them.
    again = await write(historian, batch)
    assert again.stored == 0
    overlap = await write(historian, [good(PV, T0 + timedelta(minutes=i), float(i)) for i in range(30, 90)])
    assert overlap.stored == 30
    counts = await historian.query(SITE, [PV], T0, T0 + timedelta(hours=2), timedelta(hours=1), "count")
    assert counts[PV].tolist() == [60.0, 30.0]
    sums = await historian.query(SITE, [PV], T0, T0 + timedelta(hours=2), timedelta(hours=1), "sum")
    assert sums[PV].tolist() == [sum(range(60)), sum(range(60, 90))]


async def test_unknown_points_are_kept(historian: Historian):
    await write(historian, [good("newdevice/power_kw", T0, 4.5)])
    latest = await historian.latest(SITE, ["newdevice/power_kw"])
    assert latest["newdevice/power_kw"].value == 4.5


async def test_one_write_carries_several_sites_each_with_its_receive_time(historian: Historian):
    """The same address under two sites is two points; a site no description named yet is registered;
    readings of no known site are set aside, not filed under a guess."""
    outcome = await historian.write([
        SiteReadings(SITE, [good(PV, T0, 1.0)]),
        SiteReadings("other-site", [good(PV, T0, 2.0), good(PV, T0 + timedelta(minutes=1), 3.0)]),
        # Received a month later, as a spool flush would deliver it: judged against its own receive time.
        SiteReadings(SITE, [good(TEMP, T0, 20.0)], received_at=T0 + timedelta(days=30)),
        SiteReadings(None, [good(PV, T0, 9.0)]),
    ], received_at=T0 + timedelta(minutes=1))
    assert (outcome.received, outcome.stored, outcome.quarantined) == (5, 3, 2)
    assert (await historian.latest(SITE, [PV]))[PV].value == 1.0
    assert (await historian.latest("other-site", [PV]))[PV].value == 3.0
    assert await historian.latest(SITE, [TEMP]) == {}
    held = await historian.quarantined()
    assert [(q.site_id, q.address, q.value, q.reason) for q in held] == [
        (SITE, TEMP, 20.0, "past"), (None, PV, 9.0, "no-site")]


async def test_far_timestamps_are_quarantined_not_dropped(historian: Historian):
    received = T0
    readings = [
        good(PV, T0 - timedelta(minutes=5), 1.0),
        good(PV, T0 + timedelta(days=2), 2.0),  # clock of the device far ahead
        good(PV, T0 - timedelta(days=30), 3.0),  # replayed from a buffer a month late
    ]
    outcome = await historian.write([SiteReadings(SITE, readings)], received_at=received)
    assert (outcome.stored, outcome.quarantined) == (1, 2)
    held = await historian.quarantined()
    assert [(q.site_id, q.ts, q.value, q.reason) for q in held] == [
        (SITE, T0 + timedelta(days=2), 2.0, "future"),
        (SITE, T0 - timedelta(days=30), 3.0, "past"),
    ]
    assert await historian.quarantined(site_id="elsewhere") == []
    assert all(q.received_at == received for q in held)
    frame = await historian.query(SITE, [PV], T0 - timedelta(days=31), T0 + timedelta(days=3), timedelta(days=1), "count")
    assert frame[PV].sum() == 1


async def test_query_buckets_with_gaps_are_nan(historian: Historian):
    # 10-minute samples in hours 0 and 2; nothing in hour 1; a bad reading in hour 3.
    readings = [good(PV, T0 + timedelta(minutes=10 * i), float(i)) for i in range(6)]
    readings += [good(PV, T0 + timedelta(hours=2, minutes=10 * i), 10.0 + i) for i in range(6)]
    readings.append(Reading(PV, T0 + timedelta(hours=3), None, Quality.BAD, "timeout"))
    readings += [good(TEMP, T0 + timedelta(minutes=30), 21.5)]
    await write(historian, readings)
    start, end = T0, T0 + timedelta(hours=4)
    avg = await historian.query(SITE, [PV, TEMP], start, end, timedelta(hours=1))
    assert list(avg.index) == [pd.Timestamp(T0 + timedelta(hours=h)) for h in range(4)]
    assert str(avg.index.tz) == "UTC"
    assert list(avg.columns) == [PV, TEMP]
    assert avg[PV].iloc[0] == 2.5 and avg[PV].iloc[2] == 12.5
    assert math.isnan(avg[PV].iloc[1]) and math.isnan(avg[PV].iloc[3])
    assert avg[TEMP].iloc[0] == 21.5 and avg[TEMP].iloc[1:].isna().all()
    expected = {"min": [0.0, 10.0], "max": [5.0, 15.0], "first": [0.0, 10.0], "last": [5.0, 15.0],
                "count": [6.0, 6.0], "sum": [15.0, 75.0]}
    for aggregate, (hour0, hour2) in expected.items():
        frame = await historian.query(SITE, [PV], start, end, timedelta(hours=1), aggregate)
        assert frame[PV].iloc[0] == hour0 and frame[PV].iloc[2] == hour2, aggregate
        assert frame[PV].iloc[[1, 3]].isna().all(), aggregate
    # 20-minute buckets line up on the hour.
    fine = await historian.query(SITE, [PV], T0, T0 + timedelta(hours=1), timedelta(minutes=20), "sum")
    assert fine[PV].tolist() == [1.0, 5.0, 9.0]


async def test_local_day_buckets_follow_dst(historian: Historian):
    # One sample per UTC hour from 2026-03-28 to 2026-03-31: Paris moves to summer time on the 29th.
    start = datetime(2026, 3, 27, 23, tzinfo=UTC)  # 2026-03-28 00:00 in Paris
    readings = [good(TEMP, start + timedelta(hours=h), 1.0) for h in range(24 + 23 + 24)]
    await write(historian, readings)
    counts = await historian.query(SITE,
        [TEMP], start, start + timedelta(hours=71), timedelta(days=1), "count", timezone="Europe/Paris"
    )
    assert counts[TEMP].tolist() == [24.0, 23.0, 24.0]
    assert [ts.isoformat() for ts in counts.index] == [
        "2026-03-27T23:00:00+00:00",
        "2026-03-28T23:00:00+00:00",
        "2026-03-29T22:00:00+00:00",
    ]
    utc_days = await historian.query(SITE, [TEMP], start, start + timedelta(hours=71), timedelta(days=1), "count")
    assert utc_days[TEMP].sum() == 71 and len(utc_days) == 4


async def test_latest_value_of_many_points(historian: Historian):
    addresses = [f"bulk/p{i:03d}" for i in range(50)]
    readings = [good(a, T0 + timedelta(minutes=m), float(i * 100 + m)) for i, a in enumerate(addresses) for m in range(5)]
    readings.append(Reading(addresses[0], T0 + timedelta(minutes=9), None, Quality.BAD, "timeout"))
    await write(historian, readings)
    latest = await historian.latest(SITE, [*addresses, "bulk/never"])
    assert set(latest) == set(addresses)
    assert latest[addresses[0]].quality == Quality.BAD and latest[addresses[0]].value is None
    assert latest[addresses[0]].ts == T0 + timedelta(minutes=9)
    assert latest[addresses[7]] == Reading(addresses[7], T0 + timedelta(minutes=4), 704.0, Quality.GOOD)


async def test_stale_values_stored_with_their_quality(historian: Historian):
    await write(historian, [Reading(TEMP, T0, 20.0, Quality.STALE), Reading(TEMP, T0 + timedelta(minutes=1), True,
                                                                             Quality.GOOD)])
    latest = await historian.latest(SITE, [TEMP])
    assert latest[TEMP].value == 1.0
    frame = await historian.query(SITE, [TEMP], T0, T0 + timedelta(hours=1), timedelta(hours=1), "count")
    # Only good readings count in aggregates.
    assert frame[TEMP].tolist() == [1.0]


async def test_retention_drops_raw_and_keeps_rollups(historian: Historian):
    now = datetime(2026, 11, 20, tzinfo=UTC)
    old = now - timedelta(days=500)
    recent = now - timedelta(days=3)
    for base in (old, recent):
        await write(historian, [good("meters/d1_energy", base + timedelta(hours=h), 1000.0 * h) for h in range(5)])
        await write(historian, [good(PV, base + timedelta(hours=h), 2.0) for h in range(5)])
    await historian.refresh_rollups()
    outcome = await historian.apply_retention(now)
    assert outcome.raw_cutoffs["test-site"] == now - timedelta(days=400)
    old_counts = await historian.query(SITE, [PV], old, old + timedelta(days=1), timedelta(days=1), "count")
    assert old_counts[PV].isna().all()
    recent_counts = await historian.query(SITE, [PV], recent, recent + timedelta(days=1), timedelta(days=1), "count")
    assert recent_counts[PV].tolist() == [5.0]
    day = old.astimezone(ZONE).date()
    energy = await historian.dwelling_energy("test-site", day, day + timedelta(days=1), "day", ["d1"])
    assert energy["d1"].tolist() == [4.0]


async def test_dwelling_energy_unknown_site(historian: Historian):
    with pytest.raises(KeyError):
        await historian.dwelling_energy("nowhere", date(2026, 1, 1), date(2026, 1, 2))
