"""Lumped RC zone models solved exactly over each step, and a heat pump with its local PI controller.

1R1C: one air-and-structure node C joined to outdoors by R.
2R2C: the air node (C) joined by R to an envelope node (C_e), itself joined to outdoors by R_e.
Heating, solar and internal gains enter the air node. Units: kW, kWh/K, K/kW, so R×C is in hours.
With inputs held over a step the linear system x' = A x + b has the exact solution
x(t) = x_eq + e^{At} (x0 − x_eq), x_eq = −A⁻¹ b; the 2×2 exponential has a closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

KELVIN = 273.15


@dataclass
class RcZone:
    resistance_k_per_kw: float
    capacitance_kwh_per_k: float
    envelope_resistance_k_per_kw: float | None = None
    envelope_capacitance_kwh_per_k: float | None = None
    air_temperature_c: float = 20.0
    envelope_temperature_c: float = 15.0

    @property
    def two_node(self) -> bool:
        return self.envelope_resistance_k_per_kw is not None and self.envelope_capacitance_kwh_per_k is not None

    @property
    def loss_resistance_k_per_kw(self) -> float:
        """Steady-state resistance from the air to outdoors."""
        if self.two_node and self.envelope_resistance_k_per_kw is not None:
            return self.resistance_k_per_kw + self.envelope_resistance_k_per_kw
        return self.resistance_k_per_kw

    def advance(self, duration_s: float, outdoor_c: float, heat_kw: float) -> None:
        hours = duration_s / 3600.0
        if hours <= 0:
            return
        if not self.two_node:
            tau_h = self.resistance_k_per_kw * self.capacitance_kwh_per_k
            equilibrium = outdoor_c + self.resistance_k_per_kw * heat_kw
            self.air_temperature_c = equilibrium + (self.air_temperature_c - equilibrium) * math.exp(-hours / tau_h)
            return
        assert self.envelope_resistance_k_per_kw is not None and self.envelope_capacitance_kwh_per_k is not None
        c_air, c_env = self.capacitance_kwh_per_k, self.envelope_capacitance_kwh_per_k
        g_inner, g_outer = 1.0 / self.resistance_k_per_kw, 1.0 / self.envelope_resistance_k_per_kw
        a11, a12 = -g_inner / c_air, g_inner / c_air
        a21, a22 = g_inner / c_env, -(g_inner + g_outer) / c_env
        # Steady state: the envelope sits on the line between outdoors and the air, both carrying heat_kw.
        env_eq = outdoor_c + heat_kw / g_outer
        air_eq = env_eq + heat_kw / g_inner
        e11, e12, e21, e22 = _expm2(a11, a12, a21, a22, hours)
        d_air = self.air_temperature_c - air_eq
        d_env = self.envelope_temperature_c - env_eq
        self.air_temperature_c = air_eq + e11 * d_air + e12 * d_env
        self.envelope_temperature_c = env_eq + e21 * d_air + e22 * d_env


def _expm2(a11: float, a12: float, a21: float, a22: float, t: float) -> tuple[float, float, float, float]:
    """e^{At} of a 2×2 matrix with real distinct eigenvalues (true of every RC network)."""
    trace = a11 + a22
    det = a11 * a22 - a12 * a21
    root = math.sqrt(max(trace * trace / 4.0 - det, 0.0))
    l1, l2 = trace / 2.0 + root, trace / 2.0 - root
    if root < 1e-12:
        # Repeated eigenvalue: e^{At} = e^{lt} (I + (A − lI) t).
        e = math.exp(l1 * t)
        return e * (1 + (a11 - l1) * t), e * a12 * t, e * a21 * t, e * (1 + (a22 - l1) * t)
    x1, x2 = math.exp(l1 * t), math.exp(l2 * t)
    k = 1.0 / (l1 - l2)
    return (
        k * (x1 * (a11 - l2) - x2 * (a11 - l1)),
        k * (x1 - x2) * a12,
        k * (x1 - x2) * a21,
        k * (x1 * (a22 - l2) - x2 * (a22 - l1)),
    )


def carnot_cop(outdoor_c: float, supply_c: float, carnot_efficiency: float, approach_k: float) -> float:
    """COP = efficiency × Carnot between (supply + approach) and (outdoor − approach), at least 1."""
    hot = supply_c + approach_k + KELVIN
    lift = max(hot - (outdoor_c - approach_k + KELVIN), 1.0)
    return max(1.0, carnot_efficiency * hot / lift)


@dataclass
class HeatPump:
    """An air-to-water heat pump whose local PI controller tracks the zone setpoint.

    The controller asks for heat in kW thermal; the compressor delivers it within its electric power.
    """

    max_electric_power_kw: float
    carnot_efficiency: float = 0.55
    supply_temperature_c: float = 35.0
    approach_k: float = 5.0
    # Full output for this many kelvin of error; the integral catches up over `integral_time_h`.
    proportional_band_k: float = 1.5
    integral_time_h: float = 0.5
    electric_power_kw: float = 0.0
    thermal_power_kw: float = 0.0
    cop: float = field(default=0.0)
    _integral_kw: float = 0.0

    def control(self, duration_s: float, setpoint_c: float, zone_c: float, outdoor_c: float,
                enabled: bool = True) -> float:
        """Set the power for the coming step and return the thermal power in kW."""
        self.cop = carnot_cop(outdoor_c, self.supply_temperature_c, self.carnot_efficiency, self.approach_k)
        if not enabled:
            self._integral_kw = 0.0
            self.electric_power_kw = self.thermal_power_kw = 0.0
            return 0.0
        max_thermal_kw = self.max_electric_power_kw * self.cop
        gain_kw_per_k = max_thermal_kw / self.proportional_band_k
        error_k = setpoint_c - zone_c
        demand = gain_kw_per_k * error_k + self._integral_kw
        # Integrate only while the output is not saturated in the direction of the error (anti-windup).
        if (0.0 < demand < max_thermal_kw) or (demand <= 0.0 < error_k) or (demand >= max_thermal_kw > 0 > error_k):
            self._integral_kw += gain_kw_per_k * error_k * duration_s / 3600.0 / self.integral_time_h
            self._integral_kw = min(max(self._integral_kw, 0.0), max_thermal_kw)
        thermal = min(max(demand, 0.0), max_thermal_kw)
        self.thermal_power_kw = thermal
        self.electric_power_kw = thermal / self.cop
        return thermal
