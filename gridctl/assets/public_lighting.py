"""A public-lighting circuit: dimming by the commune's lighting classes and curfew, after dark."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from typing import Any

import optimizer as opt
from gridctl.assets.base import (
    ILLUMINANCE_TOLERANCE,
    AssetAdapter,
    DispatchContext,
    Number,
    PolicyDefaults,
    ProblemContext,
    power_kw,
    present,
)
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, SETPOINT, Role
from gridctl.config.units import Quantity
from gridctl.config.windows import in_any, in_window, lighting_period
from gridctl.dispatch import WriteRequest
from gridctl.service.snapshot import Snapshot

# The cabinet's photocell, a point of the circuit's controller.
PHOTOCELL_POINT = "photocell-dark"


def street_level(asset: m.PublicLightingCircuit, now: datetime, tz: Any) -> float:
    """The level the circuit's lighting class asks for now (the commune's periods and curfew)."""
    period = lighting_period(now, asset.periods, tz)
    level = period.dimming_pct if period else 100.0
    if asset.curfew is not None and in_window(now, asset.curfew, tz):
        level = min(level, asset.minimum_dimming_pct)
    return level


class PublicLighting(AssetAdapter[m.PublicLightingCircuit]):
    type = "public_lighting_circuit"
    model = m.PublicLightingCircuit
    flow = "lighting"
    roles = MappingProxyType({
        "dimming": Role(Quantity.RATIO, SETPOINT, required=True, writable=True),
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
    })

    def observed_points(self) -> set[str]:
        return present(self.asset.points, ("power", "dimming"))

    def power_points(self) -> list[str]:
        return [self.asset.points["power"]]

    def policy_defaults(self) -> PolicyDefaults:
        return PolicyDefaults(street_lighting=True, curfew=self.asset.curfew)

    def power_kw(self, number: Number) -> float:
        return power_kw(self.site, number, self.asset.points["power"])

    def photocell_dark(self, snapshot: Snapshot) -> bool:
        device_id = self.asset.points["dimming"].partition("/")[0]
        if not any(p.id == PHOTOCELL_POINT for p in self.site.device(device_id).points):
            return False
        return bool(snapshot.value(f"{device_id}/{PHOTOCELL_POINT}"))

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        asset, forecasts, policy, tz, mids = self.asset, ctx.forecasts, ctx.policy, ctx.tz, ctx.mids
        classes = [p.lighting_class for p in asset.periods] or ["M3"]
        design = min(classes, key=lambda c: (c[0], int(c[1])))  # M1 is brighter than M6
        dark = forecasts.dark or [True] * forecasts.n_steps
        per_step = []
        for t, is_dark in zip(mids, dark, strict=True):
            period = lighting_period(t, asset.periods, tz)
            per_step.append(period.lighting_class if (period and is_dark) else ("off" if not is_dark else design))
        curfew_window = policy.public_lighting_curfew or asset.curfew
        curfew = [curfew_window is not None and in_any(t, [curfew_window], tz) for t in mids]
        return [opt.PublicLightingCircuit(
            id=asset.id, installed_power_kw=asset.installed_power_kw, design_class=design, lighting_class=per_step,
            dark=dark, curfew=curfew, curfew_level_pct=policy.public_lighting_curfew_level_pct,
            min_safety_pct=asset.minimum_dimming_pct,
        )]

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        dimming = ctx.planned_value(f"{self.id}.dimming_pct")
        if dimming is None:
            return []
        # The plan's darkness comes from the sun's position; the cabinet's photocell sees the sky.
        if self.photocell_dark(ctx.snapshot):
            dimming = max(dimming, street_level(self.asset, ctx.now, ctx.tz))
        return [ctx.request(self.asset.points["dimming"], round(dimming, 1))]

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # An astronomical clock and the photocell: the class's level after dark, off by day.
        if not (ctx.is_dark(ctx.now) or self.photocell_dark(ctx.snapshot)):
            return [ctx.request(self.asset.points["dimming"], 0.0)]
        return [ctx.request(self.asset.points["dimming"], street_level(self.asset, ctx.now, ctx.tz))]

    baseline = safe_default

    def physics_kpis(self, physics: Any, kpis: Any) -> _StreetUnderLit:
        return _StreetUnderLit(self, physics)


class _StreetUnderLit:
    """Hours the street is dark but lit below its class's level."""

    def __init__(self, adapter: PublicLighting, physics: Any) -> None:
        self.adapter = adapter
        self.physics = physics
        self.dimming = physics.public_lighting[adapter.id].dimming

    def step(self, kpis: Any, middle: datetime, hours: float) -> None:
        asset = self.adapter.asset
        if self.physics.weather.sample(middle).dark and self.dimming.read() < (
                ILLUMINANCE_TOLERANCE * street_level(asset, middle, self.adapter.site.tz)):
            kpis.street_under_lit_h += hours
            kpis.under_illumination_h += hours

    def finish(self, kpis: Any, start: datetime, end: datetime) -> None:
        pass
