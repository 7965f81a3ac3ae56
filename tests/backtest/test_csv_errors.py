"""Bad exports get located messages (`file:line: column: message`), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridctl.backtest import DataError, load_data
from gridctl.cli import main
from gridctl.config import load_site

HOMES = Path(__file__).resolve().parents[1] / "data" / "citylearn-homes"
HEADER = "timestamp,load [kW],pv:home-1-pv_kw,price [USD/kWh]"


@pytest.fixture
def site():
    site = load_site(HOMES)
    return site.model_copy(update={"assets": [a for a in site.assets if a.id.startswith("home-1-")]})


def problems(tmp_path: Path, site, lines: list[str], yaml: str | None = None) -> list[str]:
    data = tmp_path / "export.csv"
    data.write_text("\n".join(lines) + "\n")
    if yaml is not None:
        (tmp_path / "export.yaml").write_text(yaml)
    with pytest.raises(DataError) as raised:
        load_data(data, site)
    return raised.value.problems


def hourly(first: int, count: int, day: str = "2024-06-01") -> list[str]:
    return [f"{day}T{h:02d}:00Z,1.5,0.0,0.2" for h in range(first, first + count)]


def test_a_gap_is_located(tmp_path: Path, site) -> None:
    found = problems(tmp_path, site, [HEADER, *hourly(0, 3), *hourly(5, 2)])
    assert found == [f"{tmp_path / 'export.csv'}:5: timestamp: gap: 2024-06-01T05:00Z follows "
                     "2024-06-01T02:00:00+00:00 UTC; rows must come every 60 min (2 missing)"]


def test_a_duplicated_timestamp_is_located(tmp_path: Path, site) -> None:
    found = problems(tmp_path, site, [HEADER, *hourly(0, 3), *hourly(2, 2)])
    assert found[0] == f"{tmp_path / 'export.csv'}:5: timestamp: duplicated timestamp 2024-06-01T02:00Z (also at line 4)"


def test_an_unknown_unit_is_located(tmp_path: Path, site) -> None:
    found = problems(tmp_path, site, ["timestamp,load [kVA],pv:home-1-pv_kw", "2024-06-01T00:00Z,1,0"])
    assert found[0].startswith(f"{tmp_path / 'export.csv'}:1: load [kVA]: unknown unit 'kVA' for load; known: W, kW")


def test_a_cell_that_is_not_a_number_is_located(tmp_path: Path, site) -> None:
    lines = [HEADER, *hourly(0, 3)]
    lines[2] = "2024-06-01T01:00Z,n/a,0.0,0.2"
    assert problems(tmp_path, site, lines) == [f"{tmp_path / 'export.csv'}:3: load [kW]: 'n/a' is not a number"]


def test_local_times_that_dst_makes_ambiguous_or_skips_are_refused(tmp_path: Path, site) -> None:
    # Los Angeles: clocks go back on 6 November 2016 at 02:00 (01:00-02:00 twice), forward on 12 March 2017.
    back = ["timestamp,load_kw,pv:home-1-pv_kw"] + [f"2016-11-06 {h:02d}:00,1,0" for h in (0, 1, 2)]
    found = problems(tmp_path, site, back, "timezone: America/Los_Angeles\nfiles: [export.csv]\n")
    assert found == [f"{tmp_path / 'export.csv'}:3: timestamp: local time 2016-11-06 01:00 is ambiguous in "
                     "America/Los_Angeles (clocks go back, it happens twice): write UTC timestamps or timestamps "
                     "with their offset"]
    forward = ["timestamp,load_kw,pv:home-1-pv_kw"] + [f"2017-03-12 {h:02d}:00,1,0" for h in (1, 2, 3)]
    found = problems(tmp_path, site, forward, "timezone: America/Los_Angeles\nfiles: [export.csv]\n")
    assert found[0] == (f"{tmp_path / 'export.csv'}:3: timestamp: local time 2017-03-12 02:00 does not exist in "
                        "America/Los_Angeles (clocks go forward): write UTC timestamps or timestamps with their offset")


def test_series_the_site_lacks_and_unknown_yaml_fields_are_located(tmp_path: Path, site) -> None:
    found = problems(tmp_path, site, ["timestamp,load:attic [kW],pv:roof [kW]", "2024-06-01T00:00Z,1,0"])
    assert any(":1: load:attic [kW]: no building 'attic'" in p for p in found)
    assert any(":1: pv:roof [kW]: no PV array 'roof'" in p for p in found)
    found = problems(tmp_path, site, [HEADER, *hourly(0, 2)], "stepp: 60\nfiles: [export.csv]\n")
    assert found == [f"{tmp_path / 'export.yaml'}:1: stepp: unknown field; known: timezone, start, step, files, "
                     "sessions"]


def test_the_command_prints_located_problems_and_no_traceback(tmp_path: Path, capsys) -> None:
    data = tmp_path / "export.csv"
    data.write_text("\n".join([HEADER, *hourly(0, 3), *hourly(5, 2)]) + "\n")
    code = main(["backtest", str(HOMES), "--data", str(data), "--from", "2024-06-01", "--to", "2024-06-01"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{data}:5: timestamp: gap" in err
