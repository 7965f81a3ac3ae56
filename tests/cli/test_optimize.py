"""`gridctl optimize`: bad problems and options are refused before solving, with the field named;
a solve without a schedule says so; `--json` prints JSON and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridctl.commands.optimize import main as optimize_main
from optimizer import HotWaterTank, Problem, Site

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "optimizer" / "cases"
SMALL = {
    "start": "2026-01-15T00:00:00Z", "n_steps": 2, "step_minutes": 60,
    "site": {"load_kw": [1.0, 2.0], "import_price_eur_per_kwh": 0.2},
    "assets": [{"type": "battery", "id": "bat", "capacity_kwh": 10, "max_charge_kw": 5, "max_discharge_kw": 5,
                "initial_energy_kwh": 2}],
}


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "problem.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "field", "message"), [
    (json.dumps(SMALL).replace("[1.0, 2.0]", "[1.0, NaN]"), "site.load_kw[1]", "finite number"),
    (json.dumps(SMALL).replace('"capacity_kwh": 10', '"capacity_kwh": Infinity'), "assets[0].capacity_kwh",
     "finite number"),
    (json.dumps(SMALL).replace('"import_price_eur_per_kwh": 0.2', '"import_price_eur_per_kwh": -1e999'),
     "site.import_price_eur_per_kwh", "finite number"),
    (json.dumps(SMALL).replace('"max_charge_kw": 5', '"max_charge_kw": true'), "assets[0].max_charge_kw",
     "valid number"),
    (json.dumps(SMALL).replace('"n_steps": 2', '"n_steps": true'), "n_steps", "valid integer"),
])
def test_non_finite_and_boolean_numbers_are_refused_with_the_field_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, field: str, message: str
) -> None:
    assert optimize_main([str(_write(tmp_path, text))]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert f"{field}: " in out.err and message in out.err, out.err
    assert len([line for line in out.err.splitlines() if line.startswith("  ")]) == 1, out.err


def test_unreadable_files_are_refused_with_their_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin1 = json.dumps({**SMALL, "assets": [{**SMALL["assets"][0], "id": "batterie-été"}]}, ensure_ascii=False)
    cases = [
        (_write(tmp_path, latin1.encode("latin-1")), "not UTF-8 text (byte 0xe9"),
        (tmp_path / "missing.json", "cannot read: No such file or directory"),
        (tmp_path, "cannot read: Is a directory"),
    ]
    for path, message in cases:
        assert optimize_main([str(path)]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "syntax.json").write_text('{"start": "2026-01-15T00:00:00Z",\n "n_steps": 2,,}')
    assert optimize_main([str(tmp_path / "syntax.json")]) == 2
    assert "syntax.json:2:15: invalid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [
    ("--time-limit", "0"), ("--time-limit", "-3"), ("--time-limit", "nan"), ("--time-limit", "inf"),
    ("--time-limit", "soon"), ("--gap", "-0.01"), ("--gap", "nan"),
])
def test_bad_options_are_refused_before_reading_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        optimize_main([str(tmp_path / "never-read.json"), option, value])
    assert exit_.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_out_in_a_missing_folder_is_refused_before_solving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problem = str(_write(tmp_path, json.dumps(SMALL)))
    assert optimize_main([problem, "--out", str(tmp_path / "nowhere" / "schedule.csv")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and f"folder {tmp_path / 'nowhere'} does not exist" in out.err
    assert optimize_main([problem, "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def _hard_problem(tmp_path: Path) -> Path:
    # Thirty contactor-switched tanks over a day in quarter-hours: far more than a microsecond of work.
    tanks = [HotWaterTank(id=f"t{i}", volume_l=200, heater_max_power_kw=2.2, standing_loss_kw_per_k=0.0015,
                          initial_temperature_c=45.0 + i % 10,
                          draw_l=[30.0 if t % 7 == i % 7 else 0.0 for t in range(96)]) for i in range(30)]
    problem = Problem(start=datetime(2026, 1, 15, tzinfo=UTC), n_steps=96, step_minutes=15, assets=tanks,
                      site=Site(load_kw=5.0, import_limit_kw=40.0,
                                import_price_eur_per_kwh=[0.16 if t < 24 else 0.21 for t in range(96)]))
    return _write(tmp_path, problem.to_json())


def test_a_time_limit_without_a_schedule_says_so_and_never_reports_an_objective(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_hard_problem(tmp_path))
    assert optimize_main([path, "--time-limit", "1e-6", "--out", str(tmp_path / "s.csv")]) == 3
    out = capsys.readouterr()
    assert "status: no_solution" in out.out
    assert "objective:" not in out.out and "EUR" not in out.out
    assert "within the time limit of 1e-06 s" in out.err and "--time-limit" in out.err
    assert not (tmp_path / "s.csv").exists()
    assert optimize_main([path, "--time-limit", "1e-6", "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "no_solution" and report["objective_eur"] is None and report["objective"] == {}


def test_json_report_is_the_whole_of_stdout_in_a_fresh_process(tmp_path: Path) -> None:
    # HiGHS prints a banner on the first solver object of a process: only a fresh process shows it.
    for case in ("001-battery-arbitrage.json", "010-ev-pool-shared-limit.json"):
        done = subprocess.run([sys.executable, "-m", "gridctl.cli", "optimize", str(CASES / case), "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "optimal"
        assert "Traceback" not in done.stderr
