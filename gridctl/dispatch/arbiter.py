"""The one arbiter every write to equipment goes through.

Rules, in order, all under the device's lock: hands off → override (priority array or local mode) →
clamp to the point's limits → ramp limit → skip an unchanged value unless its lease is due → heartbeat
first if the device's watchdog needs one → journal the intent → write at the configured priority →
read back and verify (bounded retries) → journal the outcome. Every write, refused or not, is audited.

The journal is a local file: no write ever waits for the history database (a shipper copies the journal
there). A write the journal cannot record is not sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drivers.base import (
    DeviceTimeout,
    Driver,
    DriverError,
    NotCommandable,
    Override,
    Reading,
    Value,
    WriteMismatch,
    WriteResult,
)
from gridctl.alarms import AlarmBook, AlarmKind, Severity
from gridctl.clock import Clock
from gridctl.config.models import BacnetDevice, Point, Site
from gridctl.dispatch.audit import AuditEntry, AuditSink, Outcome
from gridctl.dispatch.fencing import SiteLease
from gridctl.dispatch.journal import (
    CUT_SHORT_ERROR,
    Action,
    Commanded,
    HandsOff,
    Intent,
    JournalError,
    WriteJournal,
)
from gridctl.dispatch.watchdog import Heartbeat

log = logging.getLogger(__name__)


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
    # What the device holds from gridctl as far as gridctl knows; None: unknown, so the next request is
    # written rather than skipped as unchanged.
    value: Value | None = None
    written_at: datetime | None = None
    lease_until: datetime | None = None
    override_priority: int | None = None
    override_reason: str | None = None
    mismatches: int = 0
    # gridctl may hold the point: a value was sent (whatever came back) and not relinquished since.
    commanded: bool = False
    # The last value sent, for the audit's old value when nothing fresher was read.
    last_sent: Value | None = None


Sleep = Callable[[float], Awaitable[None]]
LatestValue = Callable[[str], Value | None]
LatestReading = Callable[[str], Reading | None]


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
    # The local write journal; None only where nothing real is commanded (closed-loop simulation, tests).
    journal: WriteJournal | None = None
    # The latest reading of a point with its time, for the audit's old value.
    reading: LatestReading = lambda _address: None
    # The fencing epoch of the site lease writes are made under (None: no lease; see `lease`).
    epoch: int | None = None
    # The site lease of an instance sharing sites with others: checked before every write, which must end
    # within its write budget. None for a single instance, which needs no lease.
    lease: SiteLease | None = None

    def __post_init__(self) -> None:
        self._states: dict[str, _PointState] = {}
        self._closed = False
        # Restored before the first write: an operator's hands off outlives a restart.
        self._hands_off: dict[str, HandsOff] = self.journal.hands_off(self.site.id) if self.journal else {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._heartbeats = {d.id: Heartbeat.of(d.id, d.watchdog, self.site.point(f"{d.id}/{d.watchdog.point}"))
                            for d in self.site.devices if d.watchdog is not None}
        if self._hands_off:
            log.info("%s: hands off restored: %s", self.site.id, ", ".join(sorted(self._hands_off)))

    # ------------------------------------------------------------------ public API

    async def write(self, request: WriteRequest) -> AuditEntry | None:
        """Apply one request under every rule. Returns the audit entry, or None when nothing was due."""
        device_id = request.address.partition("/")[0]
        point = self.site.point(request.address)
        if not point.writable:
            return await self._note(request, point, Outcome.REJECTED, error="point is not writable")
        async with self._lock(device_id):
            # Decided under the lock: a hands off set while a write of this device was in flight is seen.
            state = self._states.setdefault(request.address, _PointState())
            if self._closed or self.is_hands_off(request.address):
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
            beat = self._heartbeats.get(device_id)
            if beat is not None and beat.address != request.address and beat.lapsed(now) and beat.due(now) \
                    and not self.is_hands_off(beat.address):
                # A supervised device hears from gridctl before it is commanded.
                await self._beat(beat)
            refusal = self._fence()
            if refusal is not None:
                return await self._note(request, point, Outcome.REJECTED, old=state.value, sent=value,
                                        error=f"not sent: {refusal}")
            return await self._send(request, point, state, value, clamped=clamped, ramped=ramped, renewal=renewal)

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

    async def beat_watchdogs(self) -> list[AuditEntry]:
        """Write every device watchdog heartbeat that is due (none under hands off)."""
        now = self.clock.now()
        due = [b for b in self._heartbeats.values() if b.due(now) and not self.is_hands_off(b.address)]

        async def one(beat: Heartbeat) -> AuditEntry | None:
            async with self._lock(beat.device_id):
                if self._closed or self.is_hands_off(beat.address):
                    return None
                return await self._beat(beat)

        # Devices side by side: a dead device's timeout must not delay the others' heartbeats.
        return [e for e in await asyncio.gather(*(one(b) for b in due)) if e is not None]

    @property
    def heartbeat_period_s(self) -> float | None:
        """The shortest watchdog period of the site's devices (None: no device has a watchdog)."""
        return min((b.watchdog.period_s for b in self._heartbeats.values()), default=None)

    def held(self) -> dict[str, Value]:
        """Points gridctl currently commands, with the value it last wrote."""
        return {a: s.value for a, s in self._states.items() if s.value is not None}

    def commanded(self) -> set[str]:
        """Points gridctl may hold on their device (sent and not relinquished since, whatever came back)."""
        return {a for a, s in self._states.items() if s.commanded}

    def overrides(self) -> dict[str, tuple[int, str]]:
        return {a: (s.override_priority, s.override_reason or "") for a, s in self._states.items()
                if s.override_priority is not None}

    def is_hands_off(self, address: str) -> bool:
        return self._hands_off_scope(address) is not None

    async def hands_off(self, scope: str, actor: str, reason: str) -> list[AuditEntry]:
        """Stop commanding `site`, `device:<id>` or `point:<address>` and relinquish what we hold there.

        The scope applies at once (a write not yet sent is refused inside its device lock); then each
        device's points are relinquished under that lock, so a write in flight completes first and is
        relinquished with the others."""
        _validate_scope(scope, self.site)
        now = self.clock.now()
        self._hands_off[scope] = HandsOff(scope, actor, reason, now)
        if self.journal is not None:
            try:
                await self.journal.hands(self.site.id, scope, on=False, actor=actor, reason=reason, ts=now)
            except JournalError as error:
                # The hands off holds in this run; a restart would not know it: say so loudly.
                self._journal_failed(error, f"hands off {scope} holds until gridctl restarts")
        devices = [d.id for d in self.site.devices if self._device_in_scope(d.id, scope)]
        return await self._let_go(devices, lambda address: self._in_scope(address, scope), actor,
                                  f"hands off {scope}: {reason}")

    async def hands_on(self, scope: str, actor: str = "gridctl", reason: str = "") -> None:
        if self._hands_off.pop(scope, None) is None:
            return
        if self.journal is not None:
            try:
                await self.journal.hands(self.site.id, scope, on=True, actor=actor, reason=reason,
                                         ts=self.clock.now())
            except JournalError as error:
                self._journal_failed(error, f"hands on {scope} holds until gridctl restarts")

    def hands_off_scopes(self) -> set[str]:
        return set(self._hands_off)

    def hands_off_details(self) -> dict[str, HandsOff]:
        return dict(self._hands_off)

    async def adopt_hands_off(self, hands: HandsOff) -> None:
        """A hands off recorded in the database but not here (another data directory): keep it too."""
        self._hands_off.setdefault(hands.scope, hands)
        if self.journal is not None:
            await self.journal.adopt_hands_off(self.site.id, hands)

    async def release_all(self, actor: str = "gridctl", reason: str = "shutdown") -> list[AuditEntry]:
        """Relinquish every point gridctl may hold (graceful shutdown), staggered; no write or heartbeat is
        sent after (one still queued for a device lock is dropped)."""
        self._closed = True
        return await self._let_go([d.id for d in self.site.devices], lambda _address: True, actor, reason)

    def close(self) -> None:
        """Send nothing more, relinquishing nothing: another instance takes the site over, or the devices'
        own fallbacks act (a lease not renewed, a watchdog without heartbeat)."""
        self._closed = True

    async def restore_hands_off(self, scopes: Mapping[str, HandsOff]) -> None:
        """Make the hands off of this site exactly `scopes` (what the shared database says when an instance
        takes the site over), here and in the journal, without recording changes: none happened."""
        self._hands_off = dict(scopes)
        if self.journal is not None:
            await self.journal.replace_hands_off(self.site.id, self._hands_off.values())
        if self._hands_off:
            log.info("%s: hands off restored: %s", self.site.id, ", ".join(sorted(self._hands_off)))

    async def note_site(self, outcome: Outcome, actor: str, reason: str) -> AuditEntry:
        """Audit something that concerns the whole site (a lease taken over, handed over or lost)."""
        intent = Intent(ts=self.clock.now(), site_id=self.site.id, address="site", action=Action.NOTE, actor=actor,
                        reason=reason, unit="", epoch=self._epoch())
        seq = None
        if self.journal is not None:
            try:
                seq = await self.journal.note(intent, outcome)
            except JournalError as err:
                self._journal_failed(err, f"{outcome} of the site is not journalled")
        return await self._audit(intent, seq, outcome, intent.ts)

    async def recover(self, planned: set[str], left_by: Iterable[Commanded] | None = None) -> list[AuditEntry]:
        """At start, before the first write: settle what a run that stopped without relinquishing (a crash,
        kill -9, power cut) left commanded, as its journal says — or, taking a site over from another
        instance, as `left_by` says (its shipped audit). A point the site's assets command (`planned`) is
        reclaimed: gridctl counts it as held and the next dispatch writes it again (relinquishing first would
        make the equipment jump twice). A point under hands off, or one nothing commands any more, is
        relinquished, never reclaimed."""
        if self.journal is None and left_by is None:
            return []
        entries: list[AuditEntry] = []
        release: dict[str, str] = {}
        if left_by is None:
            assert self.journal is not None
            left_by = self.journal.commanded(self.site.id)
        for left in left_by:
            who = "a run that stopped abruptly" if left.held_by is None else left.held_by
            try:
                point = self.site.point(left.address)
            except KeyError:
                log.warning("%s: %s was left commanded (%r) but is no longer in the site description; not touched",
                            self.site.id, left.address, left.value)
                if self.journal is not None:
                    await self.journal.forget(self.site.id, left.address)
                continue
            state = self._states.setdefault(left.address, _PointState())
            state.commanded = True
            state.last_sent = left.value
            scope = self._hands_off_scope(left.address)
            if scope is not None:
                release[left.address] = f"left commanded by {who}; under hands off {scope}"
            elif left.address not in planned or not point.writable:
                release[left.address] = f"left commanded by {who}; nothing commands it any more"
            else:
                entries.append(await self._note(
                    WriteRequest(left.address, left.value, "gridctl:recovery",
                                 f"left commanded by {who}; the next dispatch writes it again"),
                    point, Outcome.RECLAIMED, sent=left.value, priority=left.priority))
        if release:
            entries += await self._let_go(sorted({a.partition("/")[0] for a in release}), release.__contains__,
                                          "gridctl:recovery", release.get)
        for entry in entries:
            log.warning("%s: %s %s: %s%s", self.site.id, entry.address, entry.outcome, entry.reason,
                        f" ({entry.error})" if entry.error else "")
        return entries

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
        priority = await self._written_priority(driver, point_id, self._priority(request.address))
        old = self._old_value(request.address, state)
        attempts = 1 + self.settings.mismatch_retries
        for attempt in range(attempts):
            intent = self._intent(request, point, Action.WRITE, old=old, sent=value, priority=priority,
                                  clamped=clamped, ramped=ramped)
            if attempt and (refusal := self._fence()) is not None:
                return await self._note(request, point, Outcome.REJECTED, old=old, sent=value, priority=priority,
                                        error=f"not sent: {refusal}")
            try:
                seq = await self._journal(intent)
            except JournalError as error:
                return await self._unjournalled(intent, error)
            if (refusal := self._fence()) is not None:
                # The lease ran out while the intent went to disk: the device hears nothing.
                return await self._finish(intent, seq, Outcome.REJECTED, error=f"not sent: {refusal}")
            state.commanded = True
            state.last_sent = value
            try:
                result = await self._io(intent, seq, driver.write(point_id, value, priority=priority))
            except Override as error:
                return await self._mark_override(request, point, state, error.active_priority, str(error),
                                                 sent=(intent, seq))
            except WriteMismatch as error:
                state.mismatches += 1
                self.alarms.raise_alarm(AlarmKind.WRITE_MISMATCH, request.address,
                                        f"read-back differs after writing {value}: {error}", self.clock.now())
                await self._finish(intent, seq, Outcome.MISMATCH, error=str(error))
                if attempt + 1 < attempts:
                    continue
                # The device holds something else: forget our value so the next cycle writes again.
                state.value = None
                return await self._note(request, point, Outcome.FAILED, old=old, sent=value, priority=priority,
                                        error=f"gave up after {attempts} mismatches", clamped=clamped, ramped=ramped)
            except DriverError as error:
                return await self._finish(intent, seq, Outcome.FAILED, error=f"{type(error).__name__}: {error}")
            now = self.clock.now()
            state.value = value
            state.written_at = now
            state.mismatches = 0
            state.lease_until = (now + timedelta(seconds=point.lease_s * self.settings.lease_expiry_periods)
                                 if point.lease_s else None)
            self.alarms.clear(AlarmKind.WRITE_MISMATCH, request.address, now)
            return await self._finish(intent, seq, Outcome.RENEWED if renewal else Outcome.WRITTEN,
                                      read_back=result.read_back, lease_until=state.lease_until)
        raise AssertionError("unreachable")

    async def _beat(self, beat: Heartbeat) -> AuditEntry:
        """One heartbeat (the device lock held). After a lapse the device may have let go of gridctl's
        commands, so they are written again rather than skipped as unchanged."""
        now = self.clock.now()
        lapsed = beat.lapsed(now)
        beat.last_attempt = now
        value = beat.next_value(self.latest(beat.address))
        point = self.site.point(beat.address)
        state = self._states.setdefault(beat.address, _PointState())
        request = WriteRequest(beat.address, value, "gridctl:watchdog", beat.reason())
        if (refusal := self._fence()) is not None:
            return await self._note(request, point, Outcome.REJECTED, sent=value, error=f"not sent: {refusal}")
        intent = self._intent(request, point, Action.HEARTBEAT, old=self._old_value(beat.address, state),
                              sent=value, priority=self._priority(beat.address))
        try:
            seq = await self._journal(intent)
        except JournalError as error:
            return await self._unjournalled(intent, error)
        if (refusal := self._fence()) is not None:
            return await self._finish(intent, seq, Outcome.REJECTED, error=f"not sent: {refusal}")
        state.last_sent = value
        try:
            result = await self._io(intent, seq, self.drivers[beat.device_id].write(beat.watchdog.point, value,
                                                                                    priority=intent.priority))
        except DriverError as error:
            return await self._finish(intent, seq, Outcome.FAILED, error=f"{type(error).__name__}: {error}")
        beat.counter = value
        beat.last_ok = now
        if lapsed:
            for address, other in self._states.items():
                if address.partition("/")[0] == beat.device_id and address != beat.address:
                    other.value = None
        return await self._finish(intent, seq, Outcome.WRITTEN, read_back=result.read_back)

    async def _let_go(self, device_ids: list[str], selected: Callable[[str], bool], actor: str,
                      reason: str | Callable[[str], str | None]) -> list[AuditEntry]:
        """Relinquish the commanded points `selected` picks, devices side by side (one dead device can't
        hold the others up), staggered within a device. Each device's points are chosen under its lock,
        after any write in flight there."""

        async def one_device(device_id: str) -> list[AuditEntry]:
            lock = self._lock(device_id)
            async with lock:
                targets = [a for a, s in self._states.items()
                           if s.commanded and a.partition("/")[0] == device_id and selected(a)]
            entries = []
            for index, address in enumerate(targets):
                if index:
                    await self.sleep(self.settings.relinquish_stagger_s)
                async with lock:
                    if not self._states[address].commanded:
                        continue  # let go of meanwhile (another hands off)
                    why = reason if isinstance(reason, str) else reason(address) or ""
                    entries.append(await self._relinquish(address, actor, why))
            return entries

        results = await asyncio.gather(*(one_device(d) for d in device_ids))
        return [entry for entries in results for entry in entries]

    async def _relinquish(self, address: str, actor: str, reason: str) -> AuditEntry:
        """Let go of one point (its device lock held)."""
        device_id, _, point_id = address.partition("/")
        point = self.site.point(address)
        state = self._states.setdefault(address, _PointState())
        request = WriteRequest(address, None, actor, reason)
        old = self._old_value(address, state)
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
            state.commanded = False
            return await self._note(request, point, Outcome.RELINQUISHED, old=old,
                                    error=None if point.lease_s else "no relinquish value: left as is")
        if (refusal := self._fence()) is not None:
            # Not ours to send any more: the device's own fallback (lease, watchdog) lets go instead.
            return await self._note(request, point, Outcome.REJECTED, old=old, sent=value,
                                    error=f"not relinquished: {refusal}")
        intent = self._intent(request, point, Action.RELINQUISH, old=old, sent=value, priority=priority)
        try:
            seq = await self._journal(intent)
        except JournalError as error:
            return await self._unjournalled(intent, error)
        try:
            result = await self._io(intent, seq, self.drivers[device_id].write(point_id, value, priority=priority))
        except NotCommandable as refused:
            # A BACnet object without priority array has nothing to relinquish (and a NULL could leave it
            # uninitialised): the driver refused the NULL unsent. Write its relinquish value, or leave it.
            await self._finish(intent, seq, Outcome.REJECTED, error=str(refused))
            if point.relinquish_value is None:
                state.commanded = False
                return await self._note(request, point, Outcome.RELINQUISHED, old=old,
                                        error="not commandable and no relinquish value: left as is")
            intent = self._intent(request, point, Action.RELINQUISH, old=old, sent=point.relinquish_value)
            try:
                seq = await self._journal(intent)
            except JournalError as error:
                return await self._unjournalled(intent, error)
            try:
                result = await self._io(intent, seq,
                                        self.drivers[device_id].write(point_id, point.relinquish_value, priority=None))
            except DriverError as error:
                return await self._finish(intent, seq, Outcome.FAILED, error=f"{type(error).__name__}: {error}")
        except DriverError as error:
            return await self._finish(intent, seq, Outcome.FAILED, error=f"{type(error).__name__}: {error}")
        state.commanded = False
        return await self._finish(intent, seq, Outcome.RELINQUISHED, read_back=result.read_back)

    async def _mark_override(self, request: WriteRequest, point: Point, state: _PointState, priority: int,
                             reason: str, *, sent: tuple[Intent, int | None] | None = None) -> AuditEntry:
        first = state.override_priority is None
        state.override_priority = priority
        state.override_reason = reason
        if first:
            self.alarms.raise_alarm(AlarmKind.OVERRIDE, request.address, f"manual override: {reason}",
                                    self.clock.now(), Severity.INFO)
        if sent is not None:
            # Sent, and held below the operator's priority: the record of the write says so.
            return await self._finish(sent[0], sent[1], Outcome.OVERRIDE, error=reason)
        return await self._note(request, point, Outcome.OVERRIDE, old=state.value, error=reason)

    # ------------------------------------------------------------------ journal and audit

    def _intent(self, request: WriteRequest, point: Point, action: Action, *, old: Value | None = None,
                sent: Value | None = None, priority: int | None = None, clamped: bool = False,
                ramped: bool = False) -> Intent:
        return Intent(ts=self.clock.now(), site_id=self.site.id, address=request.address, action=action,
                      actor=request.actor, reason=request.reason, unit=point.unit, schedule_id=request.schedule_id,
                      policy_version=request.policy_version, old_value=old, requested_value=request.value,
                      written_value=sent, priority=priority, clamped=clamped, ramped=ramped, epoch=self._epoch())

    async def _journal(self, intent: Intent) -> int | None:
        if self.journal is None:
            return None
        seq = await self.journal.intent(intent)
        self.alarms.clear(AlarmKind.JOURNAL_FAILED, self.site.id, self.clock.now())
        return seq

    async def _finish(self, intent: Intent, seq: int | None, outcome: Outcome, *, read_back: Value | None = None,
                      error: str | None = None, lease_until: datetime | None = None) -> AuditEntry:
        now = self.clock.now()
        if self.journal is not None and seq is not None:
            try:
                await self.journal.outcome(seq, intent.address, outcome, now, read_back=read_back, error=error,
                                           lease_until=lease_until)
            except JournalError as err:
                # The intent is there: a restart closes it as interrupted.
                self._journal_failed(err, f"the outcome of {intent.address} ({outcome}) is not journalled")
        return await self._audit(intent, seq, outcome, now, read_back=read_back, error=error, lease_until=lease_until)

    async def _note(self, request: WriteRequest, point: Point, outcome: Outcome, *, old: Value | None = None,
                    sent: Value | None = None, priority: int | None = None, error: str | None = None,
                    clamped: bool = False, ramped: bool = False) -> AuditEntry:
        """Audit something done without I/O."""
        intent = self._intent(request, point, Action.NOTE, old=old, sent=sent, priority=priority, clamped=clamped,
                              ramped=ramped)
        seq = None
        if self.journal is not None:
            try:
                seq = await self.journal.note(intent, outcome, error=error)
            except JournalError as err:
                self._journal_failed(err, f"{outcome} of {request.address} is not journalled")
        return await self._audit(intent, seq, outcome, intent.ts, error=error)

    async def _unjournalled(self, intent: Intent, error: JournalError) -> AuditEntry:
        self._journal_failed(error, "writes are refused until it works again")
        return await self._audit(intent, None, Outcome.FAILED, self.clock.now(),
                                 error=f"not sent: the write journal failed ({error})")

    async def _audit(self, intent: Intent, seq: int | None, outcome: Outcome, at: datetime, *,
                     read_back: Value | None = None, error: str | None = None,
                     lease_until: datetime | None = None) -> AuditEntry:
        entry = AuditEntry(
            ts=intent.ts, site_id=intent.site_id, address=intent.address, actor=intent.actor, reason=intent.reason,
            schedule_id=intent.schedule_id, policy_version=intent.policy_version, old_value=intent.old_value,
            requested_value=intent.requested_value, written_value=intent.written_value, priority=intent.priority,
            lease_until=lease_until, outcome=outcome, read_back=read_back, error=error, clamped=intent.clamped,
            ramped=intent.ramped, unit=intent.unit,
            instance_id=self.journal.instance_id if self.journal is not None and seq is not None else None,
            journal_seq=seq, epoch=intent.epoch, outcome_at=at, action=str(intent.action),
        )
        await self.audit.record(entry)
        return entry

    def _journal_failed(self, error: JournalError, consequence: str) -> None:
        log.error("%s: %s; %s", self.site.id, error, consequence)
        self.alarms.raise_alarm(AlarmKind.JOURNAL_FAILED, self.site.id, f"{error}; {consequence}", self.clock.now(),
                                Severity.CRITICAL)

    # ------------------------------------------------------------------ helpers

    def _epoch(self) -> int | None:
        return self.lease.epoch if self.lease is not None else self.epoch

    def _fence(self) -> str | None:
        """Why no write may start now (the site lease), or None."""
        return None if self.lease is None else self.lease.refusal()

    async def _io(self, intent: Intent, seq: int | None, write: Awaitable[WriteResult]) -> WriteResult:
        """A device write, abandoned past the lease's write budget: no write outlives the lease. Cut short
        (the service stops), its journalled intent is closed as interrupted before the cancellation goes on,
        so a clean stop leaves no record open."""
        try:
            if self.lease is None:
                return await write
            async with asyncio.timeout(self.lease.write_budget_s):
                return await write
        except TimeoutError:
            if self.lease is None:
                raise
            raise DeviceTimeout(f"no answer within the site lease's write budget ({self.lease.write_budget_s:g} s)")\
                from None
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(intent, seq, Outcome.INTERRUPTED, error=CUT_SHORT_ERROR))
            raise

    def _old_value(self, address: str, state: _PointState) -> Value | None:
        """What the point held before this write: the last reading unless gridctl wrote since."""
        reading = self.reading(address)
        read = reading.value if reading is not None else None
        if read is not None and (state.written_at is None or reading.ts >= state.written_at):  # type: ignore[union-attr]
            return read
        if state.value is not None:
            return state.value
        return read if read is not None else state.last_sent

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

    @staticmethod
    async def _written_priority(driver: Driver, point_id: str, priority: int | None) -> int | None:
        """The priority the write will really carry: none for a BACnet object without a priority array
        (the driver writes its present value plainly), so the journal and the audit say what was done."""
        commandable = getattr(driver, "is_commandable", None)
        if priority is None or commandable is None:
            return priority
        try:
            return priority if await commandable(point_id) else None
        except DriverError:
            # Unknown until the device answers: the write itself will tell, as it always did.
            return priority

    def _priority(self, address: str) -> int | None:
        device = self.site.device(address.partition("/")[0])
        if not isinstance(device, BacnetDevice):
            return None
        point = self.site.point(address)
        return getattr(point, "priority", None) or device.default_priority

    def _hands_off_scope(self, address: str) -> str | None:
        device_id = address.partition("/")[0]
        for scope in ("site", f"device:{device_id}", f"point:{address}"):
            if scope in self._hands_off:
                return scope
        return None

    def _in_scope(self, address: str, scope: str) -> bool:
        return scope == "site" or scope == f"device:{address.partition('/')[0]}" or scope == f"point:{address}"

    def _device_in_scope(self, device_id: str, scope: str) -> bool:
        return scope == "site" or scope == f"device:{device_id}" or scope.startswith(f"point:{device_id}/")

    def _lock(self, device_id: str) -> asyncio.Lock:
        return self._locks.setdefault(device_id, asyncio.Lock())


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
