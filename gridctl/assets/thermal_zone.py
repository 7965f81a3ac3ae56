"""A heated zone: its heat pump, its RC model and comfort bands, driven through a temperature setpoint."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from typing import Any

import optimizer as opt
from gridctl.assets.base import (
    MIN_CLEAR_SKY_W_M2,
    AssetAdapter,
    AssetForecast,
    DispatchContext,
    ForecastContext,
    ForecastModel,
    Hourly,
    KpiPart,
    Number,
    ObservationBatch,
    PolicyDefaults,
    ProblemContext,
    power_kw,
    present,
)
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, SETPOINT, STATE, Role
from gridctl.config.units import Quantity
from gridctl.config.windows import in_any
from gridctl.dispatch import WriteRequest
from gridctl.forecast.forecasts import Forecasts
from gridctl.forecast.identify import ThermalEstimate, ZoneLearner, site_file_estimate
from gridctl.policy import SitePolicy


def occupancy_series(asset_id: str, windows: list[m.TimeWindow], forecasts: Forecasts,
                     mids: list[datetime], tz: Any) -> list[bool]:
    """Occupied at each step: the forecast's when it has one for the asset, else the site file's windows."""
    if asset_id in forecasts.occupied:
        return list(forecasts.occupied[asset_id])
    return [in_any(t, windows, tz) for t in mids]


def comfort_bands(asset: m.ThermalZone, policy: SitePolicy) -> tuple[tuple[float, float], tuple[float, float]]:
    """(occupied, unoccupied) comfort bands in °C: the site file's, unless the policy overrides them."""
    occupied = asset.comfort_occupied
    unoccupied = asset.comfort_unoccupied
    override = policy.comfort.get(asset.id)
    occ = (occupied.min_temperature_c, occupied.max_temperature_c)
    unocc = (unoccupied.min_temperature_c, unoccupied.max_temperature_c)
    if override and override.occupied:
        occ = (override.occupied.min_temperature_c, override.occupied.max_temperature_c)
    if override and override.unoccupied:
        unocc = (override.unoccupied.min_temperature_c, override.unoccupied.max_temperature_c)
    return occ, unocc


def planning_bands(asset: m.ThermalZone, policy: SitePolicy) -> tuple[tuple[float, float], tuple[float, float]]:
    """The bands the plans and setpoints keep to: those in force, narrowed by the policy's comfort margin
    (a band narrower than twice the margin becomes its middle)."""
    margin = float(policy.comfort_margin_k)

    def narrowed(band: tuple[float, float]) -> tuple[float, float]:
        low, high = band[0] + margin, band[1] - margin
        if low > high:
            low = high = (band[0] + band[1]) / 2
        return low, high

    occ, unocc = comfort_bands(asset, policy)
    return narrowed(occ), narrowed(unocc)


class ThermalZone(AssetAdapter[m.ThermalZone]):
    type = "thermal_zone"
    model = m.ThermalZone
    flow = "heating_cooling"
    roles = MappingProxyType({
        "temperature": Role(Quantity.TEMPERATURE, MEASURED, required=True),
        "setpoint": Role(Quantity.TEMPERATURE, SETPOINT, required=True, writable=True),
        "heat_pump_power": Role(Quantity.POWER, MEASURED, required=True),
        "occupancy": Role(Quantity.DIMENSIONLESS, STATE),
        "heat_pump_energy": Role(Quantity.ENERGY, COUNTER),
        "mode": Role(Quantity.DIMENSIONLESS, STATE),
    })
    comfort_alarm = True

    def _band(self, now: datetime, tz: Any) -> m.ComfortBand:
        asset = self.asset
        return asset.comfort_occupied if in_any(now, asset.occupancy, tz) else asset.comfort_unoccupied

    def _setpoint_band(self, ctx: DispatchContext) -> tuple[float, float]:
        """The band a setpoint is kept in now: the policy's (its occupied hours, its bands less its margin)."""
        policy = ctx.policy or SitePolicy()
        override = policy.comfort.get(self.id)
        hours = override.occupied_hours if override is not None and override.occupied_hours is not None \
            else self.asset.occupancy
        occupied, unoccupied = planning_bands(self.asset, policy)
        return occupied if in_any(ctx.now, hours, ctx.tz) else unoccupied

    def watched_points(self) -> list[str]:
        return [self.asset.points["temperature"]]

    def observed_points(self) -> set[str]:
        return present(self.asset.points, ("temperature", "heat_pump_power", "occupancy"))

    def power_points(self) -> list[str]:
        return [self.asset.points["heat_pump_power"]]

    def policy_defaults(self) -> PolicyDefaults:
        asset = self.asset
        return PolicyDefaults(comfort=(asset.comfort_occupied, asset.comfort_unoccupied, list(asset.occupancy)))

    def power_kw(self, number: Number) -> float:
        return power_kw(self.site, number, self.asset.points["heat_pump_power"])

    def forecast_model(self, history_days: int) -> ZoneThermal:
        return ZoneThermal(self, history_days)

    def estimate(self, forecasts: Forecasts) -> ThermalEstimate:
        """The thermal model to plan with: the forecasts' (identified, or the true plant's in a simulation
        that knows it), else the site file's."""
        found = forecasts.identified.get(self.id)
        return found if isinstance(found, ThermalEstimate) else site_file_estimate(self.asset, "no identification")

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        asset, forecasts = self.asset, ctx.forecasts
        estimate = self.estimate(forecasts)
        model = estimate.model
        override = ctx.policy.comfort.get(asset.id)
        if override is not None and override.occupied_hours is not None:
            # The energy manager's occupied hours replace the site file's and any forecast.
            occupied = [in_any(t, override.occupied_hours, ctx.tz) for t in ctx.mids]
        else:
            occupied = occupancy_series(asset.id, asset.occupancy, forecasts, ctx.mids, ctx.tz)
        occ, unocc = planning_bands(asset, ctx.policy)
        measured = ctx.snapshot.number(asset.points["temperature"])
        initial = measured if measured is not None else (occ[0] + occ[1]) / 2
        solar = [model.solar_aperture_m2 * g / 1000.0 for g in forecasts.irradiance_w_m2]
        internal = forecasts.series.get(self.id, {}).get("internal_gain_kw") or [
            estimate.internal_gain_occupied_kw if o else estimate.internal_gain_idle_kw for o in occupied]
        common: dict[str, Any] = dict(
            id=asset.id, initial_temperature_c=initial, outdoor_temperature_c=forecasts.outdoor_temperature_c,
            solar_gain_kw=solar, internal_gain_kw=internal,
            heat_pump_max_power_kw=asset.heat_pump.max_electric_power_kw,
            supply_temperature_c=asset.heat_pump.supply_temperature_c,
            carnot_fraction=asset.heat_pump.carnot_efficiency, approach_k=asset.heat_pump.approach_k,
            occupied=occupied, comfort_occupied_c=occ, comfort_unoccupied_c=unocc,
        )
        if model.structure == "1R1C":
            return [opt.ThermalZone(model="1R1C", c_air_kwh_per_k=model.capacitance_kwh_per_k,
                                    r_air_out_k_per_kw=model.resistance_k_per_kw, **common)]
        return [opt.ThermalZone(
            model="2R2C", c_air_kwh_per_k=model.capacitance_kwh_per_k, r_air_mass_k_per_kw=model.resistance_k_per_kw,
            c_mass_kwh_per_k=model.envelope_capacitance_kwh_per_k,
            r_mass_out_k_per_kw=model.envelope_resistance_k_per_kw,
            initial_mass_temperature_c=initial if estimate.envelope_temperature_c is None or measured is None
            else estimate.envelope_temperature_c, **common)]

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        following = ctx.next_row()
        target = ctx.planned_value(f"{self.id}.temperature_c", following)
        if target is None:
            return []
        heating = (ctx.planned_value(f"{self.id}.power_kw") or 0.0) > 0.05
        low, high = self._setpoint_band(ctx)
        # The local controller heats to whatever it is given: when the plan coasts on free gains,
        # give it the band's floor, not the warmer temperature the plan expects to float to.
        setpoint = target if heating else low
        setpoint = min(max(setpoint, low), high)
        return [ctx.request(self.asset.points["setpoint"], round(setpoint, 1))]

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # A thermostat schedule: a degree above the band's floor.
        band = self._band(ctx.now, ctx.tz)
        return [ctx.request(self.asset.points["setpoint"], min(band.min_temperature_c + 1.0, band.max_temperature_c))]

    baseline = safe_default

    def physics_kpis(self, physics: Any, kpis: Any) -> _Discomfort:
        kpis.discomfort_k_h[self.id] = 0.0
        return _Discomfort(self, physics.zones[self.id].zone)

    def history_points(self) -> list[str]:
        return [self.asset.points["temperature"]]

    def history_kpis(self, hourly: Hourly) -> dict[str, KpiPart]:
        temperatures = hourly(self.asset.points["temperature"], "value_avg").dropna()
        if not len(temperatures):
            return {}
        outside = 0.0
        for ts, value in temperatures.items():
            band = self._band(ts.to_pydatetime(), self.site.tz)
            outside += max(0.0, band.min_temperature_c - value, value - band.max_temperature_c)
        return {"discomfort": KpiPart(outside, "K·h", "hourly mean temperature outside the comfort band")}


class ZoneThermal(ForecastModel):
    """The zone's measured history, from which its thermal model is identified every day."""

    def __init__(self, adapter: ThermalZone, history_days: int) -> None:
        self.adapter = adapter
        self.learner = ZoneLearner(adapter.asset, adapter.site.tz, history_days)

    def sample(self, number: Number) -> tuple[float | None, float | None, float | None]:
        points = self.adapter.asset.points
        power = points["heat_pump_power"]
        return (number(points["temperature"]),
                None if number(power) is None else power_kw(self.adapter.site, number, power),
                number(points["occupancy"]) if "occupancy" in points else None)

    def learn(self, batch: ObservationBatch, samples: list[Any | None]) -> None:
        for i, (moment, sample) in enumerate(zip(batch.moments, samples, strict=True)):
            indoor, power, occupied = sample if sample is not None else (None, None, None)
            clear = batch.clear_sky_ghi_w_m2[i] if batch.clear_sky_ghi_w_m2 else None
            # By night the sun gives nothing; by day what the sky was read to give, else unknown.
            ghi = 0.0 if clear is not None and clear < MIN_CLEAR_SKY_W_M2 else batch.ghi_w_m2.get(i)
            self.learner.add(moment, indoor, power, batch.temperature_c[i], ghi, occupied)

    def maintain(self, now: datetime) -> None:
        self.learner.maintain(now)

    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        return AssetForecast(identified=self.learner.estimate())


class _Discomfort:
    """Kelvin-hours outside the comfort band in force, from the zone's true air temperature."""

    def __init__(self, adapter: ThermalZone, zone: Any) -> None:
        self.adapter = adapter
        self.zone = zone

    def step(self, kpis: Any, middle: datetime, hours: float) -> None:
        band = self.adapter._band(middle, self.adapter.site.tz)
        temperature = self.zone.air_temperature_c
        deviation = max(band.min_temperature_c - temperature, temperature - band.max_temperature_c, 0.0)
        kpis.discomfort_k_h[self.adapter.id] += deviation * hours

    def finish(self, kpis: Any, start: datetime, end: datetime) -> None:
        pass
