"""Rollups on both back ends: counters across resets, wrap-around and DST changes; late data re-rolled."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from drivers.base import Quality, Reading
from gridctl.history import Historian, SiteReadings

PARIS = ZoneInfo("Europe/Paris")
SITE = "test-site"
D1 = "meters/d1_energy"  # Wh, resets
D2 = "meters/d2_energy"  # kWh, wraps at 100,000
PV = "meters/pv_power"
STEP = timedelta(minutes=15)


def local(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)


def counter_readings(start: datetime, end: datetime, reset_at: datetime) -> list[Reading]:
    """15-minute readings, inclusive of both ends. d1 counts 1 kWh per hour in Wh and is reset at
    `reset_at` (its first reading after the reset shows what was counted since); d2 counts 2 kWh per
    hour starting just below its wrap-around."""
    readings = []
    d1 = 7_000_000.0
    d2 = 99_990.0
    ts = start
    while ts <= end:
        readings.append(Reading(D1, ts, d1, Quality.GOOD))
        readings.append(Reading(D2, ts, d2, Quality.GOOD))
        ts += STEP
        d1 = 250.0 if ts == reset_at else d1 + 250.0
        d2 = (d2 + 0.5) % 100_000
    return readings


async def write(h: Historian, readings: list[Reading]) -> None:
    await h.write([SiteReadings(SITE, readings)], received_at=max(r.ts for r in readings))


async def test_counter_energy_across_reset_wrap_and_spring_dst(historian: Historian):
    start, end = local(date(2026, 3, 28)), local(date(2026, 3, 31))
    reset_at = datetime(2026, 3, 29, 5, 15, tzinfo=UTC)
    readings = counter_readings(start, end, reset_at)
    # In three out-of-order batches, as a spool flush after an outage would deliver them.
    third = len(readings) // 3
    for batch in (readings[third : 2 * third], readings[2 * third :], readings[:third]):
        await write(historian, batch)
    assert await historian.refresh_rollups() > 0

    daily = await historian.dwelling_energy("test-site", date(2026, 3, 27), date(2026, 4, 1), "day")
    assert list(daily.columns) == ["d1", "d2"]
    assert [ts.isoformat() for ts in daily.index] == [
        "2026-03-27T00:00:00+01:00",
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]
    # The 29th has 23 hours; the days outside the data are NaN, not zero.
    assert daily["d1"].tolist()[1:4] == [24.0, 23.0, 24.0]
    assert daily["d2"].tolist()[1:4] == [48.0, 46.0, 48.0]
    assert daily.iloc[[0, 4]].isna().all().all()

    hourly = await historian.dwelling_energy("test-site", date(2026, 3, 29), date(2026, 3, 30), "hour")
    assert len(hourly) == 23
    assert hourly["d1"].tolist() == [1.0] * 23
    assert hourly["d2"].tolist() == [2.0] * 23
    assert hourly.index[2].isoformat() == "2026-03-29T03:00:00+02:00"

    monthly = await historian.dwelling_energy("test-site", date(2026, 2, 1), date(2026, 5, 1), "month")
    assert [ts.isoformat() for ts in monthly.index] == [
        "2026-02-01T00:00:00+01:00",
        "2026-03-01T00:00:00+01:00",
        "2026-04-01T00:00:00+02:00",
    ]
    assert math.isnan(monthly["d1"].iloc[0]) and math.isnan(monthly["d1"].iloc[2])
    assert monthly["d1"].iloc[1] == 71.0 and monthly["d2"].iloc[1] == 142.0


async def test_counter_energy_on_the_autumn_25_hour_day(historian: Historian):
    start, end = local(date(2026, 10, 24)), local(date(2026, 10, 27))
    await write(historian, counter_readings(start, end, reset_at=end + STEP))
    await historian.refresh_rollups()
    daily = await historian.dwelling_energy("test-site", date(2026, 10, 24), date(2026, 10, 27), "day", ["d1"])
    assert daily["d1"].tolist() == [24.0, 25.0, 24.0]
    hourly = await historian.dwelling_energy("test-site", date(2026, 10, 25), date(2026, 10, 26), "hour", ["d1"])
    assert len(hourly) == 25
    # 02:00 local happens twice, once in summer time and once in winter time.
    assert [ts.isoformat() for ts in hourly.index[1:4]] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
    ]


async def test_counter_read_back_a_little_is_not_a_reset(historian: Historian):
    """The same count read with less precision (a float32 register after a full-precision value, a
    coarser scale) steps back a little: nothing was consumed, and the next rise counts from there. A
    step back near the top of a counter's range is no wrap-around either."""
    t0 = datetime(2026, 6, 1, 10, tzinfo=UTC)
    d2 = [99_980.0, 99_990.0375, 99_990.0, 99_995.0]  # wraps at 100,000
    d1 = [5_562_737.5, 5_562_700.0, 5_563_700.0, 5_564_700.0]  # Wh
    await write(historian, [Reading(address, t0 + timedelta(hours=i), value, Quality.GOOD)
                            for address, values in ((D1, d1), (D2, d2)) for i, value in enumerate(values)])
    await historian.refresh_rollups()
    energy = await historian.dwelling_energy("test-site", date(2026, 6, 1), date(2026, 6, 2), "hour", ["d1", "d2"])
    assert energy["d1"].dropna().tolist() == [0.0, 1.0, 1.0]
    assert energy["d2"].dropna().tolist() == pytest.approx([10.0375, 0.0, 5.0])


async def test_measurement_rollups_and_late_data(historian: Historian):
    t0 = datetime(2026, 6, 1, 8, tzinfo=UTC)
    await write(historian, [Reading(PV, t0 + timedelta(minutes=30 * i), float(i), Quality.GOOD) for i in range(6)])
    await historian.refresh_rollups()
    hourly = await _hourly(historian, PV, t0, 3)
    assert hourly == [(2, 0.5, 0.0, 1.0, 1.0), (2, 2.5, 2.0, 3.0, 3.0), (2, 4.5, 4.0, 5.0, 5.0)]

    # A late reading in the second hour changes that hour and its day only.
    await write(historian, [Reading(PV, t0 + timedelta(hours=1, minutes=15), 11.0, Quality.GOOD)])
    assert await historian.refresh_rollups() == 1
    hourly = await _hourly(historian, PV, t0, 3)
    assert hourly[1] == pytest.approx((3, 16.0 / 3, 2.0, 11.0, 3.0))
    assert hourly[0] == (2, 0.5, 0.0, 1.0, 1.0)
    daily = await _daily(historian, PV, date(2026, 6, 1))
    assert daily == pytest.approx((7, 26.0 / 7, 0.0, 11.0, 5.0))
    assert await historian.refresh_rollups() == 0


async def test_late_counter_reading_rerolls_the_buckets_it_splits(historian: Historian):
    t0 = datetime(2026, 6, 1, 10, tzinfo=UTC)
    await write(historian, [Reading(D2, t0, 100.0, Quality.GOOD), Reading(D2, t0 + timedelta(hours=4), 140.0,
                                                                           Quality.GOOD)])
    await historian.refresh_rollups()
    energy = await historian.dwelling_energy("test-site", date(2026, 6, 1), date(2026, 6, 2), "hour", ["d2"])
    by_hour = energy["d2"].dropna()
    # Across the gap the whole delta lands in the hour where the counter is read again.
    assert by_hour.to_dict() == {pd.Timestamp(t0 + timedelta(hours=3)).tz_convert(PARIS): 40.0}

    # The 11:00 reading arrives late: 10 kWh belong to 10:00-11:00, the rest to the hour closing at 14:00.
    await write(historian, [Reading(D2, t0 + timedelta(hours=1), 110.0, Quality.GOOD)])
    await historian.refresh_rollups()
    energy = await historian.dwelling_energy("test-site", date(2026, 6, 1), date(2026, 6, 2), "hour", ["d2"])
    by_hour = energy["d2"].dropna()
    assert by_hour.to_dict() == {
        pd.Timestamp(t0).tz_convert(PARIS): 10.0,
        pd.Timestamp(t0 + timedelta(hours=3)).tz_convert(PARIS): 30.0,
    }
    daily = await historian.dwelling_energy("test-site", date(2026, 6, 1), date(2026, 6, 2), "day", ["d2"])
    assert daily["d2"].tolist() == [40.0]


FIELDS = ["sample_count", "value_avg", "value_min", "value_max", "value_last"]


async def _hourly(h: Historian, address: str, t0: datetime, hours: int) -> list[tuple]:
    frame = await h.rollups(SITE, [address], t0, t0 + timedelta(hours=hours), "hour")
    assert frame["bucket"].tolist() == [pd.Timestamp(t0 + timedelta(hours=i)) for i in range(hours)]
    return [tuple(row) for row in frame[FIELDS].itertuples(index=False)]


async def _daily(h: Historian, address: str, day: date) -> tuple:
    start = local(day)
    frame = await h.rollups(SITE, [address], start, start + timedelta(days=1), "day")
    assert frame["bucket"].tolist() == [pd.Timestamp(start)]
    return tuple(frame[FIELDS].iloc[0])
