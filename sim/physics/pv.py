"""A PV array and its inverter: DC power from plane-of-array irradiance, AC capped by size and limit."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.physics.energy import EnergyCounter


@dataclass
class PvArray:
    peak_power_kwp: float
    inverter_max_power_kw: float
    # DC-side losses (soiling, wiring, mismatch, temperature) lumped in one ratio.
    performance_ratio: float = 0.86
    inverter_efficiency: float = 0.97
    dc_power_kw: float = 0.0
    power_kw: float = 0.0
    available_power_kw: float = 0.0
    energy: EnergyCounter = field(default_factory=EnergyCounter)

    def advance(self, duration_s: float, plane_of_array_w_per_m2: float, curtailment_limit_pct: float) -> float:
        """AC power (kW, positive = produced) for the step under the active-power limit in % of rating."""
        available_dc = self.peak_power_kwp * self.performance_ratio * max(plane_of_array_w_per_m2, 0.0) / 1000.0
        self.available_power_kw = min(available_dc * self.inverter_efficiency, self.inverter_max_power_kw)
        limit_kw = min(max(curtailment_limit_pct, 0.0), 100.0) / 100.0 * self.inverter_max_power_kw
        self.power_kw = min(self.available_power_kw, limit_kw)
        self.dc_power_kw = self.power_kw / self.inverter_efficiency if self.power_kw > 0 else 0.0
        self.energy.add(self.power_kw, duration_s)
        return self.power_kw

    @property
    def throttled(self) -> bool:
        return self.power_kw < self.available_power_kw - 1e-6
