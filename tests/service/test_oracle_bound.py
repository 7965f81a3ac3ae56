"""Perfect foresight bounds gridctl: on the first day of the case where the oracle once lost to gridctl,
the oracle costs no more and delivers as much, and gridctl's own loop fed the true future and plant
(`mpc`) does no worse than gridctl either. One run of each serves every assertion (they take minutes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gridctl.simulate.loop import SimulationOptions, simulate

REPO = Path(__file__).resolve().parents[2]
WINTER = datetime.fromisoformat("2026-01-12T00:00+01:00")


async def _run(controller: str) -> tuple[dict, SimulationOptions]:
    # Ideal communications: the oracle follows its plan open-loop and does not foresee outages, so only
    # without them is its realised cost a bound (sim/PLANT.md, "The oracle").
    options = SimulationOptions(site=REPO / "sites" / "zac-union", controller=controller, days=1, seed=1,
                                start=WINTER, step=timedelta(minutes=15), physics_step=timedelta(minutes=5),
                                instruments=False)
    return (await simulate(options)).as_dict(), options


def _valued(kpis: dict) -> float:
    """Cost as the policy values it: 1 €/kWh of EV energy undelivered, 0.5 €/K·h of discomfort."""
    return kpis["cost_eur"] + kpis["ev_unmet_kwh"] + 0.5 * kpis["discomfort_total_k_h"]


@pytest.mark.slow
async def test_perfect_foresight_costs_no_more_than_gridctl_on_zac_union_in_winter() -> None:
    (oracle, _), (gridctl, options), (mpc, _) = [await _run(c) for c in ("oracle", "gridctl", "mpc")]
    ko, kg, km = oracle["kpis"], gridctl["kpis"], mpc["kpis"]
    plan = oracle["oracle"]
    assert plan["mip_gap"] is not None and plan["mip_gap"] <= 0.002
    # Within the solver's proven gap, plus what dispatch loses to current rounding (0.1 A steps).
    tolerance = plan["mip_gap"] * abs(plan["objective_eur"]) + 0.002 * kg["cost_eur"]
    assert ko["cost_eur"] <= kg["cost_eur"] + tolerance
    assert _valued(ko) <= _valued(kg) + tolerance
    assert ko["ev_unmet_kwh"] < 0.5 and ko["grid_limit_violations"] == 0

    # The perfect-forecast MPC re-plans every hour like gridctl, each solve within the solver's gap.
    mpc_tolerance = options.solver.mip_gap * abs(kg["cost_eur"]) + 0.002 * kg["cost_eur"]
    assert km["cost_eur"] <= kg["cost_eur"] + mpc_tolerance
    assert _valued(km) <= _valued(kg) + mpc_tolerance
    assert km["ev_unmet_kwh"] < 0.5 and km["grid_limit_violations"] == 0
    assert mpc["optimisations"] >= 24

    assert oracle["plant"] == gridctl["plant"] == mpc["plant"]
    assert oracle["plant"]["offices"]["resistance_k_per_kw"]["site_file"] == 0.5
    # gridctl identified the zone from its warm-up history and says so beside the plant's true values;
    # the foresight controllers know the plant and identify nothing.
    offices = gridctl["identified"]["offices"]
    assert offices["in_use"] in ("identified", "site_file") and offices["reason"]
    resistance = offices["parameters"]["resistance_k_per_kw"]
    assert resistance["site_file"] == 0.5 and resistance["true"] == oracle["plant"]["offices"][
        "resistance_k_per_kw"]["true"] and resistance["identified"] is not None
    assert "identified" not in oracle and "identified" not in mpc
