"""The OPC-UA read benchmark runs end to end (server in its own process) and polls with one request."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_with_one_read_per_poll() -> None:
    loaded = importlib.util.spec_from_file_location("drivers_opcua_bench", REPO / "bench" / "drivers_opcua.py")
    assert loaded is not None and loaded.loader is not None
    bench = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(bench)
    result = bench.run(duration_s=0.3, rounds=2, points=120)
    assert result["gridctl_points_per_s"] > 0 and result["raw_asyncua_points_per_s"] > 0
    assert result["polls_per_client"] >= 2
    assert result["gridctl_requests_per_poll"] == result["raw_requests_per_poll"] == 1
    assert result["per_point_requests_per_poll"] == 120
