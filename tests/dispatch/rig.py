"""An arbiter over simulated device state, a clock that moves only when told, and optionally a journal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gridctl.alarms import AlarmBook
from gridctl.clock import ManualClock
from gridctl.config.models import Site
from gridctl.dispatch import Arbiter, MemoryAuditSink, WriteRequest
from gridctl.dispatch.journal import WriteJournal
from gridctl.fieldbus import device_spec
from sim.core import SimDevice
from tests.dispatch.simdriver import SimDeviceDriver

SITES = Path(__file__).resolve().parents[2] / "sites"
START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


class Rig:
    def __init__(self, site: Site, device_ids: list[str], *, journal: WriteJournal | None = None,
                 devices: dict[str, SimDevice] | None = None, clock: ManualClock | None = None) -> None:
        self.site = site
        self.clock = clock or ManualClock(START)
        self.devices = devices or {d: SimDevice(device_spec(site.device(d)), self.clock) for d in device_ids}
        self.drivers = {d: SimDeviceDriver(dev, bacnet=site.device(d).protocol == "bacnet")
                        for d, dev in self.devices.items()}
        self.audit = MemoryAuditSink()
        self.alarms = AlarmBook()
        self.latest_values: dict[str, object] = {}
        self.sleeps: list[float] = []
        self.journal = journal

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.arbiter = Arbiter(site, self.drivers, self.clock, self.audit, self.alarms,
                               latest=self.latest_values.get, sleep=sleep, journal=journal)

    async def write(self, address: str, value: object, actor: str = "optimizer"):
        return await self.arbiter.write(WriteRequest(address, value, actor, "schedule test", "sched-1", 3))
