"""Where gridctl keeps its files when no path is given: the user's data directory (XDG)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    base = os.environ.get("GRIDCTL_DATA_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "gridctl"


def default_database() -> Path:
    """The embedded SQLite history used when no --db is given."""
    return data_dir() / "gridctl.sqlite3"


def spool_dir() -> Path:
    return data_dir() / "spool"


def journal_path(spool: Path | None = None) -> Path:
    """The local write journal: beside the spool when one is given, in the data directory otherwise."""
    return (spool.parent if spool is not None else data_dir()) / "journal" / "writes.sqlite3"
