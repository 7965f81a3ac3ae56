"""EV charging sessions drawn from ElaadNL-like statistics, and a charger that serves them.

Per charger and local day, a seeded draw decides whether a car comes, when it arrives, how long
it stays and how much energy it wants (medians: workplace 08:45 / 4.9 h / 8.8 kWh, home 18:15 /
11 h / 19.4 kWh). The charger delivers phases × voltage × current limit, nothing below the minimum
current, and never more than the car still needs.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import IntEnum
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from sim.physics import noise
from sim.physics.energy import EnergyCounter, split_at

ChargerKind = Literal["home", "workplace", "public"]


class PlugState(IntEnum):
    AVAILABLE = 0
    PLUGGED = 1
    CHARGING = 2
    FINISHED = 3
    FAULT = 4


@dataclass(frozen=True, slots=True)
class Session:
    arrival: datetime
    departure: datetime
    energy_kwh: float
    # What the car (ISO 15118 charging needs) or its driver (the site's charging app) declared at
    # plug-in, or None: the departure they announced and the energy the car asked for.
    declared_departure: datetime | None = None
    declared_energy_kwh: float | None = None


@dataclass(frozen=True, slots=True)
class _Statistics:
    weekday_probability: float
    weekend_probability: float
    arrival_mean_h: float
    arrival_sd_h: float
    duration_median_h: float
    energy_median_kwh: float


STATISTICS: dict[str, _Statistics] = {
    "workplace": _Statistics(0.8, 0.15, 8.75, 1.0, 4.9, 8.8),
    "home": _Statistics(0.65, 0.55, 18.25, 1.5, 11.0, 19.4),
    "public": _Statistics(0.7, 0.6, 13.0, 3.5, 2.5, 10.0),
}
# Spread (lognormal sigma) of stays and energies around the medians: wide and right-skewed, as charging
# statistics are (modelling choice, sim/PLANT.md; not fitted to any controller's assumptions).
DURATION_SIGMA = 0.55
ENERGY_SIGMA = 0.7
# Share of sessions whose car or driver declares its needs (an app on a workplace or residential
# site is used by most regulars; passing visitors at public points rarely bother).
DECLARED_SHARE: dict[str, float] = {"workplace": 0.6, "home": 0.6, "public": 0.3}
# Of those, the share who announce a departure but no energy.
ENERGY_UNDECLARED_SHARE = 0.3
# How the real departure relates to the announced one: most leave about on time, a good share leaves
# early, by an exponentially distributed margin (some by several hours), a few stay longer.
ON_TIME_SHARE, EARLY_SHARE = 0.6, 0.3
ON_TIME_SPREAD = timedelta(minutes=15)
EARLY_MEAN = timedelta(hours=1.5)
LATE_MEAN = timedelta(hours=1)
# Declared energy against what the car really takes: most ask for more (a target it won't reach,
# a round number), some for less.
DECLARED_ENERGY_MEDIAN_RATIO, DECLARED_ENERGY_SIGMA = 1.2, 0.4


class SessionSchedule:
    """The sessions of one charger, a pure function of (seed, charger id, local day)."""

    def __init__(self, seed: int, charger_id: str, kind: ChargerKind, tz: ZoneInfo) -> None:
        self.seed = seed
        self.charger_id = charger_id
        self.stats = STATISTICS[kind]
        self.kind = kind
        self.tz = tz
        self._day = lru_cache(maxsize=16)(self._draw_day)

    def _draw_day(self, day: date) -> tuple[Session, ...]:
        rng = noise.generator(self.seed, "ev", self.charger_id, day.isoformat())
        stats = self.stats
        probability = stats.weekday_probability if day.weekday() < 5 else stats.weekend_probability
        sessions: list[Session] = []
        if rng.random() >= probability:
            return ()
        midnight = datetime.combine(day, time(0), tzinfo=self.tz)
        arrival_h = min(max(rng.gauss(stats.arrival_mean_h, stats.arrival_sd_h), 0.0), 23.5)
        duration_h = min(max(stats.duration_median_h * math.exp(rng.gauss(0.0, DURATION_SIGMA)), 0.5), 20.0)
        energy_kwh = min(max(stats.energy_median_kwh * math.exp(rng.gauss(0.0, ENERGY_SIGMA)), 1.0), 80.0)
        arrival = midnight + timedelta(hours=arrival_h)
        sessions.append(Session(arrival, arrival + timedelta(hours=duration_h), energy_kwh))
        # Workplace spaces often see a second, shorter visit in the afternoon.
        if self.kind == "workplace" and rng.random() < 0.3:
            second_arrival = sessions[0].departure + timedelta(hours=rng.uniform(0.25, 1.5))
            second_hours = min(max(2.5 * math.exp(rng.gauss(0.0, 0.4)), 0.5), 6.0)
            if second_arrival.astimezone(self.tz).hour < 17:
                sessions.append(Session(second_arrival, second_arrival + timedelta(hours=second_hours),
                                        min(max(6.0 * math.exp(rng.gauss(0.0, 0.5)), 1.0), 40.0)))
        # A stream of its own, so declarations leave the sessions themselves as they were drawn.
        declaring = noise.generator(self.seed, "ev-declared", self.charger_id, day.isoformat())
        return tuple(self._declare(session, declaring) for session in sessions)

    def _declare(self, session: Session, rng: random.Random) -> Session:
        if rng.random() >= DECLARED_SHARE[self.kind]:
            return session
        draw = rng.random()
        if draw < ON_TIME_SHARE:
            announced = session.departure + ON_TIME_SPREAD * rng.uniform(-1.0, 1.0)
        elif draw < ON_TIME_SHARE + EARLY_SHARE:
            announced = session.departure + EARLY_MEAN * rng.expovariate(1.0)
        else:
            announced = session.departure - LATE_MEAN * rng.expovariate(1.0)
        announced = max(announced, session.arrival + timedelta(minutes=15))
        energy = None
        if rng.random() >= ENERGY_UNDECLARED_SHARE:
            energy = session.energy_kwh * DECLARED_ENERGY_MEDIAN_RATIO * math.exp(rng.gauss(0.0, DECLARED_ENERGY_SIGMA))
        return dataclasses.replace(session, declared_departure=announced, declared_energy_kwh=energy)

    def around(self, ts: datetime) -> list[Session]:
        """Sessions of the day before, the day of and the day after `ts` (long stays cross midnight)."""
        local_day = ts.astimezone(self.tz).date()
        days = (local_day - timedelta(days=1), local_day, local_day + timedelta(days=1))
        found: list[Session] = []
        for day in days:
            for session in self._day(day):
                # A car cannot arrive before the previous one left.
                if found and session.arrival < found[-1].departure:
                    continue
                found.append(session)
        return found

    def at(self, ts: datetime) -> Session | None:
        for session in self.around(ts):
            if session.arrival <= ts < session.departure:
                return session
        return None


class Charger:
    """One charging point: plug state, power, session energy and lifetime energy."""

    def __init__(self, schedule: SessionSchedule | None, *, phases: int = 3, voltage_v: float = 230.0,
                 min_current_a: float = 6.0, max_current_a: float = 32.0, lifetime_kwh: float = 0.0) -> None:
        self.schedule = schedule
        self.phases = phases
        self.voltage_v = voltage_v
        self.min_current_a = min_current_a
        self.max_current_a = max_current_a
        self.energy = EnergyCounter(lifetime_kwh)
        self.session: Session | None = None
        self.session_energy_kwh = 0.0
        self.power_kw = 0.0
        self.current_a = 0.0
        self.state = PlugState.AVAILABLE
        # Energy needs served so far, per session arrival: (requested, delivered).
        self.served: dict[datetime, tuple[float, float]] = {}

    def power_at_current_kw(self, current_a: float) -> float:
        if current_a < self.min_current_a:
            return 0.0
        return self.phases * self.voltage_v * min(current_a, self.max_current_a) / 1000.0

    def plug_in(self, session: Session) -> None:
        self.session = session
        self.session_energy_kwh = 0.0

    def current(self, ts: datetime) -> Session | None:
        """The session plugged in at `ts`, if any."""
        return self._session_at(ts)

    def _session_at(self, ts: datetime) -> Session | None:
        if self.schedule is not None:
            return self.schedule.at(ts)
        if self.session is not None and self.session.arrival <= ts < self.session.departure:
            return self.session
        return None

    def advance(self, start: datetime, end: datetime, current_limit_a: float) -> float:
        """Serve the car (if any) from `start` to `end` at the current limit; returns the mean power."""
        total_s = (end - start).total_seconds()
        if total_s <= 0:
            return self.power_kw
        energy_before = self.energy.energy_kwh
        instants: list[datetime | None] = []
        sessions = self.schedule.around(start) if self.schedule is not None else [self.session]
        for session in sessions:
            if session is not None:
                instants += [session.arrival, session.departure]
        last_power = 0.0
        for seg_start, seg_end in split_at(start, end, instants):
            last_power = self._advance_segment(seg_start, seg_end, current_limit_a)
        # The reported power is the mean over the step, so the counter equals power × time exactly.
        self.power_kw = (self.energy.energy_kwh - energy_before) * 3600.0 / total_s
        if last_power == 0.0:
            self.current_a = 0.0
        return self.power_kw

    def _advance_segment(self, start: datetime, end: datetime, current_limit_a: float) -> float:
        seconds = (end - start).total_seconds()
        session = self._session_at(start)
        if session is None:
            self.state = PlugState.AVAILABLE
            self.current_a = 0.0
            return 0.0
        if session != self.session:
            self.plug_in(session)
        remaining_kwh = max(session.energy_kwh - self.session_energy_kwh, 0.0)
        power = self.power_at_current_kw(current_limit_a)
        if remaining_kwh <= 1e-9:
            self.state = PlugState.FINISHED
            self.current_a = 0.0
            return 0.0
        if power <= 0.0:
            self.state = PlugState.PLUGGED
            self.current_a = 0.0
            return 0.0
        energy_kwh = min(power * seconds / 3600.0, remaining_kwh)
        mean_power = energy_kwh * 3600.0 / seconds
        self.session_energy_kwh += energy_kwh
        self.energy.add(mean_power, seconds)
        self.state = PlugState.CHARGING if energy_kwh < remaining_kwh else PlugState.FINISHED
        self.current_a = mean_power * 1000.0 / (self.phases * self.voltage_v)
        self.served[session.arrival] = (session.energy_kwh, self.session_energy_kwh)
        return mean_power
