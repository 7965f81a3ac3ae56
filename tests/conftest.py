"""Shared fixtures for gridctl's tests.

``timescale``     the session's throwaway PostgreSQL + TimescaleDB cluster (a PgCluster: .dsn, .port,
                  .stop(), .start(), .is_running()); removed at the end of the session.
``timescale_db``  a fresh database on that cluster with the timescaledb extension created; yields its
                  DSN and drops the database afterwards.

A missing server or extension fails these fixtures loudly: the test command installs both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

try:
    from tests.pgcluster import ClusterUnavailable, PgCluster
except ModuleNotFoundError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from pgcluster import ClusterUnavailable, PgCluster

TEMPLATE_DB = "gridctl_timescale_template"


@pytest.fixture(scope="session")
def timescale() -> Iterator[PgCluster]:
    try:
        cluster = PgCluster.create()
    except ClusterUnavailable as exc:
        problem = str(exc)
    else:
        problem = None
    if problem is not None:  # failed outside the except block, so the report is the message alone
        pytest.fail(f"TimescaleDB test cluster unavailable: {problem}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def _timescale_template(timescale: PgCluster) -> str:
    """A database with the extension created once; each test's database is a copy of it (a file copy,
    much faster than CREATE EXTENSION)."""
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    with psycopg.connect(timescale.dsn_for(TEMPLATE_DB), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        # A template must have no sessions while it is copied, and TimescaleDB's job scheduler
        # connects to every database that allows connections.
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(TEMPLATE_DB)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [TEMPLATE_DB])
    return TEMPLATE_DB


@pytest.fixture
def timescale_db(timescale: PgCluster, _timescale_template: str) -> Iterator[str]:
    # A test that stopped the cluster to simulate an outage must not break the tests after it.
    timescale.start()
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        _create_from_template(conn, name, _timescale_template)
    yield timescale.dsn_for(name)
    timescale.start()
    with psycopg.connect(timescale.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _create_from_template(conn: psycopg.Connection, name: str, template: str) -> None:
    stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
    for attempt in range(50):
        try:
            conn.execute(stmt)
            return
        except psycopg.errors.ObjectInUse:
            # The scheduler may still be leaving the template right after the session fixture set it up.
            if attempt == 49:
                raise
            conn.execute("SELECT pg_sleep(0.1)")
