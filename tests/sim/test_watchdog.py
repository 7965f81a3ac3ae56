"""The simulated devices' own watchdog: once supervised, a lapse of heartbeats makes a BACnet device release
the supervisor's priority slots and an OPC-UA device put back its own values; observed over the wire."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.bacnet import BacnetDriver
from drivers.specs import BacnetDeviceSpec
from gridctl.clock import ManualClock
from gridctl.config import load_site
from gridctl.fieldbus import device_spec
from sim.bacnet_server import BacnetSimServer
from sim.core import SimDevice
from sim.site import build_devices

SITES = Path(__file__).resolve().parents[2] / "sites"
START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def _ahu(clock: ManualClock) -> SimDevice:
    site = load_site(SITES / "zac-union")
    device = SimDevice(device_spec(site.device("offices-ahu")), clock)
    device.arm_watchdog("supervisor-heartbeat", 60.0, frozenset({10}))
    return device


def test_a_bacnet_device_releases_the_supervisor_priority_when_heartbeats_stop() -> None:
    clock = ManualClock(START)
    ahu = _ahu(clock)
    ahu.set_relinquish_default("zone-setpoint", 19.0)
    ahu.write("zone-setpoint", 22.0, priority=10)
    clock.advance(600)
    # Never supervised yet (no heartbeat came): nothing to lapse.
    assert ahu.get("zone-setpoint") == 22.0 and ahu.watchdog.trips == 0  # type: ignore[union-attr]
    ahu.write("supervisor-heartbeat", 1, priority=10)
    ahu.write("fan-speed", 60.0, priority=8)  # an operator's command: not the watchdog's business
    ahu.write("fan-speed", 80.0, priority=10)
    clock.advance(59)
    assert ahu.priority_array("zone-setpoint")[9] == 22.0
    clock.advance(1)
    assert ahu.priority_array("zone-setpoint")[9] is None
    assert ahu.get("zone-setpoint") == 19.0  # its relinquish default: the local schedule
    assert ahu.priority_array("fan-speed")[7] == 60.0 and ahu.priority_array("fan-speed")[9] is None
    assert ahu.watchdog.trips == 1  # type: ignore[union-attr]
    # The supervisor is back: its heartbeat and commands hold again.
    ahu.write("supervisor-heartbeat", 2, priority=10)
    ahu.write("zone-setpoint", 21.0, priority=10)
    clock.advance(30)
    assert ahu.get("zone-setpoint") == 21.0


def test_an_opcua_device_puts_back_its_own_values() -> None:
    clock = ManualClock(START)
    site = load_site(SITES / "zac-union")
    bms = build_devices(site, clock)["silo-bms"]
    assert bms.watchdog is not None and bms.watchdog.priorities == frozenset()
    bms.set("ventilation-speed", 40.0)  # the BMS's own value
    bms.write("supervisor-heartbeat", 7)
    bms.write("ventilation-speed", 90.0)
    bms.write("ventilation-speed", 85.0)
    clock.advance(299)
    assert bms.get("ventilation-speed") == 85.0
    clock.advance(1)
    assert bms.get("ventilation-speed") == 40.0 and bms.watchdog.trips == 1


def test_the_site_arms_each_declared_watchdog_at_gridctl_priorities() -> None:
    site = load_site(SITES / "zac-haute-deule")
    devices = build_devices(site, ManualClock(START))
    armed = {d: devices[d].watchdog for d in devices if devices[d].watchdog is not None}
    assert set(armed) == {"ahu-north", "ahu-south", "lighting-north", "lighting-south", "bms"}
    assert armed["ahu-north"].priorities == frozenset({10}) and armed["ahu-north"].timeout_s == 300  # type: ignore[union-attr]


async def test_the_release_is_seen_over_bacnet() -> None:
    clock = ManualClock(START)
    ahu = _ahu(clock)
    async with BacnetSimServer(ahu) as server:
        spec = ahu.spec
        assert isinstance(spec, BacnetDeviceSpec)
        driver = BacnetDriver(replace(spec, address=server.address))
        try:
            await driver.write("supervisor-heartbeat", 1, priority=10)
            await driver.write("zone-setpoint", 23.0, priority=10)
            assert (await driver.read_priority_array("zone-setpoint")).slots[9] == 23.0
            clock.advance(timedelta(seconds=61))
            assert (await driver.read_priority_array("zone-setpoint")).slots[9] is None
        finally:
            await driver.close()
