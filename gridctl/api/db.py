"""A small SQL layer over the historian's database for the API's own tables.

The tables are created by the historian's migrations (versions from 100); this module only opens a
connection of its own to the same database: a SQLite file or a PostgreSQL DSN. SQL is written once
with `?` placeholders; timestamps and booleans follow each back end's storage convention.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from gridctl.history import HistorianUnavailable, is_postgres_dsn
from gridctl.history.pgpool import PgPool

T = TypeVar("T")
Row = tuple[Any, ...]


class Conflict(Exception):
    """A row with the same key exists (a concurrent insert won the race)."""


class Busy(Exception):
    """The database could not take the statement now (locked, serialisation failure); try again later."""


def _sqlite_error(error: sqlite3.Error) -> Exception:
    if isinstance(error, sqlite3.IntegrityError) and ("UNIQUE" in str(error) or "PRIMARY KEY" in str(error)):
        return Conflict(str(error))
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        return Busy(str(error))
    return error


class Database(abc.ABC):
    """Runs parameterised SQL; each call is one transaction."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abc.abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

    @abc.abstractmethod
    async def script(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """Run statements in one transaction; returns each one's rows (empty when it returns none)."""

    @abc.abstractmethod
    def ts(self, moment: datetime | None) -> Any:
        """A timestamp as this back end stores it."""

    @abc.abstractmethod
    def from_ts(self, raw: Any) -> datetime | None: ...

    def flag(self, value: bool) -> Any:
        return value

    @property
    def available(self) -> bool:
        """False while the server is known to be unreachable."""
        return True

    @abc.abstractmethod
    def epoch_seconds(self, raw: Any) -> int:
        """A stored timestamp as whole seconds since the epoch (cheaper than a datetime)."""


class SQLiteDatabase(Database):
    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                raise HistorianUnavailable(f"cannot open {self.path}: {exc}") from exc
            self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise RuntimeError("database is not open")
        conn = self._conn
        async with self._lock:
            try:
                return await asyncio.to_thread(fn, conn)
            except sqlite3.Error as error:
                translated = _sqlite_error(error)
                if translated is error:
                    raise
                raise translated from error

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._run(lambda conn: conn.execute(sql, list(params)).fetchall())

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._run(lambda conn: conn.execute(sql, list(params)).rowcount)

    async def script(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        def run(conn: sqlite3.Connection) -> list[list[Row]]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = [conn.execute(sql, list(params)).fetchall() for sql, params in statements]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return out

        return await self._run(run)

    def ts(self, moment: datetime | None) -> Any:
        if moment is None:
            return None
        delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

    def from_ts(self, raw: Any) -> datetime | None:
        if raw is None:
            return None
        seconds, micros = divmod(int(raw), 1_000_000)
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)

    def flag(self, value: bool) -> Any:
        return int(value)

    def epoch_seconds(self, raw: Any) -> int:
        return int(raw) // 1_000_000


class PostgresDatabase(Database):
    """Every call is bounded in time (`timeout_s`); while the server is away calls fail at once with
    HistorianUnavailable, and work again within a second of it answering (see PgPool)."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 5.0,
                 name: str = "gridctl-api") -> None:
        self.dsn = dsn
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._pool: PgPool | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> None:
        if self._pool is not None:
            return
        async with self._opening:  # callers opening at once share one pool
            if self._pool is not None:
                return
            # Autocommit: a single statement needs no transaction of its own, and a pooled connection left
            # in one would cost a COMMIT round trip when it goes back (`script` opens its own).
            pool = PgPool(self.dsn, min_size=self.min_size, max_size=self.max_size, timeout_s=self.timeout_s,
                          name=self.name)
            await pool.open(wait=True)
            self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def available(self) -> bool:
        return self._pool is None or self._pool.available

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with _postgres_errors():
            async with self._pool.connection() as conn:
                cursor = await conn.execute(self._sql(sql), list(params))
                return await cursor.fetchall() if cursor.description else []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with _postgres_errors():
            async with self._pool.connection() as conn:
                cursor = await conn.execute(self._sql(sql), list(params))
                return cursor.rowcount

    async def script(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        out: list[list[Row]] = []
        with _postgres_errors():
            async with self._pool.connection() as conn, conn.transaction():
                for sql, params in statements:
                    cursor = await conn.execute(self._sql(sql), list(params))
                    out.append(await cursor.fetchall() if cursor.description else [])
        return out

    def ts(self, moment: datetime | None) -> Any:
        return moment

    def from_ts(self, raw: Any) -> datetime | None:
        return None if raw is None else raw.astimezone(UTC)

    def epoch_seconds(self, raw: Any) -> int:
        return int(raw.timestamp())


@contextlib.contextmanager
def _postgres_errors() -> Iterator[None]:
    from psycopg import errors

    try:
        yield
    except errors.UniqueViolation as error:
        raise Conflict(str(error)) from error
    except (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable) as error:
        raise Busy(str(error)) from error


class SinglePostgresDatabase(PostgresDatabase):
    """One connection, no pool, each call bounded in time: for a background task that manages its own
    back-off and must notice at once that the server is back (a pool keeps backing off on its own)."""

    def __init__(self, dsn: str, *, timeout_s: float = 10.0) -> None:
        super().__init__(dsn)
        self.timeout_s = timeout_s
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._conn is not None:
            return
        import psycopg

        try:
            self._conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=max(int(self.timeout_s), 1)),
                self.timeout_s)
        except (OSError, TimeoutError, psycopg.Error) as exc:
            raise HistorianUnavailable(f"cannot connect: {exc}") from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.timeout_s)

    async def _run(self, work: Callable[[Any], Any]) -> Any:
        async with self._lock:
            await self.open()
            try:
                return await asyncio.wait_for(work(self._conn), self.timeout_s)
            except BaseException:
                # A broken or timed-out connection is not reused: the next call connects afresh.
                await self.close()
                raise

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async def work(conn: Any) -> list[Row]:
            cursor = await conn.execute(self._sql(sql), list(params))
            return await cursor.fetchall() if cursor.description else []

        return await self._run(work)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async def work(conn: Any) -> int:
            return (await conn.execute(self._sql(sql), list(params))).rowcount

        return await self._run(work)

    async def script(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        async def work(conn: Any) -> list[list[Row]]:
            out: list[list[Row]] = []
            async with conn.transaction():
                for sql, params in statements:
                    cursor = await conn.execute(self._sql(sql), list(params))
                    out.append(await cursor.fetchall() if cursor.description else [])
            return out

        return await self._run(work)


def open_database(target: str, *, pooled: bool = True) -> Database:
    """The API's connection to the history database named by a SQLite path or a PostgreSQL DSN;
    `pooled=False`: one connection that a background task re-opens itself after a failure."""
    if not is_postgres_dsn(target):
        return SQLiteDatabase(target)
    return PostgresDatabase(target) if pooled else SinglePostgresDatabase(target)
