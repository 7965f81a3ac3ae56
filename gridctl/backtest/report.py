"""What a backtest shows: a table of KPIs, every step's setpoints as CSV, the days as CSV, a week as a page."""

from __future__ import annotations

import html
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from gridctl.backtest.kpis import MEANINGS
from gridctl.backtest.run import BacktestResult

ROWS = ("cost", "import_kwh", "export_kwh", "co2_kg", "peak_kw", "mean_daily_peak_kw", "ramping_kw", "load_factor",
        "ev_undelivered_kwh", "battery_throughput_kwh", "battery_cycles", "battery_stored_delta_kwh",
        "pv_curtailed_kwh", "objective")
COLOURS = {"baseline": "#888888", "gridctl": "#1f77b4", "oracle": "#2ca02c"}


def table(result: BacktestResult) -> str:
    names = list(result.kpis)
    lines = [f"{result.site_id} · {result.start:%Y-%m-%d %H:%M} → {result.end:%Y-%m-%d %H:%M} UTC · "
             f"{result.wall_s:.0f} s", f"{'':<26}" + "".join(f"{n:>14}" for n in names)]
    for key in ROWS:
        label = f"{key} ({result.currency})" if key in ("cost", "objective") else key
        lines.append(f"{label:<26}" + "".join(f"{result.kpis[n].period[key]:>14.3f}" for n in names))
    share = result.share_of_oracle_saving
    if share is not None:
        lines.append(f"gridctl captured {100 * share:.1f} % of the oracle's saving on cost")
    oracle = result.replays.get("oracle")
    if oracle is not None and oracle.oracle:
        details = oracle.oracle
        what = "a bound: no controller can do better on the objective" if details["bound"] else \
            "planned in blocks: perfect foresight within each, not a bound"
        lines.append(f"oracle: {details['plan']} ({what}); objective {details['objective_eur']}, "
                     f"gap {details['mip_gap']}")
    if result.left_out:
        lines.append("not replayed (no building model; their consumption stays in the recorded load): "
                     + ", ".join(result.left_out))
    return "\n".join(lines)


def setpoints_csv(result: BacktestResult, path: Path) -> None:
    """Every step of every controller: the flows, states and commands, one column each, `controller:column`."""
    frames = [replayed.trace.add_prefix(f"{name}:") for name, replayed in result.replays.items()]
    frame = pd.concat(frames, axis=1)
    frame.index = frame.index.tz_convert("UTC")
    frame.to_csv(path, float_format="%.4f", date_format="%Y-%m-%dT%H:%M:%SZ")


def daily_csv(result: BacktestResult, path: Path) -> None:
    frames = [k.daily.add_prefix(f"{name}:") for name, k in result.kpis.items()]
    pd.concat(frames, axis=1).to_csv(path, float_format="%.4f")


def week_html(result: BacktestResult, path: Path, first_day: date | None = None, tz=None) -> None:
    """A self-contained page: net import of each controller and the batteries' state of charge over a week."""
    traces = {name: r.trace for name, r in result.replays.items()}
    index = next(iter(traces.values())).index
    local = index.tz_convert(tz) if tz else index
    start_day = first_day or local[0].date()
    mask = (local.date >= start_day) & (local.date < start_day + timedelta(days=7))
    if not mask.any():
        mask[:] = True
    charts = [_chart("Net import (kW)", {n: t["site.net_kw"].to_numpy()[mask] for n, t in traces.items()},
                     local[mask]),
              _chart("Stored energy, mean state of charge (%)",
                     {n: t[[c for c in t.columns if c.endswith(".soc_pct")]].mean(axis=1).to_numpy()[mask]
                      for n, t in traces.items() if any(c.endswith(".soc_pct") for c in t.columns)}, local[mask])]
    rows = "".join(f"<tr><td>{html.escape(k)}</td>" + "".join(
        f"<td>{result.kpis[n].period[k]:.2f}</td>" for n in result.kpis) + f"<td>{html.escape(MEANINGS[k])}</td></tr>"
        for k in ROWS)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in result.kpis)
    share = result.share_of_oracle_saving
    page = f"""<!doctype html><html lang="en"><meta charset="utf-8">
<title>Backtest {html.escape(result.site_id)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}}td:first-child,td:last-child{{text-align:left}}
svg{{background:#fafafa}}</style>
<h1>Backtest of {html.escape(result.site_id)}</h1>
<p>{result.start:%Y-%m-%d %H:%M} → {result.end:%Y-%m-%d %H:%M} UTC; week from {start_day} (local).
{'' if share is None else f'gridctl captured <b>{100 * share:.1f} %</b> of the oracle saving on cost.'}</p>
{''.join(charts)}
<table><tr><th></th>{head}<th>meaning</th></tr>{rows}</table></html>
"""
    path.write_text(page, encoding="utf-8")


def _chart(title: str, series: dict[str, object], moments: pd.DatetimeIndex, width: int = 1000,
           height: int = 260) -> str:
    import numpy as np

    if not series or not len(moments):
        return ""
    values = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high - low < 1e-9:
        high = low + 1.0
    left, right, top, bottom = 50, width - 10, 20, height - 30
    n = len(moments)

    def x(i: int) -> float:
        return left + (right - left) * i / max(n - 1, 1)

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - low) / (high - low)

    lines = []
    for name, data in series.items():
        points = " ".join(f"{x(i):.1f},{y(float(v)):.1f}" for i, v in enumerate(np.asarray(data, dtype=float)))
        lines.append(f'<polyline fill="none" stroke="{COLOURS.get(name, "#d62728")}" stroke-width="1.5" '
                     f'points="{points}"><title>{html.escape(name)}</title></polyline>')
    ticks = []
    for i, moment in enumerate(moments):
        if moment.hour == 0 and moment.minute == 0:
            ticks.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top}" y2="{bottom}" stroke="#ddd"/>'
                         f'<text x="{x(i) + 3:.1f}" y="{height - 12}" font-size="11">{moment:%a %d}</text>')
    zero = f'<line x1="{left}" x2="{right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#aaa"/>' if low < 0 < high else ""
    legend = "".join(f'<text x="{left + 10 + 110 * k}" y="14" font-size="12" fill="{COLOURS.get(name, "#d62728")}">'
                     f'■ {html.escape(name)}</text>' for k, name in enumerate(series))
    axis = (f'<text x="4" y="{top + 10}" font-size="11">{high:.1f}</text>'
            f'<text x="4" y="{bottom}" font-size="11">{low:.1f}</text>')
    return (f'<h2>{html.escape(title)}</h2><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="{html.escape(title)}">{"".join(ticks)}{zero}{"".join(lines)}{legend}{axis}</svg>')
