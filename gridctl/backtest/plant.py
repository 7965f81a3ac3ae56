"""The replayed plant: the recorded load and sunshine, and the flexible assets simulated from the site file.

Each asset the backtest can replay without a building model has a part here: batteries (capacity, power
limits, charge and discharge efficiencies, standing losses, within their state-of-charge band), PV
arrays (the recorded output, less what a curtailment limit cuts), EV chargers (the session log's cars,
each taking what its charger's current limit allows until it has its energy or leaves) and deferrable
appliances (a program of fixed power and length once started). Parts answer in the units of the site
file's points, as the devices would, and take the adapters' write requests as the devices would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from drivers.base import Quality, Reading
from gridctl.backtest.recording import LOAD, EvSession, Recording, pv_series
from gridctl.config import models as m
from gridctl.config.units import UNITS
from gridctl.service.snapshot import Snapshot


def in_unit(site: m.Site, address: str, value: float) -> float:
    """A value in gridctl's own unit (kW, kWh, %) as the point's unit has it (W, Wh, ...)."""
    return value / UNITS[site.point(address).unit][1]


def from_unit(site: m.Site, address: str, value: float) -> float:
    return value * UNITS[site.point(address).unit][1]


@dataclass
class StepFlows:
    """What one step did, for the trace: each column's average kW (or state) over the step."""

    values: dict[str, float] = field(default_factory=dict)


class Part:
    """One asset of the plant."""

    asset_id: str

    def readings(self, now: datetime) -> dict[str, float]:
        """Point values (in the points' units) at `now`: averages of the last step, states of now."""
        return {}

    def write(self, address: str, value: float) -> bool:
        """Take a command; False when the address is not this part's."""
        return False

    def advance(self, position: int, start: datetime, step: timedelta, flows: StepFlows) -> float:
        """Run one step from `start`; returns the average power drawn from the site (kW, production < 0)."""
        return 0.0

    def idle(self, position: int) -> tuple[dict[str, float], float]:
        """What its points showed over a recorded step while it did nothing of its own (the history the
        forecasts learn from), and the power it drew then (kW, production < 0)."""
        return {}, 0.0

    def recorded(self) -> dict[str, str]:
        """Forecast series it is known by -> the recording's series (a PV array's output)."""
        return {}


class BatteryPart(Part):
    def __init__(self, site: m.Site, asset: m.BatteryAsset, recording: Recording, initial_soc_pct: float) -> None:
        self.site, self.asset, self.asset_id = site, asset, asset.id
        self.low_kwh = asset.capacity_kwh * asset.soc_min_pct / 100.0
        self.high_kwh = asset.capacity_kwh * asset.soc_max_pct / 100.0
        self.energy_kwh = min(max(asset.capacity_kwh * initial_soc_pct / 100.0, self.low_kwh), self.high_kwh)
        self.initial_kwh = self.energy_kwh
        self.setpoint_kw = 0.0
        self.power_kw = 0.0
        self.charged_kwh = 0.0
        self.discharged_kwh = 0.0

    def readings(self, now: datetime) -> dict[str, float]:
        points = self.asset.points
        out = {points["soc"]: 100.0 * self.energy_kwh / self.asset.capacity_kwh,
               points["power"]: in_unit(self.site, points["power"], self.power_kw),
               points["power_setpoint"]: in_unit(self.site, points["power_setpoint"], self.setpoint_kw)}
        for role, value in (("charged_energy", self.charged_kwh), ("discharged_energy", self.discharged_kwh)):
            if role in points:
                out[points[role]] = in_unit(self.site, points[role], value)
        return out

    def write(self, address: str, value: float) -> bool:
        if address != self.asset.points["power_setpoint"]:
            return False
        self.setpoint_kw = from_unit(self.site, address, float(value))
        return True

    def idle(self, position: int) -> tuple[dict[str, float], float]:
        return {self.asset.points["power"]: 0.0}, 0.0

    def advance(self, position: int, start: datetime, step: timedelta, flows: StepFlows) -> float:
        asset, hours = self.asset, step.total_seconds() / 3600.0
        kept = self.energy_kwh * (1.0 - asset.standing_loss_pct_per_day / 100.0 / 24.0 * hours)
        power = min(max(self.setpoint_kw, -asset.max_discharge_power_kw), asset.max_charge_power_kw)
        if power > 0.0:
            power = max(0.0, min(power, (self.high_kwh - kept) / (asset.charge_efficiency * hours)))
            self.energy_kwh = kept + asset.charge_efficiency * power * hours
            self.charged_kwh += power * hours
        elif power < 0.0:
            power = min(0.0, max(power, -(kept - self.low_kwh) * asset.discharge_efficiency / hours))
            self.energy_kwh = kept + power * hours / asset.discharge_efficiency
            self.discharged_kwh -= power * hours
        else:
            self.energy_kwh = kept
        self.power_kw = power
        flows.values[f"{self.asset_id}.power_kw"] = power
        flows.values[f"{self.asset_id}.soc_pct"] = 100.0 * self.energy_kwh / asset.capacity_kwh
        return power


class PvPart(Part):
    def __init__(self, site: m.Site, asset: m.PvArray, recording: Recording, initial_soc_pct: float) -> None:
        self.site, self.asset, self.asset_id = site, asset, asset.id
        self.recording = recording
        self.series = pv_series(asset.id)
        self.limit_pct = 100.0
        self.power_kw = 0.0

    def readings(self, now: datetime) -> dict[str, float]:
        points = self.asset.points
        out = {points["power"]: in_unit(self.site, points["power"], self.power_kw)}
        if "curtailment_limit" in points:
            out[points["curtailment_limit"]] = self.limit_pct
        return out

    def write(self, address: str, value: float) -> bool:
        if address != self.asset.points.get("curtailment_limit"):
            return False
        self.limit_pct = min(max(float(value), 0.0), 100.0)
        return True

    def idle(self, position: int) -> tuple[dict[str, float], float]:
        produced = self.recording.value(self.series, position)
        address = self.asset.points["power"]
        return {address: in_unit(self.site, address, produced)}, -produced

    def recorded(self) -> dict[str, str]:
        return {self.asset_id: self.series}

    def advance(self, position: int, start: datetime, step: timedelta, flows: StepFlows) -> float:
        available = self.recording.value(self.series, position)
        rated = self.asset.inverter_max_power_kw or self.asset.peak_power_kwp
        self.power_kw = min(available, rated * self.limit_pct / 100.0)
        flows.values[f"{self.asset_id}.power_kw"] = self.power_kw
        flows.values[f"{self.asset_id}.curtailed_kw"] = available - self.power_kw
        return -self.power_kw


@dataclass
class _Stay:
    session: EvSession
    delivered_kwh: float = 0.0


class ChargerPart(Part):
    """One charger of a pool and the cars of the session log that come to it."""

    def __init__(self, site: m.Site, charger: m.EvCharger, sessions: list[EvSession]) -> None:
        self.site, self.charger, self.asset_id = site, charger, charger.id
        self.stays = [_Stay(s) for s in sorted(sessions, key=lambda s: s.arrival)]
        self.next = 0
        # A charger nobody limits gives its rating.
        self.current_a = charger.max_current_a
        self.power_kw = 0.0
        self.energy_kwh = 0.0
        self.departed: list[_Stay] = []

    def _stay_at(self, moment: datetime) -> _Stay | None:
        for stay in self.stays[self.next:self.next + 2]:
            if stay.session.arrival <= moment < stay.session.departure:
                return stay
        return None

    def readings(self, now: datetime) -> dict[str, float]:
        points = self.charger.points
        stay = self._stay_at(now)
        if stay is None:
            state = 0
        elif stay.delivered_kwh >= stay.session.energy_kwh - 1e-6:
            state = 3
        else:
            state = 2 if self.power_kw > 0 else 1
        out = {points["plug_state"]: float(state), points["power"]: in_unit(self.site, points["power"], self.power_kw),
               points["current_limit"]: self.current_a}
        if "session_energy" in points:
            out[points["session_energy"]] = in_unit(self.site, points["session_energy"],
                                                    stay.delivered_kwh if stay else 0.0)
        if "energy" in points:
            out[points["energy"]] = in_unit(self.site, points["energy"], self.energy_kwh)
        # A car that declares its needs (ISO 15118, a charging app) tells its departure and energy.
        if "time_to_departure" in points:
            left = (stay.session.departure - now).total_seconds() if stay else 0.0
            out[points["time_to_departure"]] = in_unit(self.site, points["time_to_departure"], left)
        if "energy_request" in points:
            out[points["energy_request"]] = in_unit(self.site, points["energy_request"],
                                                    stay.session.energy_kwh if stay else 0.0)
        return out

    def write(self, address: str, value: float) -> bool:
        if address != self.charger.points["current_limit"]:
            return False
        self.current_a = min(max(float(value), 0.0), self.charger.max_current_a)
        return True

    def advance(self, position: int, start: datetime, step: timedelta, flows: StepFlows) -> float:
        end = start + step
        charger = self.charger
        limit_kw = 0.0 if self.current_a < charger.min_current_a - 1e-6 else \
            self.current_a * charger.voltage_v * charger.phases / 1000.0
        energy = 0.0
        while self.next < len(self.stays) and self.stays[self.next].session.arrival < end:
            stay = self.stays[self.next]
            session = stay.session
            begin, finish = max(session.arrival, start), min(session.departure, end)
            if finish > begin:
                hours = (finish - begin).total_seconds() / 3600.0
                taken = min(limit_kw * hours, max(session.energy_kwh - stay.delivered_kwh, 0.0))
                stay.delivered_kwh += taken
                energy += taken
            if session.departure <= end:
                self.departed.append(stay)
                self.next += 1
                continue
            break
        self.power_kw = energy / (step.total_seconds() / 3600.0)
        self.energy_kwh += energy
        flows.values[f"{charger.id}.power_kw"] = self.power_kw
        return self.power_kw

    def unmet_kwh(self, until: datetime) -> tuple[float, float]:
        """(asked, not delivered) over the sessions that left by `until`."""
        done = [s for s in self.departed if s.session.departure <= until]
        return (sum(s.session.energy_kwh for s in done),
                sum(max(s.session.energy_kwh - s.delivered_kwh, 0.0) for s in done))


class AppliancePart(Part):
    def __init__(self, site: m.Site, asset: m.DeferrableAppliance, recording: Recording,
                 initial_soc_pct: float) -> None:
        self.site, self.asset, self.asset_id = site, asset, asset.id
        self.running_until: datetime | None = None
        self.requested = False
        self.power_kw = 0.0
        self.started_at: datetime | None = None
        self.runs = 0

    def readings(self, now: datetime) -> dict[str, float]:
        points = self.asset.points
        return {points["power"]: in_unit(self.site, points["power"], self.power_kw),
                points["start"]: float(self.running_until is not None and now < self.running_until)}

    def write(self, address: str, value: float) -> bool:
        if address != self.asset.points["start"]:
            return False
        self.requested = bool(value)
        return True

    def advance(self, position: int, start: datetime, step: timedelta, flows: StepFlows) -> float:
        # A program, once started, runs to its end whatever it is told.
        if self.requested and (self.running_until is None or start >= self.running_until):
            self.running_until = start + timedelta(minutes=self.asset.duration_min)
            self.runs += 1
        end = start + step
        running = 0.0
        if self.running_until is not None and self.running_until > start:
            running = (min(self.running_until, end) - start) / step
        self.power_kw = self.asset.power_kw * running
        flows.values[f"{self.asset_id}.power_kw"] = self.power_kw
        return self.power_kw


class Plant:
    """The site replayed: recorded load and PV, simulated flexible assets, the meter between them."""

    def __init__(self, site: m.Site, recording: Recording, initial_soc_pct: float = 50.0) -> None:
        self.site = site
        self.recording = recording
        self.parts: list[Part] = [part for asset in site.assets
                                  for part in PARTS[asset.type](site, asset, recording, initial_soc_pct)]
        self._by_address: dict[str, Part] = {}
        self.grid_kw: float | None = None
        self.grid_point = site.grid.points.get("power")

    def readings(self, now: datetime, stamped: datetime) -> dict[str, Reading]:
        values: dict[str, float] = {}
        for part in self.parts:
            values.update(part.readings(now))
        if self.grid_point and self.grid_kw is not None:
            values[self.grid_point] = in_unit(self.site, self.grid_point, self.grid_kw)
        return {address: Reading(address, stamped, value, Quality.GOOD) for address, value in values.items()}

    def snapshot(self, now: datetime, taken_at: datetime | None = None) -> Snapshot:
        """What the devices show at `now`, dated `taken_at` (a step's averages are dated at its middle)."""
        stamped = taken_at or now
        return Snapshot(stamped, MappingProxyType(self.readings(now, stamped)), MappingProxyType({}))

    def write(self, address: str, value: float | bool) -> None:
        part = self._by_address.get(address)
        if part is not None:
            part.write(address, float(value))
            return
        for part in self.parts:
            if part.write(address, float(value)):
                self._by_address[address] = part
                return

    def advance(self, position: int, start: datetime, step: timedelta) -> StepFlows:
        flows = StepFlows()
        load = self.recording.value(LOAD, position)
        drawn = sum(part.advance(position, start, step, flows) for part in self.parts)
        net = load + drawn
        self.grid_kw = net
        flows.values["site.load_kw"] = load
        flows.values["site.net_kw"] = net
        return flows

    def idle(self, position: int) -> dict[str, float]:
        """The meters over a recorded step with every flexible asset idle (the history before a backtest)."""
        values: dict[str, float] = {}
        drawn = 0.0
        for part in self.parts:
            shown, power = part.idle(position)
            values.update(shown)
            drawn += power
        if self.grid_point:
            values[self.grid_point] = in_unit(self.site, self.grid_point,
                                              self.recording.value(LOAD, position) + drawn)
        return values

    def recorded(self) -> dict[str, str]:
        return {name: series for part in self.parts for name, series in part.recorded().items()}

    def batteries(self) -> list[BatteryPart]:
        return [p for p in self.parts if isinstance(p, BatteryPart)]

    def chargers(self) -> list[ChargerPart]:
        return [p for p in self.parts if isinstance(p, ChargerPart)]

    def appliances(self) -> list[AppliancePart]:
        return [p for p in self.parts if isinstance(p, AppliancePart)]


def _chargers(site: m.Site, pool: m.EvChargerPool, recording: Recording, initial_soc_pct: float) -> list[Part]:
    return [ChargerPart(site, charger, [s for s in recording.sessions if s.charger_id == charger.id])
            for charger in pool.chargers]


# The parts of each replayable asset type; the others need a building model (their consumption stays in the
# recorded load as it was).
PARTS: dict[str, Callable[[m.Site, Any, Recording, float], list[Part]]] = {
    "battery": lambda *args: [BatteryPart(*args)],
    "pv": lambda *args: [PvPart(*args)],
    "ev_charger_pool": _chargers,
    "deferrable_appliance": lambda *args: [AppliancePart(*args)],
}
REPLAYED = tuple(PARTS)


def clamp_to_point(site: m.Site, address: str, value: float | bool) -> float | bool:
    """A command within the point's limits, as the arbiter writes it."""
    if isinstance(value, bool):
        return value
    point = site.point(address)
    low = -math.inf if point.min is None else point.min
    high = math.inf if point.max is None else point.max
    return min(max(float(value), low), high)

