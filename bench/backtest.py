"""Backtest benchmark: the measured year of five Californian homes with batteries and PV (CityLearn 2022,
tests/data/citylearn-2022-homes-1-5), replayed under the baseline (no control), gridctl (forecasting only
from the past, planning every hour) and the oracle (the whole period at once, knowing everything).

    python bench/backtest.py [--quick] [--homes N] [--workers W]

The year runs from 9 August 2016 (eight days of history first, for gridctl's forecasts) to 31 July 2017;
`--quick` runs one month from 9 August. `--homes N` replays N homes: home n is a copy of measured home
(n − 1) mod 5 + 1 (its battery, and its PV output shifted by (n − 1) // 5 weeks, wrapped around the year),
and brings a fifth of the five homes' load shifted by as many weeks; 20 homes are four such groups, a site
for timing (the goal: a year of 20 homes in under 10 minutes on 2 cores). The last line printed is one JSON
object: each controller's KPIs, wall and processor time, the share of the oracle's saving gridctl captured
and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gridctl.backtest import BacktestSettings, load_data, run_backtest  # noqa: E402
from gridctl.backtest.recording import LOAD, Recording, pv_series  # noqa: E402
from gridctl.config import load_site  # noqa: E402

SITE = REPO / "tests" / "data" / "citylearn-homes"
DATA = REPO / "tests" / "data" / "citylearn-2022-homes-1-5"


def larger(site, recording: Recording, homes: int):
    """The site with `homes` homes: copies of the five, each copy's recorded days shifted by a week."""
    base = {a.id: a for a in site.assets}
    assets, buildings, frame = [], [], recording.frame.copy()
    # The recording holds the five homes' load together: each copy adds a fifth of it, shifted.
    load = np.zeros(len(frame))
    for n in range(1, homes + 1):
        source, shift = (n - 1) % 5 + 1, 168 * ((n - 1) // 5)
        battery = base[f"home-{source}-battery"].model_copy(update={"id": f"home-{n}-battery",
                                                                   "building": f"home-{n}"})
        pv = base[f"home-{source}-pv"].model_copy(update={"id": f"home-{n}-pv", "building": f"home-{n}"})
        battery = battery.model_copy(update={"points": {k: v.replace(f"home-{source}-", f"home-{n}-")
                                                        for k, v in battery.points.items()}})
        pv = pv.model_copy(update={"points": {k: v.replace(f"home-{source}-", f"home-{n}-")
                                              for k, v in pv.points.items()}})
        assets += [battery, pv]
        buildings.append(site.buildings[0].model_copy(update={"id": f"home-{n}"}))
        frame[pv_series(pv.id)] = np.roll(recording.frame[pv_series(f"home-{source}-pv")].to_numpy(), shift)
        load += np.roll(recording.frame[LOAD].to_numpy(), shift) / 5.0
    frame[LOAD] = load
    devices = []
    for n in range(1, homes + 1):
        source = (n - 1) % 5 + 1
        for kind in ("battery", "inverter"):
            device = site.device(f"home-{source}-{kind}")
            devices.append(device.model_copy(update={"id": f"home-{n}-{kind}", "unit_id": (n * 2 + (kind == "inverter"))
                                                     % 250}))
    devices.append(site.device("grid-meter"))
    site = site.model_copy(update={"assets": assets, "buildings": buildings, "devices": devices})
    return site, Recording(frame, recording.step, [], recording.currency, recording.sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one month instead of the year")
    parser.add_argument("--homes", type=int, default=5)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    site = load_site(SITE)
    recording = load_data(DATA, site)
    if args.homes != 5:
        site, recording = larger(site, recording, args.homes)
    step = recording.step
    # 9 August 2016, 00:00 local: eight days of history before, for gridctl's forecasts.
    start = datetime(2016, 8, 9, tzinfo=site.tz).astimezone(UTC)
    end = start + (step * 24 * 30 if args.quick else recording.end - start)
    end = recording.start + step * ((end - recording.start) // step)
    began = time.perf_counter()
    result = run_backtest(site, recording, BacktestSettings(start=start, end=end), workers=args.workers,
                          progress=sys.stderr)
    wall = time.perf_counter() - began
    report = result.as_dict()
    print(f"{site.id}: {args.homes} homes, {start:%Y-%m-%d} to {end:%Y-%m-%d} UTC, {wall:.0f} s", file=sys.stderr)
    print(json.dumps({"site": site.id, "homes": args.homes, "start": start.isoformat(), "end": end.isoformat(),
                      "steps": int((end - start) / step), "controllers": report["controllers"],
                      "share_of_oracle_saving": report["share_of_oracle_saving"], "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
