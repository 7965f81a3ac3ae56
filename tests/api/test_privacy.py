"""Staff see dwellings only as building totals over at least ten dwellings, on every path: live values, device
health, alarms, the write audit (JSON and CSV) and the schedule. A dwelling meter's health stays visible."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from drivers.base import Quality, Reading
from gridctl.alarms import AlarmKind, Severity
from gridctl.api import API_PREFIX
from gridctl.api.store import Role
from gridctl.config.models import Dwelling, Site
from gridctl.dispatch.audit import AuditEntry, Outcome
from gridctl.history import SiteReadings
from gridctl.policy import PolicyVersion, SitePolicy
from tests.api.conftest import Api
from tests.api.support import NOW, HistoryRuntime, history_readings

SITE = "zac-saint-sauveur"
SITES = f"{API_PREFIX}/sites/{SITE}"


def power_w(i: int) -> float:
    """A distinctive wattage per dwelling, so that no total can be mistaken for it."""
    return 1000.0 + 37.0 * i + 0.5


async def _dwellings_report(api: Api, site: Site, bad: set[str] = frozenset()) -> dict[str, float]:
    """Every dwelling meter reports power, current and voltage now; meters in `bad` report a bad power."""
    readings, powers = [], {}
    for i, dwelling in enumerate(site.dwellings):
        device = dwelling.meter.partition("/")[0]
        powers[device] = power_w(i)
        quality = Quality.BAD if device in bad else Quality.GOOD
        readings += [Reading(f"{device}/power", NOW, powers[device], quality),
                     Reading(f"{device}/current", NOW, round(powers[device] / 230, 2), Quality.GOOD),
                     Reading(f"{device}/voltage", NOW, 231.4, Quality.GOOD)]
    await api.historian.write([SiteReadings(site.id, readings)], received_at=NOW)
    return powers


async def _variant(api: Api, site: Site) -> HistoryRuntime:
    """A variant of the site with its own recent history, served live by the API."""
    await api.historian.sync_site(site)
    await api.historian.write([SiteReadings(site.id, history_readings(site, NOW - timedelta(hours=1), NOW))],
                              received_at=NOW)
    runtime = HistoryRuntime(site, api.historian, api.ctx.store, api.clock)
    api.ctx.runtimes = {**api.ctx.runtimes, site.id: runtime}
    return runtime


async def _live(api: Api, site_id: str = SITE) -> dict[str, dict]:
    response = await api.client.get(f"{API_PREFIX}/sites/{site_id}/live", headers=api.auth("operator"))
    assert response.status_code == 200, response.text
    return {p["address"]: p for p in response.json()}


async def test_live_values_show_buildings_never_a_dwelling(api: Api) -> None:
    powers = await _dwellings_report(api, api.site)
    await api.runtime.refresh()
    for who in ("operator", "manager", "admin"):
        response = await api.client.get(f"{SITES}/live", headers=api.auth(who))
        addresses = {p["address"] for p in response.json()}
        assert not {a for a in addresses if a.startswith("meter-")}, who
        assert not any(p["value"] in powers.values() or p["value"] in {w / 1000 for w in powers.values()}
                       for p in response.json())
    live = await _live(api)
    block_a = [d.meter.partition("/")[0] for d in api.site.dwellings if d.building == "block-a"]
    total = live["dwellings:block-a/power"]
    assert total["quality"] == "good" and total["unit"] == "kW" and total["note"] == "sum of 24 dwellings"
    assert abs(total["value"] - sum(powers[m] for m in block_a) / 1000) < 1e-9
    assert live["dwellings:block-b/power"]["value"] > 0
    assert live["dwellings:block-a/energy"]["unit"] == "kWh" and live["dwellings:block-a/energy"]["value"] > 0
    # The site's own points are all there.
    assert live["grid-meter/power"]["quality"] == "good"


async def test_a_building_total_waits_for_every_dwelling(api: Api) -> None:
    # Were it summed over the meters reporting, this answer minus the last one would be meter-a-03's power.
    await _dwellings_report(api, api.site, bad={"meter-a-03"})
    await api.runtime.refresh()
    live = await _live(api)
    assert live["dwellings:block-a/power"]["value"] is None
    assert live["dwellings:block-a/power"]["quality"] == "withheld"
    assert live["dwellings:block-a/power"]["note"] == "withheld until every dwelling reports: 23 of 24 do"
    assert live["dwellings:block-b/power"]["value"] is not None


async def test_a_building_under_ten_dwellings_has_no_total(api: Api) -> None:
    # 25 = 24 + 1: block-b holds a single dwelling.
    site = api.site.model_copy(update={"id": "twenty-five", "dwellings": api.site.dwellings[:25]})
    runtime = await _variant(api, site)
    await api.user("ops-25", Role.OPERATOR, ["twenty-five"])
    powers = await _dwellings_report(api, site)
    await runtime.refresh()
    response = await api.client.get(f"{API_PREFIX}/sites/twenty-five/live", headers=api.auth("ops-25"))
    live = {p["address"]: p for p in response.json()}
    assert live["dwellings:block-b/power"]["value"] is None
    assert "this building has 1" in live["dwellings:block-b/power"]["note"]
    assert live["dwellings:block-a/power"]["value"] is not None
    assert powers["meter-b-01"] not in {p["value"] for p in live.values()}


async def test_health_stays_visible_without_the_meters_values(api: Api) -> None:
    await api.runtime.refresh()
    api.runtime._health["meter-a-02"].failure("DecodeError: power: device sent 3120")
    api.runtime.alarms.raise_alarm(AlarmKind.DEVICE_OFFLINE, "meter-a-02",
                                   "meter-a-02 is not answering: DecodeError: power: device sent 3120", NOW,
                                   Severity.CRITICAL)
    api.runtime.alarms.raise_alarm(AlarmKind.STALE_POINT, "meter-a-05/power", "meter-a-05/power stuck at 2710 W", NOW)
    devices = {d["device_id"]: d for d in
               (await api.client.get(f"{SITES}/devices", headers=api.auth("operator"))).json()}
    assert devices["meter-a-02"]["state"] in {"ok", "degraded", "offline"}
    assert devices["meter-a-02"]["consecutive_failures"] == 1
    assert devices["meter-a-02"]["last_error"] == "DecodeError (details withheld: a dwelling's device)"
    alarms = (await api.client.get(f"{SITES}/alarms", headers=api.auth("operator"))).json()
    by_subject = {a["subject"]: a for a in alarms}
    assert by_subject["meter-a-02"]["kind"] == "device_offline"
    assert "3120" not in by_subject["meter-a-02"]["message"]
    assert "2710" not in by_subject["meter-a-05/power"]["message"]
    # Other devices keep their full messages.
    assert "street-lighting does not answer" in by_subject["street-lighting"]["message"]


async def test_the_audit_leaves_dwellings_out(api: Api) -> None:
    for address in ("meter-a-01/power", "battery/power-setpoint"):
        await api.ctx.store.record_audit(AuditEntry(NOW, SITE, address, "optimizer", "schedule", "plan-1", 1, 0.0,
                                                    3120.0, 3120.0, None, None, Outcome.WRITTEN, 3120.0, None, False,
                                                    False, "W"))

    async def audit(query: str = "") -> list[dict]:
        response = await api.client.get(f"{SITES}/audit{query}", headers=api.auth("manager"))
        assert response.status_code == 200
        return response.json()

    assert [e["address"] for e in await audit()] == ["battery/power-setpoint"]
    assert await audit("?device=meter-a-01") == [] and await audit("?point=meter-a-01/power") == []
    as_csv = await api.client.get(f"{SITES}/audit?format=csv", headers=api.auth("operator"))
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["address"] for r in rows] == ["battery/power-setpoint"]
    assert "meter-a-01" not in as_csv.text


async def test_the_schedule_of_an_asset_metered_by_a_dwelling_is_withheld(api: Api) -> None:
    # A battery behind a dwelling's own meter (a home battery): its points and plan are the dwelling's.
    home = Dwelling(id="a-99", building="block-a", floor_area_m2=60, meter="battery/charged-energy")
    site = api.site.model_copy(update={"id": "home-battery", "dwellings": [*api.site.dwellings, home]})
    runtime = await _variant(api, site)
    await runtime.refresh()
    assert "battery/power" in runtime.latest()
    await api.user("ops-home", Role.OPERATOR, ["home-battery"])
    await runtime.policy_changed(PolicyVersion(site_id="home-battery", version=1, policy=SitePolicy(horizon_hours=4),
                                               author="m", created_at=NOW))
    assert "shared-battery.power_kw" in runtime.current_schedule().schedule.setpoints
    schedule = (await api.client.get(f"{API_PREFIX}/sites/home-battery/schedule",
                                     headers=api.auth("ops-home"))).json()
    assert schedule["series"] and not [s for s in schedule["series"] if s.startswith("shared-battery.")]
    assert all(v.get("asset_id") != "shared-battery" for v in schedule["violations"])
    assert "shared-battery" not in schedule["asset_names"]
    live = (await api.client.get(f"{API_PREFIX}/sites/home-battery/live", headers=api.auth("ops-home"))).json()
    assert not [p for p in live if p["address"].startswith("battery/")]
    # The site at a glance counts the battery's power as not known rather than show the dwelling's.
    overview = (await api.client.get(f"{API_PREFIX}/sites/home-battery/overview", headers=api.auth("ops-home"))).json()
    battery = next(f for f in overview["flows"] if f["kind"] == "battery")
    assert battery["power_kw"] is None and battery["missing"] == 1


async def test_a_dwellings_water_heater_is_the_dwellings_own(api: Api) -> None:
    # Block B's water heaters sit on devices of their own, not on the dwellings' meters: they are private too.
    await api.runtime.refresh()
    tanks = {a.id for a in api.site.assets if a.dwelling}
    tank_devices = {a.points["tank_temperature"].partition("/")[0] for a in api.site.assets if a.dwelling}
    assert len(tanks) == len(tank_devices) == 24
    assert all(f"{d}/tank-temperature" in api.runtime.latest() for d in tank_devices)
    live = await _live(api)
    assert not [a for a in live if a.partition("/")[0] in tank_devices]
    api.runtime._health["dhw-b-07"].failure("DecodeError: tank-temperature: device sent 4210")
    api.runtime.alarms.raise_alarm(AlarmKind.STALE_POINT, "water-heater-b-07",
                                   "water-heater-b-07 on safe defaults: stale input dhw-b-07/tank-temperature", NOW)
    devices = {d["device_id"]: d for d in
               (await api.client.get(f"{SITES}/devices", headers=api.auth("operator"))).json()}
    assert devices["dhw-b-07"]["last_error"] == "DecodeError (details withheld: a dwelling's device)"
    alarms = {a["subject"]: a for a in (await api.client.get(f"{SITES}/alarms", headers=api.auth("operator"))).json()}
    assert "dhw-b-07" not in alarms["water-heater-b-07"]["message"]
    # Their plan is the dwellings' too: the schedule shows neither their series nor their names.
    await api.client.post(f"{SITES}/policy", headers=api.auth("manager"), json={"policy": {"horizon_hours": 4}})
    # (This runtime plans the battery and PV only: the tanks' columns are added as the service's plan has them.)
    frame = api.runtime.current_schedule().schedule.setpoints
    for tank in tanks:
        frame[f"{tank}.power_kw"], frame[f"{tank}.temperature_c"] = 0.0, 55.0
    schedule = (await api.client.get(f"{SITES}/schedule", headers=api.auth("operator"))).json()
    assert schedule["series"] and not [s for s in schedule["series"] if s.partition(".")[0] in tanks]
    assert not tanks & set(schedule["asset_names"])
    # The site at a glance counts them as not known rather than show a dwelling's heater.
    overview = (await api.client.get(f"{SITES}/overview", headers=api.auth("operator"))).json()
    appliances = next(f for f in overview["flows"] if f["kind"] == "appliances")
    assert appliances["missing"] == 24


async def test_the_water_heaters_kpis_cover_ten_dwellings_or_are_withheld(api: Api) -> None:
    kpis = (await api.client.get(f"{SITES}/kpis?start=2026-03-14&end=2026-03-20",
                                 headers=api.auth("manager"))).json()["kpis"]
    # 24 heaters, 3 h a night at their element's power, six days.
    power_kw = sum(a.heater.electric_power_kw for a in api.site.assets if a.dwelling)
    assert kpis["hot_water_energy"]["value"] == pytest.approx(6 * 3 * power_kw, rel=0.02)
    assert kpis["hot_water_cost"]["value"] == pytest.approx(6 * 3 * power_kw * 0.1635, rel=0.02)
    assert kpis["hot_water_below_minimum"]["value"] == 0.0 and kpis["legionella_cycles"]["value"] == 24 * 6
    # A site with only three of them: a figure over three dwellings' heaters would be theirs.
    few = [a for a in api.site.assets if not a.dwelling] + [a for a in api.site.assets if a.dwelling][:3]
    site = api.site.model_copy(update={"id": "three-heaters", "assets": few})
    await _variant(api, site)
    await api.historian.refresh_rollups()
    await api.user("manager-3", Role.MANAGER, ["three-heaters"])
    kpis = (await api.client.get(f"{API_PREFIX}/sites/three-heaters/kpis?start=2026-03-20&end=2026-03-21",
                                 headers=api.auth("manager-3"))).json()["kpis"]
    assert kpis["hot_water_energy"]["value"] is None and "covers 3 dwellings" in kpis["hot_water_energy"]["note"]
    assert kpis["pv_energy"]["value"] is not None
