"""Site KPIs over a period, from the history's hourly rollups, the schedule in force and the forecaster's
own scores (forecast accuracy by lead time, each zone's thermal model)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import pandas as pd

from gridctl.api.energy import Bucket, cost_of, local_midnight
from gridctl.api.models import Kpi
from gridctl.assets import AssetAdapter, KpiPart, site_adapters
from gridctl.assets.base import Hourly
from gridctl.config.models import Site
from gridctl.config.units import UNITS
from gridctl.forecast.accuracy import HORIZONS, QUANTITIES
from gridctl.forecast.forecaster import ForecastReport
from gridctl.forecast.identify import ThermalEstimate
from gridctl.history import EnergyResolution, Historian
from gridctl.runtime import SiteRuntime

FORECAST_NAMES = {"load": "load gridctl does not schedule", "pv": "PV output"}


def _hourly(frame: pd.DataFrame, address: str, column: str) -> pd.Series:
    rows = frame[frame["point"] == address]
    return pd.Series(rows[column].to_numpy(), index=pd.DatetimeIndex(rows["bucket"]), dtype=float)


def _factor_kw(site: Site, address: str) -> float:
    return UNITS[site.point(address).unit][1]


def _sum(series: pd.Series) -> float | None:
    clean = series.dropna()
    return float(clean.sum()) if len(clean) else None


async def site_kpis(historian: Historian, site: Site, start: date, end: date, carbon_kg_per_kwh: float,
                    runtime: SiteRuntime | None, now: datetime, minimum_dwellings: int = 10) -> dict[str, Kpi]:
    tz = site.tz
    lo, hi = local_midnight(start, tz), local_midnight(end, tz)
    grid = site.grid.points
    adapters = site_adapters(site)
    addresses = [a for a in (grid.get("power"), grid.get("import_energy"), grid.get("export_energy")) if a]
    addresses += [address for adapter in adapters for address in adapter.history_points()]
    frame = await historian.rollups(site.id, addresses, lo, hi, EnergyResolution.HOUR)
    kpis: dict[str, Kpi] = {}
    parts = _asset_parts(adapters, lambda address, column: _hourly(frame, address, column))

    imported = _hourly(frame, grid["import_energy"], "energy_kwh") if "import_energy" in grid else pd.Series()
    exported = _hourly(frame, grid["export_energy"], "energy_kwh") if "export_energy" in grid else pd.Series()
    import_kwh, export_kwh = _sum(imported), _sum(exported)
    kpis["import_energy"] = Kpi(value=import_kwh, unit="kWh")
    kpis["export_energy"] = Kpi(value=export_kwh, unit="kWh")

    buckets = [Bucket(ts.to_pydatetime().astimezone(tz), None if math.isnan(v) else float(v))
               for ts, v in imported.items()]
    cost = cost_of(site.tariff, buckets)
    net_cost = None
    if cost.cost_eur is not None:
        net_cost = cost.cost_eur - (export_kwh or 0.0) * site.tariff.export_price_eur_per_kwh
    kpis["cost"] = Kpi(value=net_cost, unit="EUR", note=cost.note or "imports at the site's tariff less exports")
    kpis["co2"] = Kpi(
        value=None if import_kwh is None else import_kwh * carbon_kg_per_kwh, unit="kg",
        note=f"imports at a mean grid intensity of {carbon_kg_per_kwh * 1000:.1f} gCO2/kWh",
    )

    if "power" in grid:
        peak = _hourly(frame, grid["power"], "value_max").dropna()
        kpis["peak_import"] = Kpi(
            value=float(peak.max()) * _factor_kw(site, grid["power"]) if len(peak) else None, unit="kW",
            note="highest grid power reading",
        )

    pv = parts.pop("pv_energy", None)
    pv_kwh = pv.value if pv else None
    kpis["pv_energy"] = Kpi(value=pv_kwh, unit="kWh")
    if pv_kwh and export_kwh is not None:
        kpis["self_consumption"] = Kpi(value=max(0.0, min(1.0, (pv_kwh - export_kwh) / pv_kwh)), unit="ratio",
                                       note="share of PV production used on site")
    else:
        kpis["self_consumption"] = Kpi(value=None, unit="ratio", note="no PV production recorded in the period")

    discomfort = parts.pop("discomfort", None)
    kpis["discomfort"] = Kpi(value=discomfort.value if discomfort else None, unit="K·h",
                             note="hourly mean temperature outside the comfort band")
    for name, part in parts.items():
        if 0 < part.dwellings < minimum_dwellings:
            # Like a building total: a figure over a few dwellings' own equipment would tell one apart.
            note = (f"withheld: it covers {part.dwellings} dwellings; a figure over dwellings covers at least "
                    f"{minimum_dwellings}")
            kpis[name] = Kpi(value=None, unit=part.unit, note=note)
        else:
            kpis[name] = Kpi(value=part.value, unit=part.unit, note=part.note)

    kpis["plan_adherence"] = await _plan_adherence(historian, site, runtime, lo, min(hi, now))
    report = runtime.forecast_report() if runtime is not None else None
    kpis.update(forecast_accuracy(report, lo, min(hi, now)))
    kpis.update(thermal_models(report))
    return kpis


def _asset_parts(adapters: list[AssetAdapter], hourly: Hourly) -> dict[str, KpiPart]:
    """The assets' KPI parts, summed by name."""
    parts: dict[str, KpiPart] = {}
    for adapter in adapters:
        for name, part in adapter.history_kpis(hourly).items():
            seen = parts.get(name)
            parts[name] = part if seen is None else KpiPart(seen.value + part.value, seen.unit, seen.note,
                                                            seen.dwellings + part.dwellings)
    return parts


async def _measured(historian: Historian, site: Site, address: str, steps: list[datetime],
                    step: timedelta) -> pd.Series:
    frame = await historian.query(site.id, [address], steps[0], steps[-1] + step, step, "avg")
    return frame[address]


def _past_steps(runtime: SiteRuntime | None, lo: datetime, hi: datetime) -> tuple[pd.DataFrame, timedelta] | None:
    planned = runtime.current_schedule() if runtime is not None else None
    if planned is None or len(planned.schedule.setpoints.index) < 2:
        return None
    frame = planned.schedule.setpoints
    step = (frame.index[1] - frame.index[0]).to_pytimedelta()
    past = frame[(frame.index >= lo) & (frame.index + step <= hi)]
    return (past, step) if len(past) else None


async def _plan_adherence(historian: Historian, site: Site, runtime: SiteRuntime | None, lo: datetime,
                          hi: datetime) -> Kpi:
    """Mean absolute gap between the planned and measured grid power over the schedule's elapsed steps."""
    unit = "kW"
    found = _past_steps(runtime, lo, hi)
    power = site.grid.points.get("power")
    if found is None or power is None or "site.net_kw" not in found[0]:
        return Kpi(value=None, unit=unit, note="no elapsed step of a schedule in force within the period")
    past, step = found
    measured = await _measured(historian, site, power, [ts.to_pydatetime() for ts in past.index], step)
    measured = measured * _factor_kw(site, power)
    planned = pd.Series(past["site.net_kw"].to_numpy(), index=measured.index)
    gap = (measured - planned).abs().dropna()
    if not len(gap):
        return Kpi(value=None, unit=unit, note="no grid power measured during the schedule's elapsed steps")
    return Kpi(value=float(gap.mean()), unit=unit, note=f"mean |measured - planned| grid power over {len(gap)} steps")


def forecast_accuracy(report: ForecastReport | None, lo: datetime, hi: datetime) -> dict[str, Kpi]:
    """MAE and nRMSE of the load and PV forecasts issued by the service, by lead time, over the period
    (`forecast_<quantity>_mae_<horizon>`, `forecast_<quantity>_nrmse_<horizon>`)."""
    out: dict[str, Kpi] = {}
    errors = report.accuracy.errors(lo, hi) if report is not None else {}
    for quantity in QUANTITIES:
        for band, _upper in HORIZONS:
            e = errors.get((quantity, band))
            what = f"{FORECAST_NAMES[quantity]} forecast {band} ahead at most"
            if e is None or not e.samples:
                why = "no forecast of it was scored in the period" if report is not None else \
                    "this service does not forecast the site from its measurements"
                out[f"forecast_{quantity}_mae_{band}"] = Kpi(value=None, unit="kW", note=f"{what}: {why}")
                out[f"forecast_{quantity}_nrmse_{band}"] = Kpi(value=None, unit="ratio", note=f"{what}: {why}")
                continue
            out[f"forecast_{quantity}_mae_{band}"] = Kpi(
                value=e.mae_kw, unit="kW", note=f"{what}: mean absolute error over {e.samples} quarter-hours")
            out[f"forecast_{quantity}_nrmse_{band}"] = Kpi(
                value=None if math.isnan(e.nrmse) else e.nrmse, unit="ratio",
                note=f"{what}: RMSE over the mean measured value, {e.samples} quarter-hours")
    return out


def thermal_models(report: ForecastReport | None) -> dict[str, Kpi]:
    """Per zone (`thermal_model_rmse:<zone>`), the day-ahead error on held-out days of the model its plans use."""
    out: dict[str, Kpi] = {}
    for zone, estimate in (report.identified.items() if report is not None else ()):
        if not isinstance(estimate, ThermalEstimate):
            continue
        found = estimate.identification
        if found is None:
            out[f"thermal_model_rmse:{zone}"] = Kpi(value=None, unit="K", note=f"site file's model: {estimate.reason}")
            continue
        used = found.held_out if estimate.identified else found.site_file_held_out
        model = found.model
        fitted = (f"identified R {model.resistance_k_per_kw:.3g} K/kW, C {model.capacitance_kwh_per_k:.3g} kWh/K"
                  + (f", envelope R {model.envelope_resistance_k_per_kw:.3g} K/kW, C "
                     f"{model.envelope_capacitance_kwh_per_k:.3g} kWh/K" if model.envelope_resistance_k_per_kw else "")
                  + f", gains {found.internal_gain_occupied_kw:.3g} kW occupied")
        out[f"thermal_model_rmse:{zone}"] = Kpi(
            value=used.multi_step_rmse_k, unit="K",
            note=f"{'identified' if estimate.identified else 'site file'} model in use, day-ahead RMSE on held-out "
                 f"days (identified {found.held_out.multi_step_rmse_k:.2f} K, site file "
                 f"{found.site_file_held_out.multi_step_rmse_k:.2f} K); {fitted}")
    return out
