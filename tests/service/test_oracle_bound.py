"""The oracle is a bound: on the case where it once lost to gridctl, it costs no more and delivers as much."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gridctl.simulate.loop import SimulationOptions, simulate

REPO = Path(__file__).resolve().parents[2]
WINTER = datetime.fromisoformat("2026-01-12T00:00+01:00")


async def _run(controller: str) -> dict:
    # Ideal communications: the oracle follows its plan open-loop and does not foresee outages, so only
    # without them is its realised cost a bound (sim/PLANT.md, "The oracle").
    options = SimulationOptions(site=REPO / "sites" / "zac-union", controller=controller, days=2, seed=1,
                                start=WINTER, step=timedelta(minutes=15), physics_step=timedelta(minutes=5),
                                instruments=False)
    return (await simulate(options)).as_dict()


@pytest.mark.slow
async def test_the_oracle_costs_no_more_than_gridctl_on_zac_union_in_winter() -> None:
    oracle, gridctl = await _run("oracle"), await _run("gridctl")
    ko, kg = oracle["kpis"], gridctl["kpis"]
    plan = oracle["oracle"]
    assert plan["mip_gap"] is not None and plan["mip_gap"] <= 0.002
    # Within the solver's proven gap, plus what dispatch loses to current rounding (0.1 A steps).
    tolerance = plan["mip_gap"] * abs(plan["objective_eur"]) + 0.002 * kg["cost_eur"]
    assert ko["cost_eur"] <= kg["cost_eur"] + tolerance
    # Valued as the policy values it (1 €/kWh of EV energy undelivered, 0.5 €/K·h of discomfort), too.
    assert ko["cost_eur"] + ko["ev_unmet_kwh"] + 0.5 * ko["discomfort_total_k_h"] <= \
        kg["cost_eur"] + kg["ev_unmet_kwh"] + 0.5 * kg["discomfort_total_k_h"] + tolerance
    assert ko["ev_unmet_kwh"] < 0.5 and ko["grid_limit_violations"] == 0
    assert oracle["plant"] == gridctl["plant"] and oracle["plant"]["offices"]["resistance_k_per_kw"]["site_file"] == 0.5
