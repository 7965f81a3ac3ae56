"""An indoor lighting zone: dimming topped up by daylight harvesting, occupancy and illuminance sensors."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from typing import Any

import optimizer as opt
from gridctl.assets.base import (
    ILLUMINANCE_TOLERANCE,
    MIN_CLEAR_SKY_W_M2,
    AssetAdapter,
    AssetForecast,
    DispatchContext,
    ForecastContext,
    ForecastModel,
    Number,
    ObservationBatch,
    PolicyDefaults,
    ProblemContext,
    power_kw,
    present,
)
from gridctl.assets.thermal_zone import occupancy_series
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, SETPOINT, STATE, Role
from gridctl.config.units import Quantity
from gridctl.config.windows import in_any
from gridctl.dispatch import WriteRequest
from gridctl.service.snapshot import Snapshot

# Indoor daylight at the work plane per W/m² of outdoor global irradiance: ~110 lm/W luminous
# efficacy of daylight × a 2.5 % daylight factor (a well-glazed office).
DAYLIGHT_LUX_PER_W_M2 = 2.75
DAYLIGHT_PRUDENCE = 0.8
# Demand response may dim a zone by at most this much below its required level.
MAX_DR_DIMMING_PCT = 20.0


def daylight_harvesting_dimming(asset: m.LightingZone, snapshot: Snapshot, margin: float = 1.05) -> float:
    """Dimming that tops the measured daylight up to the required level while someone is there."""
    present_now = snapshot.value(asset.points["occupancy"])
    illuminance = snapshot.number(asset.points["illuminance"])
    dimming = snapshot.number(asset.points["dimming"])
    if not present_now or illuminance is None or dimming is None:
        return 0.0
    daylight = max(illuminance - dimming / 100.0 * asset.rated_illuminance_lx, 0.0)
    missing = asset.required_illuminance_lx * margin - daylight
    return min(max(100.0 * missing / asset.rated_illuminance_lx, 0.0), 100.0)


class LightingZone(AssetAdapter[m.LightingZone]):
    type = "lighting_zone"
    model = m.LightingZone
    flow = "lighting"
    roles = MappingProxyType({
        "dimming": Role(Quantity.RATIO, SETPOINT, required=True, writable=True),
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "occupancy": Role(Quantity.DIMENSIONLESS, STATE, required=True),
        "illuminance": Role(Quantity.ILLUMINANCE, MEASURED, required=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
    })

    def policy_defaults(self) -> PolicyDefaults:
        return PolicyDefaults(required_illuminance_lx=self.asset.required_illuminance_lx)

    def watched_points(self) -> list[str]:
        return [self.asset.points["occupancy"], self.asset.points["illuminance"]]

    def observed_points(self) -> set[str]:
        return present(self.asset.points, ("power", "illuminance", "dimming"))

    def power_points(self) -> list[str]:
        return [self.asset.points["power"]]

    def power_kw(self, number: Number) -> float:
        return power_kw(self.site, number, self.asset.points["power"])

    def forecast_model(self, history_days: int) -> _Daylight:
        return _Daylight(self.asset)

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        asset, forecasts = self.asset, ctx.forecasts
        return [opt.LightingZone(
            id=asset.id, installed_power_kw=asset.installed_power_kw, max_illuminance_lux=asset.rated_illuminance_lx,
            required_illuminance_lux=ctx.policy.lighting_required_lx.get(asset.id, asset.required_illuminance_lx),
            occupied=occupancy_series(asset.id, asset.occupancy, forecasts, ctx.mids, ctx.tz),
            daylight_lux=forecasts.daylight_lux.get(asset.id, [0.0] * forecasts.n_steps),
            dr_dimming_allowance_pct=min(asset.demand_response_dimming_pct, MAX_DR_DIMMING_PCT),
        )]

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        dimming = ctx.planned_value(f"{self.id}.dimming_pct")
        if dimming is None:
            return []
        # The plan rests on a daylight forecast; the sensors say what is needed right now.
        dimming = max(dimming, daylight_harvesting_dimming(self.asset, ctx.snapshot))
        return [ctx.request(self.asset.points["dimming"], round(dimming, 1))]

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # The timer: full light in the occupancy windows, off outside them.
        on = in_any(ctx.now, self.asset.occupancy, ctx.tz)
        return [ctx.request(self.asset.points["dimming"], 100.0 if on else 0.0)]

    baseline = safe_default

    def physics_kpis(self, physics: Any, kpis: Any) -> _UnderLit:
        return _UnderLit(self.asset, physics.lighting[self.id])


class _Daylight(ForecastModel):
    """Indoor daylight per W/m² outdoors, learnt from the zone's sensor while the sky is readable."""

    def __init__(self, zone: m.LightingZone) -> None:
        self.zone = zone
        self.ratio: float | None = None

    def sample(self, number: Number) -> tuple[float, float] | None:
        illuminance, dimming = number(self.zone.points["illuminance"]), number(self.zone.points["dimming"])
        return None if illuminance is None or dimming is None else (illuminance, dimming)

    def learn(self, batch: ObservationBatch, samples: list[Any | None]) -> None:
        for i, ghi in batch.ghi_w_m2.items():
            sample = samples[i]
            if ghi < MIN_CLEAR_SKY_W_M2 or sample is None:
                continue
            illuminance, dimming = sample
            daylight = max(illuminance - dimming / 100.0 * self.zone.rated_illuminance_lx, 0.0)
            ratio = daylight / ghi
            self.ratio = ratio if self.ratio is None else 0.8 * self.ratio + 0.2 * ratio

    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        # Daylight is under-forecast on purpose: too little light costs comfort, too much only energy.
        ratio = DAYLIGHT_LUX_PER_W_M2 if self.ratio is None else self.ratio
        return AssetForecast(daylight_lux=[DAYLIGHT_PRUDENCE * ratio * g for g in ctx.ghi_w_m2])


class _UnderLit:
    """Hours the zone is occupied but lit below its required level."""

    def __init__(self, zone: m.LightingZone, component: Any) -> None:
        self.zone = zone
        self.component = component

    def step(self, kpis: Any, middle: datetime, hours: float) -> None:
        if self.component.occupancy.present(middle) and (
                self.component.model.illuminance_lx < ILLUMINANCE_TOLERANCE * self.zone.required_illuminance_lx):
            kpis.under_illumination_h += hours

    def finish(self, kpis: Any, start: datetime, end: datetime) -> None:
        pass
