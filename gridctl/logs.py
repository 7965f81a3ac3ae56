"""Structured logs: one JSON object per line, so operators' log stacks can index the fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
QUIET_LIBRARIES = ("pymodbus", "bacpypes3", "asyncua", "apscheduler", "uvicorn", "uvicorn.access", "psycopg",
                   "psycopg.pool", "aiohttp", "httpx")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str = "info", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                                              "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if level.upper() not in LEVELS:
        raise ValueError(f"--log-level {level!r}: one of {', '.join(name.lower() for name in LEVELS)}")
    root.setLevel(level.upper())
    # The libraries log every retry and lost connection; gridctl reports what matters itself (device_offline,
    # history_unavailable, ...). They speak only at debug level, except a failing web request or job.
    debug = root.level <= logging.DEBUG
    for name in QUIET_LIBRARIES:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.DEBUG if debug else logging.CRITICAL + 1)
    for name in ("uvicorn.error", "apscheduler.executors"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.ERROR)
