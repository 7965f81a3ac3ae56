"""Energy counters that integrate piecewise-constant power exactly, and setpoint leases."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta


class EnergyCounter:
    """Adds power × time for each step, so a counter always equals the integral of the reported power."""

    def __init__(self, initial_kwh: float = 0.0) -> None:
        self.energy_kwh = initial_kwh

    def add(self, power_kw: float, duration_s: float) -> float:
        self.energy_kwh += power_kw * duration_s / 3600.0
        return self.energy_kwh


class ImportExportCounter:
    """A bidirectional meter: positive power counts as import, negative as export."""

    def __init__(self, import_kwh: float = 0.0, export_kwh: float = 0.0) -> None:
        self.imported = EnergyCounter(import_kwh)
        self.exported = EnergyCounter(export_kwh)

    def add(self, power_kw: float, duration_s: float) -> None:
        self.imported.add(max(power_kw, 0.0), duration_s)
        self.exported.add(max(-power_kw, 0.0), duration_s)


class Lease:
    """A setpoint that holds for `timeout_s` after its last write, then the device falls back."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.renewed_at: datetime | None = None

    def renew(self, ts: datetime) -> None:
        self.renewed_at = ts

    @property
    def expires_at(self) -> datetime | None:
        if self.renewed_at is None:
            return None
        return self.renewed_at + timedelta(seconds=self.timeout_s)

    def active(self, ts: datetime) -> bool:
        expiry = self.expires_at
        return expiry is not None and ts < expiry


def split_at(start: datetime, end: datetime, instants: list[datetime | None]) -> list[tuple[datetime, datetime]]:
    """Cut [start, end] at the given instants that fall strictly inside it."""
    cuts = sorted({t for t in instants if t is not None and start < t < end})
    bounds = [start, *cuts, end]
    return list(itertools.pairwise(bounds))
