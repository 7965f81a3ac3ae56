"""Local-time rules of a site evaluated on UTC instants: occupancy windows, tariff periods, lighting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from gridctl.config.models import LightingPeriod, Tariff, TimeWindow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def in_window(moment: datetime, window: TimeWindow, tz: ZoneInfo) -> bool:
    """Whether a UTC instant falls in a daily window given in the site's local time.

    A window that wraps past midnight belongs to the day it starts on: 22:00–06:00 on a Friday
    covers Friday 22:00 to Saturday 06:00.
    """
    local = moment.astimezone(tz)
    clock = local.time()
    if window.start <= window.end:
        return DAYS[local.weekday()] in window.days and window.start <= clock < window.end
    if clock >= window.start:
        return DAYS[local.weekday()] in window.days
    if clock < window.end:
        return DAYS[(local.weekday() - 1) % 7] in window.days
    return False


def in_any(moment: datetime, windows: Sequence[TimeWindow], tz: ZoneInfo) -> bool:
    return any(in_window(moment, w, tz) for w in windows)


def step_midpoints(start: datetime, step: timedelta, n_steps: int) -> list[datetime]:
    return [start + step * k + step / 2 for k in range(n_steps)]


def tariff_prices(tariff: Tariff, moments: Sequence[datetime], tz: ZoneInfo,
                  tempo_colours: dict[str, str] | None = None,
                  spot_eur_per_kwh: Sequence[float] | None = None) -> list[float]:
    """Import price (€/kWh) at each instant. Tempo colours are keyed by the Tempo day (ISO date of
    the 06:00–06:00 day); a day without a known colour is taken as blue."""
    prices = []
    for index, moment in enumerate(moments):
        offpeak = in_any(moment, tariff.offpeak_windows, tz)
        if tariff.kind == "base":
            prices.append(float(tariff.base_price_eur_per_kwh or 0.0))
        elif tariff.kind == "hp_hc":
            price = tariff.offpeak_price_eur_per_kwh if offpeak else tariff.peak_price_eur_per_kwh
            prices.append(float(price or 0.0))
        elif tariff.kind == "tempo":
            local = moment.astimezone(tz)
            tempo_day = (local - timedelta(hours=6)).date().isoformat()
            colour = (tempo_colours or {}).get(tempo_day, "blue")
            prices.append(float(tariff.tempo_prices_eur_per_kwh[colour]["offpeak" if offpeak else "peak"]))
        else:
            if spot_eur_per_kwh is None:
                raise ValueError("a spot tariff needs the spot price series")
            prices.append(float(spot_eur_per_kwh[index]))
    return prices


def lighting_period(moment: datetime, periods: Sequence[LightingPeriod], tz: ZoneInfo) -> LightingPeriod | None:
    for period in periods:
        if in_window(moment, period.window, tz):
            return period
    return None


def next_window_start(after: datetime, window: TimeWindow, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The next (start, end) occurrence in UTC of a daily window that has not ended at `after`."""
    local = after.astimezone(tz)
    for offset in range(-1, 8):
        day = (local + timedelta(days=offset)).date()
        if DAYS[day.weekday()] not in window.days:
            continue
        start = datetime.combine(day, window.start, tz)
        end_day = day + timedelta(days=1) if window.end <= window.start else day
        end = datetime.combine(end_day, window.end if window.end != time(0) else time(0), tz)
        if end > local:
            return start.astimezone(after.tzinfo), end.astimezone(after.tzinfo)
    raise ValueError("window has no day")
