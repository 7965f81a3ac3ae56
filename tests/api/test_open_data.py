"""Open data never lets a few dwellings be recovered by subtraction: when a building's figure of a day is withheld,
the site total and the other buildings' figures of that day never differ by that building's few dwellings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drivers.base import Quality, Reading
from gridctl.api import API_PREFIX
from gridctl.config.models import Site
from gridctl.history import SiteReadings
from tests.api.conftest import Api
from tests.api.support import NOW, history_readings

SITE = "zac-saint-sauveur"
MINIMUM = 10


async def _report_on(api: Api, site: Site, day: int, dwellings: list) -> None:
    """These dwellings' meters (and no others) count through local day `day` of March 2026."""
    hours = [datetime(2026, 3, day - 1, 23, tzinfo=UTC) + timedelta(hours=h) for h in range(25)]
    readings = [Reading(d.meter, t, 6000.0 + 100 * day + 0.1 * n + 0.25 * i, Quality.GOOD)
                for n, d in enumerate(dwellings) for i, t in enumerate(hours)]
    await api.historian.write([SiteReadings(site.id, readings)], received_at=hours[-1])
    await api.historian.refresh_rollups()


async def _open(api: Api, site: Site, start: str, end: str) -> dict[str | None, dict[str, dict]]:
    """Every figure published for the site and each building, by day."""
    figures: dict[str | None, dict[str, dict]] = {}
    response = await api.client.get(f"{API_PREFIX}/open/sites/{site.id}/daily?start={start}&end={end}")
    assert response.status_code == 200, response.text
    figures[None] = {d["day"]: d for d in response.json()["days"]}
    for building in sorted({d.building for d in site.dwellings}):
        response = await api.client.get(
            f"{API_PREFIX}/open/sites/{site.id}/buildings/{building}/daily?start={start}&end={end}")
        if response.status_code == 200:
            figures[building] = {d["day"]: d for d in response.json()["days"]}
        else:
            assert response.status_code == 409
    return figures


def _assert_no_differencing(figures: dict[str | None, dict[str, dict]]) -> None:
    """No published figure, and no site total minus the day's published building figures, covers 1 to 9
    reporting dwellings."""
    for day, total in figures[None].items():
        published = {b: f[day] for b, f in figures.items() if b is not None and f[day]["energy_kwh"] is not None}
        for figure in published.values():
            assert figure["dwellings_reporting"] >= MINIMUM, (day, figure)
        if total["energy_kwh"] is None:
            continue
        assert total["dwellings_reporting"] >= MINIMUM
        rest = total["dwellings_reporting"] - sum(f["dwellings_reporting"] for f in published.values())
        assert rest == 0 or rest >= MINIMUM, (day, rest, published)


async def test_a_building_withheld_is_not_revealed_by_the_site_total(api: Api) -> None:
    site = api.site
    block_a = [d for d in site.dwellings if d.building == "block-a"]
    block_b = [d for d in site.dwellings if d.building == "block-b"]
    assert (len(block_a), len(block_b)) == (24, 24)
    # A day apart, so that each day's figures are that day's meters only.
    await _report_on(api, site, 22, block_a + block_b[:5])  # block-b: 5 reporting
    await _report_on(api, site, 24, block_a + block_b[:12])  # block-b: 12 reporting
    await _report_on(api, site, 26, block_a)  # block-b: none
    figures = await _open(api, site, "2026-03-18", "2026-03-27")
    _assert_no_differencing(figures)

    day = "2026-03-22"
    assert figures[None][day]["dwellings_reporting"] == 29 and figures[None][day]["energy_kwh"] is not None
    assert figures["block-b"][day]["energy_kwh"] is None
    # Site total minus block A would be block B's five dwellings: block A is withheld that day.
    assert figures["block-a"][day]["energy_kwh"] is None
    assert "site total minus this building" in figures["block-a"][day]["note"]
    # With twelve reporting in block B, everything is published and adds up.
    day = "2026-03-24"
    parts = figures["block-a"][day]["energy_kwh"] + figures["block-b"][day]["energy_kwh"]
    assert abs(figures[None][day]["energy_kwh"] - parts) < 1e-6
    # Nobody in block B: the site total is block A's, which hides no one.
    day = "2026-03-26"
    assert figures["block-a"][day]["energy_kwh"] == figures[None][day]["energy_kwh"]
    assert figures["block-b"][day]["dwellings_reporting"] == 0
    # Days when everyone reported are untouched.
    assert all(figures[b]["2026-03-19"]["energy_kwh"] is not None for b in figures)


async def test_twenty_five_is_twenty_four_plus_one(api: Api) -> None:
    site = api.site.model_copy(update={"id": "twenty-five", "dwellings": api.site.dwellings[:25]})
    await api.historian.sync_site(site)
    # Its own meters' history (a site's series are its own), the days before those below.
    await api.historian.write([SiteReadings(site.id, history_readings(site, NOW - timedelta(days=3), NOW))],
                              received_at=NOW)
    api.ctx.extra_sites = {**api.ctx.extra_sites, "twenty-five": site}
    lone = site.dwellings[24]
    assert lone.building == "block-b"
    block_a = site.dwellings[:24]
    await _report_on(api, site, 22, [*block_a[:9], lone])  # ten in all
    await _report_on(api, site, 24, block_a[:9])  # nine in all
    figures = await _open(api, site, "2026-03-18", "2026-03-25")
    # Block A is never published: the site total minus it would be the lone dwelling of block B.
    assert set(figures) == {None}
    refused = await api.client.get(f"{API_PREFIX}/open/sites/twenty-five/buildings/block-a/daily")
    assert refused.status_code == 409 and "rest of the site (1)" in refused.json()["detail"]
    _assert_no_differencing(figures)
    assert figures[None]["2026-03-19"]["dwellings_reporting"] == 25
    assert figures[None]["2026-03-22"]["dwellings_reporting"] == 10
    assert figures[None]["2026-03-22"]["energy_kwh"] is not None
    assert figures[None]["2026-03-24"]["energy_kwh"] is None
    assert figures[None]["2026-03-24"]["note"] == "fewer than 10 dwellings reported"
    listed = {s["site_id"]: s for s in (await api.client.get(f"{API_PREFIX}/open/sites")).json()}
    assert listed["twenty-five"]["buildings"] == []
