"""Key performance indicators of a closed-loop run, computed from the simulation's true state
(in the manner of BOPTEST: energy, cost, emissions, peak, discomfort, service not delivered)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gridctl.config import models as m
from gridctl.service.calendar import in_any, tariff_prices
from gridctl.service.forecasting import carbon_intensity
from gridctl.service.planner import street_level
from sim.physics.district import DistrictPhysics

# Below this share of the required illuminance an occupied zone counts as under-lit.
ILLUMINANCE_TOLERANCE = 0.95


@dataclass
class Kpis:
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    energy_cost_eur: float = 0.0
    overshoot_cost_eur: float = 0.0
    co2_kg: float = 0.0
    peak_import_kw: float = 0.0
    discomfort_k_h: dict[str, float] = field(default_factory=dict)
    ev_requested_kwh: float = 0.0
    ev_unmet_kwh: float = 0.0
    # Indoor zones occupied but under-lit, plus street circuits dark but below their class's level.
    under_illumination_h: float = 0.0
    street_under_lit_h: float = 0.0
    grid_limit_violations: int = 0
    # Energy left in batteries at the end minus at the start: a saving that is still to come, or a debt.
    battery_stored_delta_kwh: float = 0.0
    simulated_s: float = 0.0
    controller_s: float = 0.0

    @property
    def cost_eur(self) -> float:
        return self.energy_cost_eur + self.overshoot_cost_eur

    @property
    def discomfort_total_k_h(self) -> float:
        return sum(self.discomfort_k_h.values())

    @property
    def time_ratio(self) -> float:
        return self.controller_s / self.simulated_s if self.simulated_s else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "energy_import_kwh": round(self.import_kwh, 3),
            "energy_export_kwh": round(self.export_kwh, 3),
            "cost_eur": round(self.cost_eur, 3),
            "energy_cost_eur": round(self.energy_cost_eur, 3),
            "overshoot_cost_eur": round(self.overshoot_cost_eur, 3),
            "co2_kg": round(self.co2_kg, 3),
            "peak_import_kw": round(self.peak_import_kw, 3),
            "discomfort_k_h": {k: round(v, 3) for k, v in self.discomfort_k_h.items()},
            "discomfort_total_k_h": round(self.discomfort_total_k_h, 3),
            "ev_requested_kwh": round(self.ev_requested_kwh, 3),
            "ev_unmet_kwh": round(self.ev_unmet_kwh, 3),
            "under_illumination_h": round(self.under_illumination_h, 3),
            "street_under_lit_h": round(self.street_under_lit_h, 3),
            "grid_limit_violations": self.grid_limit_violations,
            "battery_stored_delta_kwh": round(self.battery_stored_delta_kwh, 3),
            "computational_time_ratio": round(self.time_ratio, 6),
        }


class KpiMeter:
    """Accumulates KPIs step by step from the physics' truth."""

    def __init__(self, site: m.Site, physics: DistrictPhysics, tempo_colours: dict[str, str] | None = None) -> None:
        self.site = site
        self.physics = physics
        self.tempo_colours = tempo_colours or {}
        self.kpis = Kpis(discomfort_k_h={a.id: 0.0 for a in site.assets if isinstance(a, m.ThermalZone)})
        self._import = physics.grid.imported.energy_kwh
        self._export = physics.grid.exported.energy_kwh
        self._zones = {a.id: a for a in site.assets if isinstance(a, m.ThermalZone)}
        self._lighting = {a.id: a for a in site.assets if isinstance(a, m.LightingZone)}
        self._streets = {a.id: a for a in site.assets if isinstance(a, m.PublicLightingCircuit)}
        self._stored_at_start = self._stored_kwh()

    def _stored_kwh(self) -> float:
        return sum(b.model.capacity_kwh * b.model.soc_pct / 100.0 for b in self.physics.batteries.values())

    def step(self, start: datetime, end: datetime) -> None:
        """Account for [start, end), the physics having just been stepped to `end`."""
        hours = (end - start).total_seconds() / 3600.0
        if hours <= 0:
            return
        site, physics, kpis = self.site, self.physics, self.kpis
        middle = start + (end - start) / 2
        imported = physics.grid.imported.energy_kwh - self._import
        exported = physics.grid.exported.energy_kwh - self._export
        self._import += imported
        self._export += exported
        (price,) = tariff_prices(site.tariff, [middle], site.tz, self.tempo_colours)
        (carbon,) = carbon_intensity([middle], site.tz)
        kpis.import_kwh += imported
        kpis.export_kwh += exported
        kpis.energy_cost_eur += imported * price - exported * site.tariff.export_price_eur_per_kwh
        kpis.co2_kg += imported * carbon
        import_kw, export_kw = imported / hours, exported / hours
        kpis.peak_import_kw = max(kpis.peak_import_kw, import_kw)
        if import_kw > site.grid.subscribed_power_kw:
            kpis.overshoot_cost_eur += site.tariff.overshoot_penalty_eur_per_hour * hours
        if import_kw > site.grid.import_limit_kw + 1e-6 or export_kw > site.grid.export_limit_kw + 1e-6:
            kpis.grid_limit_violations += 1
        for zone_id, asset in self._zones.items():
            temperature = physics.zones[zone_id].zone.air_temperature_c
            band = asset.comfort_occupied if in_any(middle, asset.occupancy, site.tz) else asset.comfort_unoccupied
            deviation = max(band.min_temperature_c - temperature, temperature - band.max_temperature_c, 0.0)
            kpis.discomfort_k_h[zone_id] += deviation * hours
        weather = physics.weather.sample(middle)
        for circuit_id, asset in self._streets.items():
            if weather.dark and physics.public_lighting[circuit_id].dimming.read() < (
                    ILLUMINANCE_TOLERANCE * street_level(asset, middle, site.tz)):
                kpis.street_under_lit_h += hours
                kpis.under_illumination_h += hours
        for zone_id, asset in self._lighting.items():
            component = physics.lighting[zone_id]
            if component.occupancy.present(middle) and (
                    component.model.illuminance_lx < ILLUMINANCE_TOLERANCE * asset.required_illuminance_lx):
                kpis.under_illumination_h += hours
        kpis.simulated_s += hours * 3600.0

    def finish(self, start: datetime, end: datetime) -> Kpis:
        """Close the run: EV sessions that departed within it, what they asked and what they got."""
        departed = sessions_departed(self.physics, start, end)
        self.kpis.ev_requested_kwh = sum(asked for _, asked, _ in departed)
        self.kpis.ev_unmet_kwh = sum(max(asked - got, 0.0) for _, asked, got in departed)
        self.kpis.battery_stored_delta_kwh = self._stored_kwh() - self._stored_at_start
        return self.kpis


def sessions_departed(physics: DistrictPhysics, start: datetime, end: datetime) -> list[tuple[str, float, float]]:
    """(charger, requested, delivered) of every session that departed within [start, end)."""
    out = []
    for charger_id, component in physics.chargers.items():
        model = component.model
        if model.schedule is None:
            continue
        day = start - timedelta(days=1)
        seen = set()
        while day < end:
            for session in model.schedule.around(day):
                if session.arrival in seen or not start <= session.departure < end:
                    continue
                seen.add(session.arrival)
                _asked, got = model.served.get(session.arrival, (session.energy_kwh, 0.0))
                out.append((charger_id, session.energy_kwh, got))
            day += timedelta(days=1)
    return out
