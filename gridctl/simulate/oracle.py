"""Perfect foresight: forecasts read from the simulation's exogenous trace (an upper bound)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from gridctl.config import models as m
from gridctl.service.calendar import tariff_prices
from gridctl.service.forecasting import carbon_intensity
from gridctl.service.forecasts import EvSessionForecast, Forecasts
from gridctl.service.snapshot import Snapshot
from gridctl.simulate.trace import ExogenousTrace


class OracleForecaster:
    def __init__(self, trace: ExogenousTrace, delivered_kwh: Callable[[str, datetime], float],
                 tempo_colours: dict[str, str] | None = None) -> None:
        self.trace = trace
        # Energy already delivered to the session of a charger that arrived at a given instant.
        self.delivered_kwh = delivered_kwh
        self.tempo_colours = tempo_colours or {}

    async def forecast(self, site: m.Site, snapshot: Snapshot, start: datetime, n_steps: int,
                       step: timedelta) -> Forecasts:
        trace = self.trace
        ratio = max(1, round(step / trace.step))

        def window(k: int) -> range:
            first = trace.index(start + step * k)
            return range(max(first, 0), min(first + ratio, len(trace)))

        def mean(series: list[float], k: int) -> float:
            span = window(k)
            return sum(series[i] for i in span) / len(span) if len(span) else (series[-1] if series else 0.0)

        def majority(series: list[bool], k: int) -> bool:
            span = window(k)
            return sum(series[i] for i in span) * 2 >= len(span) if len(span) else False

        steps = range(n_steps)
        mids = [start + step * k + step / 2 for k in steps]
        end = start + step * n_steps
        sessions = []
        for session in trace.sessions:
            if session.departure <= start or session.arrival >= end:
                continue
            delivered = self.delivered_kwh(session.charger_id, session.arrival) if session.arrival < start else 0.0
            sessions.append(EvSessionForecast(session.charger_id, session.arrival, session.departure,
                                              max(session.energy_needed_kwh - delivered, 0.0)))
        return Forecasts(
            start=start, step=step, n_steps=n_steps,
            base_load_kw=[mean(trace.base_load_kw, k) for k in steps],
            outdoor_temperature_c=[mean(trace.outdoor_temperature_c, k) for k in steps],
            irradiance_w_m2=[mean(trace.irradiance_w_m2, k) for k in steps],
            import_price_eur_per_kwh=tariff_prices(site.tariff, mids, site.tz, self.tempo_colours),
            export_price_eur_per_kwh=[site.tariff.export_price_eur_per_kwh] * n_steps,
            carbon_kg_per_kwh=carbon_intensity(mids, site.tz),
            pv_kw={a: [mean(s, k) for k in steps] for a, s in trace.pv_kw.items()},
            daylight_lux={a: [mean(s, k) for k in steps] for a, s in trace.daylight_lux.items()},
            occupied={a: [majority(s, k) for k in steps] for a, s in trace.occupied.items()},
            dark=[majority(trace.dark, k) for k in steps],
            ev_sessions=sessions,
        )
