"""A battery that follows its power setpoint within power and state-of-charge limits, with losses."""

from __future__ import annotations

from dataclasses import dataclass

from sim.physics.energy import EnergyCounter


@dataclass
class Battery:
    """Power on the AC side, positive when charging; SOC in % of `capacity_kwh`."""

    capacity_kwh: float
    max_charge_power_kw: float
    max_discharge_power_kw: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min_pct: float = 10.0
    soc_max_pct: float = 95.0
    soc_pct: float = 50.0
    power_kw: float = 0.0

    def __post_init__(self) -> None:
        self.charged = EnergyCounter()
        self.discharged = EnergyCounter()

    def advance(self, duration_s: float, setpoint_kw: float) -> float:
        """Run at the setpoint for `duration_s`, as far as power and SOC limits allow; returns the power."""
        if duration_s <= 0:
            return self.power_kw
        hours = duration_s / 3600.0
        power = min(max(setpoint_kw, -self.max_discharge_power_kw), self.max_charge_power_kw)
        if power > 0:
            room_kwh = max(self.soc_max_pct - self.soc_pct, 0.0) / 100.0 * self.capacity_kwh
            power = min(power, room_kwh / (self.charge_efficiency * hours))
            stored_kwh = power * hours * self.charge_efficiency
        elif power < 0:
            available_kwh = max(self.soc_pct - self.soc_min_pct, 0.0) / 100.0 * self.capacity_kwh
            power = max(power, -available_kwh * self.discharge_efficiency / hours)
            stored_kwh = power * hours / self.discharge_efficiency
        else:
            stored_kwh = 0.0
        self.soc_pct += stored_kwh / self.capacity_kwh * 100.0
        self.power_kw = power
        self.charged.add(max(power, 0.0), duration_s)
        self.discharged.add(max(-power, 0.0), duration_s)
        return power
