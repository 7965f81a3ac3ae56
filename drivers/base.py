"""The one interface every protocol adapter implements, with readings, health and typed errors.

`drivers` depends on nothing but asyncio and the protocol libraries: it knows devices and points
through the small spec dataclasses in `drivers.specs`, never through gridctl's site models.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

Value = float | int | bool | str


class Quality(StrEnum):
    GOOD = "good"
    # The value is the last one known but the device did not answer this poll.
    STALE = "stale"
    BAD = "bad"


class HealthState(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Reading:
    """One point's value at one instant (UTC). A bad reading has no value and says why."""

    address: str
    ts: datetime
    value: Value | None
    quality: Quality
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str
    state: HealthState
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_failures: int


class DriverError(Exception):
    """Base of every error a driver raises; carries the device and, when known, the point."""

    def __init__(self, message: str, *, device_id: str | None = None, point_id: str | None = None) -> None:
        super().__init__(message)
        self.device_id = device_id
        self.point_id = point_id


class DeviceTimeout(DriverError):
    """The device did not answer in time."""


class ConnectionLost(DriverError):
    """The transport to the device is down (refused, reset, closed)."""


class IllegalAddress(DriverError):
    """The device says the register, object or node does not exist."""


class DeviceException(DriverError):
    """The device answered with a protocol exception other than a bad address."""


class DecodeError(DriverError):
    """The device answered but the payload cannot be decoded into the point's type."""


class WriteRejected(DriverError):
    """The device refused a write (out of range, access denied, type mismatch)."""


class NotCommandable(WriteRejected):
    """The object has no priority array (BACnet): it takes plain writes, has no priorities to read and
    cannot be relinquished. Raised before anything is written."""


class NotAttempted(DriverError):
    """The request was never sent: the device had just failed to answer another one (or is being backed
    off after failing). `cause` is that failure."""

    def __init__(self, message: str, *, cause: DriverError | None = None, device_id: str | None = None,
                 point_id: str | None = None) -> None:
        super().__init__(message, device_id=device_id, point_id=point_id)
        self.cause = cause


def not_attempted(cause: DriverError, device_id: str) -> NotAttempted:
    """The error of a request skipped because of `cause` (the device did not answer another one, or could
    not be used at all)."""
    return NotAttempted(f"not attempted after {type(cause).__name__}: {cause}", cause=cause, device_id=device_id)


class WriteMismatch(DriverError):
    """A write was accepted but reading back returned another value."""


class LimitViolation(DriverError):
    """A write outside the point's configured min/max, refused before anything was sent."""


class Override(DriverError):
    """A higher-priority command holds the point (BACnet priority array, local mode)."""

    def __init__(self, message: str, *, active_priority: int, device_id: str | None = None,
                 point_id: str | None = None) -> None:
        super().__init__(message, device_id=device_id, point_id=point_id)
        self.active_priority = active_priority


@dataclass(frozen=True, slots=True)
class WriteResult:
    address: str
    requested: Value | None
    written: Value | None
    read_back: Value | None
    ts: datetime
    # BACnet priority written at, when the protocol has one.
    priority: int | None = None


class Driver(abc.ABC):
    """A connection to one device. Safe to share between tasks: calls are serialised per device."""

    device_id: str

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the transport; raises ConnectionLost/DeviceTimeout when the device is unreachable."""

    @abc.abstractmethod
    async def read(self, point_ids: Sequence[str] | None = None) -> list[Reading]:
        """Read the given points (all when None) in as few requests as the protocol allows.

        Never raises for a device fault: unreachable points come back with quality BAD (or STALE
        with the last good value) and the error text; health records the fault.
        """

    @abc.abstractmethod
    async def write(self, point_id: str, value: Value | None, *, priority: int | None = None) -> WriteResult:
        """Encode, write, read back and verify one point. `None` relinquishes (BACnet).

        Raises LimitViolation, WriteRejected, WriteMismatch, Override, DeviceTimeout, ...
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the transport; idempotent."""

    @abc.abstractmethod
    def health(self) -> DeviceHealth:
        """The device's health as of the last request."""
