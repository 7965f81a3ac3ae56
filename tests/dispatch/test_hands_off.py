"""Hands off under the same lock as writes, on a slow simulated device: a write in flight is relinquished
as soon as it completes, nothing in scope is written while hands off holds, and hands off outlives a
restart. Then what a restart does with what a dead run left commanded."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from gridctl.assets import site_adapters
from gridctl.config import load_site
from gridctl.config.models import Site
from gridctl.dispatch import Outcome
from gridctl.dispatch.journal import WriteJournal
from gridctl.service.controller import planned_points
from sim.core import SimDevice
from tests.dispatch.rig import SITES, Rig

VAV = "offices-vav-1"
SETPOINT = f"{VAV}/zone-setpoint"


@pytest.fixture(scope="module")
def union() -> Site:
    return load_site(SITES / "zac-union")


async def test_a_write_in_flight_when_hands_off_arrives_is_relinquished_as_soon_as_it_completes(union: Site) -> None:
    rig = Rig(union, [VAV, "offices-lighting"])
    driver = rig.drivers[VAV]
    device = rig.devices[VAV]
    driver.hold = asyncio.Event()
    in_flight = asyncio.create_task(rig.write(SETPOINT, 21.0))
    await asyncio.wait_for(driver.entered.wait(), 10)
    hands_off = asyncio.create_task(rig.arbiter.hands_off(f"device:{VAV}", "operator:alice", "balancing"))
    later = asyncio.create_task(rig.write(SETPOINT, 23.0))
    other_device = await rig.write("offices-lighting/zone-1-dimming", 40.0)
    for _ in range(20):
        await asyncio.sleep(0)
    # The scope applies at once; the relinquish waits for the write under way on that device only.
    assert rig.arbiter.is_hands_off(SETPOINT) and not hands_off.done()
    assert other_device is not None and other_device.outcome == Outcome.WRITTEN
    driver.hold.set()
    written = await in_flight
    entries = await hands_off
    assert written is not None and written.outcome == Outcome.WRITTEN
    assert [(e.address, e.outcome) for e in entries] == [(SETPOINT, Outcome.RELINQUISHED)]
    assert await later is None  # refused: it came after the switch
    assert device.priority_array("zone-setpoint")[9] is None
    assert [(p, v) for p, v, _ in driver.writes] == [("zone-setpoint", 21.0), ("zone-setpoint", None)]
    assert rig.arbiter.commanded() == {"offices-lighting/zone-1-dimming"}


@pytest.mark.parametrize("seed", range(12))
async def test_writes_hands_off_and_hands_on_interleaved_never_leave_a_value_held_in_scope(union: Site,
                                                                                          seed: int) -> None:
    rng = random.Random(seed)
    rig = Rig(union, [VAV])
    driver = rig.drivers[VAV]
    device: SimDevice = rig.devices[VAV]
    events: list[tuple[str, str, object]] = []
    device.on_write(lambda _d, point_id, value, priority: events.append(("write", point_id, value)))
    scopes = [f"device:{VAV}", f"point:{SETPOINT}", "site"]

    def in_scope(scope: str, point_id: str) -> bool:
        return scope in ("site", f"device:{VAV}") or scope == f"point:{VAV}/{point_id}"

    async def writer(index: int) -> None:
        for step in range(8):
            driver.delay_s = rng.choice((0.0, 0.001, 0.003))
            await rig.write(SETPOINT, 16.0 + (index * 8 + step) % 10)
            await asyncio.sleep(rng.random() * 0.004)

    async def operator() -> None:
        for _ in range(6):
            scope = rng.choice(scopes)
            await asyncio.sleep(rng.random() * 0.006)
            await rig.arbiter.hands_off(scope, "operator:alice", "drill")
            # Returned: every point in scope is let go on the device, right now.
            assert device.priority_array("zone-setpoint")[9] is None
            events.append(("off", scope, None))
            await asyncio.sleep(rng.random() * 0.006)
            events.append(("on", scope, None))
            await rig.arbiter.hands_on(scope, "operator:alice")

    await asyncio.wait_for(asyncio.gather(writer(0), writer(1), writer(2), operator()), 60)
    # From a hands off's return to its hands on, nothing in its scope is written a value.
    active: set[str] = set()
    for kind, subject, value in events:
        if kind == "off":
            active.add(subject)
        elif kind == "on":
            active.discard(subject)
        elif value is not None:
            assert not any(in_scope(s, subject) for s in active), f"{subject}={value} written under hands off {active}"
    await rig.arbiter.hands_off("site", "operator:alice", "end of drill")
    assert device.priority_array("zone-setpoint")[9] is None and rig.arbiter.commanded() == set()
    assert driver.in_flight == 0


async def test_hands_off_outlives_a_restart_and_applies_before_the_first_write(union: Site, tmp_path: Path) -> None:
    path = tmp_path / "writes.sqlite3"
    rig = Rig(union, [VAV, "offices-lighting"], journal=WriteJournal(path))
    await rig.write(SETPOINT, 21.0)
    await rig.arbiter.hands_off(f"device:{VAV}", "operator:alice", "balancing the air flows")
    await rig.arbiter.hands_off("point:offices-lighting/zone-2-dimming", "operator:bob", "relamping")
    await rig.arbiter.hands_on("point:offices-lighting/zone-2-dimming", "operator:bob")
    rig.journal.close()  # type: ignore[union-attr]

    restarted = Rig(union, [VAV, "offices-lighting"], journal=WriteJournal(path), devices=rig.devices)
    assert restarted.arbiter.hands_off_scopes() == {f"device:{VAV}"}
    details = restarted.arbiter.hands_off_details()[f"device:{VAV}"]
    assert (details.actor, details.reason) == ("operator:alice", "balancing the air flows")
    assert await restarted.write(SETPOINT, 24.0) is None
    assert (await restarted.write("offices-lighting/zone-2-dimming", 50.0)).outcome == Outcome.WRITTEN
    assert restarted.drivers[VAV].writes == []


async def test_a_restart_reclaims_what_the_plan_commands_and_relinquishes_the_rest(union: Site, tmp_path: Path) -> None:
    path = tmp_path / "writes.sqlite3"
    rig = Rig(union, ["offices-ahu", "offices-lighting"], journal=WriteJournal(path))
    await rig.write("offices-ahu/zone-setpoint", 21.0)  # a thermal zone's setpoint: the plan writes it
    await rig.write("offices-ahu/fan-speed", 60.0)  # no asset commands it (a manual write, an old asset)
    await rig.write("offices-lighting/zone-1-dimming", 70.0)
    await rig.write("offices-lighting/zone-2-dimming", 80.0)
    # The lighting controller stops answering as an operator switches it hands off: its relinquish fails...
    rig.drivers["offices-lighting"].timeout = True
    failed = await rig.arbiter.hands_off("device:offices-lighting", "operator:alice", "maintenance")
    assert {e.outcome for e in failed} == {Outcome.FAILED}
    # ...and gridctl dies (kill -9): nothing is relinquished.
    rig.journal.close()  # type: ignore[union-attr]
    ahu, lighting = rig.devices["offices-ahu"], rig.devices["offices-lighting"]
    assert ahu.priority_array("fan-speed")[9] == 60.0 and lighting.priority_array("zone-1-dimming")[9] == 70.0

    restarted = Rig(union, ["offices-ahu", "offices-lighting"], journal=WriteJournal(path), devices=rig.devices)
    entries = {e.address: e for e in await restarted.arbiter.recover(planned_points(site_adapters(union)))}
    assert entries["offices-ahu/zone-setpoint"].outcome == Outcome.RECLAIMED
    for address in ("offices-ahu/fan-speed", "offices-lighting/zone-1-dimming", "offices-lighting/zone-2-dimming"):
        assert entries[address].outcome == Outcome.RELINQUISHED, address
    assert "nothing commands it any more" in entries["offices-ahu/fan-speed"].reason
    assert "under hands off device:offices-lighting" in entries["offices-lighting/zone-1-dimming"].reason
    assert ahu.priority_array("fan-speed")[9] is None
    assert lighting.priority_array("zone-1-dimming")[9] is None and lighting.priority_array("zone-2-dimming")[9] is None
    # Reclaimed: still at the device, counted as held, and written again by the next dispatch (not skipped).
    assert ahu.priority_array("zone-setpoint")[9] == 21.0
    assert restarted.arbiter.commanded() == {"offices-ahu/zone-setpoint"}
    assert (await restarted.write("offices-ahu/zone-setpoint", 21.0)).outcome == Outcome.WRITTEN
    # A stop relinquishes the reclaimed point like any other.
    assert [e.address for e in await restarted.arbiter.release_all()] == ["offices-ahu/zone-setpoint"]
    assert restarted.journal.commanded(union.id) == []  # type: ignore[union-attr]
    # Nothing left over: a second start has nothing to settle.
    restarted.journal.close()  # type: ignore[union-attr]
    again = Rig(union, ["offices-ahu"], journal=WriteJournal(path), devices={"offices-ahu": ahu})
    assert await again.arbiter.recover(planned_points(site_adapters(union))) == []
    again.journal.close()  # type: ignore[union-attr]
