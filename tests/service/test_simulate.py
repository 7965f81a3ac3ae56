"""`gridctl simulate`: the closed loop on simulated time through the real protocols, short runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _simulate(site: str, controller: str, days: str, start: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "gridctl.cli", "simulate", str(REPO / "sites" / site), "--days", days,
         "--controller", controller, "--seed", "2", "--start", start, "--step-min", "15", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_workplace_charging_morning_against_the_baseline() -> None:
    # A winter weekday morning at the parking silo: cars arrive, offices warm up, lights come on.
    start = "2026-01-13T06:00+01:00"
    baseline = _simulate("zac-union", "baseline", "0.25", start)
    gridctl = _simulate("zac-union", "gridctl", "0.25", start)
    kb, kg = baseline["kpis"], gridctl["kpis"]
    assert kb["ev_requested_kwh"] > 20 and kg["ev_requested_kwh"] == kb["ev_requested_kwh"]
    assert gridctl["optimisations"] >= 6 and gridctl["optimiser_failures"] == 0
    assert gridctl["writes"] > 50
    assert kg["grid_limit_violations"] == 0
    assert kg["ev_unmet_kwh"] <= kb["ev_unmet_kwh"] + 0.05
    assert kg["discomfort_total_k_h"] <= kb["discomfort_total_k_h"] + 0.05
    assert kg["cost_eur"] < kb["cost_eur"]
    assert 0 < kg["computational_time_ratio"] < 0.05


def test_json_output_is_the_whole_of_stdout() -> None:
    # A day of the smallest demonstrator with the optimiser in the loop: HiGHS must not print its banner.
    done = subprocess.run(
        [sys.executable, "-m", "gridctl.cli", "simulate", str(REPO / "sites" / "zac-haute-deule"), "--days", "1",
         "--controller", "gridctl", "--step-min", "60", "--optimise-every-min", "720", "--history-days", "0",
         "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["optimisations"] >= 2 and result["optimiser_failures"] == 0
