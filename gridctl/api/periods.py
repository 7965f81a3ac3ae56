"""Request periods: defaults, order, bounds and the longest range each resolution allows."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import NoReturn

from fastapi.exceptions import RequestValidationError

from gridctl.api.energy import Resolution
from gridctl.api.settings import ApiSettings

EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 1, 1)


def field_error(location: str, name: str, message: str, value: object = None) -> NoReturn:
    """A 422 naming the field, in the same shape as FastAPI's own validation errors."""
    raise RequestValidationError([{"type": "value_error", "loc": (location, name), "msg": message, "input": value}])


def period(start: date | None, end: date | None, resolution: Resolution, settings: ApiSettings, today: date,
           default_days: int = 30) -> tuple[date, date]:
    """[start, end) in local dates; end defaults to tomorrow (today included), start to `default_days` before."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and not EARLIEST <= value <= LATEST:
            field_error("query", name, f"must be between {EARLIEST} and {LATEST}", str(value))
    end = end or today + timedelta(days=1)
    start = start or end - timedelta(days=default_days)
    if end <= start:
        field_error("query", "end", "must be after start", str(end))
    limit = settings.max_range[resolution]
    if end - start > limit:
        field_error("query", "end", f"a {resolution.value} query covers at most {limit.days} days; this one covers "
                                    f"{(end - start).days}", str(end))
    return start, end


def instant_bounds(start: datetime | None, end: datetime | None) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            field_error("query", name, "must carry a time zone (e.g. 2026-01-01T00:00:00Z)", value.isoformat())
        if value is not None and not EARLIEST <= value.date() <= LATEST:
            field_error("query", name, f"must be between {EARLIEST} and {LATEST}", value.isoformat())
    if start is not None and end is not None and end <= start:
        field_error("query", "end", "must be after start", end.isoformat())
