"""Lumped RC zone models solved exactly over each step, and a heat pump with its local PI controller.

1R1C: one air-and-structure node C joined to outdoors by R.
2R2C: the air node (C) joined by R to an envelope node (C_e), itself joined to outdoors by R_e.
Heating, solar and internal gains enter the air node. Units: kW, kWh/K, K/kW, so R×C is in hours.
With inputs held over a step the linear system x' = A x + b has the exact solution
x(t) = x_eq + e^{At} (x0 − x_eq), x_eq = −A⁻¹ b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import expm

KELVIN = 273.15


@dataclass
class RcZone:
    resistance_k_per_kw: float
    capacitance_kwh_per_k: float
    envelope_resistance_k_per_kw: float | None = None
    envelope_capacitance_kwh_per_k: float | None = None
    air_temperature_c: float = 20.0
    envelope_temperature_c: float = 15.0
    # e^{At} of the last step: the parameters and the step rarely change, and expm costs ~100 µs.
    _propagator: tuple[tuple[float, ...], np.ndarray] | None = field(default=None, repr=False, compare=False)

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
        g_inner, g_outer = 1.0 / self.resistance_k_per_kw, 1.0 / self.envelope_resistance_k_per_kw
        # Steady state: the envelope sits on the line between outdoors and the air, both carrying heat_kw.
        env_eq = outdoor_c + heat_kw / g_outer
        air_eq = env_eq + heat_kw / g_inner
        e = self._exp_at(hours)
        d_air = self.air_temperature_c - air_eq
        d_env = self.envelope_temperature_c - env_eq
        self.air_temperature_c = air_eq + float(e[0, 0] * d_air + e[0, 1] * d_env)
        self.envelope_temperature_c = env_eq + float(e[1, 0] * d_air + e[1, 1] * d_env)

    def _exp_at(self, hours: float) -> np.ndarray:
        assert self.envelope_resistance_k_per_kw is not None and self.envelope_capacitance_kwh_per_k is not None
        key = (hours, self.resistance_k_per_kw, self.capacitance_kwh_per_k, self.envelope_resistance_k_per_kw,
               self.envelope_capacitance_kwh_per_k)
        if self._propagator is None or self._propagator[0] != key:
            c_air, c_env = self.capacitance_kwh_per_k, self.envelope_capacitance_kwh_per_k
            g_inner, g_outer = 1.0 / self.resistance_k_per_kw, 1.0 / self.envelope_resistance_k_per_kw
            a = np.array([[-g_inner / c_air, g_inner / c_air], [g_inner / c_env, -(g_inner + g_outer) / c_env]])
            self._propagator = (key, expm(a * hours))
        return self._propagator[1]


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
