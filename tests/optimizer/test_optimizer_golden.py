"""Golden cases: small problems whose optimum is worked out by hand in each case file."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from optimizer import Problem, Settings, solve

CASES = sorted((Path(__file__).parent / "cases").glob("[0-9][0-9][0-9]-*.json"))
TOL = 1e-4


def _load(path: Path) -> tuple[Problem, dict]:
    data = json.loads(path.read_text())
    return Problem.model_validate(data["problem"]), data["expected"]


def test_cases_exist() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case(path: Path) -> None:
    problem, expected = _load(path)
    schedule = solve(problem, Settings(mip_gap=0.0))
    assert schedule.status == "optimal", schedule.notes
    assert schedule.objective_eur == pytest.approx(expected["objective_eur"], abs=TOL)
    for name, eur in expected.get("terms", {}).items():
        assert schedule.objective[name].eur == pytest.approx(eur, abs=TOL), name
    for name, value in expected.get("term_values", {}).items():
        assert schedule.objective[name].value == pytest.approx(value, abs=TOL), name
    for column, values in expected.get("setpoints", {}).items():
        got = schedule.setpoints[column].tolist()
        for t, want in enumerate(values):
            if want is not None:
                assert got[t] == pytest.approx(want, abs=TOL), f"{column}[{t}]"
    for column, total in expected.get("sums", {}).items():
        assert schedule.setpoints[column].sum() == pytest.approx(total, abs=TOL), column
    assert schedule.hard_violations == []
    soft = [v for v in schedule.violations if not v.hard]
    assert len(soft) == len(expected["violations"])
    for got, want in zip(soft, expected["violations"], strict=True):
        assert (got.asset_id, got.kind, got.unit) == (want["asset_id"], want["kind"], want["unit"])
        assert got.amount == pytest.approx(want["amount"], abs=TOL)
        assert got.start == datetime.fromisoformat(want["start"])
        assert got.end == datetime.fromisoformat(want["end"])


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case_json_round_trip(path: Path) -> None:
    problem, _ = _load(path)
    assert Problem.from_json(problem.to_json()) == problem
