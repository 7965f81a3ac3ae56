"""Thermal identification: a zone's RC model fitted to what it measured, and how well it predicts.

From the zone's indoor temperature, its heat pump's electric power, the outdoor temperature, the
global irradiance and its occupancy, every `step`, this fits the model the optimiser uses (1R1C or
2R2C, `gridctl.config.models.ThermalModel`) plus the internal gains (occupied and idle) by least
squares on the model discretised exactly over the step (inputs held): the residuals are the errors of
predictions up to `PREDICTION_HORIZON` ahead, starting every `WINDOW_EVERY` from the measured
temperature, which is what a plan rests on.

Heat delivered is the electric power times the COP formula of the site file's heat pump: what the
data fix is the zone's response to electric power, so the identified resistance, capacity and gains
are those seen through that formula (a heat pump 10 % less efficient than documented shows as a
zone 10 % heavier to heat). The optimiser uses the same formula, so this is the model it needs.

`identify_zone` fits on the older part of the history and reports the fit on the newer part
(held out), beside the site file's model on the same data, and whether the fit predicts better.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy.linalg import expm
from scipy.optimize import least_squares

from gridctl.config import models as m

# Heat from people, lighting and equipment the site file's model assumes (kW/m²), occupied and not.
SITE_FILE_GAIN_KW_PER_M2 = (0.003, 0.0005)
PREDICTION_HORIZON = timedelta(hours=12)
WINDOW_EVERY = timedelta(hours=3)
# Held-out predictions are scored over this horizon (a day-ahead plan).
SCORE_HORIZON = timedelta(hours=24)
KELVIN = 273.15
Number = Callable[[str], float | None]


@dataclass(frozen=True)
class ZoneHistory:
    """Regular samples of one zone (NaN where nothing was measured); values hold over each step."""

    start: datetime
    step: timedelta
    indoor_c: np.ndarray
    heat_pump_kw: np.ndarray
    outdoor_c: np.ndarray
    ghi_w_m2: np.ndarray
    occupied: np.ndarray

    def __len__(self) -> int:
        return len(self.indoor_c)

    def part(self, first: int, last: int) -> ZoneHistory:
        return ZoneHistory(self.start + self.step * first, self.step, self.indoor_c[first:last],
                           self.heat_pump_kw[first:last], self.outdoor_c[first:last], self.ghi_w_m2[first:last],
                           self.occupied[first:last])


@dataclass(frozen=True)
class FitError:
    """How well a model predicts the measured indoor temperature."""

    one_step_rmse_k: float
    # Predictions up to `horizon_h` ahead from the measured temperature, every few hours.
    multi_step_rmse_k: float
    horizon_h: float
    samples: int

    def as_dict(self) -> dict[str, float]:
        return {"one_step_rmse_k": round(self.one_step_rmse_k, 4),
                "multi_step_rmse_k": round(self.multi_step_rmse_k, 4), "horizon_h": self.horizon_h,
                "samples": self.samples}


@dataclass(frozen=True)
class ZoneIdentification:
    zone_id: str
    model: m.ThermalModel
    internal_gain_occupied_kw: float
    internal_gain_idle_kw: float
    training: FitError
    held_out: FitError
    site_file_held_out: FitError
    # The identified model predicts the held-out data better than the site file's.
    better_than_site_file: bool

    def as_dict(self) -> dict[str, object]:
        return {"zone": self.zone_id, "model": self.model.model_dump(exclude_none=True),
                "internal_gain_occupied_kw": round(self.internal_gain_occupied_kw, 4),
                "internal_gain_idle_kw": round(self.internal_gain_idle_kw, 4),
                "training": self.training.as_dict(), "held_out": self.held_out.as_dict(),
                "site_file_held_out": self.site_file_held_out.as_dict(),
                "better_than_site_file": self.better_than_site_file}


class NotEnoughData(ValueError):
    """The history is too short or too gappy to identify anything."""


@dataclass(frozen=True)
class _Params:
    resistance: float
    capacitance: float
    envelope_resistance: float | None
    envelope_capacitance: float | None
    aperture_m2: float
    gain_occupied_kw: float
    gain_idle_kw: float

    @property
    def two_node(self) -> bool:
        return self.envelope_resistance is not None


def _cop(zone: m.ThermalZone, outdoor_c: np.ndarray) -> np.ndarray:
    pump = zone.heat_pump
    hot = pump.supply_temperature_c + pump.approach_k + KELVIN
    lift = np.maximum(hot - (outdoor_c - pump.approach_k + KELVIN), 1.0)
    return np.maximum(1.0, pump.carnot_efficiency * hot / lift)


def _fill(values: np.ndarray) -> np.ndarray:
    """Inputs missing for a step hold the last value (the first known one before any)."""
    out = values.astype(float).copy()
    known = np.flatnonzero(~np.isnan(out))
    if not len(known):
        return np.zeros_like(out)
    out[: known[0]] = out[known[0]]
    for i in range(known[0] + 1, len(out)):
        if np.isnan(out[i]):
            out[i] = out[i - 1]
    return out


class _Data:
    """Inputs of one history ready for simulation: outdoor temperature and heat gains without the zone's."""

    def __init__(self, zone: m.ThermalZone, history: ZoneHistory) -> None:
        self.hours = history.step.total_seconds() / 3600.0
        self.measured = history.indoor_c.astype(float)
        self.outdoor = _fill(history.outdoor_c)
        self.heat_pump_kw = np.nan_to_num(_fill(history.heat_pump_kw)) * _cop(zone, self.outdoor)
        self.ghi_kw_m2 = np.maximum(_fill(history.ghi_w_m2), 0.0) / 1000.0
        self.occupied = history.occupied.astype(bool)
        # Steps whose inputs were not measured: predictions across them are not scored.
        self.gap = np.isnan(history.heat_pump_kw) | np.isnan(history.outdoor_c)

    def heat(self, p: _Params) -> np.ndarray:
        return self.heat_pump_kw + p.aperture_m2 * self.ghi_kw_m2 + np.where(
            self.occupied, p.gain_occupied_kw, p.gain_idle_kw)


def _discrete(p: _Params, hours: float) -> tuple[np.ndarray, np.ndarray]:
    """x[k+1] = Ad x[k] + Bd [outdoor, heat] for the model's states (air, and envelope for 2R2C)."""
    if not p.two_node:
        a = math.exp(-hours / (p.resistance * p.capacitance))
        return np.array([[a]]), np.array([[1.0 - a, (1.0 - a) * p.resistance]])
    assert p.envelope_resistance is not None and p.envelope_capacitance is not None
    g_in, g_out = 1.0 / p.resistance, 1.0 / p.envelope_resistance
    c_air, c_env = p.capacitance, p.envelope_capacitance
    a = np.array([[-g_in / c_air, g_in / c_air], [g_in / c_env, -(g_in + g_out) / c_env]])
    b = np.array([[0.0, 1.0 / c_air], [g_out / c_env, 0.0]])
    block = np.zeros((4, 4))
    block[:2, :2], block[:2, 2:] = a * hours, b * hours
    e = expm(block)
    return e[:2, :2], e[:2, 2:]


def _predict(p: _Params, data: _Data, horizon: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """One-step errors, and errors of predictions `horizon` steps ahead started every `every` steps.

    The envelope (2R2C) is never measured: it is carried by the model fed the measured air temperature."""
    ad, bd = _discrete(p, data.hours)
    heat = data.heat(p)
    inputs = np.stack([data.outdoor, heat], axis=1)
    n = len(data.measured)
    measured = data.measured
    air = _fill(measured)
    states = np.zeros((n, ad.shape[0]))
    state = np.full(ad.shape[0], air[0])
    if ad.shape[0] == 2:
        # Start the envelope at its steady state between the first air and outdoor temperatures.
        assert p.envelope_resistance is not None
        share = p.envelope_resistance / (p.resistance + p.envelope_resistance)
        state[1] = data.outdoor[0] + share * (air[0] - data.outdoor[0])
    one_step = np.full(n, np.nan)
    for k in range(n):
        state[0] = air[k]
        states[k] = state
        if k + 1 < n:
            state = ad @ state + bd @ inputs[k]
            if not data.gap[k]:
                one_step[k + 1] = state[0] - measured[k + 1]
    starts = np.arange(0, max(n - 1, 1), every)
    batch = states[starts].copy()
    errors = np.full((len(starts), horizon), np.nan)
    broken = np.zeros(len(starts), dtype=bool)
    for h in range(horizon):
        rows = starts + h
        alive = rows + 1 < n
        if not alive.any():
            break
        rows = np.minimum(rows, n - 1)
        broken |= data.gap[rows]
        batch = batch @ ad.T + inputs[rows] @ bd.T
        scored = alive & ~broken
        errors[scored, h] = batch[scored, 0] - measured[rows[scored] + 1]
    return one_step, errors


def _rmse(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(math.sqrt(np.mean(finite**2))) if len(finite) else math.nan


def fit_error(p: _Params, data: _Data, step: timedelta, first: int = 0, last: int | None = None) -> FitError:
    """Errors of predictions of samples `first` to `last`; the model runs over the data before `first`
    too, so the envelope it cannot measure has settled by then."""
    horizon = max(1, round(SCORE_HORIZON / step))
    every = max(1, round(WINDOW_EVERY / step))
    last = len(data.measured) if last is None else last
    one_step, multi = _predict(p, data, horizon, every)
    starts = np.arange(0, max(len(data.measured) - 1, 1), every)
    one_step = one_step[first:last]
    # Only predictions made inside the scored part, of samples inside it.
    targets = starts[:, None] + 1 + np.arange(horizon)[None, :]
    multi = np.where((starts[:, None] >= first) & (targets < last), multi, np.nan)
    return FitError(_rmse(one_step), _rmse(multi), SCORE_HORIZON.total_seconds() / 3600.0,
                    int(np.isfinite(one_step).sum()))


def _site_file_params(zone: m.ThermalZone) -> _Params:
    model = zone.thermal_model
    two = model.structure == "2R2C"
    return _Params(model.resistance_k_per_kw, model.capacitance_kwh_per_k,
                   model.envelope_resistance_k_per_kw if two else None,
                   model.envelope_capacitance_kwh_per_k if two else None, model.solar_aperture_m2,
                   SITE_FILE_GAIN_KW_PER_M2[0] * zone.floor_area_m2, SITE_FILE_GAIN_KW_PER_M2[1] * zone.floor_area_m2)


def _pack(p: _Params) -> np.ndarray:
    values = [math.log(p.resistance), math.log(p.capacitance)]
    if p.two_node:
        assert p.envelope_resistance is not None and p.envelope_capacitance is not None
        values += [math.log(p.envelope_resistance), math.log(p.envelope_capacitance)]
    return np.array([*values, p.aperture_m2, p.gain_occupied_kw, p.gain_idle_kw])


def _unpack(x: np.ndarray, two_node: bool) -> _Params:
    if two_node:
        return _Params(math.exp(x[0]), math.exp(x[1]), math.exp(x[2]), math.exp(x[3]), x[4], x[5], x[6])
    return _Params(math.exp(x[0]), math.exp(x[1]), None, None, x[2], x[3], x[4])


def identify_zone(zone: m.ThermalZone, history: ZoneHistory, *, held_out_share: float = 0.25,
                  structure: str | None = None) -> ZoneIdentification:
    """Fit the zone's model to the older (1 − `held_out_share`) of `history`, score it on the rest."""
    structure = structure or zone.thermal_model.structure
    if structure not in ("1R1C", "2R2C"):
        raise ValueError(f"unknown model structure {structure!r}")
    n = len(history)
    split = round(n * (1.0 - held_out_share))
    day = round(timedelta(days=1) / history.step)
    measured = np.isfinite(history.indoor_c)
    if split < 2 * day or n - split < day // 2 or measured[:split].mean() < 0.5:
        raise NotEnoughData(f"{zone.id}: {n} samples ({measured.mean():.0%} measured) are too few to identify "
                            f"a model; two days of training and half a day held out at least")
    training, everything = _Data(zone, history.part(0, split)), _Data(zone, history)
    # The unmeasured envelope starts from a guess: the first half day only settles it.
    settle = day // 2 if structure == "2R2C" else 0
    site_file = _site_file_params(zone)
    two_node = structure == "2R2C"
    start = site_file
    if two_node and not site_file.two_node:
        start = _Params(site_file.resistance / 2, site_file.capacitance / 5, site_file.resistance / 2,
                        site_file.capacitance, site_file.aperture_m2, site_file.gain_occupied_kw,
                        site_file.gain_idle_kw)
    elif not two_node and site_file.two_node:
        assert site_file.envelope_resistance is not None and site_file.envelope_capacitance is not None
        start = _Params(site_file.resistance + site_file.envelope_resistance,
                        site_file.capacitance + site_file.envelope_capacitance, None, None,
                        site_file.aperture_m2, site_file.gain_occupied_kw, site_file.gain_idle_kw)
    horizon = max(1, round(PREDICTION_HORIZON / history.step))
    every = max(1, round(WINDOW_EVERY / history.step))
    area = zone.floor_area_m2

    def residuals(x: np.ndarray) -> np.ndarray:
        one_step, multi = _predict(_unpack(x, two_node), training, horizon, every)
        values = np.concatenate([one_step[settle:], multi[settle // every:].ravel() / math.sqrt(horizon)])
        return np.nan_to_num(values, nan=0.0)

    x0 = _pack(start)
    logs = 4 if two_node else 2
    # Resistances and capacities within a factor of 10 of the site file's; gains within plausible densities.
    lower = np.concatenate([x0[:logs] - math.log(10.0), [0.0, 0.0, 0.0]])
    upper = np.concatenate([x0[:logs] + math.log(10.0), [max(5.0 * start.aperture_m2, 0.01 * area),
                                                         0.03 * area, 0.01 * area]])
    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    solution = least_squares(residuals, x0, bounds=(lower, upper), x_scale="jac", max_nfev=400)
    fitted = _unpack(solution.x, two_node)
    model = m.ThermalModel(
        structure=structure, resistance_k_per_kw=fitted.resistance, capacitance_kwh_per_k=fitted.capacitance,
        envelope_resistance_k_per_kw=fitted.envelope_resistance,
        envelope_capacitance_kwh_per_k=fitted.envelope_capacitance, solar_aperture_m2=max(fitted.aperture_m2, 0.0))
    held = fit_error(fitted, everything, history.step, split)
    documented = fit_error(site_file, everything, history.step, split)
    return ZoneIdentification(zone.id, model, float(fitted.gain_occupied_kw), float(fitted.gain_idle_kw),
                              fit_error(fitted, training, history.step, settle), held, documented,
                              held.multi_step_rmse_k < documented.multi_step_rmse_k)


def zone_history(site: m.Site, zone: m.ThermalZone, rows: Iterable[tuple[datetime, Number]],
                 step: timedelta = timedelta(minutes=15)) -> ZoneHistory:
    """Regular `step` means of what `rows` ((instant, reader of points) oldest first, as stored history
    or warm-up rows give them) show of the zone; occupancy from its sensor, else its schedule."""
    from gridctl.service.calendar import in_any
    from gridctl.service.forecasting import irradiance_point, outdoor_temperature_point

    points = {"indoor": zone.points["temperature"], "power": zone.points["heat_pump_power"],
              "outdoor": outdoor_temperature_point(site), "ghi": irradiance_point(site),
              "occupied": zone.points.get("occupancy")}
    watts = site.point(points["power"]).unit == "W"
    buckets: dict[int, dict[str, list[float]]] = {}
    first: datetime | None = None
    for ts, number in rows:
        first = first or ts
        bucket = buckets.setdefault(int((ts - first) / step), {})
        for name, address in points.items():
            value = number(address) if address else None
            if value is not None and math.isfinite(value):
                bucket.setdefault(name, []).append(value / 1000.0 if name == "power" and watts else value)
    if first is None:
        raise NotEnoughData(f"{zone.id}: no history")
    n = max(buckets) + 1

    def series(name: str) -> np.ndarray:
        return np.array([np.mean(buckets.get(k, {}).get(name, [np.nan])) for k in range(n)])

    occupied = series("occupied")
    schedule = np.array([in_any(first + step * k + step / 2, zone.occupancy, site.tz) for k in range(n)])
    occupied = np.where(np.isnan(occupied), schedule, occupied >= 0.5)
    return ZoneHistory(first, step, series("indoor"), series("power"), series("outdoor"), series("ghi"),
                       occupied.astype(bool))
