"""Backtests: replay a site's recorded history under the baseline, gridctl and the oracle (`gridctl backtest`)."""

from gridctl.backtest.csvdata import DataError, load_data
from gridctl.backtest.recording import LookaheadError, PastView, Recording
from gridctl.backtest.replay import BacktestSettings
from gridctl.backtest.run import BacktestError, BacktestResult, run_backtest

__all__ = [
    "BacktestError",
    "BacktestResult",
    "BacktestSettings",
    "DataError",
    "LookaheadError",
    "PastView",
    "Recording",
    "load_data",
    "run_backtest",
]
