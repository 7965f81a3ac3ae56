"""Several sites in one history database, on both back ends: the three demonstrators and a twin of
Saint-Sauveur (the same device ids, the same dwelling meters), back-filled from their simulations by the
demo's own path in writes that carry every site at once.

Each site's KPIs are what its own simulated meters measured; the twins keep separate series; a resident
of each sees their own consumption only.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from drivers.base import Reading
from gridctl.api import API_PREFIX, ApiSettings, create_app
from gridctl.api.energy import Bucket, cost_of
from gridctl.api.store import Role
from gridctl.clock import ManualClock
from gridctl.config import Site
from gridctl.config.units import UNITS
from gridctl.demo import backfill
from gridctl.history import Historian, SiteReadings, SQLiteHistorian, WriteOutcome
from sim.core import SimClock
from sim.site import SiteSimulation

REPO = Path(__file__).resolve().parents[2]
PARIS = ZoneInfo("Europe/Paris")
DAY = date(2026, 3, 3)
LO = datetime.combine(DAY, time(), PARIS).astimezone(UTC)
HI = LO + timedelta(days=1)
TWIN = "zac-saint-sauveur-bis"
DEMONSTRATORS = ("zac-saint-sauveur", "zac-union", "zac-haute-deule")


class Tap:
    """The historian as the back-fill sees it, keeping what each site's simulated devices gave."""

    def __init__(self, historian: Historian) -> None:
        self.historian = historian
        self.readings: dict[str, dict[str, list[Reading]]] = {}

    async def write(self, batch: Iterable[SiteReadings], *, received_at: datetime | None = None) -> WriteOutcome:
        groups = list(batch)
        for group in groups:
            by_address = self.readings.setdefault(group.site_id, {})
            for reading in group.readings:
                by_address.setdefault(reading.address, []).append(reading)
        return await self.historian.write(groups, received_at=received_at)

    async def refresh_rollups(self) -> int:
        return await self.historian.refresh_rollups()

    def value_at(self, site_id: str, address: str, moment: datetime) -> float:
        (reading,) = [r for r in self.readings[site_id][address] if r.ts == moment]
        return float(reading.value)  # type: ignore[arg-type]

    def series(self, site_id: str, address: str) -> list[Reading]:
        return self.readings[site_id][address]


# Every write of the back-fill, as it was made: (the sites' readings, when they were received).
_WRITES: list[tuple[list[SiteReadings], datetime | None]] = []


class _Recording:
    """Keeps the back-fill's writes for the next back end."""

    def __init__(self, tap: Tap) -> None:
        self.tap = tap
        self.writes: list[tuple[list[SiteReadings], datetime | None]] = []

    async def write(self, batch: Iterable[SiteReadings], *, received_at: datetime | None = None) -> WriteOutcome:
        groups = list(batch)
        self.writes.append((groups, received_at))
        return await self.tap.write(groups, received_at=received_at)

    async def refresh_rollups(self) -> int:
        return await self.tap.refresh_rollups()


@dataclass
class Together:
    client: httpx.AsyncClient
    tap: Tap
    sites: dict[str, Site]
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture(params=["sqlite", pytest.param("timescale", marks=pytest.mark.timescale)])
async def together(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Together]:
    twin_dir = tmp_path / TWIN
    shutil.copytree(REPO / "sites" / "zac-saint-sauveur", twin_dir)
    text = (twin_dir / "site.yaml").read_text()
    (twin_dir / "site.yaml").write_text(text.replace("id: zac-saint-sauveur", f"id: {TWIN}", 1))
    paths = [REPO / "sites" / name for name in DEMONSTRATORS] + [twin_dir]
    clock = SimClock(LO - timedelta(hours=2))
    simulations = [SiteSimulation(path, clock, seed=seed) for seed, path in enumerate(paths)]
    sites = {s.site.id: s.site for s in simulations}
    assert set(sites) == {*DEMONSTRATORS, TWIN}

    if request.param == "sqlite":
        historian: Historian = SQLiteHistorian(tmp_path / "history.db")
    else:
        from gridctl.history.timescale import TimescaleHistorian

        historian = TimescaleHistorian(request.getfixturevalue("timescale_db"))
    await historian.open()
    try:
        await historian.upgrade()
        for site in sites.values():
            await historian.sync_site(site)
        tap = Tap(historian)
        if not _WRITES:
            # The physics runs once (it is most of the time); the other back end stores the same writes.
            recording = _Recording(tap)
            await backfill(simulations, recording, clock, HI + timedelta(hours=1))  # type: ignore[arg-type]
            _WRITES.extend(recording.writes)  # only a whole back-fill is replayed
        else:
            for groups, received_at in _WRITES:
                await tap.write(groups, received_at=received_at)
            await tap.refresh_rollups()
        app = create_app(historian, {}, ApiSettings(rate_per_second=1000, rate_burst=1000), sites=sites,
                         clock=ManualClock(HI + timedelta(hours=2)).now)
        store = app.state.context.store
        await store.db.open()
        try:
            tokens = {}
            now = HI + timedelta(hours=2)
            _user, tokens["manager"] = await store.add_user("manager", Role.MANAGER, list(sites), now,
                                                            timedelta(days=1))
            for site_id in ("zac-saint-sauveur", TWIN):
                _user, tokens[site_id] = await store.add_user(f"resident of {site_id}", Role.RESIDENT,
                                                              [f"{site_id}/a-01"], now, timedelta(days=1))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                yield Together(client, tap, sites, tokens)
        finally:
            await store.db.close()
    finally:
        await historian.close()


def measured_kpis(tap: Tap, site: Site) -> dict[str, float]:
    """Import and export energy, net cost and peak power over [LO, HI) from the site's own simulated meters."""
    points = site.grid.points

    def energy(address: str) -> float:
        factor = UNITS[site.point(address).unit][1]
        return (tap.value_at(site.id, address, HI) - tap.value_at(site.id, address, LO)) * factor

    # A counter's rise between two readings counts in the hour that holds the later one's instant less a
    # microsecond, as the rollups count it.
    hourly: dict[datetime, float] = {}
    counter = tap.series(site.id, points["import_energy"])
    factor = UNITS[site.point(points["import_energy"]).unit][1]
    for before, after in itertools.pairwise(counter):
        if LO < after.ts <= HI:
            hour = (after.ts - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
            hourly[hour] = hourly.get(hour, 0.0) + (float(after.value) - float(before.value)) * factor  # type: ignore[arg-type]
    export_kwh = energy(points["export_energy"])
    cost = cost_of(site.tariff, [Bucket(h.astimezone(site.tz), e) for h, e in sorted(hourly.items())]).cost_eur
    power = [float(r.value) for r in tap.series(site.id, points["power"]) if LO <= r.ts < HI]  # type: ignore[arg-type]
    return {
        "import_energy": energy(points["import_energy"]),
        "export_energy": export_kwh,
        "cost": cost - export_kwh * site.tariff.export_price_eur_per_kwh,  # type: ignore[operator]
        "peak_import": max(power) * UNITS[site.point(points["power"]).unit][1],
    }


async def test_sites_together(together: Together) -> None:
    """One back-fill of the four sites serves both checks: it is the costly part."""
    await each_site_kpis_are_its_own_meters(together)
    await twins_keep_their_own_series_and_residents_see_their_own(together)


async def each_site_kpis_are_its_own_meters(together: Together) -> None:
    seen: dict[str, dict[str, float]] = {}
    for site_id, site in together.sites.items():
        response = await together.client.get(
            f"{API_PREFIX}/sites/{site_id}/kpis?start={DAY}&end={DAY + timedelta(days=1)}",
            headers=together.auth("manager"))
        assert response.status_code == 200, response.text
        kpis = {name: kpi["value"] for name, kpi in response.json()["kpis"].items()}
        expected = measured_kpis(together.tap, site)
        assert expected["import_energy"] > 0
        for name, value in expected.items():
            assert kpis[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (site_id, name)
        seen[site_id] = {name: kpis[name] for name in expected}
    # The demonstrators differ from one another: no site reads another's grid meter.
    imports = [seen[s]["import_energy"] for s in DEMONSTRATORS]
    assert len(set(imports)) == len(imports), seen


async def twins_keep_their_own_series_and_residents_see_their_own(together: Together) -> None:
    meter = "meter-a-01/energy"
    historian = together.tap.historian
    totals = {}
    for site_id in ("zac-saint-sauveur", TWIN):
        own = together.tap.value_at(site_id, meter, HI) - together.tap.value_at(site_id, meter, LO)
        frame = await historian.query(site_id, [meter, "grid-meter/power"], LO, HI, timedelta(days=1), "count")
        assert frame.sum().tolist() == [96, 96]  # one reading a quarter-hour, not two
        response = await together.client.get(
            f"{API_PREFIX}/me/dwellings/{site_id}/a-01/consumption?start={DAY}&end={DAY + timedelta(days=1)}",
            headers=together.auth(site_id))
        assert response.status_code == 200, response.text
        totals[site_id] = response.json()["total_kwh"]
        assert totals[site_id] == pytest.approx(own * UNITS[together.sites[site_id].point(meter).unit][1],
                                                rel=1e-9)
        energy = await historian.dwelling_energy(site_id, DAY, DAY + timedelta(days=1), "day", ["a-01"])
        assert energy["a-01"].tolist() == pytest.approx([totals[site_id]], rel=1e-9)
    assert totals["zac-saint-sauveur"] != totals[TWIN]
    # Neither resident reaches the other's dwelling of the same id.
    other = await together.client.get(f"{API_PREFIX}/me/dwellings/{TWIN}/a-01/consumption",
                                      headers=together.auth("zac-saint-sauveur"))
    assert other.status_code == 404
