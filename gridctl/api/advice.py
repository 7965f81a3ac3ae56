"""Advice for a resident from their own meter, against their building's dwellings (never fewer than the
minimum for an aggregate): how they compare, how their use splits between peak and off-peak hours, and
what acting on it would save in a year."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from gridctl.api.energy import (
    Bucket,
    NotEnoughDwellings,
    Resolution,
    RollupReader,
    building_dwellings,
    compare_with_building,
    cost_of,
    dwelling_series,
    in_window,
    month_bounds,
)
from gridctl.api.models import AdviceItem, ResidentAdvice, TariffOut
from gridctl.config.models import Site, Tariff
from gridctl.history import EnergyResolution, Historian

# The night hours whose mean power is the base load (fridge, stand-by, ventilation), local time.
NIGHT_HOURS = range(1, 5)
# Share of peak-hours use a household can usually move (washing machine, dishwasher, water heater).
SHIFTABLE_SHARE = 0.2
# Below these differences the advice would be noise.
BASE_LOAD_MARGIN_KW = 0.03
MEDIAN_MARGIN_PCT = 10.0
PEAK_SHARE_MARGIN = 0.05


@dataclass(frozen=True)
class Prices:
    peak: float | None
    offpeak: float | None
    mean: float | None  # over a whole day, for a load that runs around the clock


def _prices(tariff: Tariff, hours: list[Bucket]) -> Prices:
    if tariff.kind == "base":
        return Prices(None, None, tariff.base_price_eur_per_kwh)
    if tariff.kind == "hp_hc":
        peak, offpeak = tariff.peak_price_eur_per_kwh, tariff.offpeak_price_eur_per_kwh
    elif tariff.kind == "tempo" and tariff.tempo_prices_eur_per_kwh.get("blue"):
        blue = tariff.tempo_prices_eur_per_kwh["blue"]
        peak, offpeak = blue["peak"], blue["offpeak"]
    else:
        return Prices(None, None, None)
    if not hours or peak is None or offpeak is None:
        return Prices(peak, offpeak, None)
    off = sum(1 for b in hours if any(in_window(b.start, w) for w in tariff.offpeak_windows)) / len(hours)
    return Prices(peak, offpeak, off * offpeak + (1 - off) * peak)


def tariff_out(tariff: Tariff) -> TariffOut:
    return TariffOut(kind=tariff.kind, base_price_eur_per_kwh=tariff.base_price_eur_per_kwh,
                     peak_price_eur_per_kwh=tariff.peak_price_eur_per_kwh,
                     offpeak_price_eur_per_kwh=tariff.offpeak_price_eur_per_kwh,
                     offpeak_windows=[f"{w.start:%H:%M}–{w.end:%H:%M}" for w in tariff.offpeak_windows])


async def data_range(historian: Historian, reader: RollupReader, site: Site, dwelling_id: str,
                     today: date) -> tuple[date | None, date | None]:
    """The first day with data in the last year and the day after the last one."""
    end = today + timedelta(days=1)
    daily = await dwelling_series(historian, reader, site, dwelling_id, end - timedelta(days=366), end,
                                  Resolution.DAY)
    days = [b.start.date() for b in daily if b.energy_kwh is not None]
    return (days[0], days[-1] + timedelta(days=1)) if days else (None, None)


def _night_base_kw(frame: pd.DataFrame) -> pd.Series:
    night = frame[[ts.hour in NIGHT_HOURS for ts in frame.index]]
    return night.mean()  # kWh per hour is kW


def _peak_share(frame: pd.DataFrame, tariff: Tariff) -> pd.Series:
    offpeak = [any(in_window(ts.to_pydatetime(), w) for w in tariff.offpeak_windows) for ts in frame.index]
    total = frame.sum(min_count=1)
    return (total - frame[offpeak].sum()) / total


async def resident_advice(historian: Historian, reader: RollupReader, site: Site, dwelling_id: str, today: date,
                          month: date | None, minimum: int) -> ResidentAdvice:
    building = next(d.building for d in site.dwellings if d.id == dwelling_id)
    first, after = await data_range(historian, reader, site, dwelling_id, today)
    if month is None:
        month = (after - timedelta(days=1)) if after else today
    start, end = month_bounds(month)
    hourly = await dwelling_series(historian, reader, site, dwelling_id, start, end, Resolution.HOUR)
    known = [b for b in hourly if b.energy_kwh is not None]
    energy = sum(b.energy_kwh for b in known) if known else None  # type: ignore[misc]
    days = len({b.start.date() for b in known})
    cost = cost_of(site.tariff, hourly)
    prices = _prices(site.tariff, hourly)
    peak_cost = None if cost.peak_energy_kwh is None or prices.peak is None else cost.peak_energy_kwh * prices.peak
    off_cost = (None if cost.offpeak_energy_kwh is None or prices.offpeak is None
                else cost.offpeak_energy_kwh * prices.offpeak)

    median = percent = None
    compared, note = 0, None
    advice: list[AdviceItem] = []
    per_year = 365 / days if days else 0.0
    try:
        comparison = await compare_with_building(historian, site, dwelling_id, start, end, minimum)
        median, compared = comparison.median_kwh, comparison.dwellings
        if comparison.dwelling_kwh is not None and median:
            percent = (comparison.dwelling_kwh - median) / median * 100
            if percent > MEDIAN_MARGIN_PCT and prices.mean is not None:
                saved = (comparison.dwelling_kwh - median) * prices.mean * per_year
                advice.append(AdviceItem(kind="above_median", own=comparison.dwelling_kwh, building=median,
                                         unit="kWh", yearly_eur=round(saved)))
    except NotEnoughDwellings as exc:
        note = str(exc)

    members = building_dwellings(site, building)
    if len(members) >= minimum and known:
        frame = await historian.dwelling_energy(site.id, start, end, EnergyResolution.HOUR, members)
        base = _night_base_kw(frame)
        others = base.dropna()
        own = base.get(dwelling_id)
        if len(others) >= minimum and own is not None and not pd.isna(own):
            typical = float(statistics.median(others.tolist()))
            if own - typical > BASE_LOAD_MARGIN_KW and prices.mean is not None:
                saved = (own - typical) * 24 * 365 * prices.mean
                advice.append(AdviceItem(kind="night_base_load", own=round(float(own), 3), building=round(typical, 3),
                                         unit="kW", yearly_eur=round(saved)))
        if cost.peak_energy_kwh is not None and prices.peak is not None and prices.offpeak is not None:
            shares = _peak_share(frame, site.tariff).dropna()
            own_share = shares.get(dwelling_id)
            if len(shares) >= minimum and own_share is not None and not pd.isna(own_share):
                typical = float(statistics.median(shares.tolist()))
                if own_share > typical + PEAK_SHARE_MARGIN or own_share > 0.6:
                    saved = cost.peak_energy_kwh * SHIFTABLE_SHARE * (prices.peak - prices.offpeak) * per_year
                    advice.append(AdviceItem(kind="peak_hours", own=round(float(own_share), 3),
                                             building=round(typical, 3), unit="share", yearly_eur=round(saved)))
    advice.sort(key=lambda a: -(a.yearly_eur or 0))
    return ResidentAdvice(
        site_id=site.id, dwelling_id=dwelling_id, building=building, month=start.strftime("%Y-%m"),
        data_start=first, data_end=after, energy_kwh=energy, median_kwh=median,
        percent_vs_median=None if percent is None else round(percent, 1), dwellings_compared=compared,
        comparison_note=note, peak_kwh=cost.peak_energy_kwh, offpeak_kwh=cost.offpeak_energy_kwh,
        peak_cost_eur=None if peak_cost is None else round(peak_cost, 2),
        offpeak_cost_eur=None if off_cost is None else round(off_cost, 2),
        cost_eur=None if cost.cost_eur is None else round(cost.cost_eur, 2), tariff=tariff_out(site.tariff),
        advice=advice,
    )
