"""A deferrable appliance: one program a day within a window, started by a contact, run to its end."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType

import optimizer as opt
from gridctl.assets.base import (
    AssetAdapter,
    AssetMemory,
    DispatchContext,
    Number,
    ProblemContext,
    power_kw,
    present,
)
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, STATE, Role
from gridctl.config.units import Quantity
from gridctl.config.windows import next_window_start
from gridctl.dispatch import WriteRequest


class Deferrable(AssetAdapter[m.DeferrableAppliance]):
    type = "deferrable_appliance"
    model = m.DeferrableAppliance
    roles = MappingProxyType({
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "start": Role(Quantity.DIMENSIONLESS, STATE, required=True, writable=True),
        "energy": Role(Quantity.ENERGY, COUNTER),
    })

    def observed_points(self) -> set[str]:
        return present(self.asset.points, ("power",))

    def power_points(self) -> list[str]:
        return [self.asset.points["power"]]

    def power_kw(self, number: Number) -> float:
        return power_kw(self.site, number, self.asset.points["power"])

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        asset, tz, start, end, step = self.asset, ctx.tz, ctx.start, ctx.end, ctx.step
        window_start, window_end = next_window_start(start, asset.window, tz)
        if ctx.memory.of(asset.id).get("done") == window_start.astimezone(tz).date():
            window_start, window_end = next_window_start(window_end + timedelta(seconds=1), asset.window, tz)
        if window_start >= end:
            return []
        steps = max(1, math.ceil(asset.duration_min * 60 / step.total_seconds()))
        earliest = max(window_start, start)
        finish_by = min(window_end, end)
        if finish_by - earliest < step * steps:
            return []
        return [opt.DeferrableLoad(id=asset.id, earliest_start=earliest, finish_by=finish_by,
                                   power_profile_kw=[asset.power_kw] * steps)]

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        power = ctx.planned_value(f"{self.id}.power_kw") or 0.0
        return [ctx.request(self.asset.points["start"], power > 1e-6)]

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # The appliance's own timer: the program starts when its window opens.
        start, _end = next_window_start(ctx.now, self.asset.window, ctx.tz)
        running = start <= ctx.now < start + timedelta(minutes=self.asset.duration_min)
        return [ctx.request(self.asset.points["start"], running)]

    baseline = safe_default

    def hold(self, requests: list[WriteRequest], now: datetime, memory: AssetMemory) -> list[WriteRequest]:
        # A started program runs to its end whatever later schedules say.
        address = self.asset.points["start"]
        until = memory.of(self.id).get("running_until")
        if until is None or now >= until:
            return requests
        return [replace(r, value=True, reason=f"{r.reason}; program runs until {until:%H:%M}")
                if r.address == address and r.value is not True else r for r in requests]

    def remember(self, requests: list[WriteRequest], now: datetime, memory: AssetMemory) -> None:
        address = self.asset.points["start"]
        if not any(r.address == address and r.value is True for r in requests):
            return
        state = memory.of(self.id)
        until = state.get("running_until")
        if until is None or now >= until:
            state["running_until"] = now + timedelta(minutes=self.asset.duration_min)
            state["done"] = now.astimezone(self.site.tz).date()
