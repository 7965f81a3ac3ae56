"""Key performance indicators of a closed-loop run, computed from the simulation's true state
(in the manner of BOPTEST: energy, cost, emissions, peak, discomfort, service not delivered)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gridctl.assets import site_adapters
from gridctl.config import models as m
from gridctl.forecast.carbon import carbon_intensity
from gridctl.forecast.prices import tariff_prices
from sim.physics.district import DistrictPhysics


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
    # KPIs of other asset types (e.g. hours a hot-water tank spent below its minimum), by name.
    asset_kpis: dict[str, float] = field(default_factory=dict)
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
            **{name: round(value, 3) for name, value in self.asset_kpis.items()},
            "computational_time_ratio": round(self.time_ratio, 6),
        }


class KpiMeter:
    """Accumulates KPIs step by step from the physics' truth."""

    def __init__(self, site: m.Site, physics: DistrictPhysics, tempo_colours: dict[str, str] | None = None) -> None:
        self.site = site
        self.physics = physics
        self.tempo_colours = tempo_colours or {}
        self.kpis = Kpis()
        self._import = physics.grid.imported.energy_kwh
        self._export = physics.grid.exported.energy_kwh
        # Each asset's share, read from the physics' truth by its adapter.
        parts = (adapter.physics_kpis(physics, self.kpis) for adapter in site_adapters(site))
        self._parts = [part for part in parts if part is not None]

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
        for part in self._parts:
            part.step(kpis, middle, hours)
        kpis.simulated_s += hours * 3600.0

    def finish(self, start: datetime, end: datetime) -> Kpis:
        """Close the run: what the assets account at the end (EV sessions departed, energy stored)."""
        for part in self._parts:
            part.finish(self.kpis, start, end)
        return self.kpis
