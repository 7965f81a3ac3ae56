"""Forecasts for the optimiser: site load, PV, prices and carbon, and their accuracy.

Pure functions over pandas objects: history and weather are passed in, nothing is read here.
Indexes are timezone-aware; results are indexed like the requested horizon.
"""

from gridctl.forecast.accuracy import accuracy
from gridctl.forecast.load import horizon_index, load_forecast, load_forecasts
from gridctl.forecast.pv import clear_sky_index, pv_forecast, pv_power_kw
from gridctl.forecast.tariffs import (
    EDF_BASE_2025_08,
    EDF_HPHC_2025_08,
    EDF_TEMPO_2025_08,
    base_price,
    carbon_intensity,
    hphc_price,
    spot_price,
    tempo_colour,
    tempo_price,
)

__all__ = [
    "EDF_BASE_2025_08",
    "EDF_HPHC_2025_08",
    "EDF_TEMPO_2025_08",
    "accuracy",
    "base_price",
    "carbon_intensity",
    "clear_sky_index",
    "horizon_index",
    "hphc_price",
    "load_forecast",
    "load_forecasts",
    "pv_forecast",
    "pv_power_kw",
    "spot_price",
    "tempo_colour",
    "tempo_price",
]
