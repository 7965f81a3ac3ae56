"""Thermal identification: a zone's RC model fitted to what it measured, and how well it predicts.

From the zone's indoor temperature, its heat pump's electric power, the outdoor temperature, the
global irradiance and its occupancy, every `step`, this fits the model the optimiser uses (1R1C or
2R2C, `gridctl.config.models.ThermalModel`) plus the internal gains (occupied and idle) by least
squares on the model discretised exactly over the step (inputs held): the residuals are the errors of
predictions up to `PREDICTION_HORIZON` ahead, starting every `WINDOW_EVERY` from the measured
temperature, which is what a plan rests on. The site file's values are a prior the data must
outweigh: closed-loop data (a thermostat holding its setpoint) tell the heat loss well but the
capacities and the internal gains poorly, and left alone those wander off together.

Heat delivered is the electric power times the COP formula of the site file's heat pump: what the
data fix is the zone's response to electric power, so the identified resistance, capacity and gains
are those seen through that formula (a heat pump 10 % less efficient than documented shows as a
zone 10 % heavier to heat). The optimiser uses the same formula, so this is the model it needs.

`identify_zone` fits on the older part of the history and reports the fit on the newer part
(held out), beside the site file's model on the same data, and whether the fit predicts better.
`ZoneLearner` keeps a zone's quarter-hour history by age and identifies it again every day; the
planner uses the identified model while it predicts held-out days better than the site file's.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import numpy as np
from scipy.linalg import expm
from scipy.optimize import least_squares

from gridctl.config import models as m
from gridctl.config.windows import in_any

# Heat from people, lighting and equipment the site file's model assumes (kW/m²), occupied and not.
SITE_FILE_GAIN_KW_PER_M2 = (0.003, 0.0005)
PREDICTION_HORIZON = timedelta(hours=12)
WINDOW_EVERY = timedelta(hours=3)
# Held-out predictions are scored over this horizon (a day-ahead plan).
SCORE_HORIZON = timedelta(hours=24)
KELVIN = 273.15
# The site file as a prior (`identify_zone`): worth this many samples of the data's own error for a
# factor e^PRIOR_SPREAD on any parameter. Chosen on simulated plants that differ from their files as
# sim/PLANT.md says: weaker, the capacities and gains drift together (closed-loop data barely tell
# them apart) and predict held-out days no better; stronger, the data hardly move the heat loss.
PRIOR_SAMPLES = 50.0
PRIOR_SPREAD = 0.5
# The first fit weighs the prior against this error; the second against the first fit's own.
PRIOR_SIGMA_K = 0.2
MIN_SIGMA_K = 0.02
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


def _carry(p: _Params, data: _Data) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The model's states at each sample with the air at its measured temperature, the one-step errors,
    and the discrete model (Ad, Bd, inputs).

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
    return states, one_step, ad, bd, inputs


def _predict(p: _Params, data: _Data, horizon: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """One-step errors, and errors of predictions `horizon` steps ahead started every `every` steps."""
    states, one_step, ad, bd, inputs = _carry(p, data)
    n = len(data.measured)
    measured = data.measured
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
    values = [p.resistance, p.capacitance]
    if p.two_node:
        assert p.envelope_resistance is not None and p.envelope_capacitance is not None
        values += [p.envelope_resistance, p.envelope_capacitance]
    return np.log(np.maximum([*values, p.aperture_m2, p.gain_occupied_kw, p.gain_idle_kw], 1e-6))


def _unpack(x: np.ndarray, two_node: bool) -> _Params:
    v = np.exp(x)
    if two_node:
        return _Params(v[0], v[1], v[2], v[3], v[4], v[5], v[6])
    return _Params(v[0], v[1], None, None, v[2], v[3], v[4])


def identify_zone(zone: m.ThermalZone, history: ZoneHistory, *, held_out_share: float = 0.25,
                  structure: str | None = None, prior: float = PRIOR_SAMPLES) -> ZoneIdentification:
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
    x_file = _pack(start)
    # Every parameter within a factor of 10 of the site file's; gains and aperture start from at least
    # 0.1 W/m² and 0.1 % of the floor, so a file that leaves them out does not pin them at zero.
    x_file[-3:] = np.maximum(x_file[-3:], math.log(1e-4 * zone.floor_area_m2))
    lower, upper = x_file - math.log(10.0), x_file + math.log(10.0)

    def residuals(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        one_step, multi = _predict(_unpack(x, two_node), training, horizon, every)
        values = np.concatenate([one_step[settle:], multi[settle // every:].ravel() / math.sqrt(horizon),
                                 weight * (x - x_file)])
        return np.nan_to_num(values, nan=0.0)

    # The site file is a prior worth `prior` samples of the data's own error: a deviation of a factor
    # e^spread from it costs as much as that many samples off by the fit's RMS error. The error is
    # that of a first fit (the site file's own error says more about the file than about the data).
    x = x_file.copy()
    for sigma in (PRIOR_SIGMA_K, None):
        if sigma is None:
            data = residuals(x, np.zeros_like(x))[: -len(x)]
            sigma = max(float(np.sqrt(np.mean(data**2))), MIN_SIGMA_K)
        weight = np.full_like(x, sigma * math.sqrt(prior) / PRIOR_SPREAD)
        x = least_squares(residuals, np.clip(x, lower + 1e-9, upper - 1e-9), bounds=(lower, upper),
                          x_scale="jac", max_nfev=400, args=(weight,)).x
    solution_x = x
    fitted = _unpack(solution_x, two_node)
    model = m.ThermalModel(
        structure=structure, resistance_k_per_kw=fitted.resistance, capacitance_kwh_per_k=fitted.capacitance,
        envelope_resistance_k_per_kw=fitted.envelope_resistance,
        envelope_capacitance_kwh_per_k=fitted.envelope_capacitance, solar_aperture_m2=max(fitted.aperture_m2, 0.0))
    held = fit_error(fitted, everything, history.step, split)
    documented = fit_error(site_file, everything, history.step, split)
    return ZoneIdentification(zone.id, model, float(fitted.gain_occupied_kw), float(fitted.gain_idle_kw),
                              fit_error(fitted, training, history.step, settle), held, documented,
                              held.multi_step_rmse_k < documented.multi_step_rmse_k)


# --------------------------------------------------------------------------- the service's side


@dataclass(frozen=True)
class ThermalEstimate:
    """The thermal model a zone's plans rest on: the identified one once it predicts held-out days
    better than the site file's, else the site file's; with the last identification either way."""

    zone_id: str
    model: m.ThermalModel
    internal_gain_occupied_kw: float
    internal_gain_idle_kw: float
    identified: bool
    identification: ZoneIdentification | None
    fitted_at: datetime | None
    # Why this model is the one in use.
    reason: str
    # The envelope's temperature now (2R2C), as the model carries it from the measured air temperature:
    # what a plan starts from, since no sensor reads it.
    envelope_temperature_c: float | None = None


def _params_of(model: m.ThermalModel, gain_occupied_kw: float, gain_idle_kw: float) -> _Params:
    return _Params(model.resistance_k_per_kw, model.capacitance_kwh_per_k, model.envelope_resistance_k_per_kw,
                   model.envelope_capacitance_kwh_per_k, model.solar_aperture_m2, gain_occupied_kw, gain_idle_kw)


def site_file_estimate(zone: m.ThermalZone, reason: str, found: ZoneIdentification | None = None,
                       fitted_at: datetime | None = None) -> ThermalEstimate:
    return ThermalEstimate(zone.id, zone.thermal_model, SITE_FILE_GAIN_KW_PER_M2[0] * zone.floor_area_m2,
                           SITE_FILE_GAIN_KW_PER_M2[1] * zone.floor_area_m2, False, found, fitted_at, reason)


# The envelope's temperature now is carried over this much history (it starts from a guess).
ENVELOPE_SETTLES = timedelta(days=3)


class ZoneLearner:
    """A zone's quarter-hour history, kept by age, and its model identified again every `refit_every`."""

    STEP = timedelta(minutes=15)

    def __init__(self, zone: m.ThermalZone, tz: tzinfo, days: int, refit_every: timedelta = timedelta(days=1)) -> None:
        self.zone = zone
        self.tz = tz
        self.keep = timedelta(days=days)
        self.refit_every = refit_every
        # Quarter-hour start -> (indoor °C, heat-pump kW, outdoor °C, GHI W/m², occupied or None).
        self._rows: dict[datetime, tuple[float, float, float, float, float]] = {}
        self._estimate = site_file_estimate(zone, "not identified yet")
        self._last_attempt: datetime | None = None
        # Two forecasts at once (a plan and a manager's what-if) fit once.
        self._fitting = threading.Lock()

    def add(self, moment: datetime, indoor_c: float | None, heat_pump_kw: float | None, outdoor_c: float | None,
            ghi_w_m2: float | None, occupied: float | None) -> None:
        start = moment - (moment - moment.replace(minute=0, second=0, microsecond=0)) % self.STEP

        def value(v: float | None) -> float:
            return math.nan if v is None else float(v)

        self._rows[start] = (value(indoor_c), value(heat_pump_kw), value(outdoor_c), value(ghi_w_m2), value(occupied))
        oldest = start - self.keep
        if next(iter(self._rows)) < oldest:
            self._rows = {t: row for t, row in self._rows.items() if t >= oldest}

    def history(self, since: datetime | None = None) -> ZoneHistory:
        """The samples (from `since`) as a regular series (NaN where nothing was learnt); occupancy from the
        sensor, else the zone's schedule."""
        kept = [t for t in self._rows if since is None or t >= since]
        if not kept:
            raise NotEnoughData(f"{self.zone.id}: no history")
        first, last = min(kept), max(kept)
        n = int((last - first) / self.STEP) + 1
        empty = (math.nan,) * 5
        rows = np.array([self._rows.get(first + self.STEP * k, empty) for k in range(n)], dtype=float)
        schedule = np.array([in_any(first + self.STEP * k + self.STEP / 2, self.zone.occupancy, self.tz)
                             for k in range(n)])
        occupied = np.where(np.isnan(rows[:, 4]), schedule, rows[:, 4] >= 0.5).astype(bool)
        return ZoneHistory(first, self.STEP, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], occupied)

    def due(self, now: datetime) -> bool:
        return self._last_attempt is None or now - self._last_attempt >= self.refit_every

    def maintain(self, now: datetime) -> None:
        """Identify the zone again when due; the identified model is used while it predicts held-out
        days better than the site file's."""
        if not self.due(now) or not self._fitting.acquire(blocking=False):
            return
        try:
            self._last_attempt = now
            self._identify(now)
        finally:
            self._fitting.release()

    def _identify(self, now: datetime) -> None:
        try:
            found = identify_zone(self.zone, self.history())
        except NotEnoughData as error:
            self._estimate = site_file_estimate(self.zone, str(error))
            return
        if found.better_than_site_file:
            self._estimate = ThermalEstimate(
                self.zone.id, found.model, found.internal_gain_occupied_kw, found.internal_gain_idle_kw, True, found,
                now, f"predicts held-out days within {found.held_out.multi_step_rmse_k:.2f} K against the site "
                     f"file's {found.site_file_held_out.multi_step_rmse_k:.2f} K")
        else:
            self._estimate = site_file_estimate(
                self.zone, f"the site file's model predicts held-out days better "
                           f"({found.site_file_held_out.multi_step_rmse_k:.2f} K against "
                           f"{found.held_out.multi_step_rmse_k:.2f} K)", found, now)

    def estimate(self) -> ThermalEstimate:
        """The model in use, with the envelope's temperature as of the last quarter-hour learnt."""
        estimate = self._estimate
        if estimate.model.structure != "2R2C" or not self._rows:
            return estimate
        since = max(self._rows) - ENVELOPE_SETTLES
        try:
            history = self.history(since)
        except NotEnoughData:
            return estimate
        params = _params_of(estimate.model, estimate.internal_gain_occupied_kw, estimate.internal_gain_idle_kw)
        states, *_ = _carry(params, _Data(self.zone, history))
        return dataclasses.replace(estimate, envelope_temperature_c=float(states[-1][1]))
