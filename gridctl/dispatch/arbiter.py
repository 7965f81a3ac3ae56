"""The one arbiter every write to equipment goes through.

Rules, in order: hands off → override (priority array or local mode) → clamp to the point's
limits → ramp limit → skip an unchanged value unless its lease is due → write at the configured
priority → read back and verify (bounded retries). Every write, refused or not, is audited.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drivers.base import Driver, DriverError, NotCommandable, Override, Value, WriteMismatch
from gridctl.alarms import AlarmBook, AlarmKind, Severity
from gridctl.clock import Clock
from gridctl.config.models import BacnetDevice, Point, Site
from gridctl.dispatch.audit import AuditEntry, AuditSink, Outcome


@dataclass(frozen=True)
class WriteRequest:
    address: str
    value: Value | None
    actor: str
    reason: str
    schedule_id: str | None = None
    policy_version: int | None = None


@dataclass(frozen=True)
class DispatchSettings:
    # Immediate retries after a read-back mismatch before the point waits for the next cycle.
    mismatch_retries: int = 2
    # Pause between two relinquishes when letting go of many points, so loads don't all jump at once.
    relinquish_stagger_s: float = 0.5
    # A device falls back on its own after this many lease periods without a renewal.
    lease_expiry_periods: float = 3.0


@dataclass
class _PointState:
    value: Value | None = None
    written_at: datetime | None = None
    lease_until: datetime | None = None
    override_priority: int | None = None
    override_reason: str | None = None
    mismatches: int = 0


Sleep = Callable[[float], Awaitable[None]]
LatestValue = Callable[[str], Value | None]


@dataclass
class Arbiter:
    site: Site
    drivers: Mapping[str, Driver]
    clock: Clock
    audit: AuditSink
    alarms: AlarmBook
    settings: DispatchSettings = field(default_factory=DispatchSettings)
    # The latest polled value of a point (for local-mode detection); None when unknown.
    latest: LatestValue = lambda _address: None
    sleep: Sleep = asyncio.sleep

    def __post_init__(self) -> None:
        self._states: dict[str, _PointState] = {}
        self._hands_off: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ public API

    async def write(self, request: WriteRequest) -> AuditEntry | None:
        """Apply one request under every rule. Returns the audit entry, or None when nothing was due."""
        device_id = request.address.partition("/")[0]
        point = self.site.point(request.address)
        if not point.writable:
            return await self._record(request, point, Outcome.REJECTED, error="point is not writable")
        state = self._states.setdefault(request.address, _PointState())
        if self.is_hands_off(request.address):
            return None
        if state.override_priority is not None:
            return None
        local_mode = self._local_mode(device_id)
        if local_mode:
            return await self._mark_override(request, point, state, 0, f"device in local mode ({local_mode})")
        value, clamped = _clamp(request.value, point)
        value, ramped = self._ramp(value, point, state, request.address)
        now = self.clock.now()
        renewal = False
        if _same(value, state.value):
            if point.lease_s is None or state.written_at is None:
                return None
            if now < state.written_at + timedelta(seconds=point.lease_s):
                return None
            renewal = True
        async with self._lock(device_id):
            return await self._send(request, point, state, value, clamped=clamped, ramped=ramped,
                                    renewal=renewal)

    async def renew_leases(self) -> list[AuditEntry]:
        """Re-send every held lease that is due, so devices don't fall back while gridctl is alive."""
        entries = []
        now = self.clock.now()
        for address, state in list(self._states.items()):
            point = self.site.point(address)
            if point.lease_s is None or state.value is None or state.written_at is None:
                continue
            if now < state.written_at + timedelta(seconds=point.lease_s):
                continue
            entry = await self.write(WriteRequest(address, state.value, "gridctl:lease", "lease renewal"))
            if entry is not None:
                entries.append(entry)
        return entries

    def held(self) -> dict[str, Value]:
        """Points gridctl currently commands, with the value it last wrote."""
        return {a: s.value for a, s in self._states.items() if s.value is not None}

    def overrides(self) -> dict[str, tuple[int, str]]:
        return {a: (s.override_priority, s.override_reason or "") for a, s in self._states.items()
                if s.override_priority is not None}

    def is_hands_off(self, address: str) -> bool:
        device_id = address.partition("/")[0]
        return bool({"site", f"device:{device_id}", f"point:{address}"} & self._hands_off)

    async def hands_off(self, scope: str, actor: str, reason: str) -> list[AuditEntry]:
        """Stop commanding `site`, `device:<id>` or `point:<address>` and relinquish what we hold there."""
        _validate_scope(scope, self.site)
        self._hands_off.add(scope)
        targets = [a for a in self.held() if self._in_scope(a, scope)]
        return await self._relinquish_all(targets, actor, f"hands off {scope}: {reason}")

    def hands_on(self, scope: str) -> None:
        self._hands_off.discard(scope)

    def hands_off_scopes(self) -> set[str]:
        return set(self._hands_off)

    async def release_all(self, actor: str = "gridctl", reason: str = "shutdown") -> list[AuditEntry]:
        """Relinquish every point gridctl holds (graceful shutdown), staggered."""
        return await self._relinquish_all(list(self.held()), actor, reason)

    async def review_overrides(self) -> list[str]:
        """Re-check overridden points; returns those released (higher priority gone, local mode off)."""
        released = []
        for address, state in list(self._states.items()):
            if state.override_priority is None:
                continue
            device_id, _, point_id = address.partition("/")
            still = bool(self._local_mode(device_id)) if state.override_priority == 0 else False
            driver = self.drivers.get(device_id)
            priority_array = getattr(driver, "priority_array", None)
            if state.override_priority > 0 and priority_array is not None:
                try:
                    slots = await priority_array(point_id)
                except DriverError:
                    continue
                ours = self._priority(address)
                still = any(v is not None for v in slots[: (ours or 16) - 1])
            elif state.override_priority > 0:
                still = False
            if not still:
                state.override_priority = None
                state.override_reason = None
                # Unknown device state after an override: the next request is written, not skipped.
                state.value = None
                self.alarms.clear(AlarmKind.OVERRIDE, address, self.clock.now())
                released.append(address)
        return released

    # ------------------------------------------------------------------ internals

    async def _send(self, request: WriteRequest, point: Point, state: _PointState, value: Value | None,
                    *, clamped: bool, ramped: bool, renewal: bool) -> AuditEntry:
        device_id, _, point_id = request.address.partition("/")
        driver = self.drivers[device_id]
        priority = self._priority(request.address)
        old = state.value
        attempts = 1 + self.settings.mismatch_retries
        for attempt in range(attempts):
            try:
                result = await driver.write(point_id, value, priority=priority)
            except Override as error:
                return await self._mark_override(request, point, state, error.active_priority, str(error))
            except WriteMismatch as error:
                state.mismatches += 1
                self.alarms.raise_alarm(AlarmKind.WRITE_MISMATCH, request.address,
                                        f"read-back differs after writing {value}: {error}", self.clock.now())
                await self._record(request, point, Outcome.MISMATCH, old=old, sent=value, priority=priority,
                                   error=str(error), clamped=clamped, ramped=ramped)
                if attempt + 1 < attempts:
                    continue
                # The device holds something else: forget our value so the next cycle writes again.
                state.value = None
                return await self._record(request, point, Outcome.FAILED, old=old, sent=value, priority=priority,
                                          error=f"gave up after {attempts} mismatches", clamped=clamped,
                                          ramped=ramped)
            except DriverError as error:
                return await self._record(request, point, Outcome.FAILED, old=old, sent=value, priority=priority,
                                          error=f"{type(error).__name__}: {error}", clamped=clamped, ramped=ramped)
            now = self.clock.now()
            state.value = value
            state.written_at = now
            state.mismatches = 0
            state.lease_until = (now + timedelta(seconds=point.lease_s * self.settings.lease_expiry_periods)
                                 if point.lease_s else None)
            self.alarms.clear(AlarmKind.WRITE_MISMATCH, request.address, now)
            return await self._record(request, point, Outcome.RENEWED if renewal else Outcome.WRITTEN, old=old,
                                      sent=value, priority=priority, read_back=result.read_back,
                                      lease_until=state.lease_until, clamped=clamped, ramped=ramped)
        raise AssertionError("unreachable")

    async def _relinquish_all(self, addresses: list[str], actor: str, reason: str) -> list[AuditEntry]:
        # Staggered within a device; devices in parallel, so one dead device can't hold the others up.
        by_device: dict[str, list[str]] = {}
        for address in addresses:
            by_device.setdefault(address.partition("/")[0], []).append(address)

        async def one_device(targets: list[str]) -> list[AuditEntry]:
            entries = []
            for index, address in enumerate(targets):
                if index:
                    await self.sleep(self.settings.relinquish_stagger_s)
                entries.append(await self._relinquish(address, actor, reason))
            return entries

        results = await asyncio.gather(*(one_device(t) for t in by_device.values()))
        return [entry for entries in results for entry in entries]

    async def _relinquish(self, address: str, actor: str, reason: str) -> AuditEntry:
        device_id, _, point_id = address.partition("/")
        point = self.site.point(address)
        state = self._states.setdefault(address, _PointState())
        request = WriteRequest(address, None, actor, reason)
        old = state.value
        device = self.site.device(device_id)
        priority = self._priority(address)
        state.value = None
        state.written_at = None
        state.lease_until = None
        if isinstance(device, BacnetDevice):
            value: Value | None = None
        elif point.relinquish_value is not None:
            value = point.relinquish_value
        else:
            # No relinquish in the protocol and no value to fall back to: stop renewing, the
            # device's own timeout (or its last value, for a point without lease) takes over.
            return await self._record(request, point, Outcome.RELINQUISHED, old=old, sent=None,
                                      error=None if point.lease_s else "no relinquish value: left as is")
        async with self._lock(device_id):
            try:
                try:
                    result = await self.drivers[device_id].write(point_id, value, priority=priority)
                except NotCommandable:
                    # A BACnet object without priority array has nothing to relinquish (and a NULL could
                    # leave it uninitialised): write its relinquish value, or leave it as it is.
                    if point.relinquish_value is None:
                        return await self._record(request, point, Outcome.RELINQUISHED, old=old, sent=None,
                                                  error="not commandable and no relinquish value: left as is")
                    value, priority = point.relinquish_value, None
                    result = await self.drivers[device_id].write(point_id, value, priority=priority)
            except DriverError as error:
                return await self._record(request, point, Outcome.FAILED, old=old, sent=value, priority=priority,
                                          error=f"{type(error).__name__}: {error}")
        # The priority the device took the write at: none for a plain write to a non-commandable object.
        return await self._record(request, point, Outcome.RELINQUISHED, old=old, sent=value, priority=result.priority,
                                  read_back=result.read_back)

    async def _mark_override(self, request: WriteRequest, point: Point, state: _PointState, priority: int,
                             reason: str) -> AuditEntry:
        first = state.override_priority is None
        state.override_priority = priority
        state.override_reason = reason
        if first:
            self.alarms.raise_alarm(AlarmKind.OVERRIDE, request.address, f"manual override: {reason}",
                                    self.clock.now(), Severity.INFO)
        return await self._record(request, point, Outcome.OVERRIDE, old=state.value, sent=None, error=reason)

    def _ramp(self, value: Value | None, point: Point, state: _PointState,
              address: str) -> tuple[Value | None, bool]:
        if point.ramp_per_minute is None or not _numeric(value):
            return value, False
        if _numeric(state.value) and state.written_at is not None:
            base = float(state.value)
            minutes = (self.clock.now() - state.written_at).total_seconds() / 60.0
        else:
            # First command: ramp from what the device does now, one minute's worth.
            measured = self.latest(address)
            if not _numeric(measured):
                return value, False
            base, minutes = float(measured), 1.0
        step = point.ramp_per_minute * max(minutes, 0.0)
        low, high = base - step, base + step
        if low <= value <= high:
            return value, False
        return (high if value > high else low), True

    def _local_mode(self, device_id: str) -> str | None:
        device = self.site.device(device_id)
        if device.local_mode_point is None:
            return None
        address = f"{device_id}/{device.local_mode_point}"
        value = self.latest(address)
        return address if value not in (None, False, 0, 0.0) else None

    def _priority(self, address: str) -> int | None:
        device = self.site.device(address.partition("/")[0])
        if not isinstance(device, BacnetDevice):
            return None
        point = self.site.point(address)
        return getattr(point, "priority", None) or device.default_priority

    def _in_scope(self, address: str, scope: str) -> bool:
        return scope == "site" or scope == f"device:{address.partition('/')[0]}" or scope == f"point:{address}"

    def _lock(self, device_id: str) -> asyncio.Lock:
        return self._locks.setdefault(device_id, asyncio.Lock())

    async def _record(self, request: WriteRequest, point: Point, outcome: Outcome, *, old: Value | None = None,
                      sent: Value | None = None, priority: int | None = None, read_back: Value | None = None,
                      lease_until: datetime | None = None, error: str | None = None, clamped: bool = False,
                      ramped: bool = False) -> AuditEntry:
        entry = AuditEntry(
            ts=self.clock.now(), site_id=self.site.id, address=request.address, actor=request.actor,
            reason=request.reason, schedule_id=request.schedule_id, policy_version=request.policy_version,
            old_value=old, requested_value=request.value, written_value=sent, priority=priority,
            lease_until=lease_until, outcome=outcome, read_back=read_back, error=error, clamped=clamped,
            ramped=ramped, unit=point.unit,
        )
        await self.audit.record(entry)
        return entry


def _clamp(value: Value | None, point: Point) -> tuple[Value | None, bool]:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value, False
    if math.isnan(value):
        raise ValueError(f"refusing to write NaN to {point.id}")
    low = point.min if point.min is not None else -math.inf
    high = point.max if point.max is not None else math.inf
    clamped = min(max(value, low), high)
    return clamped, clamped != value


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Value | None, b: Value | None) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def _validate_scope(scope: str, site: Site) -> None:
    if scope == "site":
        return
    kind, _, target = scope.partition(":")
    if kind == "device":
        site.device(target)
    elif kind == "point":
        site.point(target)
    else:
        raise ValueError(f"scope must be 'site', 'device:<id>' or 'point:<device/point>', not {scope!r}")
