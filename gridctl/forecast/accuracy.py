"""Forecast accuracy once the actuals are in."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def accuracy(forecast: pd.Series, actual: pd.Series, *, normalise_by: float | None = None) -> dict[str, float]:
    """MAE, RMSE, bias and nRMSE over the steps both series cover.

    nRMSE is RMSE divided by `normalise_by` (e.g. a PV plant's peak power) or, by default, by the mean
    absolute actual. Returns NaNs when nothing overlaps.
    """
    both = pd.concat([forecast.rename("f"), actual.rename("a")], axis=1, join="inner").dropna()
    n = len(both)
    if n == 0:
        return {"n": 0, "mae": math.nan, "rmse": math.nan, "bias": math.nan, "nrmse": math.nan}
    err = (both["f"] - both["a"]).to_numpy()
    rmse = float(np.sqrt(np.mean(err**2)))
    scale = normalise_by if normalise_by is not None else float(np.mean(np.abs(both["a"])))
    return {
        "n": n,
        "mae": float(np.mean(np.abs(err))),
        "rmse": rmse,
        "bias": float(np.mean(err)),
        "nrmse": rmse / scale if scale > 0 else math.nan,
    }
