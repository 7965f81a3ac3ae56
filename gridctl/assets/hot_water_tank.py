"""A domestic hot-water tank: an electric or heat-pump water heater driven through a relay or a thermostat
setpoint, with the draws learnt from its own history and a legionella cycle kept.

Draws are counted in litres of water at 40 °C (what a shower or a tap delivers, mixed with cold water,
the unit of the ADEME/COSTIC 2016 guide on French hot-water needs): a household's habit does not depend on
how hot the tank is, so the problem takes them as a heat drawn (`draw_kwh`), not as litres of the tank.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import optimizer as opt
from gridctl.assets.base import (
    AssetAdapter,
    AssetForecast,
    AssetMemory,
    DispatchContext,
    ForecastContext,
    ForecastModel,
    Hourly,
    KpiPart,
    Number,
    ObservationBatch,
    ProblemContext,
    SiteCheck,
    power_kw,
    present,
)
from gridctl.config import models as m
from gridctl.config.roles import COUNTER, MEASURED, SETPOINT, STATE, Role
from gridctl.config.units import UNITS, Quantity
from gridctl.config.windows import in_any
from gridctl.dispatch import WriteRequest
from gridctl.forecast.prices import tariff_prices
from gridctl.service.snapshot import Snapshot
from optimizer.hot_water import WATER_KWH_PER_L_K

if TYPE_CHECKING:
    from gridctl.config.yamlsource import PathKey

# The forecast series of a tank's draws: litres of water at 40 °C per hour, per step; and the hot water a
# plan keeps in hand above the tank's minimum, litres at 40 °C (a forecaster that knows the draws, the
# simulation's oracle, gives none: it needs none).
DRAW_SERIES = "hot_water_draw_l_per_h"
RESERVE_SERIES = "hot_water_reserve_l"
MIXED_TEMPERATURE_C = 40.0
# The legionella cycle aims this far above its temperature, beyond the tank probe's class B tolerance
# (±0.6 K at 60 °C, IEC 60751), and counts as done once the probe reads the aim (within its resolution).
LEGIONELLA_MARGIN_K = 1.0
LEGIONELLA_DONE_TOLERANCE_K = 0.2
# Not knowing when the tank was last disinfected (a first start), a cycle is due within a day.
UNKNOWN_LEGIONELLA_DUE = timedelta(hours=24)
# A relay switched off while the tank is within this of its target stays off (no chatter on probe noise).
RELAY_HYSTERESIS_K = 0.3
# The plan keeps the tank at its minimum: only a tank this far below it (more drawn than forecast) heats at
# once, whatever the plan says.
FLOOR_MARGIN_K = 2.0
# Plans get ready for a heavier day than the average one: a household's day varies by ±35 % (lognormal), so
# about the 80th percentile, until the tank's own days tell their spread. Running short costs peak-hour
# heating and cold showers; a few kelvin more stored overnight cost little.
DEFAULT_HEDGE = 1.3
HEDGE_QUANTILE = 0.8
HEDGE_PRIOR_DAYS = 3.0
# Draws come as showers, not as the hourly average: ahead of the hours when the household draws most, a plan
# keeps above the minimum half the hot water of a day's busiest hour (the median over the days seen; until
# then this share of the declared day), in proportion to how busy the next RESERVE_AHEAD are, and never closer
# than RESERVE_HEADROOM_K to the tank's maximum. Quiet hours need none: no heating at the peak price for them.
# (A whole busiest hour in hand kept every shower hot in simulation but cost peak-hour heating every day;
# half of it kept them hot on all but the heaviest households' days, for less than the contactor's cost.)
RESERVE_OF_BUSIEST = 0.5
RESERVE_SHARE = 0.2
RESERVE_AHEAD = timedelta(hours=2)
RESERVE_PRIOR_DAYS = 2.0
RESERVE_HEADROOM_K = 3.0
# A heat pump's condenser side while it heats a tank (water around 50 °C, plus the exchanger's approach).
CONDENSING_TEMPERATURE_C = 55.0
# Readings further apart than this tell nothing of when the water was drawn.
MAX_INTERVAL = timedelta(hours=1)
# An hour counts when this share of it was observed.
MIN_COVERAGE = 0.8
# Weight, in days, of the declared profile against the days observed, and of the same day type's mean
# against a weekday's own days.
PRIOR_DAYS = 1.0
DAY_TYPE_DAYS = 1.0

# Local-hour shapes of a household's hot-water use when the site file gives none: a morning peak
# (showers, 6–9 h), a small midday one (dishes) and an evening peak (showers, dishes, 18–22 h); at the
# weekend the morning peak comes later and spreads. A modelling choice after the example daily profiles
# of the ADEME/COSTIC guide "Les besoins d'eau chaude sanitaire en habitat individuel et collectif" (2016).
WEEKDAY_SHAPE = (0.4, 0.2, 0.1, 0.1, 0.2, 1.0, 5.5, 9.0, 7.0, 3.5, 2.5, 2.5,
                 3.5, 3.0, 1.8, 1.5, 2.0, 3.0, 5.0, 7.5, 9.0, 7.5, 4.5, 1.8)
WEEKEND_SHAPE = (0.8, 0.4, 0.2, 0.1, 0.1, 0.2, 0.8, 2.5, 5.5, 7.5, 7.0, 5.5,
                 5.0, 4.0, 3.0, 2.5, 2.5, 3.5, 5.0, 7.0, 8.0, 7.0, 4.5, 2.0)


def declared_l_per_h(tank: m.HotWaterTank, local: datetime) -> float:
    """Litres at 40 °C per hour the site file expects at a local time."""
    weekend = local.weekday() >= 5
    shape = (tank.draws.weekend_shape if weekend else tank.draws.weekday_shape) or (
        WEEKEND_SHAPE if weekend else WEEKDAY_SHAPE)
    return tank.draws.daily_l_40c * shape[local.hour] / sum(shape)


def heat_pump_cop(heater: m.TankHeater, air_c: float) -> float:
    """COP with air at `air_c`: the rated COP's share of Carnot kept at every air temperature (1 for an element)."""
    if heater.kind == "resistive":
        return 1.0
    hot_k = CONDENSING_TEMPERATURE_C + 273.15
    carnot_share = heater.cop * (CONDENSING_TEMPERATURE_C - heater.rated_air_temperature_c) / hot_k
    return min(max(carnot_share * hot_k / max(CONDENSING_TEMPERATURE_C - air_c, 5.0), 1.0), 8.0)


class HotWaterTank(AssetAdapter[m.HotWaterTank]):
    type = "hot_water_tank"
    model = m.HotWaterTank
    roles = MappingProxyType({
        "tank_temperature": Role(Quantity.TEMPERATURE, MEASURED, required=True),
        # One of the two commands: a relay (on/off, the off-peak contactor's place) or a thermostat setpoint.
        "heater_command": Role(Quantity.DIMENSIONLESS, STATE, writable=True),
        "setpoint": Role(Quantity.TEMPERATURE, SETPOINT, writable=True),
        # One of the two at least: what the heater draws.
        "heater_power": Role(Quantity.POWER, MEASURED),
        "heater_energy": Role(Quantity.ENERGY, COUNTER),
        # A water meter's index on the tank's inlet or outlet, and the top probe its litres leave at.
        "draw_volume": Role(Quantity.VOLUME, MEASURED),
        "outlet_temperature": Role(Quantity.TEMPERATURE, MEASURED),
    })
    comfort_alarm = True

    # ------------------------------------------------------------------ inputs

    @property
    def _temperature(self) -> str:
        return self.asset.points["tank_temperature"]

    def watched_points(self) -> list[str]:
        return [self._temperature]

    def observed_points(self) -> set[str]:
        return {self._temperature} | present(self.asset.points, ("heater_energy", "heater_power", "draw_volume",
                                                                 "outlet_temperature"))

    def power_points(self) -> list[str]:
        return sorted(present(self.asset.points, ("heater_power",)))

    def power_kw(self, number: Number) -> float:
        points = self.asset.points
        if "heater_power" in points:
            return power_kw(self.site, number, points["heater_power"])
        # Without a power meter: a closed relay draws the heater's power until the tank is at its maximum.
        relay = number(points["heater_command"]) if "heater_command" in points else None
        temperature = number(self._temperature)
        hot = temperature is not None and temperature >= self.asset.max_temperature_c - 1.0
        return self.asset.heater.electric_power_kw if relay and not hot else 0.0

    def replan_points(self) -> set[str]:
        return {self._temperature}

    def replan_on(self, address: str, before: Any, after: Any) -> bool:
        # A large draw took the tank below its minimum: plan its recovery now.
        minimum = self.asset.min_temperature_c
        return (isinstance(before, int | float) and isinstance(after, int | float)
                and before >= minimum > after)

    def forecast_model(self, history_days: int) -> ForecastModel:
        return DrawModel(self, history_days)

    def observe(self, snapshot: Snapshot, memory: AssetMemory) -> None:
        state = memory.of(self.id)
        state.setdefault("first_seen", snapshot.taken_at)
        temperature = snapshot.number(self._temperature) if snapshot.is_fresh(self._temperature) else None
        if temperature is not None and temperature >= self._legionella_done_c():
            state["legionella_at"] = snapshot.taken_at

    def _legionella_target_c(self) -> float:
        return min(self.asset.legionella.temperature_c + LEGIONELLA_MARGIN_K, self.asset.max_temperature_c)

    def _legionella_done_c(self) -> float:
        return self._legionella_target_c() - LEGIONELLA_DONE_TOLERANCE_K

    def legionella_due(self, memory: AssetMemory, now: datetime) -> datetime:
        """When the next cycle is due: a period after the last one seen, or a day after gridctl started
        watching the tank when it has seen none."""
        state = memory.of(self.id)
        last = state.get("legionella_at")
        if last is not None:
            return last + timedelta(days=self.asset.legionella.period_days)
        return state.get("first_seen", now) + UNKNOWN_LEGIONELLA_DUE

    # ------------------------------------------------------------------ optimiser

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        tank = self.asset
        measured = ctx.snapshot.number(self._temperature)
        initial = (tank.min_temperature_c + tank.max_temperature_c) / 2 if measured is None else measured
        hours = ctx.step.total_seconds() / 3600.0
        forecast = ctx.forecasts.series.get(self.id, {})
        rates = forecast.get(DRAW_SERIES)
        reserve_l = forecast.get(RESERVE_SERIES)
        if rates is None:
            rates = [declared_l_per_h(tank, t.astimezone(ctx.tz)) for t in ctx.mids]
            reserve_l = [RESERVE_SHARE * tank.draws.daily_l_40c] * len(rates)
        capacity = tank.volume_l * WATER_KWH_PER_L_K
        heat_per_l = WATER_KWH_PER_L_K * (MIXED_TEMPERATURE_C - tank.cold_water_temperature_c)
        highest = max(tank.max_temperature_c - RESERVE_HEADROOM_K, tank.min_temperature_c)
        minimum: float | list[float] = tank.min_temperature_c
        busiest = max(rates, default=0.0)
        if reserve_l is not None and busiest > 0:
            ahead = max(1, round(RESERVE_AHEAD / ctx.step))
            busy = [max(rates[k:k + ahead]) / busiest for k in range(len(rates))]
            minimum = [min(tank.min_temperature_c + b * max(r, 0.0) * heat_per_l / capacity, highest)
                       for b, r in zip(busy, reserve_l, strict=True)]
        if tank.heater.kind == "resistive":
            cop: float | list[float] = 1.0
        elif tank.heater.air == "outdoor":
            cop = [heat_pump_cop(tank.heater, t) for t in ctx.forecasts.outdoor_temperature_c]
        else:
            cop = heat_pump_cop(tank.heater, tank.ambient_temperature_c)
        return [opt.HotWaterTank(
            id=tank.id, volume_l=tank.volume_l, heater_max_power_kw=tank.heater.electric_power_kw, cop=cop,
            # A relay is switched every dispatch cycle: a step's planned energy runs as a duty cycle, so the
            # heater is modelled as modulating (an LP: many tanks plan in a second).
            on_off=False, standing_loss_kw_per_k=tank.standing_loss_w_per_k / 1000.0,
            ambient_temperature_c=tank.ambient_temperature_c, cold_water_temperature_c=tank.cold_water_temperature_c,
            initial_temperature_c=max(initial, tank.cold_water_temperature_c),
            min_temperature_c=minimum, max_temperature_c=tank.max_temperature_c,
            draw_kwh=[max(rate, 0.0) * hours * heat_per_l for rate in rates],
            legionella_temperature_c=self._legionella_target_c(),
            legionella_due_by=self._due_by(ctx, initial, cop),
        )]

    def _due_by(self, ctx: ProblemContext, initial_c: float, cop: float | list[float]) -> datetime:
        """The cycle's deadline, and no sooner than the heater can reach the temperature from now (an overdue
        cycle is asked for as soon as possible, not within a step it cannot be done in)."""
        tank = self.asset
        heat_kw = tank.heater.electric_power_kw * (min(cop) if isinstance(cop, list) else cop)
        capacity = tank.volume_l * WATER_KWH_PER_L_K
        hours = max(self._legionella_target_c() - initial_c, 0.0) * capacity / heat_kw
        # A third more for the standing loss and the draws meanwhile, rounded up to whole steps.
        steps = math.ceil(1.34 * hours / (ctx.step.total_seconds() / 3600.0)) + 1
        return max(self.legionella_due(ctx.memory, ctx.start), ctx.start + ctx.step * steps)

    # ------------------------------------------------------------------ dispatch

    def _commands(self, ctx: DispatchContext, heat: bool) -> list[WriteRequest]:
        """The relay on or off; a setpoint at the tank's maximum to heat, at its minimum not to (the tank's own
        controller heats only some kelvin below its setpoint, so a setpoint at the target would often not start
        it; gridctl lowers it again once the target is reached, two writes a heating)."""
        points, tank = self.asset.points, self.asset
        requests = []
        if "heater_command" in points:
            requests.append(ctx.request(points["heater_command"], heat))
        if "setpoint" in points:
            requests.append(ctx.request(points["setpoint"], tank.max_temperature_c if heat else tank.min_temperature_c))
        return requests

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        tank, points = self.asset, self.asset.points
        temperature = ctx.snapshot.number(self._temperature)
        power = ctx.planned_value(f"{self.id}.power_kw") or 0.0
        target = ctx.planned_value(f"{self.id}.temperature_c")
        # The step's planned energy as a duty cycle: on for its first part, and not past the plan's temperature.
        duty = min(power / tank.heater.electric_power_kw, 1.0)
        heat = duty > 1e-3 and ctx.step_elapsed() < duty
        if heat and temperature is not None and target is not None:
            relay_on = "heater_command" in points and bool(ctx.snapshot.value(points["heater_command"]))
            heat = temperature < target - (0.0 if relay_on else RELAY_HYSTERESIS_K)
        if ctx.correct and temperature is not None and temperature < tank.min_temperature_c - FLOOR_MARGIN_K:
            # More was drawn than forecast: hot water first, the next plan finds the cheapest way back.
            heat = True
        if temperature is not None and temperature >= tank.max_temperature_c:
            heat = False
        return self._commands(ctx, heat)

    def _contactor_on(self, now: datetime) -> bool:
        windows = self.asset.contactor_windows
        if windows is None:
            windows = self.site.tariff.offpeak_windows
        return in_any(now, windows, self.site.tz) if windows else True

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # The off-peak contactor: the heater may run in the off-peak hours, up to the tank's own thermostat,
        # which reaches the legionella temperature every night (it is at or above it, the site model checks).
        return self._commands(ctx, self._contactor_on(ctx.now))

    baseline = safe_default

    # ------------------------------------------------------------------ KPIs

    def physics_kpis(self, physics: Any, kpis: Any) -> _TankKpis:
        return _TankKpis(self, physics.tanks[self.id], kpis)

    def history_points(self) -> list[str]:
        return [self._temperature, *sorted(present(self.asset.points, ("heater_energy", "heater_power")))]

    def history_kpis(self, hourly: Hourly) -> dict[str, KpiPart]:
        tank = self.asset
        dwellings = 1 if tank.dwelling else 0
        parts: dict[str, KpiPart] = {}
        means = hourly(self._temperature, "value_avg").dropna()
        if len(means):
            below = (tank.min_temperature_c - means).clip(lower=0.0)
            parts["hot_water_below_minimum"] = KpiPart(
                float(below.sum()), "K·h", "hot-water tanks' hourly mean temperature below their minimum", dwellings)
            parts["hot_water_below_minimum_time"] = KpiPart(
                float((below > 0).sum() * 60), "min", "hours whose mean tank temperature was below its minimum",
                dwellings)
        peaks = hourly(self._temperature, "value_max").dropna().sort_index()
        if len(peaks):
            hot = (peaks >= self._legionella_done_c()).astype(int)
            starts = int(((hot.diff().fillna(hot.iloc[0])) > 0).sum())
            parts["legionella_cycles"] = KpiPart(float(starts), "", "times a tank reached its disinfection "
                                                                      "temperature", dwellings)
        energy = self._hourly_energy_kwh(hourly)
        if energy is not None and len(energy):
            parts["hot_water_energy"] = KpiPart(float(energy.sum()), "kWh", "electricity of the water heaters",
                                                dwellings)
            if self.site.tariff.kind != "spot":
                mids = [ts.to_pydatetime() + timedelta(minutes=30) for ts in energy.index]
                prices = tariff_prices(self.site.tariff, mids, self.site.tz)
                parts["hot_water_cost"] = KpiPart(float(sum(e * p for e, p in zip(energy, prices, strict=True))),
                                                  "EUR", "water heaters' electricity at the site's tariff", dwellings)
        return parts

    def _hourly_energy_kwh(self, hourly: Hourly) -> Any:
        points = self.asset.points
        if "heater_energy" in points:
            return hourly(points["heater_energy"], "energy_kwh").dropna()
        if "heater_power" in points:
            address = points["heater_power"]
            return hourly(address, "value_avg").dropna() * UNITS[self.site.point(address).unit][1]
        return None

    # ------------------------------------------------------------------ site file

    def check(self, checks: SiteCheck, path: PathKey) -> None:
        points = self.asset.points
        if not present(points, ("heater_command", "setpoint")):
            checks.report((*path, "points"), "a hot-water tank needs a command: heater_command (a relay) or setpoint")
        if not present(points, ("heater_power", "heater_energy")):
            checks.report((*path, "points"), "a hot-water tank needs heater_power or heater_energy")
        if "setpoint" in points:
            point = checks.point(points["setpoint"])
            low, high = self.asset.min_temperature_c, self._legionella_target_c()
            if point is not None and point.min is not None and point.max is not None and (
                    point.min > low or point.max < high):
                checks.report((*path, "points", "setpoint"),
                              f"setpoint {points['setpoint']} takes {point.min:g}–{point.max:g} °C; the tank needs "
                              f"{low:g}–{high:g} °C (its minimum to its legionella cycle)")


# --------------------------------------------------------------------------- draws


@dataclass(frozen=True, slots=True)
class _Sample:
    temperature_c: float
    energy_kwh: float | None
    power_kw: float | None
    volume_l: float | None
    outlet_c: float | None
    outdoor_c: float | None = None


class DrawModel(ForecastModel):
    """Hot water drawn, in litres at 40 °C, learnt per local weekday and hour from the tank's history: from a
    water meter when there is one, else from the heat balance (heater energy in, standing loss and stored heat
    out, the rest was drawn). Hours not seen yet come from the same day type's hours, then from the site file's
    profile."""

    def __init__(self, adapter: HotWaterTank, history_days: int) -> None:
        self.adapter = adapter
        self.tank = adapter.asset
        self.site = adapter.site
        self.history_days = max(history_days, 7)
        # (local date, hour) -> [litres at 40 °C, seconds observed]
        self.hours: dict[tuple[date, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
        self._last: tuple[datetime, _Sample] | None = None

    def _number(self, number: Number, role: str) -> float | None:
        address = self.tank.points.get(role)
        value = number(address) if address else None
        return None if value is None else value * UNITS[self.site.point(address).unit][1]  # type: ignore[arg-type]

    def sample(self, number: Number) -> _Sample | None:
        temperature = number(self.adapter._temperature)
        if temperature is None:
            return None
        return _Sample(temperature, self._number(number, "heater_energy"), self._number(number, "heater_power"),
                       self._number(number, "draw_volume"), self._number(number, "outlet_temperature"))

    def learn(self, batch: ObservationBatch, samples: list[Any | None]) -> None:
        for moment, outdoor, sample in zip(batch.moments, batch.temperature_c, samples, strict=True):
            if sample is None:
                continue
            sample = _Sample(sample.temperature_c, sample.energy_kwh, sample.power_kw, sample.volume_l,
                             sample.outlet_c, outdoor)
            if self._last is not None:
                before_at, before = self._last
                if timedelta(0) < moment - before_at <= MAX_INTERVAL:
                    litres = self._drawn_l_40c(before, sample, (moment - before_at).total_seconds())
                    if litres is not None:
                        self._add(before_at, moment, litres)
            self._last = (moment, sample)
        if self._last is not None:
            oldest = self._last[0].astimezone(self.site.tz).date() - timedelta(days=self.history_days)
            for key in [k for k in self.hours if k[0] < oldest]:
                del self.hours[key]

    def _drawn_l_40c(self, before: _Sample, after: _Sample, seconds: float) -> float | None:
        tank = self.tank
        cold = tank.cold_water_temperature_c
        mean_c = (before.temperature_c + after.temperature_c) / 2
        per_l_40c_kwh = WATER_KWH_PER_L_K * (MIXED_TEMPERATURE_C - cold)
        if before.volume_l is not None and after.volume_l is not None:
            drawn = after.volume_l - before.volume_l
            leaving_c = mean_c if before.outlet_c is None or after.outlet_c is None else (
                before.outlet_c + after.outlet_c) / 2
            # A meter replaced or wrapped: this interval tells nothing.
            return None if drawn < 0 else drawn * max(leaving_c - cold, 0.0) / (MIXED_TEMPERATURE_C - cold)
        if before.energy_kwh is not None and after.energy_kwh is not None and after.energy_kwh >= before.energy_kwh:
            electric_kwh = after.energy_kwh - before.energy_kwh
        elif before.power_kw is not None:
            electric_kwh = max(before.power_kw, 0.0) * seconds / 3600.0
        else:
            return None
        heater = tank.heater
        air_c = tank.ambient_temperature_c if heater.air == "indoor" or after.outdoor_c is None else after.outdoor_c
        heat_in = electric_kwh * heat_pump_cop(heater, air_c)
        loss = tank.standing_loss_w_per_k / 1000.0 * (mean_c - tank.ambient_temperature_c) * seconds / 3600.0
        stored = tank.volume_l * WATER_KWH_PER_L_K * (after.temperature_c - before.temperature_c)
        # Signed: probe noise cancels over an hour's readings; clipping each interval would not.
        return (heat_in - loss - stored) / per_l_40c_kwh

    def _add(self, start: datetime, end: datetime, litres: float) -> None:
        """Share an interval's litres among the local hours it covers."""
        seconds = (end - start).total_seconds()
        moment = start
        while moment < end:
            local = moment.astimezone(self.site.tz)
            following = min(end, moment + timedelta(minutes=60 - local.minute, seconds=-local.second,
                                                    microseconds=-local.microsecond))
            span = (following - moment).total_seconds()
            cell = self.hours[(local.date(), local.hour)]
            cell[0] += litres * span / seconds
            cell[1] += span
            moment = following

    def profile(self) -> dict[tuple[int, int], float]:
        """Litres at 40 °C per hour by (local weekday, hour), from the hours observed and the declared profile."""
        by_weekday: dict[tuple[int, int], list[float]] = defaultdict(list)
        by_type: dict[tuple[bool, int], list[float]] = defaultdict(list)
        for (day, hour), (litres, seconds) in self.hours.items():
            if seconds >= MIN_COVERAGE * 3600.0:
                value = max(litres, 0.0) * 3600.0 / seconds
                by_weekday[(day.weekday(), hour)].append(value)
                by_type[(day.weekday() >= 5, hour)].append(value)
        out = {}
        for weekday in range(7):
            weekend = weekday >= 5
            reference = datetime(2026, 1, 5 + weekday)  # a Monday plus `weekday` days
            for hour in range(24):
                declared = declared_l_per_h(self.tank, reference.replace(hour=hour))
                seen = by_type[(weekend, hour)]
                typical = (sum(seen) + PRIOR_DAYS * declared) / (len(seen) + PRIOR_DAYS)
                own = by_weekday[(weekday, hour)]
                out[(weekday, hour)] = (sum(own) + DAY_TYPE_DAYS * typical) / (len(own) + DAY_TYPE_DAYS)
        return out

    def hedge(self) -> float:
        """How much heavier than the average day a plan gets ready for: the tank's days' 80th percentile over
        their mean, taken toward the default while few days are known."""
        days: dict[date, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for (day, _hour), (litres, seconds) in self.hours.items():
            days[day][0] += litres
            days[day][1] += seconds
        totals = sorted(litres for litres, seconds in days.values() if seconds >= MIN_COVERAGE * 86400.0)
        mean = sum(totals) / len(totals) if totals else 0.0
        if mean <= 0:
            return DEFAULT_HEDGE
        position = HEDGE_QUANTILE * (len(totals) - 1)
        low = int(position)
        high = min(low + 1, len(totals) - 1)
        quantile = totals[low] + (totals[high] - totals[low]) * (position - low)
        seen = min(max(quantile / mean, 1.0), 2.0)
        return (len(totals) * seen + HEDGE_PRIOR_DAYS * DEFAULT_HEDGE) / (len(totals) + HEDGE_PRIOR_DAYS)

    def reserve_l(self) -> float:
        """Litres at 40 °C a plan keeps in hand: half the median over the days seen of each day's busiest hour,
        taken toward a share of the declared day while few days are known."""
        busiest: dict[date, float] = {}
        for (day, _hour), (litres, seconds) in self.hours.items():
            if seconds >= MIN_COVERAGE * 3600.0:
                busiest[day] = max(busiest.get(day, 0.0), max(litres, 0.0) * 3600.0 / seconds)
        values = sorted(busiest.values())
        prior = RESERVE_SHARE * self.tank.draws.daily_l_40c
        if not values:
            return prior
        middle = len(values) // 2
        median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
        seen = RESERVE_OF_BUSIEST * median
        return (len(values) * seen + RESERVE_PRIOR_DAYS * prior) / (len(values) + RESERVE_PRIOR_DAYS)

    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        profile = self.profile()
        hedge = self.hedge()
        locals_ = [t.astimezone(ctx.site.tz) for t in ctx.mids]
        return AssetForecast(series={DRAW_SERIES: [hedge * profile[(t.weekday(), t.hour)] for t in locals_],
                                     RESERVE_SERIES: [self.reserve_l()] * len(locals_)})


# --------------------------------------------------------------------------- simulated KPIs


class _TankKpis:
    """A tank's share of a closed-loop run's KPIs, from the simulated tank's true state: hot water below the
    minimum at the tap (the top of the tank), legionella cycles done and time overdue, its electricity and cost."""

    NAMES = ("hot_water_below_minimum_k_h", "hot_water_below_minimum_min", "legionella_cycles",
             "legionella_overdue_h", "hot_water_energy_kwh", "hot_water_cost_eur")

    def __init__(self, adapter: HotWaterTank, tank: Any, kpis: Any) -> None:
        self.adapter = adapter
        self.tank = tank
        for name in self.NAMES:
            kpis.asset_kpis.setdefault(name, 0.0)
        self._energy = tank.energy_kwh
        self._cycles = tank.legionella_cycles

    def step(self, kpis: Any, middle: datetime, hours: float) -> None:
        asset, site, out = self.adapter.asset, self.adapter.site, kpis.asset_kpis
        short = asset.min_temperature_c - self.tank.outlet_temperature_c
        if short > 0:
            out["hot_water_below_minimum_k_h"] += short * hours
            out["hot_water_below_minimum_min"] += hours * 60.0
        if middle - self.tank.legionella_at > timedelta(days=asset.legionella.period_days):
            out["legionella_overdue_h"] += hours
        energy = self.tank.energy_kwh - self._energy
        self._energy = self.tank.energy_kwh
        out["hot_water_energy_kwh"] += energy
        if site.tariff.kind != "spot":
            out["hot_water_cost_eur"] += energy * tariff_prices(site.tariff, [middle], site.tz)[0]

    def finish(self, kpis: Any, start: datetime, end: datetime) -> None:
        kpis.asset_kpis["legionella_cycles"] += self.tank.legionella_cycles - self._cycles
        self._cycles = self.tank.legionella_cycles


__all__ = ["DRAW_SERIES", "RESERVE_SERIES", "DrawModel", "HotWaterTank", "declared_l_per_h", "heat_pump_cop"]
