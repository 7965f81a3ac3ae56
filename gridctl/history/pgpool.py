"""A PostgreSQL connection pool that bounds every use in time and comes back at once after an outage.

psycopg_pool reconnects with an exponential back-off that reaches a minute and more during a long
outage, and a connection whose network path went silent answers nothing, ever. Here:

- every use of a connection has a deadline; past it, or on any connection error, the database is
  marked down and the caller gets `HistorianUnavailable`;
- while down, callers fail at once (no one queues behind a dead server), and a probe tries a fresh
  connection every `probe_interval_s`; the first that answers replaces the pool with a new one, so
  work resumes within about a probe interval of the server accepting connections again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gridctl.history.base import HistorianUnavailable

log = logging.getLogger(__name__)

UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError, TimeoutError)
Configure = Callable[[psycopg.AsyncConnection], Awaitable[None]]


class PgPool:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, timeout_s: float = 5.0,
                 probe_interval_s: float = 1.0, probe_timeout_s: float = 2.0,
                 configure: Configure | None = None, name: str = "gridctl",
                 autocommit: bool = True) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self.probe_interval_s = probe_interval_s
        # A probe stuck on a silent network must not delay noticing the server is back.
        self.probe_timeout_s = min(probe_timeout_s, timeout_s)
        self._sizes = (min_size, max_size)
        self._configure = configure
        self._name = name
        self._kwargs: dict[str, Any] = {"autocommit": autocommit, "connect_timeout": max(2, round(timeout_s))}
        self._pool: AsyncConnectionPool | None = None
        self._down_since: float | None = None
        self._last_error = ""
        self._prober: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        """False from a failure until a probe reaches the server again."""
        return self._down_since is None

    def _new_pool(self) -> AsyncConnectionPool:
        min_size, max_size = self._sizes
        return AsyncConnectionPool(
            self.dsn, min_size=min_size, max_size=max_size, open=False, configure=self._configure,
            # No check on lending: checking a connection whose network went silent would hang. A dead one
            # fails its first use instead, and the probe renews the pool.
            timeout=self.timeout_s, kwargs=self._kwargs,
            # Probes bring the pool back; the pool's own attempts only need to outlast an outage.
            reconnect_timeout=24 * 3600, name=self._name,
        )

    async def open(self, *, wait: bool = False) -> None:
        """Create the pool; with `wait`, fail (HistorianUnavailable) unless the server answers now."""
        if self._pool is not None:
            return
        pool = self._new_pool()
        if not wait:
            await pool.open(wait=False)
            self._pool = pool
            return
        try:
            await pool.open(wait=True, timeout=self.timeout_s)
        except UNAVAILABLE as exc:
            await pool.close(timeout=0)
            raise HistorianUnavailable(await self._cause(exc)) from exc
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close(timeout=1.0)
        for task in [*self._retired, *([self._prober] if self._prober else [])]:
            task.cancel()

    @contextlib.asynccontextmanager
    async def connection(self, timeout_s: float | None = -1.0) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection whose whole use must end within `timeout_s` (default the pool's; None: no bound).

        Raises HistorianUnavailable when the database is down, does not answer in time, or fails the
        connection meanwhile."""
        if self._pool is None:
            raise RuntimeError("the database pool is not open")
        if self._down_since is not None:
            # Nobody queues behind a dead server; the prober brings the pool back.
            raise HistorianUnavailable(self._last_error)
        deadline = self.timeout_s if timeout_s == -1.0 else timeout_s
        pool = self._pool
        late: list[bool] = []
        try:
            async with pool.connection(timeout=self.timeout_s) as conn:
                # Past the deadline the connection's socket is shut: the statement waiting on it fails at
                # once. (Cancelling it instead would make psycopg wait up to ten seconds for the server to
                # acknowledge a cancel request that a silent network never delivers.)
                timer = None if deadline is None else asyncio.get_running_loop().call_later(
                    deadline, _sever, conn, late)
                try:
                    yield conn
                finally:
                    if timer is not None:
                        timer.cancel()
        except UNAVAILABLE as exc:
            first = self._down_since is None
            self._mark_down(TimeoutError() if late else exc)
            if first and isinstance(exc, PoolTimeout):
                self._last_error = await self._cause(exc)
            raise HistorianUnavailable(self._last_error) from exc

    async def _cause(self, exc: BaseException) -> str:
        """Why the pool had no connection to give: what connecting says (refused, unknown host, wrong
        password...), rather than the pool's "couldn't get a connection"."""
        if not isinstance(exc, PoolTimeout):
            return _describe(exc)
        try:
            conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(self.dsn, **self._kwargs), self.timeout_s)
        except UNAVAILABLE as direct:
            return _describe(direct)
        with contextlib.suppress(*UNAVAILABLE):
            await asyncio.wait_for(conn.close(), 1.0)
        return _describe(exc)

    def _mark_down(self, exc: BaseException) -> None:
        self._last_error = _describe(exc)
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("database %s unavailable: %s", self._name, self._last_error)
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_back(), name=f"probe {self._name}")

    async def _probe_until_back(self) -> None:
        """Try a fresh connection every `probe_interval_s`; the first that answers renews the pool."""
        while self._down_since is not None:
            started = time.monotonic()
            try:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(self.dsn, **{**self._kwargs, "connect_timeout": 2}),
                    self.probe_timeout_s)
            except UNAVAILABLE as exc:
                self._last_error = _describe(exc)
                await asyncio.sleep(max(0.0, self.probe_interval_s - (time.monotonic() - started)))
                continue
            with contextlib.suppress(*UNAVAILABLE):
                await asyncio.wait_for(conn.close(), 1.0)
            await self._renew()

    async def _renew(self) -> None:
        down_for = time.monotonic() - (self._down_since or time.monotonic())
        # The old pool may be backing off or hold connections that will never answer: start afresh.
        old, self._pool = self._pool, self._new_pool()
        await self._pool.open(wait=False)
        if old is not None:
            task = asyncio.create_task(old.close(timeout=1.0), name=f"retire pool {self._name}")
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        self._down_since = None
        log.warning("database %s answers again after %.1f s", self._name, down_for)


def _sever(conn: psycopg.AsyncConnection, late: list[bool]) -> None:
    late.append(True)
    sever(conn)


def sever(conn: psycopg.AsyncConnection) -> None:
    """Shut a connection's socket: whatever waits on it fails at once, even on a silent network."""
    with contextlib.suppress(OSError, psycopg.Error):
        duplicate = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
