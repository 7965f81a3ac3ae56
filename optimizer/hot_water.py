"""A fully mixed hot-water tank over one step, solved exactly for inputs held over the step.

E is the heat stored above cold water (kWh), E = C·(T − T_cold). Over a step of h hours with a draw of d
litres at a constant rate, heater power P (kW electric, COP c) and ambient temperature T_a:

    dE/dt = −k·E + c·P + UA·(T_a − T_cold),    k = UA/C + d/(V·h)

so E_end = a·E_start + b·(c·P + UA·(T_a − T_cold) − q) with a = e^{−k·h}, b = (1 − a)/k (b = h when k = 0),
where q = draw_kwh/h is a draw of a fixed heat (water mixed to a set temperature at the tap) spread over the
step. A draw of d litres removes the share 1 − e^{−d/V} of the stored heat, (d/V)·E for a small draw, and
never more than there is, even for a draw larger than the tank; a fixed heat may take more than the tank
holds (E below 0: the tank is short, which the minimum's shortfall prices). Linear in E and P: the model's
state equation and the post-solve check both use these coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optimizer.problem import HotWaterTank, Problem

# Heat capacity of water: 4.1868 kJ/(kg·K) at 1 kg/l.
WATER_KWH_PER_L_K = 4.1868 / 3600.0


def capacity_kwh_per_k(tank: HotWaterTank) -> float:
    return tank.volume_l * WATER_KWH_PER_L_K


@dataclass(frozen=True)
class TankSteps:
    """Per step: E_end = decay·E_start + heat_kwh_per_kw·P + drift_kwh."""

    capacity_kwh_per_k: float
    decay: list[float]
    heat_kwh_per_kw: list[float]
    drift_kwh: list[float]

    def energy_kwh(self, tank: HotWaterTank, temperature_c: float) -> float:
        return self.capacity_kwh_per_k * (temperature_c - tank.cold_water_temperature_c)

    def temperature_c(self, tank: HotWaterTank, energy_kwh: float) -> float:
        return tank.cold_water_temperature_c + energy_kwh / self.capacity_kwh_per_k

    def simulate(self, initial_kwh: float, power_kw: list[float]) -> list[float]:
        """Stored heat at the end of each step for the given electric power per step."""
        out, e = [], initial_kwh
        for a, g, d, p in zip(self.decay, self.heat_kwh_per_kw, self.drift_kwh, power_kw, strict=True):
            e = a * e + g * p + d
            out.append(e)
        return out


def tank_steps(tank: HotWaterTank, problem: Problem) -> TankSteps:
    cap = capacity_kwh_per_k(tank)
    ua = tank.standing_loss_kw_per_k
    cop = problem.series(tank.cop)
    ambient = problem.series(tank.ambient_temperature_c)
    draw = problem.series(tank.draw_l)
    fixed = problem.series(tank.draw_kwh)
    decay, heat, drift = [], [], []
    for t, h in enumerate(problem.durations_h()):
        k = ua / cap + draw[t] / (tank.volume_l * h)
        a = math.exp(-k * h)
        b = h if k == 0 else -math.expm1(-k * h) / k
        decay.append(a)
        heat.append(b * cop[t])
        drift.append(b * (ua * (ambient[t] - tank.cold_water_temperature_c) - fixed[t] / h))
    return TankSteps(cap, decay, heat, drift)
