"""Four flats' water heaters for two winter days, in closed loop through the real protocols: gridctl against
the off-peak contactor that drives them today."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gridctl.simulate.loop import SimulationOptions, simulate

FLATS = Path(__file__).parent / "sites" / "dhw-flats"
WINTER = datetime.fromisoformat("2026-01-12T00:00+01:00")


async def _run(controller: str) -> dict:
    options = SimulationOptions(site=FLATS, controller=controller, days=2, seed=2, start=WINTER,
                                step=timedelta(minutes=15), physics_step=timedelta(minutes=5))
    return (await simulate(options)).as_dict()


@pytest.mark.slow
async def test_gridctl_keeps_hot_water_and_disinfects_for_no_more_than_the_contactor_costs() -> None:
    baseline, gridctl = await _run("baseline"), await _run("gridctl")
    kb, kg = baseline["kpis"], gridctl["kpis"]
    assert gridctl["optimisations"] >= 40 and gridctl["optimiser_failures"] == 0
    # The contactor heats every night to the thermostat and runs short on the heavy evenings.
    assert kb["hot_water_below_minimum_min"] > 60
    assert kg["hot_water_below_minimum_min"] == 0 and kg["hot_water_below_minimum_k_h"] == 0
    # Nobody told gridctl when the tanks were last disinfected: each gets a cycle within its first day.
    assert kg["legionella_cycles"] >= 4 and kg["legionella_overdue_h"] == 0
    assert kg["cost_eur"] <= kb["cost_eur"]
    # The water heaters alone use less and cost less: cooler tanks lose less.
    assert kg["hot_water_energy_kwh"] < kb["hot_water_energy_kwh"]
    assert kg["grid_limit_violations"] == 0
