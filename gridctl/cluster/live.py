"""A site's live state as its owner publishes it for the other instances: one compact row per site.

The row holds the latest reading of every point, every device's health, the alarms (active, and the
recently cleared) and the hands-off scopes, as zlib-compressed JSON, rewritten every few seconds: its
cost grows with the number of points, never with the number of polls. The schedule goes in the same row
only when a new one is made.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from drivers.base import DeviceHealth, HealthState, Quality, Reading
from gridctl.alarms import Alarm, AlarmBook, AlarmKind, Severity
from gridctl.runtime import PlannedSchedule
from optimizer import Schedule
from optimizer.schedule import ObjectiveTerm, Violation

FORMAT = 1
# Cleared alarms published with the active ones.
RECENT_CLEARED = 50
_QUALITY = {Quality.GOOD: "g", Quality.STALE: "s", Quality.BAD: "b"}
_QUALITY_BACK = {v: k for k, v in _QUALITY.items()}


@dataclass
class LiveView:
    """What another instance published about a site."""

    readings: dict[str, Reading] = field(default_factory=dict)
    health: dict[str, DeviceHealth] = field(default_factory=dict)
    active: list[Alarm] = field(default_factory=list)
    cleared: list[Alarm] = field(default_factory=list)
    hands_off: set[str] = field(default_factory=set)

    def alarms(self) -> AlarmBook:
        return AlarmBook.of(self.active, self.cleared)


def encode(latest: Mapping[str, Reading], health: Mapping[str, DeviceHealth], active: list[Alarm],
           cleared: list[Alarm], hands_off: set[str]) -> bytes:
    body = {
        "format": FORMAT,
        # address, value, quality, seconds since the epoch, error
        "readings": [[a, _number(r.value), _QUALITY[r.quality], round(r.ts.timestamp(), 3), r.error]
                     for a, r in latest.items()],
        "health": [[h.device_id, str(h.state), _stamp(h.last_success), h.last_error, _stamp(h.last_error_at),
                    h.consecutive_failures] for h in health.values()],
        "active": [_alarm(a) for a in active],
        "cleared": [_alarm(a) for a in cleared[-RECENT_CLEARED:]],
        "hands_off": sorted(hands_off),
    }
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)


def decode(payload: bytes) -> LiveView:
    body = json.loads(zlib.decompress(payload))
    if body.get("format") != FORMAT:
        raise ValueError(f"live snapshot format {body.get('format')!r} is not {FORMAT}")
    view = LiveView()
    for address, value, quality, ts, error in body["readings"]:
        view.readings[address] = Reading(address, _time(ts), value, _QUALITY_BACK[quality], error)  # type: ignore[arg-type]
    for device_id, state, success, error, error_at, failures in body["health"]:
        view.health[device_id] = DeviceHealth(device_id, HealthState(state), _maybe_time(success), error,
                                              _maybe_time(error_at), int(failures))
    view.active = [_unalarm(a) for a in body["active"]]
    view.cleared = [_unalarm(a) for a in body["cleared"]]
    view.hands_off = set(body["hands_off"])
    return view


def encode_schedule(planned: PlannedSchedule) -> bytes:
    schedule = planned.schedule
    frame = schedule.setpoints
    body = {
        "format": FORMAT, "schedule_id": planned.schedule_id, "site_id": planned.site_id,
        "created_at": planned.created_at.timestamp(), "valid_until": planned.valid_until.timestamp(),
        "policy_version": planned.policy_version,
        "index": [pd.Timestamp(ts).timestamp() for ts in frame.index],
        "columns": {str(c): [_number(v) for v in frame[c].tolist()] for c in frame.columns},
        "objective": {k: [t.name, t.value, t.unit, t.eur] for k, t in schedule.objective.items()},
        "violations": [[v.asset_id, v.kind, v.start.timestamp(), v.end.timestamp(), v.amount, v.unit, v.hard]
                       for v in schedule.violations],
        "status": schedule.status, "solver": schedule.solver, "mip_gap": schedule.mip_gap,
        "build_s": schedule.build_s, "solve_s": schedule.solve_s, "notes": schedule.notes,
    }
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)


def decode_schedule(payload: bytes) -> PlannedSchedule:
    body = json.loads(zlib.decompress(payload))
    index = pd.DatetimeIndex([_time(t) for t in body["index"]])
    frame = pd.DataFrame({c: [math.nan if v is None else v for v in values] for c, values in body["columns"].items()},
                         index=index)
    schedule = Schedule(
        setpoints=frame,
        objective={k: ObjectiveTerm(*term) for k, term in body["objective"].items()},
        violations=[Violation(a, k, _time(s), _time(e), amount, unit, hard)
                    for a, k, s, e, amount, unit, hard in body["violations"]],
        status=body["status"], solver=body["solver"], mip_gap=body["mip_gap"], build_s=body["build_s"],
        solve_s=body["solve_s"], notes=body["notes"])
    return PlannedSchedule(body["schedule_id"], body["site_id"], _time(body["created_at"]), _time(body["valid_until"]),
                           body["policy_version"], schedule)


def _alarm(a: Alarm) -> list[Any]:
    return [str(a.kind), a.subject, a.message, str(a.severity), _stamp(a.raised_at), _stamp(a.cleared_at),
            a.acknowledged_by, _stamp(a.acknowledged_at)]


def _unalarm(raw: list[Any]) -> Alarm:
    kind, subject, message, severity, raised, cleared, by, at = raw
    return Alarm(AlarmKind(kind), subject, message, Severity(severity), _time(raised), _maybe_time(cleared), by,
                 _maybe_time(at))


def _number(value: Any) -> Any:
    """JSON has no NaN or infinity: they travel as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _stamp(moment: datetime | None) -> float | None:
    return None if moment is None else round(moment.timestamp(), 3)


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _maybe_time(seconds: float | None) -> datetime | None:
    return None if seconds is None else _time(seconds)
