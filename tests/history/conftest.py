"""The historian suite runs every test against both back ends: SQLite and TimescaleDB."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from history_site import SITE

from gridctl.config import Site
from gridctl.history import Historian, SQLiteHistorian


@pytest.fixture
def site() -> Site:
    return Site.model_validate(SITE)


@pytest.fixture(params=["sqlite", pytest.param("timescale", marks=pytest.mark.timescale)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the historian under test stores: a SQLite file or a fresh TimescaleDB database."""
    if request.param == "sqlite":
        return str(tmp_path / "history.db")
    return request.getfixturevalue("timescale_db")


def _make_historian(target: str, **options: Any) -> Historian:
    if target.endswith(".db"):
        return SQLiteHistorian(target, **options)
    from gridctl.history.timescale import TimescaleHistorian

    return TimescaleHistorian(target, **options)


@pytest.fixture
def make_historian() -> Callable[..., Historian]:
    """Builds an unopened historian of the back end a target names (SQLite path or DSN)."""
    return _make_historian


@pytest.fixture
async def historian(backend: str, site: Site) -> AsyncIterator[Historian]:
    h = _make_historian(backend)
    await h.open()
    await h.upgrade()
    await h.sync_site(site)
    try:
        yield h
    finally:
        await h.close()
