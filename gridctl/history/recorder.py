"""Readings into the historian without losing any: straight to the database while it answers, into
the local spool while it does not, flushed back in order when it returns.

Polls are committed in groups: one writer takes what every poll of every site handed in since its last
commit and stores it in one write (one COPY, one transaction), at most once per `flush_window_s` and
at most `group_max_readings` at a time. A lone poll goes out at once; under load the groups grow, so
the database sees a few large transactions a second instead of one per device poll. `record()` returns
once its readings are durable, in the database or in the spool, so a caller that was told "recorded"
never loses them; a device's poll task waits for its own group and no other.

While the spool holds anything, or the database is known to be away, new readings go to the spool, so
history is written in the order it was received. A poll never waits on a database that does not
answer: a poll whose group is not yet being written after `direct_wait_s` goes to the spool, and a write
that fails or takes longer than `write_timeout_s` sends its whole group there (one transaction); groups
keep going there until the flusher has replayed it, so a slow database pushes back into the spool rather
than into the polls. A flush that times out may still have committed; sending it again is harmless
because the historian's unique key makes writes idempotent.

The recorder says when the database stops taking readings and when it takes them again
(`on_status`): the service raises and clears its `history_unavailable` alarm from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from drivers.base import Reading
from gridctl.history.base import Historian, HistorianUnavailable, SiteReadings, utc_now
from gridctl.history.spool import Spool, SpoolFull

log = logging.getLogger(__name__)
# The fewest spooled readings a replay sends at once after writes timed out.
MIN_FLUSH_BATCH = 200


@dataclass(slots=True)
class RecorderStats:
    written: int = 0  # readings written straight to the database
    spooled: int = 0  # readings that went through the spool
    flushed: int = 0  # spooled readings since written to the database
    failures: int = 0  # database writes that failed or timed out
    outages: int = 0  # times the database stopped taking readings
    commits: int = 0  # group writes to the database (each one transaction)
    largest_group: int = 0  # most readings in one group write


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """Whether the database takes readings; `since` when that last changed, `error` why it stopped."""

    available: bool
    since: datetime
    error: str = ""


@dataclass(slots=True)
class _Pending:
    group: SiteReadings
    done: asyncio.Future[None]


class Recorder:
    def __init__(
        self,
        historian: Historian,
        spool: Spool,
        *,
        write_timeout_s: float = 10.0,
        flush_batch: int = 5_000,
        flush_window_s: float = 0.1,
        group_max_readings: int = 20_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 1.0,
        direct_wait_s: float = 0.5,
        clock: Callable[[], datetime] = utc_now,
        on_status: Callable[[HistoryStatus], None] | None = None,
    ) -> None:
        """`retry_max_s`: longest pause between two attempts to flush while the database is away (each
        attempt is one connection attempt: after an outage, draining starts within about this long)."""
        if flush_window_s < 0 or group_max_readings <= 0:
            raise ValueError("flush_window_s must be >= 0 and group_max_readings positive")
        self.historian = historian
        self.spool = spool
        self.write_timeout_s = write_timeout_s
        self.flush_batch = flush_batch
        self._flush_limit = flush_batch
        self.flush_window_s = flush_window_s
        self.group_max_readings = group_max_readings
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.direct_wait_s = direct_wait_s
        self.clock = clock
        self.on_status = on_status
        self.status = HistoryStatus(True, clock())
        self.stats = RecorderStats()
        self._direct = asyncio.Lock()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._pending: list[_Pending] = []
        self._pending_readings = 0
        self._has_pending = asyncio.Event()
        self._group_full = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self._catching_up = False
        self._last_commit = float("-inf")

    async def start(self) -> None:
        """Start the writer and the flusher; whatever a previous run left in the spool is replayed first."""
        if self._flusher is None:
            self._set_empty(len(self.spool) == 0)
            self._flusher = asyncio.create_task(self._flush_loop(), name="history-spool-flusher")
        if self._committer is None:
            self._closing = False
            self._committer = asyncio.create_task(self._commit_loop(), name="history-group-commit")

    async def close(self) -> None:
        """Commit what is pending, then stop; what is still spooled stays on disk for the next start."""
        committer, self._committer = self._committer, None
        if committer is not None:
            # The writer finishes the write under way and what is pending, then ends by itself: cancelling
            # it in the middle of a write would leave that group neither stored nor spooled.
            self._closing = True
            self._has_pending.set()
            await committer
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    def for_site(self, site_id: str) -> SiteRecorder:
        """Where one site's readings go."""
        return SiteRecorder(self, site_id)

    @property
    def pending(self) -> int:
        """Readings handed in and not yet committed to the database or the spool."""
        return self._pending_readings

    async def record(self, site_id: str, readings: Iterable[Reading]) -> None:
        """Store a site's readings, or spool them durably when the database cannot take them now; returns
        once they are in one or the other.

        Raises SpoolFull when the database is away and the spool is at capacity.
        """
        batch = list(readings)
        if not batch:
            return
        if self._committer is None:
            raise RuntimeError("recorder is not started")
        received_at = self.clock()
        if not self.status.available or not (self._empty.is_set() or self._catching_up):
            await self._spool_poll(SiteReadings(site_id, batch, received_at))
            return
        item = _Pending(SiteReadings(site_id, batch, received_at), asyncio.get_running_loop().create_future())
        self._pending.append(item)
        self._pending_readings += len(batch)
        self._has_pending.set()
        if self._pending_readings >= self.group_max_readings:
            self._group_full.set()
        # Shielded: a caller cancelled while waiting leaves its readings to be stored all the same.
        try:
            await asyncio.wait_for(asyncio.shield(item.done), self.direct_wait_s)
            return
        except TimeoutError:
            if item not in self._pending:
                # Its write is under way: it ends stored, or spooled after `write_timeout_s`.
                await asyncio.shield(item.done)
                return
        # The writer is still busy with an earlier group: the database may be going away; keep the poll moving.
        self._pending.remove(item)
        self._pending_readings -= len(batch)
        if not self._pending:
            self._has_pending.clear()
        await self._spool_poll(item.group)

    async def _spool_poll(self, group: SiteReadings) -> None:
        (refused,) = await self._spool([group])
        if refused is not None:
            raise refused

    async def _spool(self, groups: list[SiteReadings]) -> list[SpoolFull | None]:
        """Keep groups in the spool in one transaction; per group, None or the SpoolFull that refused it."""
        refused = await asyncio.to_thread(
            self.spool.append_groups, [(g.site_id, g.readings, g.received_at) for g in groups])
        kept = sum(len(g.readings) for g, error in zip(groups, refused, strict=True) if error is None)
        self.stats.spooled += kept
        if kept:
            self._set_empty(False)
        return refused

    def _set_status(self, available: bool, exc: BaseException | None = None) -> None:
        if available == self.status.available:
            return
        self.status = HistoryStatus(available, self.clock(), "" if exc is None else _reason(exc))
        if not available:
            self.stats.outages += 1
        if self.on_status is not None:
            try:
                self.on_status(self.status)
            except Exception:  # a listener's bug must not stop the readings
                log.exception("history status listener failed")

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until the spool is empty; False on timeout."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _set_empty(self, empty: bool) -> None:
        if empty:
            self._empty.set()
        else:
            self._empty.clear()
            self._wake.set()

    # --- group commit ------------------------------------------------------------------------------

    def _take(self) -> list[_Pending]:
        """The oldest pending polls, up to `group_max_readings` (at least one)."""
        taken = 0
        count = 0
        for item in self._pending:
            if count and taken + len(item.group.readings) > self.group_max_readings:
                break
            taken += len(item.group.readings)
            count += 1
        group, self._pending = self._pending[:count], self._pending[count:]
        self._pending_readings -= taken
        if not self._pending:
            self._has_pending.clear()
        if self._pending_readings < self.group_max_readings:
            self._group_full.clear()
        return group

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._has_pending.wait()
                continue
            # At most one database commit per window; a spool append (outage) need not wait.
            wait_s = self._last_commit + self.flush_window_s - loop.time()
            if wait_s > 0 and self._empty.is_set() and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._group_full.wait(), wait_s)
            self._last_commit = loop.time()
            group = self._take()
            try:
                await self._commit(group)
            except Exception as exc:  # the waiting polls hear of it; the writer goes on
                log.exception("committing %d polls failed", len(group))
                _settle(group, exc)

    async def _commit(self, group: list[_Pending]) -> None:
        groups = [item.group for item in group]
        count = sum(len(g.readings) for g in groups)
        async with self._direct:
            if self._empty.is_set() and self.status.available:
                try:
                    await asyncio.wait_for(self.historian.write(groups), self.write_timeout_s)
                except (HistorianUnavailable, TimeoutError) as exc:
                    self.stats.failures += 1
                    self._set_status(False, exc)
                    log.warning("history database unavailable, spooling readings: %s", _reason(exc))
                else:
                    self.stats.written += count
                    self.stats.commits += 1
                    self.stats.largest_group = max(self.stats.largest_group, count)
                    _settle(group)
                    return
            refused = await self._spool(groups)
        for item, error in zip(group, refused, strict=True):
            _settle([item], error)

    # --- spool replay ------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        delay = self.retry_initial_s
        while True:
            if len(self.spool) == 0:
                async with self._direct:
                    # Re-checked under the lock: a commit or a poll may have spooled meanwhile.
                    if len(self.spool) == 0:
                        self._set_empty(True)
                        self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._flush_some()
                delay = self.retry_initial_s
                self._set_status(True)
                if 0 < len(self.spool) <= self._flush_limit:
                    await self._flush_rest()
            except (HistorianUnavailable, TimeoutError) as exc:
                self.stats.failures += 1
                self._set_status(False, exc)
                log.debug("history database still unavailable (%s), retrying in %.1f s", _reason(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
            except Exception:
                # Anything else is not an outage; the readings stay spooled and the error is reported.
                self.stats.failures += 1
                log.exception("flushing the history spool failed; retrying in %.1f s", self.retry_max_s)
                await asyncio.sleep(self.retry_max_s)

    async def _flush_rest(self) -> None:
        """The spool's last readings, while new polls wait for the writer instead of joining the spool:
        polls arriving as fast as the spool drains would otherwise keep it from ever emptying."""
        self._catching_up = True
        try:
            async with self._direct:
                await self._flush_some()
                if len(self.spool) == 0:
                    self._set_empty(True)
                    self._wake.clear()
        finally:
            self._catching_up = False

    async def _flush_some(self) -> None:
        batches = await asyncio.to_thread(self.spool.peek, self._flush_limit)
        if not batches:
            return
        # Each group keeps its own receive time; the whole peek goes in one transaction.
        groups = [SiteReadings(b.site_id, b.readings, b.received_at) for b in batches]
        try:
            await asyncio.wait_for(self.historian.write(groups), self.write_timeout_s)
        except TimeoutError:
            # A busy machine may need longer than the timeout for a full batch: smaller ones still
            # make progress, where the same large one would time out again and again.
            self._flush_limit = max(self._flush_limit // 4, MIN_FLUSH_BATCH)
            raise
        await asyncio.to_thread(self.spool.ack, batches[-1].last_seq)
        self.stats.flushed += sum(len(b.readings) for b in batches)
        self._flush_limit = min(self._flush_limit * 2, self.flush_batch)


def _settle(group: Iterable[_Pending], error: BaseException | None = None) -> None:
    for item in group:
        if item.done.done():
            continue
        if error is None:
            item.done.set_result(None)
        else:
            item.done.set_exception(error)


class SiteRecorder:
    """A recorder as one site's controller sees it: `record(readings)`."""

    def __init__(self, recorder: Recorder, site_id: str) -> None:
        self.recorder = recorder
        self.site_id = site_id

    async def record(self, readings: Iterable[Reading]) -> None:
        await self.recorder.record(self.site_id, readings)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
