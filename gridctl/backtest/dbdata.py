"""Read a site's recorded history from the history database (`gridctl run` stores it there)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from gridctl.assets import site_adapters
from gridctl.backtest.csvdata import DataError, read_sessions
from gridctl.backtest.plant import from_unit
from gridctl.backtest.recording import LOAD, Recording, pv_series
from gridctl.config import models as m
from gridctl.forecast.forecaster import controlled_power_kw
from gridctl.history import Aggregate, open_historian


async def load_history(target: str, site: m.Site, start: datetime, end: datetime, step: timedelta,
                       sessions: Path | None = None, warm_up: timedelta = timedelta(days=8)) -> Recording:
    """The site's grid power and each flexible asset's measured power, averaged per step from `warm_up`
    before `start` to `end`: the load is the grid power less what the flexible assets drew."""
    if "power" not in site.grid.points:
        raise DataError([f"site {site.id}: no grid meter power point (grid.points.power) to read the load from"])
    adapters = site_adapters(site)
    addresses = sorted({site.grid.points["power"]} | {a for adapter in adapters for a in adapter.power_points()})
    historian = open_historian(target)
    await historian.open()
    try:
        frame = await historian.query(site.id, addresses, start - warm_up, end, step, Aggregate.AVG)
    finally:
        await historian.close()
    frame = frame.dropna(how="all")
    if frame.empty:
        raise DataError([f"{target}: no readings of site {site.id} between {start - warm_up:%Y-%m-%d} and "
                         f"{end:%Y-%m-%d}"])
    frame = frame.reindex(pd.date_range(frame.index[0], end - step, freq=step, tz="UTC"))
    missing = frame[site.grid.points["power"]].isna()
    if missing.any():
        at = frame.index[np.argmax(missing.to_numpy())]
        raise DataError([f"{target}: {site.grid.points['power']}: no reading in the step starting "
                         f"{at:%Y-%m-%d %H:%M} UTC (and {int(missing.sum()) - 1} more steps)"])
    frame = frame.fillna(0.0)
    columns: dict[str, np.ndarray] = {}
    load = np.empty(len(frame))
    for i, (_ts, row) in enumerate(frame.iterrows()):
        values = row.to_dict()
        load[i] = from_unit(site, site.grid.points["power"], values[site.grid.points["power"]]) - \
            controlled_power_kw(site, values.get)
    columns[LOAD] = load
    for adapter in adapters:
        if adapter.flow == "pv":
            (address,) = adapter.power_points()
            columns[pv_series(adapter.id)] = np.maximum(
                frame[address].to_numpy() * from_unit(site, address, 1.0), 0.0)
    recorded = pd.DataFrame(columns, index=frame.index)
    log = read_sessions(sessions, site, site.tz) if sessions else []
    return Recording(recorded, step, log, "EUR", [f"{target} ({len(frame)} steps)"])

