"""EV sessions: what a charger's plug state means, the sessions a pool saw, and what to plan for a car.

Plug states are read through the labels of the point's `states` in its device map (`plugged`,
`charging`, `finished`, OCPP's `SuspendedEV`, IEC 61851's `B`/`C`, ...), never through raw codes.

A car's needs come first from what it or its driver declared (ISO 15118 charging needs, a charging
app). Without a declaration they are learnt from the sessions the site's own chargers saw: the stay
and the energy of sessions that arrived on the same weekday around the same hour (widening to the
same kind of day, then to any session while there are too few), given how long the car has already
stayed and what it already took. Until the pool has seen enough sessions, a workplace prior serves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from gridctl.config import models as m
from gridctl.forecast.forecasts import EvSessionForecast


class Plug(StrEnum):
    EMPTY = "empty"
    # A car is there and may take energy (plugged and held at 0 A, or charging).
    WANTING = "wanting"
    # A car is there and takes no more (full, or its own schedule stopped it).
    FULL = "full"
    # The charger is out of service.
    FAULT = "fault"


# Labels of plug-state points, normalised (lower case, '_' for spaces and hyphens): the simulator's and
# common devices', OCPP 1.6/2.0.1 connector statuses and IEC 61851-1 control-pilot states.
PLUG_LABELS: Mapping[str, Plug] = {
    **dict.fromkeys(("available", "empty", "free", "idle", "unplugged", "disconnected", "no_vehicle",
                     "not_connected", "reserved", "a"), Plug.EMPTY),
    **dict.fromkeys(("plugged", "connected", "occupied", "preparing", "waiting", "charging", "suspended_evse",
                     "suspendedevse", "ev_connected", "vehicle_connected", "b", "c", "d"), Plug.WANTING),
    **dict.fromkeys(("finished", "full", "finishing", "complete", "completed", "charged", "suspended_ev",
                     "suspendedev"), Plug.FULL),
    **dict.fromkeys(("fault", "faulted", "error", "unavailable", "out_of_order", "e", "f"), Plug.FAULT),
}


def plug_label(label: str) -> Plug | None:
    return PLUG_LABELS.get(label.strip().lower().replace(" ", "_").replace("-", "_"))


class PlugStates:
    """A plug-state point's raw values → what they mean, from its `states` labels."""

    def __init__(self, states: Mapping[int, str] | None) -> None:
        self.meaning = {code: plug_label(label) for code, label in (states or {}).items()}

    def of(self, value: float | None) -> Plug | None:
        """None for no value, or a value its labels don't say or that isn't one of them."""
        if value is None or value != value:
            return None
        return self.meaning.get(round(value))

    @staticmethod
    def unknown_labels(states: Mapping[int, str] | None) -> list[str]:
        return [label for label in (states or {}).values() if plug_label(label) is None]


# Drivers who declare a departure often leave a little before it.
DECLARED_DEPARTURE_MARGIN = timedelta(hours=1)
MIN_PLANNED_STAY = timedelta(minutes=30)
MIN_DECLARED_STAY = timedelta(minutes=15)
# What a car still drawing past its expected need may take in the next stretch of its stay.
STILL_CHARGING_KWH = 5.0
# Without sessions of its own to learn from, the pool plans for an early departure and a large need
# (ElaadNL workplace statistics, reference.md: median plug-in 4.9 h and 8.8 kWh; 1.5 h is inside the
# shortest stays, 19 kWh about the ninth decile), so a car is served first.
PRIOR_STAY = timedelta(hours=1.5)
PRIOR_ENERGY_KWH = 19.0
# Sessions learnt from are kept this long; a neighbourhood needs this many to speak, and a conditional
# quantile (given the stay so far) this many still there.
SESSION_DAYS = 56
MIN_SESSIONS = 8
MIN_STILL_THERE = 3
# Planned for: a stay most cars exceed (its low quantile), an energy most cars don't (its high one).
STAY_QUANTILE = 0.1
ENERGY_QUANTILE = 0.85
# A session whose plug state was unknown for longer than this is not learnt from.
LONGEST_GAP = timedelta(hours=2)


@dataclass(frozen=True)
class Session:
    charger_id: str
    arrival: datetime
    departure: datetime
    energy_kwh: float

    @property
    def stay(self) -> timedelta:
        return self.departure - self.arrival


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics of sorted `values`."""
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


class SessionHistory:
    """The sessions a pool's chargers saw, and what they say of a car that arrived at a given moment."""

    def __init__(self, tz: tzinfo, days: int = SESSION_DAYS) -> None:
        self.tz = tz
        self.keep = timedelta(days=days)
        self._sessions: deque[Session] = deque()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session: Session) -> None:
        if any(s.charger_id == session.charger_id and s.arrival == session.arrival for s in self._sessions):
            return
        self._sessions.append(session)
        while self._sessions and session.departure - self._sessions[0].departure > self.keep:
            self._sessions.popleft()

    def neighbours(self, arrival: datetime) -> list[Session]:
        """Sessions like one arriving at `arrival`: same weekday within an hour, else the same kind of
        day (working day or weekend) within two, else the same kind of day, else all."""
        local = arrival.astimezone(self.tz)
        hour = local.hour + local.minute / 60.0

        def kind(day: int) -> bool:
            return day >= 5

        def near(s: Session, hours: float) -> bool:
            other = s.arrival.astimezone(self.tz)
            gap = abs(other.hour + other.minute / 60.0 - hour)
            return min(gap, 24.0 - gap) <= hours

        def weekday(s: Session) -> int:
            return s.arrival.astimezone(self.tz).weekday()

        choices = (
            [s for s in self._sessions if weekday(s) == local.weekday() and near(s, 1.0)],
            [s for s in self._sessions if kind(weekday(s)) == kind(local.weekday()) and near(s, 2.0)],
            [s for s in self._sessions if kind(weekday(s)) == kind(local.weekday())],
            list(self._sessions),
        )
        return next((c for c in choices if len(c) >= MIN_SESSIONS), [])

    def expected(self, arrival: datetime, stayed: timedelta,
                 delivered_kwh: float) -> tuple[timedelta | None, float | None]:
        """(stay, energy) to plan for a car that arrived at `arrival`, has stayed `stayed` and taken
        `delivered_kwh`: low quantile of the stays of similar sessions that lasted longer, high quantile
        of the energies of those that took more. None where no learnt answer holds (too few sessions
        learnt, or the car already beyond most of them)."""
        similar = self.neighbours(arrival)
        if not similar:
            return None, None
        stays = sorted(s.stay.total_seconds() for s in similar if s.stay > stayed)
        energies = sorted(s.energy_kwh for s in similar if s.energy_kwh > delivered_kwh)
        stay = timedelta(seconds=_quantile(stays, STAY_QUANTILE)) if len(stays) >= MIN_STILL_THERE else None
        energy = _quantile(energies, ENERGY_QUANTILE) if len(energies) >= MIN_STILL_THERE else None
        return stay, energy


class SessionTracker:
    """One charger's sessions from its quarter-hour samples (plug state, power, session energy)."""

    def __init__(self, charger_id: str) -> None:
        self.charger_id = charger_id
        self.arrival: datetime | None = None
        self.energy_kwh = 0.0
        self.counter_kwh: float | None = None
        self.last_seen: datetime | None = None

    def add(self, moment: datetime, step: timedelta, plug: Plug | None, power_kw: float | None,
            session_kwh: float | None) -> Session | None:
        """Follow one sample; the session that ended with it, if one did and it can be learnt from."""
        if plug is None or plug == Plug.FAULT:
            # Unknown: a session going on stays open, unless the gap grows too long to tell its end.
            if self.arrival is not None and self.last_seen is not None and moment - self.last_seen > LONGEST_GAP:
                self.arrival = None
            return None
        ended = None
        if plug == Plug.EMPTY:
            if self.arrival is not None and self.last_seen is not None and moment - self.last_seen <= LONGEST_GAP:
                # It left between the last sample that saw it and this one.
                departure = self.last_seen + (moment - self.last_seen) / 2
                energy = self.counter_kwh if self.counter_kwh is not None else self.energy_kwh
                ended = Session(self.charger_id, self.arrival, departure, max(energy, 0.0))
            self.arrival = None
        else:
            if self.arrival is None:
                # It arrived since the previous sample: within this quarter, on average in its middle.
                self.arrival = moment - step / 2
                self.energy_kwh, self.counter_kwh = 0.0, None
            self.energy_kwh += max(power_kw or 0.0, 0.0) * step.total_seconds() / 3600.0
            if session_kwh is not None:
                self.counter_kwh = max(session_kwh, self.counter_kwh or 0.0)
        self.last_seen = moment
        return ended


def ev_session(charger: m.EvCharger, plugged_since: datetime, now: datetime, delivered_kwh: float,
               time_to_departure_s: float | None, energy_request_kwh: float | None,
               history: SessionHistory | None = None) -> EvSessionForecast:
    """What to plan for a car still wanting energy. A declared departure (0 when none) is planned a
    margin early, since drivers leave early; a declared energy is the car's own need. Without them,
    what the pool's past sessions say (`history`), else an early departure and a large need."""
    stay, energy = (None, None) if history is None else history.expected(plugged_since, now - plugged_since,
                                                                          delivered_kwh)
    if time_to_departure_s is not None and time_to_departure_s > 0:
        # Inside the margin the car may leave any minute: what it still needs is wanted now.
        departure = max(now + timedelta(seconds=time_to_departure_s) - DECLARED_DEPARTURE_MARGIN,
                        now + MIN_DECLARED_STAY)
    elif stay is not None:
        departure = max(plugged_since + stay, now + MIN_PLANNED_STAY)
    else:
        departure = max(plugged_since + PRIOR_STAY, now + MIN_PLANNED_STAY)
    if energy_request_kwh is not None and energy_request_kwh > 0:
        needed = energy_request_kwh - delivered_kwh
    elif energy is not None:
        needed = energy - delivered_kwh
    else:
        needed = PRIOR_ENERGY_KWH - delivered_kwh
    # A car still drawing after the expected need, or past the expected stay, may leave any minute
    # wanting more: it gets what the charger can give until then.
    still = charger.max_power_kw * (departure - now).total_seconds() / 3600.0 if needed <= 0 or \
        departure <= now + MIN_PLANNED_STAY else STILL_CHARGING_KWH
    return EvSessionForecast(charger.id, now, departure, max(needed, still))

