"""Letting go of a BACnet point whose object has no priority array, through the real driver on loopback."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.bacnet import BacnetDriver
from gridctl.alarms import AlarmBook
from gridctl.clock import ManualClock
from gridctl.config import load_site
from gridctl.config.models import Site
from gridctl.dispatch import Arbiter, MemoryAuditSink, Outcome, WriteRequest
from gridctl.fieldbus import device_spec
from sim.bacnet_server import BacnetSimServer, sim_device

SITES = Path(__file__).resolve().parents[2] / "sites"
ADDRESS = "gym-controller/hall-setpoint"


def _site(relinquish_value: float | None) -> Site:
    site = load_site(SITES / "zac-saint-sauveur")
    devices = []
    for device in site.devices:
        if device.id == "gym-controller":
            points = [p.model_copy(update={"relinquish_value": relinquish_value}) if p.id == "hall-setpoint" else p
                      for p in device.points]
            device = device.model_copy(update={"points": points})
        devices.append(device)
    return site.model_copy(update={"devices": devices})


@pytest.mark.parametrize("relinquish_value", [18.0, None], ids=["relinquish-value", "none"])
async def test_a_non_commandable_point_falls_back_on_its_relinquish_value(relinquish_value: float | None) -> None:
    site = _site(relinquish_value)
    spec = device_spec(site.device("gym-controller"))
    device = sim_device(spec)
    async with BacnetSimServer(device, plain_objects={"hall-setpoint"}) as server:
        driver = BacnetDriver(dataclasses.replace(spec, address=server.address))
        audit = MemoryAuditSink()
        arbiter = Arbiter(site, {"gym-controller": driver}, ManualClock(datetime(2026, 1, 15, 9, tzinfo=UTC)),
                          audit, AlarmBook())
        try:
            written = await arbiter.write(WriteRequest(ADDRESS, 21.0, "optimizer", "comfort"))
            assert written is not None and written.outcome == Outcome.WRITTEN and written.read_back == 21.0
            # Written plainly, and the audit says so: no priority was used.
            assert written.priority is None
            assert device.writes[-1][1:] == ("hall-setpoint", 21.0, None)
            writes = server.requests["write-property"]

            (released,) = await arbiter.release_all("operator-anna", "maintenance")
        finally:
            await driver.close()
        assert released.outcome == Outcome.RELINQUISHED and released.priority is None
        assert not math.isnan(device.get("hall-setpoint"))
        if relinquish_value is not None:
            assert released.written_value == relinquish_value and released.read_back == relinquish_value
            assert device.get("hall-setpoint") == relinquish_value
            assert server.requests["write-property"] == writes + 1
        else:
            assert released.written_value is None and "left as is" in (released.error or "")
            assert device.get("hall-setpoint") == 21.0
            assert server.requests["write-property"] == writes
        assert arbiter.held() == {}
