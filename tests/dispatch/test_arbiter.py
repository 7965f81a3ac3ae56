"""Every write rule of the arbiter, on simulated device state and a clock that moves only when told."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gridctl.alarms import AlarmKind
from gridctl.config import load_site
from gridctl.config.models import Site
from gridctl.dispatch import Outcome
from tests.dispatch.rig import SITES, START, Rig


@pytest.fixture(scope="module")
def union() -> Site:
    return load_site(SITES / "zac-union")


@pytest.fixture(scope="module")
def saint_sauveur() -> Site:
    return load_site(SITES / "zac-saint-sauveur")


async def test_clamps_to_point_limits_and_audits_both_values(union: Site) -> None:
    rig = Rig(union, ["charger-01"])
    entry = await rig.write("charger-01/current-limit", 45.0)
    assert entry is not None and entry.outcome == Outcome.WRITTEN
    assert entry.clamped and entry.requested_value == 45.0 and entry.written_value == 32.0
    assert rig.devices["charger-01"].get("current-limit") == 32.0
    assert (entry.actor, entry.schedule_id, entry.policy_version, entry.unit) == ("optimizer", "sched-1", 3, "A")
    low = await rig.write("charger-01/current-limit", -3.0)
    assert low is not None and low.written_value == 0.0 and low.old_value == 32.0


async def test_ramp_limits_the_rate_of_change(saint_sauveur: Site) -> None:
    rig = Rig(saint_sauveur, ["battery"])
    rig.latest_values["battery/power-setpoint"] = 0.0
    first = await rig.write("battery/power-setpoint", 90.0)
    # 50 kW per minute from the device's current 0 kW.
    assert first is not None and first.ramped and first.written_value == 50.0
    rig.clock.advance(30)
    second = await rig.write("battery/power-setpoint", 90.0)
    assert second is not None and second.written_value == 75.0
    rig.clock.advance(60)
    third = await rig.write("battery/power-setpoint", 90.0)
    assert third is not None and not third.ramped and third.written_value == 90.0
    rig.clock.advance(6)
    down = await rig.write("battery/power-setpoint", -90.0)
    assert down is not None and down.written_value == pytest.approx(85.0)


async def test_lease_is_renewed_every_period_and_unchanged_values_are_not_rewritten(union: Site) -> None:
    rig = Rig(union, ["charger-01"])
    driver = rig.drivers["charger-01"]
    written = await rig.write("charger-01/current-limit", 16.0)
    assert written is not None and written.lease_until == START + timedelta(seconds=60)  # 3 × 20 s
    rig.clock.advance(5)
    assert await rig.write("charger-01/current-limit", 16.0) is None
    assert len(driver.writes) == 1
    rig.clock.advance(10)
    assert await rig.arbiter.renew_leases() == []
    rig.clock.advance(5)
    renewed = await rig.arbiter.renew_leases()
    assert [e.outcome for e in renewed] == [Outcome.RENEWED]
    assert len(driver.writes) == 2


async def test_unchanged_value_without_lease_is_written_once(union: Site) -> None:
    rig = Rig(union, ["offices-ahu"])
    assert await rig.write("offices-ahu/zone-setpoint", 21.0) is not None
    for _ in range(5):
        rig.clock.advance(600)
        assert await rig.write("offices-ahu/zone-setpoint", 21.0) is None
    assert await rig.arbiter.renew_leases() == []
    # The air handler's watchdog heard from gridctl before its first command.
    assert [w[0] for w in rig.drivers["offices-ahu"].writes] == ["supervisor-heartbeat", "zone-setpoint"]


async def test_bacnet_writes_at_configured_priority(union: Site) -> None:
    rig = Rig(union, ["offices-ahu", "offices-lighting"])
    entry = await rig.write("offices-ahu/zone-setpoint", 21.0)
    assert entry is not None and entry.priority == 10
    assert rig.devices["offices-ahu"].priority_array("zone-setpoint")[9] == 21.0
    lighting = await rig.write("offices-lighting/zone-1-dimming", 80.0)
    assert lighting is not None and lighting.priority == 10  # the device's default


async def test_higher_priority_is_an_override_until_the_operator_lets_go(union: Site) -> None:
    rig = Rig(union, ["offices-ahu"])
    device = rig.devices["offices-ahu"]
    await rig.write("offices-ahu/zone-setpoint", 21.0)
    device.write("zone-setpoint", 19.0, priority=8)  # an operator at the panel
    rig.clock.advance(120)
    entry = await rig.write("offices-ahu/zone-setpoint", 22.0)
    assert entry is not None and entry.outcome == Outcome.OVERRIDE
    assert rig.alarms.is_active(AlarmKind.OVERRIDE, "offices-ahu/zone-setpoint")
    writes = len(rig.drivers["offices-ahu"].writes)
    assert await rig.write("offices-ahu/zone-setpoint", 23.0) is None
    assert len(rig.drivers["offices-ahu"].writes) == writes
    assert device.get("zone-setpoint") == 19.0
    assert await rig.arbiter.review_overrides() == []
    device.write("zone-setpoint", None, priority=8)
    assert await rig.arbiter.review_overrides() == ["offices-ahu/zone-setpoint"]
    assert not rig.alarms.is_active(AlarmKind.OVERRIDE, "offices-ahu/zone-setpoint")
    resumed = await rig.write("offices-ahu/zone-setpoint", 22.0)
    assert resumed is not None and resumed.outcome == Outcome.WRITTEN


async def test_local_mode_stops_writes_to_the_device(union: Site) -> None:
    rig = Rig(union, ["offices-ahu"])
    rig.latest_values["offices-ahu/local-mode"] = True
    entry = await rig.write("offices-ahu/zone-setpoint", 21.0)
    assert entry is not None and entry.outcome == Outcome.OVERRIDE and "local mode" in (entry.error or "")
    assert rig.drivers["offices-ahu"].writes == []
    rig.latest_values["offices-ahu/local-mode"] = False
    assert await rig.arbiter.review_overrides() == ["offices-ahu/zone-setpoint"]
    assert (await rig.write("offices-ahu/zone-setpoint", 21.0)).outcome == Outcome.WRITTEN


async def test_hands_off_relinquishes_staggered_and_blocks_writes(union: Site) -> None:
    rig = Rig(union, ["offices-ahu", "offices-lighting", "charger-01"])
    await rig.write("offices-ahu/zone-setpoint", 21.0)
    await rig.write("offices-lighting/zone-1-dimming", 60.0)
    await rig.write("offices-lighting/zone-2-dimming", 70.0)
    await rig.write("charger-01/current-limit", 16.0)
    entries = await rig.arbiter.hands_off("device:offices-lighting", "operator:alice", "relamping")
    assert [e.outcome for e in entries] == [Outcome.RELINQUISHED, Outcome.RELINQUISHED]
    assert all(e.actor == "operator:alice" and e.written_value is None for e in entries)
    assert rig.sleeps == [0.5]
    assert rig.devices["offices-lighting"].priority_array("zone-1-dimming")[9] is None
    assert await rig.write("offices-lighting/zone-1-dimming", 90.0) is None
    rig.clock.advance(120)  # the setpoint's ramp allows 1 K per minute
    assert (await rig.write("offices-ahu/zone-setpoint", 22.0)).written_value == 22.0
    site_wide = await rig.arbiter.hands_off("site", "operator:alice", "storm")
    assert {e.address for e in site_wide} == {"offices-ahu/zone-setpoint", "charger-01/current-limit"}
    rig.clock.advance(3600)
    assert await rig.arbiter.renew_leases() == []
    await rig.arbiter.hands_on("site")
    await rig.arbiter.hands_on("device:offices-lighting")
    assert (await rig.write("offices-lighting/zone-1-dimming", 90.0)).outcome == Outcome.WRITTEN


async def test_read_back_mismatch_retries_a_bounded_number_of_times_and_alarms(union: Site) -> None:
    rig = Rig(union, ["charger-02"])
    rig.drivers["charger-02"].store_instead = 10.0
    entry = await rig.write("charger-02/current-limit", 20.0)
    assert entry is not None and entry.outcome == Outcome.FAILED
    outcomes = [e.outcome for e in rig.audit.entries]
    assert outcomes == [Outcome.MISMATCH, Outcome.MISMATCH, Outcome.MISMATCH, Outcome.FAILED]
    assert rig.alarms.is_active(AlarmKind.WRITE_MISMATCH, "charger-02/current-limit")
    rig.drivers["charger-02"].store_instead = None
    # Not skipped as "unchanged": the device's state is unknown after a mismatch.
    assert (await rig.write("charger-02/current-limit", 20.0)).outcome == Outcome.WRITTEN
    assert not rig.alarms.is_active(AlarmKind.WRITE_MISMATCH, "charger-02/current-limit")


async def test_device_errors_are_audited_not_raised(union: Site) -> None:
    rig = Rig(union, ["charger-03"])
    rig.drivers["charger-03"].timeout = True
    entry = await rig.write("charger-03/current-limit", 16.0)
    assert entry is not None and entry.outcome == Outcome.FAILED and "DeviceTimeout" in (entry.error or "")


async def test_read_only_points_are_rejected_before_any_io(union: Site) -> None:
    rig = Rig(union, ["charger-01"])
    entry = await rig.write("charger-01/power", 3.0)
    assert entry is not None and entry.outcome == Outcome.REJECTED
    assert rig.drivers["charger-01"].writes == []


async def test_shutdown_releases_every_point_the_protocol_way(saint_sauveur: Site, union: Site) -> None:
    rig = Rig(saint_sauveur, ["battery", "rooftop-pv-inverter", "gym-controller"])
    rig.latest_values["battery/power-setpoint"] = 0.0
    await rig.write("battery/power-setpoint", 40.0)
    await rig.write("rooftop-pv-inverter/curtailment-limit", 60.0)
    await rig.write("gym-controller/hall-setpoint", 19.0)
    entries = {e.address: e for e in await rig.arbiter.release_all()}
    assert entries["battery/power-setpoint"].written_value == 0  # its relinquish value
    assert entries["rooftop-pv-inverter/curtailment-limit"].written_value == 100
    assert entries["gym-controller/hall-setpoint"].written_value is None  # BACnet relinquish
    assert rig.devices["gym-controller"].priority_array("hall-setpoint")[9] is None
    assert rig.arbiter.held() == {}
    # Three devices are released side by side; only points of one device wait for each other.
    assert rig.sleeps == []
    # A leased point with no relinquish value: gridctl stops renewing and the charger falls back itself.
    charger_rig = Rig(union, ["charger-01"])
    await charger_rig.write("charger-01/current-limit", 16.0)
    (released,) = await charger_rig.arbiter.release_all()
    assert released.outcome == Outcome.RELINQUISHED and released.error is None
    assert len(charger_rig.drivers["charger-01"].writes) == 1
