"""Stationary battery: a power setpoint, its state of charge, and the grid exchange it tracks."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import optimizer as opt
from gridctl.assets.base import AssetAdapter, DispatchContext, Number, ProblemContext, SiteCheck, power_kw, present
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, SETPOINT, Role
from gridctl.config.units import Quantity
from gridctl.dispatch import WriteRequest

if TYPE_CHECKING:
    from gridctl.config.yamlsource import PathKey


class Battery(AssetAdapter[m.BatteryAsset]):
    type = "battery"
    model = m.BatteryAsset
    flow = "battery"
    roles = MappingProxyType({
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "power_setpoint": Role(Quantity.POWER, SETPOINT, required=True, writable=True),
        "soc": Role(Quantity.RATIO, MEASURED, required=True),
        "charged_energy": Role(Quantity.ENERGY, COUNTER),
        "discharged_energy": Role(Quantity.ENERGY, COUNTER),
    })

    def watched_points(self) -> list[str]:
        return sorted(present(self.asset.points, ("soc",)))

    def observed_points(self) -> set[str]:
        return present(self.asset.points, ("power",))

    def power_points(self) -> list[str]:
        return [self.asset.points["power"]]

    def power_kw(self, number: Number) -> float:
        return power_kw(self.site, number, self.asset.points["power"])

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        asset = self.asset
        soc = ctx.snapshot.number(asset.points["soc"])
        soc_pct = 50.0 if soc is None else min(max(soc, 0.0), 100.0)
        initial = asset.capacity_kwh * soc_pct / 100.0
        low = asset.capacity_kwh * asset.soc_min_pct / 100.0
        high = asset.capacity_kwh * asset.soc_max_pct / 100.0
        return [opt.Battery(
            id=asset.id, capacity_kwh=asset.capacity_kwh, max_charge_kw=asset.max_charge_power_kw,
            max_discharge_kw=asset.max_discharge_power_kw, charge_efficiency=asset.charge_efficiency,
            discharge_efficiency=asset.discharge_efficiency, min_energy_kwh=min(low, initial),
            max_energy_kwh=max(high, initial), initial_energy_kwh=initial,
            # Hand the next horizon what this one received, so a day's arbitrage doesn't drain the battery.
            terminal_energy_kwh=min(max(initial, low), high),
            cycling_cost_eur_per_kwh=asset.cycling_cost_eur_per_kwh,
            standing_loss_per_h=asset.standing_loss_pct_per_day / 100.0 / 24.0,
        )]

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        power = ctx.planned_value(f"{self.id}.power_kw")
        if power is None:
            return []
        if ctx.correct:
            power = self._track_planned_exchange(ctx, power)
        return [ctx.request(self.asset.points["power_setpoint"], round(power, 1))]

    def _track_planned_exchange(self, ctx: DispatchContext, planned_kw: float) -> float:
        """The battery's power this cycle: the plan's, trimmed so the site does not exchange more with the
        grid than the plan expected. When load or PV differ from their forecasts, a battery that discharged
        as planned would export (worth little) or one that charged as planned would import (at full
        price); trimming keeps that energy for when the plan needs it, and the next plan starts from the
        state of charge actually reached. The battery never goes past what the plan asked, nor turns."""
        site, snapshot = ctx.site, ctx.snapshot
        planned_net = ctx.planned_value("site.net_kw")
        address = site.grid.points.get("power")
        grid = snapshot.number(address) if address else None
        measured = snapshot.number(self.asset.points["power"])
        if planned_net is None or grid is None or measured is None or not snapshot.is_fresh(address or ""):
            return planned_kw
        measured = power_kw(site, snapshot.number, self.asset.points["power"])
        # The site's batteries share the gap between the measured and the planned exchange.
        batteries = sum(1 for a in site.assets if isinstance(a, m.BatteryAsset))
        # What the site draws without this battery, and the battery power that makes it draw the plan's net.
        tracking_kw = measured + (planned_net - grid) / batteries
        if planned_kw < 0.0:
            return min(max(tracking_kw, planned_kw), 0.0)
        if planned_kw > 0.0:
            return max(min(tracking_kw, planned_kw), 0.0)
        return 0.0

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # Idle: without a trusted state of charge, neither charging nor discharging is known to be safe.
        return [ctx.request(self.asset.points["power_setpoint"], 0.0)]

    def baseline(self, ctx: DispatchContext) -> list[WriteRequest]:
        # Self-consumption, as a battery's own energy manager does: absorb export, cover import.
        asset = self.asset
        address = ctx.site.grid.points.get("power")
        grid = ctx.snapshot.number(address) if address else None
        if grid is None:
            return [ctx.request(asset.points["power_setpoint"], 0.0)]
        battery = ctx.snapshot.number(asset.points["power"]) or 0.0
        target = min(max(battery - grid, -asset.max_discharge_power_kw), asset.max_charge_power_kw)
        return [ctx.request(asset.points["power_setpoint"], round(target, 1))]

    def uncontrolled(self, ctx: DispatchContext) -> list[WriteRequest]:
        # Self-consumption is already energy management: left alone, the battery stays idle.
        return self.safe_default(ctx)

    def physics_kpis(self, physics: Any, kpis: Any) -> _StoredEnergy:
        return _StoredEnergy(physics.batteries[self.id].model)

    def check(self, checks: SiteCheck, path: PathKey) -> None:
        if self.asset.soc_min_pct >= self.asset.soc_max_pct:
            checks.report((*path, "soc_min_pct"), "soc_min_pct must be below soc_max_pct")


class _StoredEnergy:
    """Energy left in the battery at the end minus at the start: a saving still to come, or a debt."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.start_kwh = self._stored_kwh()

    def _stored_kwh(self) -> float:
        return self.model.capacity_kwh * self.model.soc_pct / 100.0

    def step(self, kpis: Any, middle: datetime, hours: float) -> None:
        pass

    def finish(self, kpis: Any, start: datetime, end: datetime) -> None:
        kpis.battery_stored_delta_kwh += self._stored_kwh() - self.start_kwh
