"""Per-device health and the reconnect back-off every adapter shares."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

from drivers.base import DeviceHealth, HealthState

Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Backoff:
    """Capped exponential back-off with jitter, so many devices don't reconnect in lockstep."""

    def __init__(self, initial_s: float = 0.5, cap_s: float = 30.0, factor: float = 2.0,
                 jitter: float = 0.2, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.factor = factor
        self.jitter = jitter
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.cap_s, self.initial_s * self.factor**self._attempt)
        self._attempt += 1
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt


class HealthTracker:
    """ok after a success; degraded after a failure; offline after `offline_after` failures in a row."""

    def __init__(self, device_id: str, offline_after: int = 3, now: Now = utc_now) -> None:
        self.device_id = device_id
        self.offline_after = offline_after
        self._now = now
        self._state = HealthState.OFFLINE
        self._last_success: datetime | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._failures = 0

    def success(self) -> None:
        self._state = HealthState.OK
        self._last_success = self._now()
        self._failures = 0

    def failure(self, error: BaseException | str) -> None:
        self._failures += 1
        self._last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._last_error_at = self._now()
        self._state = HealthState.OFFLINE if self._failures >= self.offline_after else HealthState.DEGRADED

    def partial(self, error: str) -> None:
        """The device answered but some points failed (e.g. one unknown object)."""
        self._last_success = self._now()
        self._last_error = error
        self._last_error_at = self._last_success
        self._failures = 0
        self._state = HealthState.DEGRADED

    def snapshot(self) -> DeviceHealth:
        return DeviceHealth(self.device_id, self._state, self._last_success, self._last_error,
                            self._last_error_at, self._failures)
