"""Read a site's exported history from CSV files, described by their headers or by a YAML beside them.

Every problem is reported with its place, `file:line: column: message`, and all of them at once (up to
a limit): a gap, a duplicated or out-of-order timestamp, a local time that DST makes ambiguous or
skips, a cell that is not a number, a unit or a series that is not known, an asset the site lacks.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from gridctl.backtest.columns import REMOVED, Column, ColumnError, parse_column
from gridctl.backtest.recording import CARBON, EXPORT_PRICE, LOAD, PRICE, EvSession, Recording, pv_series
from gridctl.config import models as m
from gridctl.config.yamlsource import YamlSyntaxError, format_path, load_yaml

DESCRIPTION = "backtest.yaml"
TIMESTAMP_NAMES = ("timestamp", "time", "datetime", "date", "ts")
MIN_STEP = timedelta(minutes=5)
MAX_STEP = timedelta(hours=1)
MAX_PROBLEMS = 40
SESSION_COLUMNS = ("charger", "arrival", "departure")


class DataError(Exception):
    """The data cannot be replayed; `problems` are located messages, `file:line: column: message`."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more problems")
        super().__init__("\n".join(shown))
        self.problems = shown


@dataclass
class _Problems:
    items: list[str] = field(default_factory=list)

    def add(self, file: Path | str, line: int | None, column: str | None, message: str) -> None:
        place = str(file) if line is None else f"{file}:{line}"
        self.items.append(f"{place}: {column}: {message}" if column else f"{place}: {message}")

    def raise_any(self) -> None:
        if self.items:
            raise DataError(self.items)


@dataclass
class _FileSpec:
    path: Path
    # Header in the file -> what it holds; None: every column but the timestamp, read from its header.
    columns: dict[str, str] | None = None
    timestamp: str | None = None
    line: int | None = None


@dataclass
class _Description:
    source: Path | None
    timezone: ZoneInfo
    start: datetime | None
    step: timedelta | None
    files: list[_FileSpec]
    sessions: Path | None


@dataclass
class _Series:
    """One column of one file, in the backtest's units, with where it came from."""

    column: Column
    values: pd.Series
    file: Path
    header: str
    lines: np.ndarray  # file line of each value


def load_data(path: Path, site: m.Site, sessions: Path | None = None) -> Recording:
    """Read a data folder (with `backtest.yaml`, or CSV files described by their headers) or one CSV file
    (with `<name>.yaml` beside it when there is one)."""
    problems = _Problems()
    description = _describe(path, site, problems)
    problems.raise_any()
    step_seen: dict[Path, timedelta] = {}
    series: list[_Series] = []
    for spec in description.files:
        series.extend(_read_file(spec, description, problems, step_seen))
    problems.raise_any()
    steps = set(step_seen.values())
    if len(steps) > 1:
        for file, step in step_seen.items():
            problems.add(file, None, None, f"rows every {_minutes(step)} while other files differ "
                                           f"({', '.join(sorted(_minutes(s) for s in steps))}): give them one step")
        problems.raise_any()
    if not series:
        problems.add(path, None, None, "no series to replay")
        problems.raise_any()
    step = steps.pop()
    frame, currency = _assemble(series, site, step, problems)
    problems.raise_any()
    log = sessions or description.sessions
    ev_sessions = read_sessions(log, site, description.timezone) if log else []
    sources = [f"{s.path} ({step_seen.get(s.path)})" for s in description.files]
    return Recording(frame, step, ev_sessions, currency, sources)


# --------------------------------------------------------------------------- description


def _describe(path: Path, site: m.Site, problems: _Problems) -> _Description:
    site_tz = site.tz
    if path.is_dir():
        yaml_file = path / DESCRIPTION
        if yaml_file.exists():
            return _read_description(yaml_file, site_tz, problems)
        files = sorted(p for p in path.glob("*.csv"))
        logs = [p for p in files if _is_session_log(p)]
        data = [p for p in files if p not in logs]
        if not data:
            problems.add(path, None, None, f"no CSV file and no {DESCRIPTION} here")
        return _Description(None, site_tz, None, None, [_FileSpec(p) for p in data], logs[0] if logs else None)
    if not path.exists():
        problems.add(path, None, None, "no such file or folder")
        return _Description(None, site_tz, None, None, [], None)
    if path.suffix in (".yaml", ".yml"):
        return _read_description(path, site_tz, problems)
    beside = path.with_suffix(".yaml")
    if beside.exists():
        return _read_description(beside, site_tz, problems, only=path)
    return _Description(None, site_tz, None, None, [_FileSpec(path)], None)


def _read_description(file: Path, site_tz: ZoneInfo, problems: _Problems, only: Path | None = None) -> _Description:
    try:
        document = load_yaml(file)
    except YamlSyntaxError as error:
        problems.add(file, error.line, None, error.message)
        return _Description(file, site_tz, None, None, [], None)
    data = document.data if isinstance(document.data, dict) else {}

    def report(where: tuple[Any, ...], message: str) -> None:
        problems.add(file, document.line_of(where), format_path(where), message)

    if not isinstance(document.data, dict):
        report((), "must be a mapping with files (and timezone, start, step when the files have no timestamps)")
    for key in data:
        if key not in ("timezone", "start", "step", "files", "sessions"):
            report((key,), "unknown field; known: timezone, start, step, files, sessions")
    tz = site_tz
    if "timezone" in data:
        try:
            tz = ZoneInfo(str(data["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            report(("timezone",), f"unknown time zone {data['timezone']!r} (e.g. Europe/Paris)")
    step = None
    if "step" in data:
        step = _parse_step(data["step"])
        if step is None:
            report(("step",), f"{data['step']!r} is not a step: write minutes (60) or a duration (15min, 1h)")
        elif not MIN_STEP <= step <= MAX_STEP:
            report(("step",), f"{_minutes(step)}: the step must be from 5 min to 1 h")
            step = None
    start = None
    if "start" in data:
        text = str(data["start"]).strip()
        try:
            start = _instant(text, tz)
        except ValueError as error:
            report(("start",), str(error))
    files: list[_FileSpec] = []
    entries = data.get("files", [])
    if not isinstance(entries, list) or not entries:
        report(("files",), "list the data files: - {path: data.csv, columns: {header: 'load [kW]'}}")
        entries = []
    for position, entry in enumerate(entries):
        where = ("files", position)
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or "path" not in entry:
            report(where, "needs a path (and columns, when the headers do not say what they hold)")
            continue
        for key in entry:
            if key not in ("path", "columns", "timestamp"):
                report((*where, key), "unknown field; known: path, columns, timestamp")
        columns = entry.get("columns")
        if columns is not None and not (isinstance(columns, dict) and all(
                isinstance(v, str) for v in columns.values())):
            report((*where, "columns"), "map each header of the file to what it holds, e.g. kwh: 'load [kWh]'")
            columns = None
        target = (file.parent / str(entry["path"])).resolve()
        if only is not None and target != only.resolve():
            continue
        if not target.exists():
            report((*where, "path"), f"no file {target}")
            continue
        files.append(_FileSpec(target, {str(k): v for k, v in columns.items()} if columns else None,
                               entry.get("timestamp"), document.line_of(where)))
    sessions = None
    if "sessions" in data:
        sessions = (file.parent / str(data["sessions"])).resolve()
        if not sessions.exists():
            report(("sessions",), f"no file {sessions}")
            sessions = None
    return _Description(file, tz, start, step, files, sessions)


def _parse_step(value: Any) -> timedelta | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(minutes=float(value))
    text = str(value).strip().lower().replace(" ", "")
    for suffix, unit in (("min", "minutes"), ("m", "minutes"), ("h", "hours")):
        if text.endswith(suffix):
            try:
                return timedelta(**{unit: float(text[: -len(suffix)])})
            except ValueError:
                return None
    return None


def _minutes(step: timedelta) -> str:
    return f"{step.total_seconds() / 60:g} min"


# --------------------------------------------------------------------------- timestamps


def _instant(text: str, tz: ZoneInfo) -> datetime:
    """A timestamp as a UTC instant: with an offset as written, without one in `tz`, refusing local times
    that DST makes ambiguous (clocks going back) or that do not exist (clocks going forward)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp (e.g. 2024-03-01T13:00 or 2024-03-01 13:00+01:00)"
                         ) from None
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    early, late = moment.replace(tzinfo=tz, fold=0), moment.replace(tzinfo=tz, fold=1)
    if early.utcoffset() != late.utcoffset():
        back = early.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if back != moment:
            raise ValueError(f"local time {text} does not exist in {tz.key} (clocks go forward): "
                             "write UTC timestamps or timestamps with their offset")
        raise ValueError(f"local time {text} is ambiguous in {tz.key} (clocks go back, it happens twice): "
                         "write UTC timestamps or timestamps with their offset")
    return early.astimezone(UTC)


def _is_session_log(file: Path) -> bool:
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    names = [h.strip().lower() for h in header]
    return all(n in names for n in SESSION_COLUMNS)


# --------------------------------------------------------------------------- one file


def _read_file(spec: _FileSpec, description: _Description, problems: _Problems,
               step_seen: dict[Path, timedelta]) -> list[_Series]:
    file = spec.path
    try:
        handle = file.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        problems.add(file, None, None, f"cannot read: {error.strerror}")
        return []
    try:
        with handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                problems.add(file, 1, None, "empty file: a header line, then one line per step")
                return []
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        problems.add(file, None, None, "not UTF-8 text: save the export as UTF-8 CSV")
        return []
    except csv.Error as error:
        problems.add(file, None, None, f"not CSV: {error}")
        return []
    header = [h.strip() for h in header]
    timestamp = _timestamp_column(spec, header, description, file, problems)
    wanted: list[tuple[int, str, Column]] = []
    for position, name in enumerate(header):
        if position == timestamp:
            continue
        text = name
        if spec.columns is not None:
            if name not in spec.columns:
                continue
            text = spec.columns[name]
        try:
            wanted.append((position, name, parse_column(text)))
        except ColumnError as error:
            problems.add(description.source or file, spec.line if spec.columns is not None else 1, name, str(error))
    if spec.columns is not None:
        for name in spec.columns:
            if name not in header:
                problems.add(description.source or file, spec.line, name,
                             f"no such column in {file.name} (it has: {', '.join(header)})")
    if not rows:
        problems.add(file, 2, None, "no data rows")
        return []
    moments = _moments(file, rows, timestamp, description, problems)
    if moments is None:
        return []
    step = moments[1] - moments[0] if len(moments) > 1 else (description.step or MAX_STEP)
    step_seen[file] = step
    if not MIN_STEP <= step <= MAX_STEP:
        problems.add(file, rows[1][0] if len(rows) > 1 else rows[0][0], header[timestamp] if timestamp is not None
                     else None, f"one row every {_minutes(step)}: the step must be from 5 min to 1 h")
        return []
    index = pd.DatetimeIndex(moments).as_unit("ns")
    lines = np.asarray([line for line, _ in rows])
    out = []
    for position, name, column in wanted:
        values = np.empty(len(rows))
        for i, (line, row) in enumerate(rows):
            cell = row[position].strip() if position < len(row) else ""
            value = _number(cell)
            if value is None:
                problems.add(file, line, name, "no value" if not cell or cell.lower() == "nan"
                             else f"{cell!r} is not a number")
                value = math.nan
            values[i] = value
        out.append(_Series(column, pd.Series(values, index=index), file, name, lines))
    return out


def _timestamp_column(spec: _FileSpec, header: list[str], description: _Description, file: Path,
                      problems: _Problems) -> int | None:
    if spec.timestamp is not None:
        if spec.timestamp not in header:
            problems.add(description.source or file, spec.line, "timestamp",
                         f"no column {spec.timestamp!r} in {file.name}")
            return None
        return header.index(spec.timestamp)
    for position, name in enumerate(header):
        if name.lower() in TIMESTAMP_NAMES:
            return position
    if description.start is None or description.step is None:
        problems.add(file, 1, None, "no timestamp column (timestamp, time, datetime): add one, or give start, "
                                    f"step and timezone in {DESCRIPTION} beside the data")
    return None


def _moments(file: Path, rows: list[tuple[int, list[str]]], timestamp: int | None, description: _Description,
             problems: _Problems) -> list[datetime] | None:
    if timestamp is None:
        if description.start is None or description.step is None:
            return None
        return [description.start + description.step * i for i in range(len(rows))]
    moments: list[datetime] = []
    seen: dict[datetime, int] = {}
    failed = False
    header_name = "timestamp"
    for line, row in rows:
        cell = row[timestamp].strip() if timestamp < len(row) else ""
        try:
            moment = _instant(cell, description.timezone)
        except ValueError as error:
            problems.add(file, line, header_name, str(error) if cell else "no timestamp")
            failed = True
            continue
        if moment in seen:
            problems.add(file, line, header_name, f"duplicated timestamp {cell} (also at line {seen[moment]})")
            failed = True
            continue
        seen[moment] = line
        moments.append(moment)
    if failed:
        return None
    step = description.step or (moments[1] - moments[0] if len(moments) > 1 else MAX_STEP)
    for (line, row), before, moment in zip(rows[1:], moments, moments[1:], strict=False):
        if moment == before + step:
            continue
        cell = row[timestamp].strip()
        if moment < before:
            problems.add(file, line, header_name, f"{cell} comes before the line above it: sort the rows by time")
        else:
            missing = round((moment - before) / step) - 1
            problems.add(file, line, header_name,
                         f"gap: {cell} follows {before.isoformat()} UTC; rows must come every {_minutes(step)}"
                         + (f" ({missing} missing)" if missing > 0 and (moment - before) % step == timedelta(0)
                            else ""))
        failed = True
    return None if failed else moments


def _number(cell: str) -> float | None:
    if not cell:
        return None
    try:
        value = float(cell.replace(",", ".") if cell.count(",") == 1 and "." not in cell else cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- the site's series


def _assemble(series: list[_Series], site: m.Site, step: timedelta, problems: _Problems) -> tuple[pd.DataFrame, str]:
    """The recording's frame: the load without what the backtest simulates, each PV array's output, prices,
    carbon; over the steps every series covers."""
    hours = step.total_seconds() / 3600.0
    buildings = {b.id for b in site.buildings}
    by_type: dict[str, dict[str, Any]] = {}
    for asset in site.assets:
        by_type.setdefault(asset.type, {})[asset.id] = asset
    chargers = {c.id for pool in by_type.get("ev_charger_pool", {}).values() for c in pool.chargers}
    pv_assets = by_type.get("pv", {})
    first = max(s.values.index[0] for s in series)
    last = min(s.values.index[-1] for s in series)
    if first > last:
        spans = "; ".join(f"{s.file.name} {s.header}: {s.values.index[0]:%Y-%m-%d %H:%M} to "
                          f"{s.values.index[-1]:%Y-%m-%d %H:%M} UTC" for s in series)
        problems.add(series[0].file, None, None, f"the files cover no common period ({spans})")
        return pd.DataFrame(), "EUR"
    index = pd.date_range(first, last, freq=step, tz="UTC").as_unit("ns")

    def kw(item: _Series, peak_kwp: float = 1.0) -> np.ndarray:
        values = item.values.reindex(index).to_numpy(dtype=float) * item.column.unit.factor
        if item.column.unit.kind in ("energy", "per_kwp_energy"):
            values = values / hours
        if item.column.unit.kind.startswith("per_kwp"):
            values = values * peak_kwp
        return values

    def place(item: _Series) -> tuple[Path, int]:
        return item.file, 1

    columns: dict[str, np.ndarray] = {}
    loads = [s for s in series if s.column.role == "load"]
    grids = [s for s in series if s.column.role == "grid"]
    removed = [s for s in series if s.column.role in REMOVED]
    currency = "EUR"
    if loads and grids:
        for item in grids:
            problems.add(*place(item), item.header, "give the load or the grid exchange, not both")
    if not loads and not grids:
        problems.add(series[0].file, None, None, "no load series: a column 'load [kW]' (or 'grid [kW]', the net "
                                                  "import) is needed")
    for item in loads:
        if item.column.target is not None and item.column.target not in buildings:
            problems.add(*place(item), item.header, f"no building {item.column.target!r} in site {site.id} "
                                                    f"(buildings: {', '.join(sorted(buildings)) or 'none'})")
    for item in removed:
        role, target = item.column.role, item.column.target
        known = {"battery": set(by_type.get("battery", {})), "ev": chargers | set(by_type.get("ev_charger_pool", {})),
                 "appliance": set(by_type.get("deferrable_appliance", {}))}[role]
        if target not in known:
            problems.add(*place(item), item.header, f"no {role} {target!r} in site {site.id} "
                                                    f"(known: {', '.join(sorted(known)) or 'none'})")
    pv_by_asset: dict[str, np.ndarray] = {}
    for item in (s for s in series if s.column.role == "pv"):
        target = item.column.target
        if target is None and len(pv_assets) == 1:
            target = next(iter(pv_assets))
        if target not in pv_assets:
            problems.add(*place(item), item.header,
                         "name the PV array: 'pv:<asset id>'" if target is None else
                         f"no PV array {target!r} in site {site.id} (known: {', '.join(sorted(pv_assets)) or 'none'})")
            continue
        if target in pv_by_asset:
            problems.add(*place(item), item.header, f"a second series for PV array {target!r}")
            continue
        pv_by_asset[target] = np.maximum(kw(item, pv_assets[target].peak_power_kwp), 0.0)
    for asset_id in pv_assets:
        if asset_id not in pv_by_asset:
            problems.add(series[0].file, None, None, f"no series for PV array {asset_id!r}: add a column "
                                                      f"'pv:{asset_id} [kW]' (or per kWp: 'pv:{asset_id} [W/kWp]')")
    for role, name in (("price", PRICE), ("export_price", EXPORT_PRICE), ("carbon", CARBON)):
        found = [s for s in series if s.column.role == role]
        for extra in found[1:]:
            problems.add(*place(extra), extra.header, f"a second {role} series")
        if found:
            columns[name] = kw(found[0])
            if found[0].column.unit.currency:
                currency = found[0].column.unit.currency
    if problems.items:
        return pd.DataFrame(), currency
    load = sum((kw(s) for s in loads), np.zeros(len(index))) if loads else \
        sum((kw(s) for s in grids), np.zeros(len(index))) + sum(pv_by_asset.values(), np.zeros(len(index)))
    for item in removed:
        load = load - kw(item)
    columns[LOAD] = load
    for asset_id, values in pv_by_asset.items():
        columns[pv_series(asset_id)] = values
    frame = pd.DataFrame(columns, index=index)
    return frame, currency


# --------------------------------------------------------------------------- EV sessions


def read_sessions(file: Path, site: m.Site, tz: ZoneInfo) -> list[EvSession]:
    """The session log: one line per car, `charger,arrival,departure,energy [kWh]`."""
    problems = _Problems()
    chargers = {c.id for a in site.assets for c in getattr(a, "chargers", [])}
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError([f"{file}: cannot read the session log: {error}"]) from None
    lowered = [h.lower() for h in header]
    energy_at, factor = None, 1.0
    for position, name in enumerate(lowered):
        if name.startswith("energy"):
            unit = name[len("energy"):].strip(" _[]()") or "kwh"
            factor = {"kwh": 1.0, "wh": 0.001, "mwh": 1000.0}.get(unit, math.nan)
            if math.isnan(factor):
                problems.add(file, 1, header[position], f"unknown unit {unit!r}: kWh, Wh or MWh")
            energy_at = position
    for name in SESSION_COLUMNS:
        if name not in lowered:
            problems.add(file, 1, None, f"no column {name!r}: the log needs charger, arrival, departure, energy [kWh]")
    if energy_at is None:
        problems.add(file, 1, None, "no column 'energy [kWh]'")
    problems.raise_any()
    assert energy_at is not None
    at = {name: lowered.index(name) for name in SESSION_COLUMNS}
    sessions: list[EvSession] = []
    for line, row in rows:
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in at.items()}
        charger = cells["charger"]
        if charger not in chargers:
            problems.add(file, line, "charger", f"no charger {charger!r} in site {site.id} "
                                               f"(chargers: {', '.join(sorted(chargers)) or 'none'})")
        moments: dict[str, datetime] = {}
        for name in ("arrival", "departure"):
            try:
                moments[name] = _instant(cells[name], tz)
            except ValueError as error:
                problems.add(file, line, name, str(error))
        energy = _number(row[energy_at].strip() if energy_at < len(row) else "")
        if energy is None or energy < 0:
            problems.add(file, line, header[energy_at], "needs the energy the car took or asked for, ≥ 0")
        if len(moments) == 2 and moments["departure"] <= moments["arrival"]:
            problems.add(file, line, "departure", "departure is not after arrival")
        if len(moments) == 2 and energy is not None and charger in chargers:
            sessions.append(EvSession(charger, moments["arrival"], moments["departure"], energy * factor,
                                      f"{file}:{line}"))
    by_charger: dict[str, list[EvSession]] = {}
    for session in sorted(sessions, key=lambda s: s.arrival):
        previous = by_charger.setdefault(session.charger_id, [])
        if previous and session.arrival < previous[-1].departure:
            problems.add(session.source, None, "arrival",
                         f"charger {session.charger_id} still has the car of {previous[-1].source}")
            continue
        previous.append(session)
    problems.raise_any()
    return sorted((s for group in by_charger.values() for s in group), key=lambda s: s.arrival)

