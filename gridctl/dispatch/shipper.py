"""Copies the local write journal into the database's `write_audit` and hands-off tables.

In order, in batches, each batch one transaction; a record is marked shipped only after its commit, and
the database ignores a record it already has (unique instance id and journal sequence), so every record
arrives exactly once however the process or the database fail. The shipper runs beside control and is
never waited for: while the database is away it retries with a bounded back-off and resumes within
seconds of its return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gridctl.aio import stop_task
from gridctl.api.db import Database, open_database
from gridctl.api.store import ApiStore, HandsOffRecord
from gridctl.dispatch.arbiter import Arbiter
from gridctl.dispatch.journal import HandsOff, WriteJournal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShipperSettings:
    batch: int = 500
    # Waiting this long after a record lets the next ones join its batch.
    linger_s: float = 0.2
    backoff_min_s: float = 0.5
    backoff_max_s: float = 5.0
    # Shipped records are kept locally this long (inspection after an incident), then pruned.
    keep: timedelta = timedelta(days=7)
    prune_every_s: float = 3600.0


class JournalShipper:
    def __init__(self, journal: WriteJournal, target: str | Database, settings: ShipperSettings | None = None) -> None:
        self.journal = journal
        self.db = open_database(target, pooled=False) if isinstance(target, str) else target
        self.store = ApiStore(self.db)
        self.settings = settings or ShipperSettings()
        self.shipped = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._stopping = False
        journal.on_record = self._wake.set

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="journal shipper")

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Ship what is complete within the time given, then stop; what is left ships at the next start."""
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        try:
            # The loop finishes its batch and drains; a batch cut short would only be shipped again.
            await asyncio.wait_for(asyncio.shield(task) if task is not None else self.drain(), drain_timeout_s)
        except (TimeoutError, Exception) as error:  # the database may be away: the journal keeps the rest
            log.warning("write journal: stopping without shipping everything (%s)", _describe(error))
        await stop_task(task)
        backlog = self.journal.backlog()
        if backlog:
            log.warning("write journal: %d record(s) not shipped at stop; they ship at the next start", backlog)
        await self.db.close()

    async def drain(self) -> int:
        """Ship every complete record now; raises when the database refuses."""
        total = 0
        while shipped := await self.ship_once():
            total += shipped
        return total

    async def ship_once(self) -> int:
        """Ship one batch; returns how many records it held (0: nothing complete to ship)."""
        batch = await asyncio.to_thread(self.journal.pending, self.settings.batch)
        if not batch.records:
            return 0
        await self.db.open()
        await self.store.ship_journal(batch.records)
        await self.journal.mark_shipped(batch.last_seq)
        self.shipped += len(batch.records)
        return len(batch.records)

    async def restore_hands_off(self, arbiters: Sequence[Arbiter], timeout_s: float = 5.0) -> bool:
        """Before the first write: bring the database up to date with the journal, then keep every hands off
        either side knows (a restart never drops one; only an operator's hands on ends it). Returns False
        when the database did not answer in time: the local journal alone is then authoritative."""
        try:
            await asyncio.wait_for(self._merge_hands_off(arbiters), timeout_s)
        except (TimeoutError, Exception) as error:
            log.warning("hands off restored from the local journal only: the database did not answer (%s)",
                        _describe(error))
            await self.db.close()
            return False
        return True

    async def _merge_hands_off(self, arbiters: Sequence[Arbiter]) -> None:
        # Opened here too: with nothing to ship, draining does not open the database.
        await self.db.open()
        await self.drain()
        for arbiter in arbiters:
            site_id = arbiter.site.id
            stored = {r.scope: r for r in await self.store.hands_off(site_id)}
            local = arbiter.hands_off_details()
            for scope, record in stored.items():
                if scope not in local:
                    log.warning("%s: hands off %s (by %s since %s: %s) found in the database; kept", site_id, scope,
                                record.actor, record.since.isoformat(), record.reason)
                    await arbiter.adopt_hands_off(HandsOff(scope, record.actor, record.reason, record.since))
            for scope, hands in local.items():
                if scope not in stored:
                    await self.store.put_hands_off(HandsOffRecord(site_id, scope, hands.actor, hands.reason,
                                                                  hands.since, self.journal.instance_id))

    async def _run(self) -> None:
        backoff = self.settings.backoff_min_s
        while True:
            # The last batch must be read after the stop began: a record completed while an earlier batch
            # was on its way would otherwise wait for the next start.
            last = self._stopping
            try:
                shipped = await self.ship_once()
                if self.last_error is not None:
                    log.info("write journal: the database is back; shipping resumed")
                    self.last_error = None
                backoff = self.settings.backoff_min_s
                await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any database failure: keep the records, try again later
                if self.last_error is None:
                    log.warning("write journal: cannot ship to the database (%s); %d record(s) wait locally",
                                _describe(error), self.journal.backlog())
                self.last_error = _describe(error)
                await self.db.close()
                if self._stopping:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_s)
                continue
            if shipped < self.settings.batch:
                if last:
                    return
                if self._stopping:
                    continue
                # Everything complete is shipped: wait for the next record, then a moment for its batch.
                # A record in flight (no outcome yet) is waited for with the same short timeout.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.backoff_max_s)
                self._wake.clear()
                await asyncio.sleep(self.settings.linger_s)

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < self.settings.prune_every_s:
            return
        self._pruned_at = now
        pruned = await self.journal.prune(datetime.now(UTC) - self.settings.keep)
        if pruned:
            log.info("write journal: pruned %d shipped record(s) older than %s", pruned, self.settings.keep)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")
