"""A PV array: its output forecast on its own plane, calibrated on what it made, and curtailment."""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

import optimizer as opt
from gridctl import forecast
from gridctl.assets.base import (
    AssetAdapter,
    AssetForecast,
    DispatchContext,
    ForecastCheck,
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
from gridctl.service.sun import linke_turbidity

# Default module temperature input when the outdoor temperature is unknown.
DEFAULT_TEMPERATURE_C = 12.0


def pv_output_kw(site: m.Site, array: m.PvArray, moments: Sequence[datetime], clear_sky_index: list[float] | None,
                 temperature_c: Sequence[float | None]) -> list[float]:
    """Modelled output of an array (clear sky when `clear_sky_index` is None): Erbs, Hay-Davies, PVWatts."""
    place = site.location
    temperatures = tuple(DEFAULT_TEMPERATURE_C if t is None else float(t) for t in temperature_c)
    per_kwp = _output_per_kwp(place.latitude, place.longitude, place.elevation_m, array.tilt_deg, array.azimuth_deg,
                              tuple(moments), None if clear_sky_index is None else tuple(clear_sky_index),
                              temperatures)
    return [v * array.peak_power_kwp for v in per_kwp]


@functools.lru_cache(maxsize=16)
def _output_per_kwp(latitude: float, longitude: float, elevation_m: float, tilt_deg: float, azimuth_deg: float,
                    moments: tuple[datetime, ...], clear_sky_index: tuple[float, ...] | None,
                    temperature_c: tuple[float, ...]) -> tuple[float, ...]:
    # PVWatts is linear in the array's size: arrays of one plane under one sky share one evaluation (a
    # district's rooftops, every cycle).
    monthly = linke_turbidity(latitude, longitude)
    power = forecast.pv_power_kw(
        pd.DatetimeIndex(list(moments)), 1.0, latitude=latitude, longitude=longitude, altitude_m=elevation_m,
        tilt_deg=tilt_deg, azimuth_deg=azimuth_deg,
        clear_sky_index=None if clear_sky_index is None else np.asarray(clear_sky_index),
        linke_turbidity=np.asarray([monthly[t.month - 1] for t in moments]),
        temperature_c=np.asarray(temperature_c))
    return tuple(float(v) for v in power)


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
        power = ctx.planned_value(f"{self.id}.power_kw") or 0.0
        curtailed = ctx.planned_value(f"{self.id}.curtailed_kw") or 0.0
        rated = self.asset.inverter_max_power_kw or self.asset.peak_power_kwp
        limit = 100.0 if curtailed < 1e-3 else min(100.0, max(0.0, 100.0 * power / rated))
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

    def forecast_checks(self) -> list[ForecastCheck]:
        if "power" not in self.asset.points:
            return []
        return [ForecastCheck(self.asset.points["power"], (f"{self.id}.power_kw", f"{self.id}.curtailed_kw"))]


class PvModel(ForecastModel):
    """The array's yield against its model (measured over modelled energy while it runs free)."""

    reads_sky = True

    def __init__(self, site: m.Site, array: m.PvArray, history_days: int) -> None:
        self.site = site
        self.array = array
        # (measured, modelled) energy over recent daylight samples: the calibration.
        self.fit: deque[tuple[float, float]] = deque(maxlen=history_days * 96)

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
                self.fit.append((samples[i], model_kw))

    def calibration(self) -> float:
        """Measured over modelled output (1 until the array has produced enough to tell)."""
        if len(self.fit) < 4:
            return 1.0
        measured, modelled = sum(f[0] for f in self.fit), sum(f[1] for f in self.fit)
        return min(max(measured / modelled, 0.3), 1.5) if modelled > 0 else 1.0

    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        modelled = pv_output_kw(self.site, self.array, ctx.mids, ctx.clear_sky_index, ctx.outdoor_temperature_c)
        ratio = self.calibration()
        return AssetForecast(pv_kw=[min(ratio * v, self.array.inverter_max_power_kw or math.inf) for v in modelled])
