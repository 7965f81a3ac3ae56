"""The simulated plant's true parameters: what the site file documents, each drawn from a seeded spread.

A real building differs from its documents: its heat loss, its thermal mass, its heat pump's field
COP, its internal gains, its PV derating and soiling, its battery's efficiency. The simulator draws
each from a distribution around the documented value, seeded per (seed, asset, parameter), so a run
is reproducible and gridctl, which knows only the site file, meets a plant it must learn. Spreads and
their sources: sim/PLANT.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gridctl.config import models as m
from sim.physics import noise

# Parameters the site file does not carry: the simulator's documented defaults.
INTERNAL_GAIN_OCCUPIED_W_PER_M2 = 3.0
INTERNAL_GAIN_IDLE_W_PER_M2 = 0.5
PV_PERFORMANCE_RATIO = 0.86
PV_INVERTER_EFFICIENCY = 0.97


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter: the value the site file (or the simulator's default) documents, and the plant's."""

    documented: float
    true: float
    # "site file" or "simulator default".
    source: str = "site file"

    def as_dict(self) -> dict[str, Any]:
        return {"site_file": round(self.documented, 6) if self.source == "site file" else None,
                "documented": round(self.documented, 6), "true": round(self.true, 6), "source": self.source}


# A heat-pump water heater's condenser while it heats a tank (water ~50 °C plus its approach): where its rated
# COP is turned into a share of Carnot.
TANK_CONDENSING_C = 55.0


def tank_carnot_share(cop: float, rated_air_c: float) -> float:
    """The share of the Carnot COP a heat-pump water heater rated `cop` with air at `rated_air_c` achieves."""
    return cop * (TANK_CONDENSING_C - rated_air_c) / (TANK_CONDENSING_C + 273.15)


# Draws stop at this many standard deviations: a building is odd, not absurd.
MAX_DEVIATION = 2.5


def _deviate(seed: int, key: tuple[object, ...]) -> float:
    return min(max(noise.normal(seed, "plant", *key), -MAX_DEVIATION), MAX_DEVIATION)


def _lognormal(seed: int, key: tuple[object, ...], median: float, sigma: float) -> float:
    return median * math.exp(sigma * _deviate(seed, key))


def _normal(seed: int, key: tuple[object, ...], mean: float, sd: float, low: float, high: float) -> float:
    return min(max(mean + sd * _deviate(seed, key), low), high)


class Plant:
    """The true parameters of every asset of one site, for one seed."""

    def __init__(self, site: m.Site, seed: int, *, perturbed: bool = True) -> None:
        self.seed = seed
        self.perturbed = perturbed
        self.assets: dict[str, dict[str, Parameter]] = {}
        for asset in site.assets:
            if isinstance(asset, m.ThermalZone):
                self.assets[asset.id] = self._zone(asset)
            elif isinstance(asset, m.PvArray):
                self.assets[asset.id] = self._pv(asset)
            elif isinstance(asset, m.BatteryAsset):
                self.assets[asset.id] = self._battery(asset)
            elif isinstance(asset, m.HotWaterTank):
                self.assets[asset.id] = self._tank(asset)

    def _draw(self, documented: float, true: float, source: str = "site file") -> Parameter:
        return Parameter(documented, true if self.perturbed else documented, source)

    def _zone(self, zone: m.ThermalZone) -> dict[str, Parameter]:
        seed, key, model, pump = self.seed, zone.id, zone.thermal_model, zone.heat_pump
        # Heat loss: one building-wide factor (the fabric and infiltration gap), each resistance a little more.
        heat_loss_factor = _lognormal(seed, (key, "heat-loss"), 1.2, 0.2)
        out = {
            "resistance_k_per_kw": self._draw(model.resistance_k_per_kw, model.resistance_k_per_kw / heat_loss_factor
                                              * _lognormal(seed, (key, "r"), 1.0, 0.1)),
            "capacitance_kwh_per_k": self._draw(model.capacitance_kwh_per_k, _lognormal(
                seed, (key, "c"), model.capacitance_kwh_per_k, 0.3)),
            "solar_aperture_m2": self._draw(model.solar_aperture_m2, _lognormal(
                seed, (key, "aperture"), model.solar_aperture_m2, 0.3)),
            "heat_pump.max_electric_power_kw": self._draw(pump.max_electric_power_kw, pump.max_electric_power_kw
                                                          * _normal(seed, (key, "hp-max"), 1.0, 0.05, 0.85, 1.1)),
            "heat_pump.carnot_efficiency": self._draw(pump.carnot_efficiency, pump.carnot_efficiency
                                                      * _normal(seed, (key, "cop"), 0.85, 0.08, 0.6, 1.05)),
            "internal_gain_occupied_w_per_m2": self._draw(INTERNAL_GAIN_OCCUPIED_W_PER_M2, _lognormal(
                seed, (key, "gain"), INTERNAL_GAIN_OCCUPIED_W_PER_M2, 0.35), "simulator default"),
            "internal_gain_idle_w_per_m2": self._draw(INTERNAL_GAIN_IDLE_W_PER_M2, _lognormal(
                seed, (key, "idle-gain"), INTERNAL_GAIN_IDLE_W_PER_M2, 0.35), "simulator default"),
        }
        if model.structure == "2R2C":
            assert model.envelope_resistance_k_per_kw is not None and model.envelope_capacitance_kwh_per_k is not None
            out["envelope_resistance_k_per_kw"] = self._draw(
                model.envelope_resistance_k_per_kw,
                model.envelope_resistance_k_per_kw / heat_loss_factor * _lognormal(seed, (key, "re"), 1.0, 0.1))
            out["envelope_capacitance_kwh_per_k"] = self._draw(model.envelope_capacitance_kwh_per_k, _lognormal(
                seed, (key, "ce"), model.envelope_capacitance_kwh_per_k, 0.3))
        return out

    def _pv(self, array: m.PvArray) -> dict[str, Parameter]:
        seed, key = self.seed, array.id
        # Modules below their nameplate, soiling between rains, the inverter below its datasheet.
        derating = _normal(seed, (key, "derating"), 0.951, 0.03, 0.85, 1.02)
        soiling = 0.009 + (0.053 - 0.009) * noise.uniform(seed, "plant", key, "soiling")
        return {
            "peak_power_kwp": self._draw(array.peak_power_kwp, array.peak_power_kwp * derating),
            "performance_ratio": self._draw(PV_PERFORMANCE_RATIO, PV_PERFORMANCE_RATIO * (1.0 - soiling),
                                            "simulator default"),
            "inverter_efficiency": self._draw(PV_INVERTER_EFFICIENCY, _normal(
                seed, (key, "inverter"), PV_INVERTER_EFFICIENCY - 0.005, 0.01, 0.93, 0.985), "simulator default"),
        }

    def _battery(self, battery: m.BatteryAsset) -> dict[str, Parameter]:
        seed, key = self.seed, battery.id
        return {
            "capacity_kwh": self._draw(battery.capacity_kwh, battery.capacity_kwh
                                       * _normal(seed, (key, "capacity"), 0.97, 0.02, 0.9, 1.0)),
            "charge_efficiency": self._draw(battery.charge_efficiency, _normal(
                seed, (key, "eta-in"), battery.charge_efficiency - 0.01, 0.01, 0.85, 0.995)),
            "discharge_efficiency": self._draw(battery.discharge_efficiency, _normal(
                seed, (key, "eta-out"), battery.discharge_efficiency - 0.01, 0.01, 0.85, 0.995)),
        }

    def _tank(self, tank: m.HotWaterTank) -> dict[str, Parameter]:
        seed, key, heater = self.seed, tank.id, tank.heater
        out = {
            "volume_l": self._draw(tank.volume_l, tank.volume_l * _normal(
                seed, (key, "volume"), 1.0, 0.02, 0.95, 1.05)),
            # Installed tanks lose more than their label: pipe connections, valves, a warm cupboard's draughts.
            "standing_loss_w_per_k": self._draw(tank.standing_loss_w_per_k, _lognormal(
                seed, (key, "standing-loss"), tank.standing_loss_w_per_k * 1.2, 0.2)),
            # IEC 60335-1 §10.1: a heating appliance's input may be 10 % below or 5 % above its rating; the mains
            # voltage moves it too (P ∝ U²).
            "heater.electric_power_kw": self._draw(heater.electric_power_kw, heater.electric_power_kw * _normal(
                seed, (key, "heater"), 0.98, 0.03, 0.9, 1.05)),
            # A rod thermostat's setting, within a few kelvin of its mark.
            "max_temperature_c": self._draw(tank.max_temperature_c, _normal(
                seed, (key, "thermostat"), tank.max_temperature_c, 1.2, tank.max_temperature_c - 3.0,
                tank.max_temperature_c + 3.0)),
            # ADEME/COSTIC 2016: two thirds of people use 35–80 l of water at 40 °C a day.
            "draws.daily_l_40c": self._draw(tank.draws.daily_l_40c, _lognormal(
                seed, (key, "draws"), tank.draws.daily_l_40c, 0.4)),
        }
        if heater.kind == "heat_pump":
            documented = tank_carnot_share(heater.cop, heater.rated_air_temperature_c)
            out["heater.carnot_share"] = self._draw(documented, documented * _normal(
                seed, (key, "cop"), 0.85, 0.08, 0.6, 1.05), "simulator default")
        return out

    def true(self, asset_id: str, name: str) -> float:
        return self.assets[asset_id][name].true

    def as_dict(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {asset: {name: p.as_dict() for name, p in params.items()} for asset, params in self.assets.items()}

    def true_site(self, site: m.Site) -> m.Site:
        """The site as the plant really is: what an oracle that knows the plant plans with."""
        assets: list[Any] = []
        for asset in site.assets:
            params = self.assets.get(asset.id)
            if params is None:
                assets.append(asset)
            elif isinstance(asset, m.ThermalZone):
                model = {name: p.true for name, p in params.items() if "." not in name and name in
                         m.ThermalModel.model_fields}
                pump = {name.split(".", 1)[1]: p.true for name, p in params.items() if name.startswith("heat_pump.")}
                assets.append(asset.model_copy(update={
                    "thermal_model": asset.thermal_model.model_copy(update=model),
                    "heat_pump": asset.heat_pump.model_copy(update=pump)}))
            elif isinstance(asset, m.PvArray):
                assets.append(asset.model_copy(update={"peak_power_kwp": params["peak_power_kwp"].true}))
            elif isinstance(asset, m.HotWaterTank):
                heater: dict[str, float] = {"electric_power_kw": params["heater.electric_power_kw"].true}
                if "heater.carnot_share" in params:
                    heater["cop"] = params["heater.carnot_share"].true / tank_carnot_share(
                        1.0, asset.heater.rated_air_temperature_c)
                assets.append(asset.model_copy(update={
                    "volume_l": params["volume_l"].true, "standing_loss_w_per_k": params["standing_loss_w_per_k"].true,
                    "max_temperature_c": params["max_temperature_c"].true,
                    "heater": asset.heater.model_copy(update=heater),
                    "draws": asset.draws.model_copy(update={"daily_l_40c": params["draws.daily_l_40c"].true})}))
            else:
                assets.append(asset.model_copy(update={name: p.true for name, p in params.items()}))
        return site.model_copy(update={"assets": assets})
