"""Readings into the historian without losing any: straight to the database while it answers, into
the local spool while it does not, flushed back in order when it returns.

While the spool holds anything, or the database is known to be away, new readings go to the spool: a
poll never waits on a database that does not answer (a write in flight makes the next poll wait at
most `direct_wait_s`). Readings are recorded per site; a flush writes what several polls of several
sites left in the spool in one transaction. A flush that times out may still have committed; sending
it again is harmless because the historian's unique key makes writes idempotent.

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
from gridctl.history.spool import Spool

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecorderStats:
    written: int = 0  # readings written straight to the database
    spooled: int = 0  # readings that went through the spool
    flushed: int = 0  # spooled readings since written to the database
    failures: int = 0  # database writes that failed or timed out
    outages: int = 0  # times the database stopped taking readings


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """Whether the database takes readings; `since` when that last changed, `error` why it stopped."""

    available: bool
    since: datetime
    error: str = ""


class Recorder:
    def __init__(
        self,
        historian: Historian,
        spool: Spool,
        *,
        write_timeout_s: float = 10.0,
        flush_batch: int = 5_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 1.0,
        direct_wait_s: float = 0.5,
        clock: Callable[[], datetime] = utc_now,
        on_status: Callable[[HistoryStatus], None] | None = None,
    ) -> None:
        """`retry_max_s`: longest pause between two attempts to flush while the database is away (each
        attempt is one connection attempt: after an outage, draining starts within about this long)."""
        self.historian = historian
        self.spool = spool
        self.write_timeout_s = write_timeout_s
        self.flush_batch = flush_batch
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

    async def start(self) -> None:
        """Start the flusher; whatever a previous run left in the spool is replayed first."""
        if self._flusher is None:
            self._set_empty(len(self.spool) == 0)
            self._flusher = asyncio.create_task(self._flush_loop(), name="history-spool-flusher")

    async def close(self) -> None:
        """Stop flushing; what is still spooled stays on disk for the next start."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    def for_site(self, site_id: str) -> SiteRecorder:
        """Where one site's readings go."""
        return SiteRecorder(self, site_id)

    async def record(self, site_id: str, readings: Iterable[Reading]) -> None:
        """Store a site's readings, or spool them durably when the database cannot take them now.

        Raises SpoolFull when the database is away and the spool is at capacity.
        """
        batch = list(readings)
        if not batch:
            return
        received_at = self.clock()
        if self._empty.is_set() and self.status.available and await self._write_direct(site_id, batch, received_at):
            return
        await asyncio.to_thread(self.spool.append, site_id, batch, received_at)
        self.stats.spooled += len(batch)
        self._set_empty(False)

    async def _write_direct(self, site_id: str, batch: list[Reading], received_at: datetime) -> bool:
        """True when the readings are stored; False when they must go to the spool."""
        try:
            await asyncio.wait_for(self._direct.acquire(), self.direct_wait_s)
        except TimeoutError:
            # Another write is still in flight: the database may be going away; keep the poll moving.
            return False
        try:
            if not (self._empty.is_set() and self.status.available):
                return False
            await asyncio.wait_for(
                self.historian.write([SiteReadings(site_id, batch)], received_at=received_at),
                self.write_timeout_s,
            )
            self.stats.written += len(batch)
            return True
        except (HistorianUnavailable, TimeoutError) as exc:
            self.stats.failures += 1
            self._set_status(False, exc)
            log.warning("history database unavailable, spooling readings: %s", _reason(exc))
            return False
        finally:
            self._direct.release()

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

    async def _flush_loop(self) -> None:
        delay = self.retry_initial_s
        while True:
            if len(self.spool) == 0:
                async with self._direct:
                    # Re-checked under the lock: a record() may have spooled meanwhile.
                    if len(self.spool) == 0:
                        self._set_empty(True)
                        self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._flush_some()
                delay = self.retry_initial_s
                self._set_status(True)
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

    async def _flush_some(self) -> None:
        batches = await asyncio.to_thread(self.spool.peek, self.flush_batch)
        if not batches:
            return
        # Each group keeps its own receive time; the whole peek goes in one transaction.
        groups = [SiteReadings(b.site_id, b.readings, b.received_at) for b in batches]
        await asyncio.wait_for(self.historian.write(groups), self.write_timeout_s)
        await asyncio.to_thread(self.spool.ack, batches[-1].last_seq)
        self.stats.flushed += sum(len(b.readings) for b in batches)


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
