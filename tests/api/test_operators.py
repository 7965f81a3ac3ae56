"""Operators: live values with quality and age, device health, alarms, the write audit (real writes to a
simulated battery over Modbus TCP on loopback), the schedule and hands off."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from drivers.modbus import ModbusDriver
from gridctl.api import API_PREFIX
from gridctl.fieldbus import device_spec
from gridctl.policy import PolicyVersion, SitePolicy
from sim.core import SimDevice
from sim.modbus_server import SimModbusServer
from tests.api.conftest import Api

SITE = "zac-saint-sauveur"
SITES = f"{API_PREFIX}/sites/{SITE}"


@pytest.fixture
async def battery(api: Api) -> AsyncIterator[SimDevice]:
    """The site's battery, simulated and served over Modbus TCP; the arbiter writes to it with the real driver."""
    device = SimDevice(device_spec(api.site.device("battery")), api.clock)
    async with SimModbusServer([device], port=0) as server:
        driver = ModbusDriver(dataclasses.replace(device.spec, port=server.port), now=api.clock.now)
        await driver.connect()
        api.runtime.arbiter.drivers["battery"] = driver  # type: ignore[index]
        try:
            yield device
        finally:
            await driver.close()


async def test_live_values_carry_quality_and_age(api: Api) -> None:
    response = await api.client.get(f"{SITES}/live", headers=api.auth("operator"))
    points = {p["address"]: p for p in response.json()}
    assert points["grid-meter/power"]["quality"] == "good" and points["grid-meter/power"]["unit"] == "kW"
    assert points["battery/power"]["quality"] == "stale"
    assert points["grid-meter/power"]["age_s"] == 0
    api.clock.advance(timedelta(seconds=90))
    later = {p["address"]: p for p in (await api.client.get(f"{SITES}/live", headers=api.auth("operator"))).json()}
    assert later["grid-meter/power"]["age_s"] == 90


async def test_device_health(api: Api) -> None:
    devices = {d["device_id"]: d for d in (await api.client.get(f"{SITES}/devices", headers=api.auth("operator"))).json()}
    assert devices["grid-meter"]["state"] == "ok" and devices["grid-meter"]["protocol"] == "modbus"
    assert devices["street-lighting"]["state"] == "offline"
    assert devices["street-lighting"]["consecutive_failures"] == 3
    assert devices["street-lighting"]["last_error"].startswith("DeviceTimeout")


async def test_acknowledge_an_alarm(api: Api) -> None:
    alarms = (await api.client.get(f"{SITES}/alarms", headers=api.auth("operator"))).json()
    offline = {(a["kind"], a["subject"]) for a in alarms}
    assert ("device_offline", "street-lighting") in offline and ("device_offline", "heat-substation") in offline
    assert all(a["acknowledged_by"] is None and a["active"] for a in alarms)

    ack = await api.client.post(f"{SITES}/alarms/acknowledge", headers=api.auth("operator"),
                                json={"kind": "device_offline", "subject": "street-lighting"})
    assert ack.status_code == 200
    assert ack.json()["acknowledged_by"] == "operator" and ack.json()["acknowledged_at"] is not None
    by_subject = {a.subject: a for a in api.runtime.alarms.active()}
    assert by_subject["street-lighting"].acknowledged_by == "operator"
    assert by_subject["heat-substation"].acknowledged_by is None

    missing = await api.client.post(f"{SITES}/alarms/acknowledge", headers=api.auth("operator"),
                                    json={"kind": "device_offline", "subject": "grid-meter"})
    assert missing.status_code == 404
    unknown = await api.client.post(f"{SITES}/alarms/acknowledge", headers=api.auth("operator"),
                                    json={"kind": "fire", "subject": "grid-meter"})
    assert unknown.status_code == 422 and unknown.json()["message"].startswith("body.kind")

    api.runtime.alarms.clear(*next(iter(api.runtime.alarms.active())).key, api.clock.now())
    with_cleared = await api.client.get(f"{SITES}/alarms?include_cleared=true", headers=api.auth("operator"))
    assert any(not a["active"] for a in with_cleared.json())


async def test_write_audit_with_filters(api: Api, battery: SimDevice) -> None:
    await api.runtime.command("battery/power-setpoint", 30.0)
    assert battery.get("power-setpoint") == 30.0
    api.clock.advance(timedelta(minutes=1))
    await api.runtime.command("battery/soc", 50.0, actor="=cmd|' /C calc'!A0")
    api.clock.advance(timedelta(minutes=1))
    hands_off = await api.client.post(f"{SITES}/hands-off", headers=api.auth("operator"),
                                      json={"scope": "device:battery", "reason": "inverter maintenance"})
    assert hands_off.json() == {"scopes": ["device:battery"], "relinquished": ["battery/power-setpoint"],
                                "pending": False}
    assert battery.get("power-setpoint") == 0  # its relinquish value

    async def audit(query: str = "") -> list[dict]:
        response = await api.client.get(f"{SITES}/audit{query}", headers=api.auth("operator"))
        assert response.status_code == 200, response.text
        return response.json()

    everything = await audit()
    assert [e["outcome"] for e in everything] == ["relinquished", "rejected", "written"]
    written = everything[-1]
    assert written["written_value"] == 30.0 and written["read_back"] == 30.0 and written["priority"] is None
    assert written["actor"] == "optimizer" and written["schedule_id"] == "plan-1"
    assert everything[0]["actor"] == "operator" and "inverter maintenance" in everything[0]["reason"]
    assert [e["outcome"] for e in await audit("?outcome=written")] == ["written"]
    assert [e["outcome"] for e in await audit("?actor=operator")] == ["relinquished"]
    assert len(await audit("?point=battery/soc")) == 1
    assert len(await audit("?device=battery")) == 3 and await audit("?device=grid-meter") == []
    start = (api.clock.now() - timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
    assert [e["outcome"] for e in await audit(f"?start={start}")] == ["relinquished", "rejected"]
    assert len(await audit("?limit=1")) == 1
    naive = await api.client.get(f"{SITES}/audit?start=2026-03-20T10:00:00", headers=api.auth("operator"))
    assert naive.status_code == 422 and "query.start" in naive.json()["message"]

    as_csv = await api.client.get(f"{SITES}/audit?format=csv&outcome=rejected", headers=api.auth("operator"))
    (row,) = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert row["actor"] == "'=cmd|' /C calc'!A0"


async def test_hands_off_per_point_device_and_site(api: Api) -> None:
    for scope in ("point:battery/power-setpoint", "device:rooftop-pv-inverter", "site"):
        response = await api.client.post(f"{SITES}/hands-off", headers=api.auth("operator"),
                                          json={"scope": scope, "reason": "test"})
        assert response.status_code == 200
    listed = (await api.client.get(f"{SITES}/hands-off", headers=api.auth("operator"))).json()
    assert listed["scopes"] == ["device:rooftop-pv-inverter", "point:battery/power-setpoint", "site"]
    assert api.runtime.arbiter.is_hands_off("grid-meter/power")

    bad = await api.client.post(f"{SITES}/hands-off", headers=api.auth("operator"),
                                json={"scope": "building:a", "reason": "x"})
    assert bad.status_code == 422 and "body.scope" in bad.json()["message"]
    unknown = await api.client.post(f"{SITES}/hands-off", headers=api.auth("operator"),
                                    json={"scope": "device:nope", "reason": "x"})
    assert unknown.status_code == 404

    back = await api.client.delete(f"{SITES}/hands-off?scope=site", headers=api.auth("operator"))
    assert back.json()["scopes"] == ["device:rooftop-pv-inverter", "point:battery/power-setpoint"]
    again = await api.client.delete(f"{SITES}/hands-off?scope=site", headers=api.auth("operator"))
    assert again.status_code == 404


async def test_the_schedule_in_force(api: Api) -> None:
    assert (await api.client.get(f"{SITES}/schedule", headers=api.auth("operator"))).status_code == 404
    version = PolicyVersion(site_id=SITE, version=3, policy=SitePolicy(horizon_hours=6), author="m",
                            created_at=api.clock.now())
    await api.runtime.policy_changed(version)
    body = (await api.client.get(f"{SITES}/schedule", headers=api.auth("operator"))).json()
    assert body["policy_version"] == 3 and body["status"] == "optimal" and body["schedule_id"] == "plan-1"
    assert len(body["steps"]) == 24
    assert len(body["series"]["site.net_kw"]) == 24 and "shared-battery.power_kw" in body["series"]
