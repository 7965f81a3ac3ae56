"""What the API tests stand on: ZAC Saint-Sauveur's history in a real SQLite historian, and a site
runtime over it built from the real parts (AlarmBook, Arbiter with the write-audit table, the optimiser)."""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.base import DeviceHealth, Driver, Quality, Reading
from drivers.health import HealthTracker
from gridctl.alarms import AlarmBook, AlarmKind, Severity
from gridctl.api.store import ApiStore, Role, StoreAuditSink
from gridctl.clock import ManualClock
from gridctl.config import load_site
from gridctl.config.models import BatteryAsset, HotWaterTank, PvArray, Site
from gridctl.dispatch import Arbiter, WriteRequest
from gridctl.forecast.forecaster import ForecastReport, SignalForecaster
from gridctl.history import QuarantinePolicy, SiteReadings, SQLiteHistorian
from gridctl.policy import DemandResponse, PolicyVersion, SitePolicy
from gridctl.runtime import PlannedSchedule
from optimizer import PV, Battery, DemandResponseEvent, Problem, Schedule, Settings, solve
from optimizer import Site as ProblemSite

ROOT = Path(__file__).resolve().parents[2]
SITE_DIR = ROOT / "sites" / "zac-saint-sauveur"
# The history ends at NOW; the runtime's clock stands there.
NOW = datetime(2026, 3, 20, 11, 0, tzinfo=UTC)
HISTORY_DAYS = 14
STEP = timedelta(minutes=15)


def load() -> Site:
    return load_site(SITE_DIR)


def small_site(site: Site, dwellings: int = 9) -> Site:
    """The same devices with only a few dwellings, one building: too few for any aggregate."""
    return site.model_copy(update={"id": "small-site", "name": "Petit îlot", "dwellings": site.dwellings[:dwellings]})


def dwelling_kwh_per_quarter(index: int, ts: datetime) -> float:
    """A deterministic, plausible consumption: a base load, a morning and an evening peak, a size factor."""
    hour = ts.astimezone(UTC).hour + ts.minute / 60
    shape = 0.6 + 0.8 * math.exp(-((hour - 7) ** 2) / 2) + 1.4 * math.exp(-((hour - 19) ** 2) / 4)
    # Whole hundredths of a kWh: the dwelling meters count in 0.01 kWh.
    return round(0.05 * shape * (0.7 + 0.05 * (index % 13)), 2)


def history_readings(site: Site, start: datetime, end: datetime) -> list[Reading]:
    readings: list[Reading] = []
    counters = [float(10 * i) for i in range(len(site.dwellings))]
    grid_import = grid_export = pv_energy = 0.0
    tanks = [a for a in site.assets if isinstance(a, HotWaterTank)]
    tank_kwh = [0.0] * len(tanks)
    ts = start
    while ts <= end:
        total = 0.0
        for i, dwelling in enumerate(site.dwellings):
            if ts > start:
                used = dwelling_kwh_per_quarter(i, ts)
                counters[i] = round(counters[i] + used, 2)
                total += used
            readings.append(Reading(dwelling.meter, ts, counters[i], Quality.GOOD))
        hour = ts.hour + ts.minute / 60
        pv_kw = max(0.0, 80 * math.sin(math.pi * (hour - 6) / 12)) if 6 <= hour <= 18 else 0.0
        net_kw = total * 4 + 40 - pv_kw
        grid_import += max(net_kw, 0) / 4
        grid_export += max(-net_kw, 0) / 4
        pv_energy += pv_kw / 4
        readings += [
            Reading("grid-meter/power", ts, round(net_kw, 3), Quality.GOOD),
            Reading("grid-meter/import-energy", ts, round(grid_import, 2), Quality.GOOD),
            Reading("grid-meter/export-energy", ts, round(grid_export, 2), Quality.GOOD),
            Reading("rooftop-pv-inverter/power", ts, round(pv_kw, 3), Quality.GOOD),
            Reading("rooftop-pv-inverter/energy", ts, round(pv_energy, 2), Quality.GOOD),
            Reading("gym-controller/hall-temperature", ts, 15.0 + 3 * math.sin(math.pi * hour / 12), Quality.GOOD),
            Reading("battery/soc", ts, 55.0, Quality.GOOD),
        ]
        # Water heaters heating in the night, cooling by day.
        heating = 1 <= hour < 4
        for i, tank in enumerate(tanks):
            points = tank.points
            tank_kwh[i] += tank.heater.electric_power_kw / 4 if heating else 0.0
            readings += [
                Reading(points["tank_temperature"], ts, round(56.0 + 5.0 * math.cos(math.pi * (hour - 4) / 12), 1),
                        Quality.GOOD),
                Reading(points["heater_power"], ts, tank.heater.electric_power_kw * 1000.0 if heating else 0.0,
                        Quality.GOOD),
                Reading(points["heater_energy"], ts, round(tank_kwh[i], 2), Quality.GOOD),
            ]
        ts += STEP
    readings.append(Reading("battery/power", end, 0.0, Quality.STALE))
    return readings


async def build_history(path: Path, site: Site) -> None:
    historian = SQLiteHistorian(path, quarantine=QuarantinePolicy(max_past=timedelta(days=4000)))
    async with historian:
        await historian.upgrade()
        await historian.sync_site(site)
        await historian.sync_site(small_site(site))
        await historian.write([SiteReadings(site.id, history_readings(site, NOW - timedelta(days=HISTORY_DAYS), NOW))],
                              received_at=NOW)
        await historian.refresh_rollups()


def copy_history(template: Path, target: Path) -> Path:
    shutil.copy(template, target)
    return target


class HistoryRuntime:
    """A site's live side over its stored history: latest readings from the historian, device health from
    health trackers, real alarms, the real arbiter (its audit in the database) and real optimiser runs."""

    def __init__(self, site: Site, historian: SQLiteHistorian, store: ApiStore, clock: ManualClock,
                 drivers: Mapping[str, Driver] | None = None) -> None:
        self._site = site
        self.historian = historian
        self.clock = clock
        self._alarms = AlarmBook()
        self.arbiter = Arbiter(site, dict(drivers or {}), clock, StoreAuditSink(store), self._alarms,
                               sleep=lambda _s: asyncio.sleep(0))
        self._latest: dict[str, Reading] = {}
        self._health: dict[str, HealthTracker] = {}
        self._planned: PlannedSchedule | None = None
        # The forecaster a running service has: its accuracy and the zones' identified models are the KPIs'.
        self.forecaster = SignalForecaster()
        self.policy_versions: list[PolicyVersion] = []
        self.demand_responses: list[DemandResponse] = []
        self.cancelled_events: list[str] = []

    async def refresh(self) -> None:
        """Poll the history once: latest values, device health and the alarms they raise."""
        self._latest = await self.historian.latest(self._site.id, [a for a, _d, _p in self._site.all_points()])
        seen = {address.partition("/")[0] for address in self._latest}
        for device in self._site.devices:
            tracker = self._health.setdefault(device.id, HealthTracker(device.id, now=self.clock.now))
            if device.id in seen:
                tracker.success()
            else:
                for _ in range(tracker.offline_after):
                    tracker.failure("DeviceTimeout: no answer")
                self._alarms.raise_alarm(AlarmKind.DEVICE_OFFLINE, device.id, f"{device.id} does not answer",
                                         self.clock.now(), Severity.CRITICAL)

    @property
    def site(self) -> Site:
        return self._site

    @property
    def alarms(self) -> AlarmBook:
        return self._alarms

    def latest(self) -> Mapping[str, Reading]:
        return dict(self._latest)

    def device_health(self) -> Mapping[str, DeviceHealth]:
        return {d: t.snapshot() for d, t in self._health.items()}

    def current_schedule(self) -> PlannedSchedule | None:
        return self._planned

    def forecast_report(self) -> ForecastReport:
        return self.forecaster.report(self._site)

    def hands_off_scopes(self) -> set[str]:
        return self.arbiter.hands_off_scopes()

    async def hands_off(self, scope: str, actor: str, reason: str):
        return await self.arbiter.hands_off(scope, actor, reason)

    async def hands_on(self, scope: str, actor: str) -> None:
        await self.arbiter.hands_on(scope, actor)

    async def preview(self, policy: SitePolicy) -> Schedule:
        return await asyncio.to_thread(solve, self.problem(policy), Settings(time_limit_s=20))

    async def policy_changed(self, version: PolicyVersion) -> None:
        self.policy_versions.append(version)
        schedule = await self.preview(version.policy)
        now = self.clock.now()
        self._planned = PlannedSchedule(f"plan-{len(self.policy_versions)}", self._site.id, now,
                                        now + timedelta(hours=1), version.version, schedule)

    async def demand_response(self, event: DemandResponse) -> None:
        self.demand_responses.append(event)

    async def demand_response_cancelled(self, event_id: str) -> None:
        self.cancelled_events.append(event_id)

    async def command(self, address: str, value: float, actor: str = "optimizer") -> None:
        await self.arbiter.write(WriteRequest(address, value, actor, "schedule", "plan-1", 1))

    def problem(self, policy: SitePolicy) -> Problem:
        """The optimisation problem of the next horizon: loads and PV from the latest readings and a clear-sky
        shape, prices from the site's tariff."""
        site = self._site
        start = self.clock.now()
        steps = int(policy.horizon_hours * 60 / policy.step_minutes)
        step = timedelta(minutes=policy.step_minutes)
        times = [start + i * step for i in range(steps)]
        grid = self._latest.get("grid-meter/power")
        load_kw = float(grid.value) if grid and grid.value is not None else 60.0
        tz = site.tz
        tariff = site.tariff
        prices = []
        for ts in times:
            local = ts.astimezone(tz).time()
            offpeak = any((w.start <= local < w.end) if w.start <= w.end else (local >= w.start or local < w.end)
                          for w in tariff.offpeak_windows)
            prices.append(tariff.offpeak_price_eur_per_kwh if offpeak else tariff.peak_price_eur_per_kwh)
        assets = []
        for asset in site.assets:
            if isinstance(asset, BatteryAsset):
                soc = self._latest.get(asset.points.get("soc", ""))
                fraction = float(soc.value) / 100 if soc and soc.value is not None else 0.5
                assets.append(Battery(
                    id=asset.id, capacity_kwh=asset.capacity_kwh, max_charge_kw=asset.max_charge_power_kw,
                    max_discharge_kw=asset.max_discharge_power_kw,
                    min_energy_kwh=asset.capacity_kwh * asset.soc_min_pct / 100,
                    max_energy_kwh=asset.capacity_kwh * asset.soc_max_pct / 100,
                    initial_energy_kwh=asset.capacity_kwh * fraction,
                ))
            elif isinstance(asset, PvArray):
                shape = [max(0.0, math.sin(math.pi * (ts.hour + ts.minute / 60 - 6) / 12)) for ts in times]
                assets.append(PV(id=asset.id, forecast_kw=[0.6 * asset.peak_power_kwp * s for s in shape]))
        return Problem(
            start=start, n_steps=steps, step_minutes=policy.step_minutes,
            site=ProblemSite(
                import_limit_kw=policy.import_limit_kw or site.grid.import_limit_kw,
                export_limit_kw=policy.export_limit_kw if policy.export_limit_kw is not None
                else site.grid.export_limit_kw,
                load_kw=[load_kw] * steps, import_price_eur_per_kwh=prices,
                export_price_eur_per_kwh=tariff.export_price_eur_per_kwh, carbon_kg_per_kwh=0.0217,
            ),
            policy=policy.weights, assets=assets,
            dr_events=[DemandResponseEvent(**e.model_dump()) for e in policy.demand_response],
        )


async def add_user(store: ApiStore, name: str, role: Role, scope: list[str],
                   valid_for: timedelta = timedelta(days=30)) -> str:
    _user, token = await store.add_user(name, role, scope, NOW, valid_for)
    return token
