"""A PV array: its output forecast on its own plane, calibrated on what it made, and curtailment."""

from __future__ import annotations

import math
from datetime import datetime
from types import MappingProxyType
from typing import Any

import optimizer as opt
from gridctl.assets.base import (
    AssetAdapter,
    AssetForecast,
    DispatchContext,
    ForecastContext,
    ForecastModel,
    Hourly,
    KpiPart,
    Number,
    ObservationBatch,
    ProblemContext,
    power_kw,
    present,
)
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, SETPOINT, Role
from gridctl.config.units import Quantity
from gridctl.dispatch import WriteRequest
from gridctl.forecast.pv import PvYield, pv_output_kw


class Pv(AssetAdapter[m.PvArray]):
    type = "pv"
    model = m.PvArray
    flow = "pv"
    roles = MappingProxyType({
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "curtailment_limit": Role(Quantity.RATIO, SETPOINT, writable=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
        "irradiance": Role(Quantity.IRRADIANCE, MEASURED),
    })

    def watched_points(self) -> list[str]:
        return [self.asset.points["power"]]

    def observed_points(self) -> set[str]:
        return present(self.asset.points, ("power", "curtailment_limit", "irradiance"))

    def power_points(self) -> list[str]:
        return [self.asset.points["power"]]

    def power_kw(self, number: Number) -> float:
        return -power_kw(self.site, number, self.asset.points["power"])

    def irradiance_point(self) -> str | None:
        return self.asset.points.get("irradiance")

    def forecast_model(self, history_days: int) -> PvModel:
        return PvModel(self.site, self.asset, history_days)

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        forecast_kw = ctx.forecasts.pv_kw.get(self.id, [0.0] * ctx.forecasts.n_steps)
        return [opt.PV(id=self.id, forecast_kw=forecast_kw, curtailable="curtailment_limit" in self.asset.points)]

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        if "curtailment_limit" not in self.asset.points:
            return []
        curtailed = ctx.planned_value(f"{self.id}.curtailed_kw") or 0.0
        rated = self.asset.inverter_max_power_kw or self.asset.peak_power_kwp
        if curtailed < CURTAILED_KW:
            limit_kw = rated
        else:
            limit_kw = _under_planned_export_kw(ctx, self.id)
            if limit_kw is None:  # no trusted grid meter: the plan's production, as planned
                limit_kw = ctx.planned_value(f"{self.id}.power_kw") or 0.0
        limit = min(100.0, max(0.0, 100.0 * limit_kw / rated))
        return [ctx.request(self.asset.points["curtailment_limit"], round(limit, 1))]

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # Uncurtailed: the inverter's own export limits still apply.
        if "curtailment_limit" not in self.asset.points:
            return []
        return [ctx.request(self.asset.points["curtailment_limit"], 100.0)]

    baseline = safe_default

    def history_points(self) -> list[str]:
        return sorted(present(self.asset.points, ("energy",)))

    def history_kpis(self, hourly: Hourly) -> dict[str, KpiPart]:
        if "energy" not in self.asset.points:
            return {}
        produced = hourly(self.asset.points["energy"], "energy_kwh").dropna()
        if not len(produced):
            return {}
        return {"pv_energy": KpiPart(float(produced.sum()), "kWh", "energy produced by the PV arrays")}


# Planned curtailment below this is the solver's noise, not a plan to curtail.
CURTAILED_KW = 1e-3


def _under_planned_export_kw(ctx: DispatchContext, array_id: str) -> float | None:
    """What the array may produce now without the site exporting more than the plan does at this step.

    A plan curtails for a reason that is about export: an export limit, or an export price below zero. So
    the plan is followed as an export cap, not as a production cap: when the sun beats the forecast, or the
    load does, the extra output serves the site's own consumption, and only what the plan would not have
    exported is cut. The arrays the plan curtails now share the room the meter shows under the planned
    export. None without a fresh grid meter reading to measure it by."""
    site, snapshot = ctx.site, ctx.snapshot
    address = site.grid.points.get("power")
    planned_export = ctx.planned_value("site.export_kw")
    if not address or planned_export is None or not snapshot.is_fresh(address):
        return None
    arrays = [a for a in site.assets if isinstance(a, m.PvArray) and "curtailment_limit" in a.points]
    curtailing = [a for a in arrays if (ctx.planned_value(f"{a.id}.curtailed_kw") or 0.0) >= CURTAILED_KW]
    share = 1.0 / max(1, len(curtailing))
    array = next(a for a in arrays if a.id == array_id)
    producing = power_kw(site, snapshot.number, array.points["power"])
    # Grid power is import positive: importing, or exporting less than planned, leaves room to produce.
    room = power_kw(site, snapshot.number, address) + planned_export
    return max(0.0, producing + room * share)


class PvModel(ForecastModel):
    """The array's yield against its model (measured over modelled energy while it runs free)."""

    reads_sky = True

    def __init__(self, site: m.Site, array: m.PvArray, history_days: int) -> None:
        self.site = site
        self.array = array
        # Measured against modelled output over recent daylight quarter-hours: the calibration.
        self.yield_ = PvYield(history_days * 96)

    def sample(self, number: Number) -> float | None:
        """Measured power while the array runs free (not curtailed, not at its inverter's limit)."""
        array = self.array
        power = number(array.points["power"])
        limit = number(array.points["curtailment_limit"]) if "curtailment_limit" in array.points else None
        at_inverter_limit = array.inverter_max_power_kw is not None and power is not None and \
            power >= 0.98 * array.inverter_max_power_kw
        if power is not None and (limit is None or limit >= 99.0) and not at_inverter_limit:
            return power
        return None

    def sky_index(self, moments: list[datetime], samples: list[Any | None], sunny: list[int],
                  temperature_c: list[float | None]) -> dict[int, float]:
        usable = [i for i in sunny if samples[i] is not None]
        if not usable:
            return {}
        clear_kw = pv_output_kw(self.site, self.array, [moments[i] for i in usable], None,
                                [temperature_c[i] for i in usable])
        return {i: samples[i] / modelled for i, modelled in zip(usable, clear_kw, strict=True)
                if modelled > 0.02 * self.array.peak_power_kwp}

    def learn(self, batch: ObservationBatch, samples: list[Any | None]) -> None:
        # Only a sensor's sky can calibrate the array: a sky read from the array itself would be circular.
        if not batch.from_sensor:
            return
        usable = [i for i in sorted(batch.index) if samples[i] is not None]
        if not usable:
            return
        modelled = pv_output_kw(self.site, self.array, [batch.moments[i] for i in usable],
                                [batch.index[i] for i in usable], [batch.temperature_c[i] for i in usable])
        for i, model_kw in zip(usable, modelled, strict=True):
            if model_kw > 0.05 * self.array.peak_power_kwp:
                self.yield_.add(samples[i], model_kw)

    def calibration(self) -> float:
        """Measured over modelled output (1 until the array has produced enough to tell)."""
        return self.yield_.ratio()

    def measured(self, sample: Any | None) -> dict[str, float]:
        return {} if sample is None else {"pv_kw": float(sample)}

    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        modelled = pv_output_kw(self.site, self.array, ctx.mids, ctx.clear_sky_index, ctx.outdoor_temperature_c)
        ratio = self.calibration()
        return AssetForecast(pv_kw=[min(ratio * v, self.array.inverter_max_power_kw or math.inf) for v in modelled])
