"""Solve home problems with EMHASS; run inside EMHASS's own venv (bench/.venv-emhass).

Reads a JSON list of home problems on stdin (the neutral format written by bench/optimizer.py) and
prints a JSON list of results: per-step grid, battery and deferrable powers in kW and the solve time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import pathlib
import sys
import tempfile
import time

import emhass
import numpy as np
import pandas as pd
from emhass import utils
from emhass.optimization import Optimization


async def _base_config(tmp: pathlib.Path, logger: logging.Logger) -> tuple[dict, dict, dict, dict]:
    root = pathlib.Path(emhass.__file__).parent
    conf = {
        "data_path": tmp,
        "root_path": root,
        "defaults_path": root / "data" / "config_defaults.json",
        "associations_path": root / "data" / "associations.csv",
    }
    config = await utils.build_config(conf, logger, str(conf["defaults_path"]))
    conf, secrets = await utils.build_secrets(conf, logger, no_response=True)
    params = await utils.build_params(conf, secrets, config, logger)
    retrieve, optim, plant = utils.get_yaml_parse(json.dumps(params, default=str), logger)
    return conf, retrieve, optim, plant


def _solve(home: dict, conf: dict, retrieve: dict, optim: dict, plant: dict, logger: logging.Logger) -> dict:
    n, step = home["n_steps"], home["step_minutes"]
    bat, loads = home["battery"], home["loads"]
    optim = dict(optim)
    plant = dict(plant)
    retrieve = dict(retrieve)
    retrieve["optimization_time_step"] = pd.Timedelta(minutes=step)
    optim.update({
        "costfun": "profit",
        "delta_forecast_daily": pd.Timedelta(days=n * step / 1440),
        "lp_solver_mip_rel_gap": home["mip_gap"],
        "lp_solver_timeout": home["time_limit_s"],
        "num_threads": 0,
        "set_use_battery": True,
        "set_nocharge_from_grid": False,
        "set_nodischarge_to_grid": False,
        "set_battery_dynamic": False,
        "weight_battery_discharge": 0.0,
        "weight_battery_charge": 0.0,
        "number_of_deferrable_loads": len(loads),
        "nominal_power_of_deferrable_loads": [ld["nominal_kw"] * 1000.0 for ld in loads],
        "minimum_power_of_deferrable_loads": [0.0] * len(loads),
        "operating_hours_of_each_deferrable_load": [ld["steps"] * step / 60.0 for ld in loads],
        "start_timesteps_of_each_deferrable_load": [ld["start_step"] for ld in loads],
        "end_timesteps_of_each_deferrable_load": [ld["end_step"] for ld in loads],
        "treat_deferrable_load_as_semi_cont": [True] * len(loads),
        "set_deferrable_load_single_constant": [True] * len(loads),
        "set_deferrable_startup_penalty": [0.0] * len(loads),
        "set_deferrable_max_startups": [0] * len(loads),
        "cost_forecast_per_deferrable_load": [None] * len(loads),
        "deferrable_load_max_cost": [0.0] * len(loads),
        "def_load_config": [{} for _ in loads],
    })
    plant.update({
        "inverter_is_hybrid": False,
        "compute_curtailment": False,
        "maximum_power_from_grid": home["import_limit_kw"] * 1000.0,
        "maximum_power_to_grid": home["export_limit_kw"] * 1000.0,
        "battery_nominal_energy_capacity": bat["capacity_kwh"] * 1000.0,
        "battery_charge_power_max": bat["max_charge_kw"] * 1000.0,
        "battery_discharge_power_max": bat["max_discharge_kw"] * 1000.0,
        "battery_charge_efficiency": bat["charge_efficiency"],
        "battery_discharge_efficiency": bat["discharge_efficiency"],
        "battery_minimum_state_of_charge": bat["min_energy_kwh"] / bat["capacity_kwh"],
        "battery_maximum_state_of_charge": bat["max_energy_kwh"] / bat["capacity_kwh"],
        "battery_target_state_of_charge": bat["terminal_energy_kwh"] / bat["capacity_kwh"],
    })
    idx = pd.date_range(home["start"], periods=n, freq=f"{step}min", tz="UTC")
    df = pd.DataFrame(
        {"unit_load_cost": home["import_price"], "unit_prod_price": home["export_price"]}, index=idx
    )
    pv = pd.Series(np.array(home["pv_kw"]) * 1000.0, index=idx)
    load = pd.Series(np.array(home["load_kw"]) * 1000.0, index=idx)
    opt = Optimization(retrieve, optim, plant, "unit_load_cost", "unit_prod_price", "profit", conf, logger)
    t0 = time.perf_counter()
    res = opt.perform_dayahead_forecast_optim(
        df, pv, load,
        soc_init=bat["initial_energy_kwh"] / bat["capacity_kwh"],
        soc_final=bat["terminal_energy_kwh"] / bat["capacity_kwh"],
    )
    elapsed = time.perf_counter() - t0
    return {
        "solve_s": elapsed,
        "status": str(getattr(opt, "optim_status", "")),
        "grid_kw": (res["P_grid"].to_numpy() / 1000.0).tolist(),
        "battery_discharge_kw": (res["P_batt"].to_numpy() / 1000.0).tolist(),
        "deferrable_kw": [(res[f"P_deferrable{k}"].to_numpy() / 1000.0).tolist() for k in range(len(loads))],
    }


async def main() -> None:
    homes = json.loads(sys.stdin.read())
    logger = logging.getLogger("emhass-bench")
    logger.setLevel(logging.ERROR)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        conf, retrieve, optim, plant = await _base_config(pathlib.Path(tmp), logger)
        for home in homes:
            # EMHASS prints progress; keep stdout for the JSON answer only.
            with contextlib.redirect_stdout(io.StringIO()):
                out.append(_solve(home, conf, retrieve, optim, plant, logger))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
