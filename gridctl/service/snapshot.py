"""The latest reading of every point, and immutable snapshots of it for one control cycle."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from drivers.base import Quality, Reading, Value


@dataclass(frozen=True)
class Snapshot:
    """What the controller sees in one cycle; values don't change while it decides."""

    taken_at: datetime
    readings: Mapping[str, Reading]
    # A point whose last good value is older than its device's staleness limit counts as stale.
    max_age: Mapping[str, timedelta]

    def value(self, address: str) -> Value | None:
        """The latest good (or stale) value, or None when there is none."""
        reading = self.readings.get(address)
        if reading is None or reading.quality == Quality.BAD:
            return None
        return reading.value

    def number(self, address: str) -> float | None:
        value = self.value(address)
        if isinstance(value, bool):
            return float(value)
        return float(value) if isinstance(value, int | float) else None

    def is_fresh(self, address: str) -> bool:
        reading = self.readings.get(address)
        if reading is None or reading.quality != Quality.GOOD:
            return False
        limit = self.max_age.get(address.partition("/")[0])
        return limit is None or self.taken_at - reading.ts <= limit

    def age(self, address: str) -> timedelta | None:
        reading = self.readings.get(address)
        return None if reading is None else self.taken_at - reading.ts


class LatestValues:
    """Keeps the last reading per point; a bad reading keeps the last good value as stale."""

    def __init__(self, max_age: Mapping[str, timedelta] | None = None) -> None:
        self._readings: dict[str, Reading] = {}
        self._max_age = dict(max_age or {})

    def update(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            previous = self._readings.get(reading.address)
            if reading.quality == Quality.BAD and previous is not None and previous.value is not None:
                # Keep the last known value visible, marked stale, with its original timestamp.
                self._readings[reading.address] = Reading(previous.address, previous.ts, previous.value,
                                                          Quality.STALE, reading.error)
            else:
                self._readings[reading.address] = reading

    def get(self, address: str) -> Reading | None:
        return self._readings.get(address)

    def value(self, address: str) -> Value | None:
        reading = self._readings.get(address)
        return None if reading is None or reading.quality == Quality.BAD else reading.value

    def all(self) -> Mapping[str, Reading]:
        return MappingProxyType(self._readings)

    def snapshot(self, now: datetime) -> Snapshot:
        return Snapshot(now, MappingProxyType(dict(self._readings)), MappingProxyType(dict(self._max_age)))
