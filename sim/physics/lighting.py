"""Indoor lighting zones (dimming, daylight, occupancy) and public-lighting circuits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sim.physics import noise
from sim.physics.energy import EnergyCounter

OCCUPANCY_SLOT = timedelta(minutes=15)


@dataclass
class LightingZone:
    """Power = dimming × installed power; illuminance = daylight + dimming × rated illuminance."""

    installed_power_kw: float
    rated_illuminance_lx: float
    # Share of outdoor illuminance reaching the work plane.
    daylight_factor: float = 0.02
    power_kw: float = 0.0
    illuminance_lx: float = 0.0
    energy: EnergyCounter = field(default_factory=EnergyCounter)

    def advance(self, duration_s: float, dimming_pct: float, outdoor_illuminance_lx: float) -> float:
        level = min(max(dimming_pct, 0.0), 100.0) / 100.0
        self.power_kw = level * self.installed_power_kw
        self.illuminance_lx = self.daylight_factor * outdoor_illuminance_lx + level * self.rated_illuminance_lx
        self.energy.add(self.power_kw, duration_s)
        return self.power_kw


def occupied(seed: int, zone_id: str, ts: datetime, scheduled: bool,
             present_probability: float = 0.92, stray_probability: float = 0.03) -> bool:
    """Presence in one 15-minute slot: likely inside the schedule, rare outside it, seeded per slot."""
    slot = int(ts.timestamp() // OCCUPANCY_SLOT.total_seconds())
    probability = present_probability if scheduled else stray_probability
    return noise.uniform(seed, "occupancy", zone_id, slot) < probability


@dataclass
class PublicLightingCircuit:
    """On when dark: power = dimming × installed power."""

    installed_power_kw: float
    power_kw: float = 0.0
    energy: EnergyCounter = field(default_factory=EnergyCounter)

    def advance(self, duration_s: float, dimming_pct: float, dark: bool) -> float:
        level = min(max(dimming_pct, 0.0), 100.0) / 100.0
        self.power_kw = level * self.installed_power_kw if dark else 0.0
        self.energy.add(self.power_kw, duration_s)
        return self.power_kw
