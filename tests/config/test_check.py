"""`gridctl check`: the demonstrators pass; each kind of broken file reports its exact problem."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.specs import BacnetDeviceSpec
from gridctl.cli import main
from gridctl.config import Problem, SiteError, load_site, read_site
from gridctl.fieldbus import device_specs

HERE = Path(__file__).parent
REPO = HERE.parent.parent
DEMONSTRATORS = ["zac-saint-sauveur", "zac-union", "zac-haute-deule"]


@pytest.mark.parametrize("name", DEMONSTRATORS)
def test_demonstrators_are_clean(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(REPO / "sites" / name)]) == 0
    assert "ok" in capsys.readouterr().out


def test_check_exit_status_from_the_installed_command(tmp_path: Path) -> None:
    site = _make_site(tmp_path, ("kind: base", "kind: basic"))
    command = [sys.executable, "-m", "gridctl.cli", "check", str(site)]
    broken = subprocess.run(command, capture_output=True, text=True, check=False)
    assert broken.returncode == 1
    assert "tariff.kind" in broken.stdout
    clean = subprocess.run([*command[:-1], str(REPO / "sites" / "zac-union")], capture_output=True, text=True,
                           check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_demonstrators_have_what_they_are_meant_to_show() -> None:
    saint_sauveur = load_site(REPO / "sites" / "zac-saint-sauveur")
    union = load_site(REPO / "sites" / "zac-union")
    haute_deule = load_site(REPO / "sites" / "zac-haute-deule")
    for site in (saint_sauveur, union, haute_deule):
        assert {d.protocol for d in site.devices} == {"modbus", "bacnet", "opcua"}, site.id
        assert site.timezone == "Europe/Paris"
    assert len(saint_sauveur.dwellings) >= 40
    assert len({d.meter for d in saint_sauveur.dwellings}) == len(saint_sauveur.dwellings)
    assert {a.type for a in saint_sauveur.assets} >= {"battery", "pv", "public_lighting_circuit", "thermal_zone"}
    assert any(b.use in ("school", "gym") for b in saint_sauveur.buildings)
    pool = next(a for a in union.assets if a.type == "ev_charger_pool")
    assert len(pool.chargers) >= 20
    assert all(union.device(c.points["current_limit"].split("/")[0]).protocol == "modbus" for c in pool.chargers)
    lighting = [a for a in haute_deule.assets if a.type == "lighting_zone"]
    assert lighting and all({"occupancy", "illuminance"} <= set(z.points) for z in lighting)
    assert any(d.protocol == "opcua" for d in haute_deule.devices)


# ---------------------------------------------------------------------- broken files


@dataclass(frozen=True)
class Case:
    name: str
    # (old, new) text replacements applied to the site file, then to the map file.
    site_edits: tuple[tuple[str, str], ...]
    map_edits: tuple[tuple[str, str], ...]
    file: str  # "site.yaml" or "maps/flat-meter.yaml"
    line_of: str  # text whose line the problem must point at
    path: str
    message: str


def _watchdog(point: str, period_s: float, timeout_s: float) -> tuple[str, str]:
    """A site edit declaring a watchdog on the BACnet air handler."""
    return ("    device_instance: 9001\n",
            f"    device_instance: 9001\n    watchdog: {{point: {point}, period_s: {period_s}, timeout_s: {timeout_s}}}\n")


CASES = [
    Case("yaml-syntax", (("name: Test site", "name: [Test site"),), (), "site.yaml", "timezone: Europe/Paris",
         "(document)", "YAML syntax error"),
    Case("duplicate-device-id", (("  - id: ahu\n", "  - id: battery\n"),), (), "site.yaml", "  - id: battery\n    protocol: bacnet",
         "devices[3].id", "duplicate device id 'battery' (first at index 2)"),
    Case("asset-point-missing", (("soc: battery/soc", "soc: battery/state-of-charge"),), (), "site.yaml",
         "soc: battery/state-of-charge", "assets[0].points.soc", "no point 'battery/state-of-charge' (device/point)"),
    Case("writable-without-limits", (), (("writable: true, min: 1, max: 2", "writable: true"),),
         "maps/flat-meter.yaml", "tariff-index", "points[2].writable", "writable point needs both min and max limits"),
    Case("power-as-energy-counter", (("meter: flat-1-meter/energy", "meter: flat-1-meter/power"),), (), "site.yaml",
         "meter: flat-1-meter/power", "dwellings[0].meter",
         "flat-1-meter/power is in 'W' (power), but meter of a dwelling needs energy"),
    Case("overlapping-registers", (), (("register: 10, data_type: uint32", "register: 1, data_type: uint32"),),
         "maps/flat-meter.yaml", "id: energy", "points[1].register",
         "input_register 1 overlaps point 'power' (input_register 0, int32)"),
    Case("data-type-for-function", (("function: coil, register: 0, data_type: bool",
                                     "function: coil, register: 0, data_type: float32"),), (),
         "site.yaml", "id: enable", "devices[2].points[3].data_type",
         "function coil carries single bits: data_type must be bool, not float32"),
    Case("unknown-field", (("capacity_kwh: 100", "capcity_kwh: 100"),), (), "site.yaml", "capcity_kwh",
         "assets[0].capcity_kwh", "unknown field"),
    Case("missing-field", (("    max_discharge_power_kw: 50\n", ""),), (), "site.yaml", "  - id: home-battery",
         "assets[0].max_discharge_power_kw", "required field is missing"),
    Case("unknown-building", (("building: block, floor", "building: tower, floor"),), (), "site.yaml",
         "id: flat-1,", "dwellings[0].building", "unknown building 'tower'"),
    Case("duplicate-yaml-key", (("  export_limit_kw: 50\n", "  export_limit_kw: 50\n  export_limit_kw: 60\n"),), (),
         "site.yaml", "export_limit_kw: 60", "grid.export_limit_kw", "duplicate key"),
    Case("unknown-unit", (), (("unit: W, kind", "unit: Watt, kind"),), "maps/flat-meter.yaml", "id: power",
         "points[0].unit", "unknown unit 'Watt'"),
    Case("writable-input-register", (("register: 2, data_type: uint16, scale: 0.1}",
                                      "register: 2, data_type: uint16, scale: 0.1, writable: true, min: 0, max: 100}"),),
         (), "site.yaml", "id: soc", "devices[2].points[1].writable",
         "a measurement cannot be writable; use kind setpoint or state"),
    Case("bad-timezone", (("timezone: Europe/Paris", "timezone: Europe/Lille"),), (), "site.yaml", "timezone:",
         "timezone", "unknown time zone 'Europe/Lille'"),
    Case("operator-priority", (("priority: 10", "priority: 8"),), (), "site.yaml", "id: zone-setpoint", "devices[3].points[1].priority",
         "priority 8 belongs to life safety and operators; use 9-16"),
    Case("missing-map", (("map: flat-meter", "map: flat-meter-v2"),), (), "site.yaml", "map: flat-meter-v2",
         "devices[1].map", "no device map"),
    Case("gateway-unit-clash", (("    port: 15098\n", "    port: 15099\n"),), (), "site.yaml", "    unit_id: 1\n  - id: battery",
         "devices[1].unit_id", "127.0.0.1:15099 unit 1 is already device 'meter'"),
    Case("required-role-missing", (("      soc: battery/soc\n", ""),), (), "site.yaml",
         "    points:\n      power: battery/power",
         "assets[0].points", "a battery needs a 'soc' point"),
    Case("setpoint-not-writable", (("power_setpoint: battery/power-setpoint", "power_setpoint: battery/power"),), (),
         "site.yaml", "power_setpoint: battery/power", "assets[0].points.power_setpoint",
         "battery/power is a measurement, but power_setpoint needs a setpoint"),
    Case("counter-in-kw", (), (("unit: kWh, kind: energy_counter", "unit: kW, kind: energy_counter"),),
         "maps/flat-meter.yaml", "id: energy", "points[1].unit", "an energy counter must be in Wh, kWh or MWh, not 'kW'"),
    Case("bad-enum", (("protocol: bacnet", "protocol: bacnet-ip"),), (), "site.yaml",
         "protocol: bacnet-ip", "devices[3].protocol",
         "unknown protocol 'bacnet-ip'; expected one of 'modbus', 'bacnet', 'opcua'"),
    Case("wrong-type", (("import_limit_kw: 100", "import_limit_kw: lots"),), (), "site.yaml", "import_limit_kw",
         "grid.import_limit_kw", "Input should be a valid number"),
    Case("watchdog-point-missing", (_watchdog("heartbeat", 10, 60),), (), "site.yaml", "watchdog:",
         "devices[3].watchdog.point", "no point 'heartbeat' on this device"),
    Case("watchdog-point-read-only", (_watchdog("zone-temperature", 10, 60),), (), "site.yaml", "watchdog:",
         "devices[3].watchdog.point", "'zone-temperature' is not writable: gridctl writes the heartbeat"),
    Case("watchdog-timeout-too-short", (_watchdog("zone-setpoint", 60, 90),), (), "site.yaml", "watchdog:",
         "devices[3].watchdog", "timeout_s (90) must be at least two periods (120 s)"),
    Case("bacnet-local-address", (("buildings:\n", "bacnet: {local_address: 10.20.0.300, local_port: 47808}\nbuildings:\n"),),
         (), "site.yaml", "bacnet:", "bacnet.local_address", "'10.20.0.300' is not an IPv4 address"),
    Case("bacnet-local-port", (("buildings:\n", "bacnet: {local_port: 70000}\nbuildings:\n"),),
         (), "site.yaml", "bacnet:", "bacnet.local_port", "less than or equal to 65535"),
    Case("bacnet-local-is-a-device", (("buildings:\n", "bacnet: {local_port: 47899}\nbuildings:\n"),),
         (), "site.yaml", 'address: "127.0.0.1:47899"', "devices[3].address",
         "127.0.0.1:47899 is where gridctl itself talks BACnet/IP from (bacnet.local_port)"),
]


def _make_site(tmp_path: Path, *site_edits: tuple[str, str], map_edits: tuple[tuple[str, str], ...] = ()) -> Path:
    site_dir = tmp_path / "site"
    (site_dir / "maps").mkdir(parents=True)
    site_text = (HERE / "base_site.yaml").read_text()
    map_text = (HERE / "base_map.yaml").read_text()
    for old, new in site_edits:
        assert old in site_text, old
        site_text = site_text.replace(old, new, 1)
    for old, new in map_edits:
        assert old in map_text, old
        map_text = map_text.replace(old, new, 1)
    (site_dir / "site.yaml").write_text(site_text)
    (site_dir / "maps" / "flat-meter.yaml").write_text(map_text)
    return site_dir


def _line(file: Path, text: str) -> int:
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if text.split("\n")[0] in line:
            if "\n" in text:
                following = file.read_text().splitlines()[number]
                if text.split("\n")[1] not in following:
                    continue
            return number
    raise AssertionError(f"{text!r} not in {file}")


def test_base_site_is_clean(tmp_path: Path) -> None:
    site, problems = read_site(_make_site(tmp_path))
    assert problems == []
    assert site is not None and site.point("flat-1-meter/energy").unit == "kWh"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_site_reports_exact_problem(case: Case, tmp_path: Path) -> None:
    site_dir = _make_site(tmp_path, *case.site_edits, map_edits=case.map_edits)
    _, problems = read_site(site_dir)
    file = site_dir / case.file
    expected_line = _line(file, case.line_of)
    matching = [p for p in problems if p.path == case.path and case.message in p.message]
    assert matching, "\n".join(str(p) for p in problems)
    problem = matching[0]
    assert problem.file == str(file)
    assert problem.line == expected_line, str(problem)
    # The demonstrator-level entry point refuses the site and carries the same problem.
    with pytest.raises(SiteError) as raised:
        load_site(site_dir)
    assert problem in raised.value.problems


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    site_dir = _make_site(
        tmp_path,
        ("soc: battery/soc", "soc: battery/charge"),
        ("building: block, floor", "building: tower, floor"),
        map_edits=(("writable: true, min: 1, max: 2", "writable: true"),),
    )
    _, problems = read_site(site_dir)
    paths = {p.path for p in problems}
    assert {"assets[0].points.soc", "dwellings[0].building", "points[2].writable"} <= paths
    assert all(isinstance(p, Problem) for p in problems)


def test_problem_text_names_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site_dir = _make_site(tmp_path, ("soc: battery/soc", "soc: battery/charge"))
    assert main(["check", str(site_dir)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    line = _line(site_dir / "site.yaml", "soc: battery/charge")
    assert out == [f"{site_dir / 'site.yaml'}:{line}: assets[0].points.soc: no point 'battery/charge' (device/point)"]


def test_times_are_not_read_as_base_60_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads an unquoted 22:00 as the number 1320; site files must not.
    site_dir = _make_site(tmp_path, ("""  kind: base
  base_price_eur_per_kwh: 0.1952""", """  kind: hp_hc
  peak_price_eur_per_kwh: 0.2081
  offpeak_price_eur_per_kwh: 0.1635
  offpeak_windows:
    - {start: 22:00, end: 06:00}"""))
    site = load_site(site_dir)
    window = site.tariff.offpeak_windows[0]
    assert (str(window.start), str(window.end)) == ("22:00:00", "06:00:00")


def test_the_site_bacnet_binding_reaches_the_driver_spec(tmp_path: Path) -> None:
    site_dir = _make_site(tmp_path, ("buildings:\n", "bacnet: {local_address: 10.20.0.5, local_port: 47809}\n"
                                                      "buildings:\n"))
    site = load_site(site_dir)
    (spec,) = [s for s in device_specs(site) if isinstance(s, BacnetDeviceSpec)]
    assert (spec.local_address, spec.local_port) == ("10.20.0.5", 47809)
    # Without the section a driver picks a free port of its own, as before.
    (default,) = [s for s in device_specs(load_site(_make_site(tmp_path / "plain"))) if isinstance(s, BacnetDeviceSpec)]
    assert (default.local_address, default.local_port) == (None, 0)


def test_a_watchdog_on_a_counter_point_is_clean_and_no_asset_may_write_it(tmp_path: Path) -> None:
    heartbeat = ("      - {id: zone-setpoint,", "      - {id: heartbeat, unit: \"\", kind: setpoint, object_type: analog-value, "
                 "instance: 90, writable: true, min: 0, max: 65535}\n      - {id: zone-setpoint,")
    site, problems = read_site(_make_site(tmp_path / "clean", _watchdog("heartbeat", 10, 60), heartbeat))
    assert problems == [] and site is not None
    assert site.device("ahu").watchdog.timeout_s == 60  # type: ignore[union-attr]
    taken = ("      soc: battery/soc\n", "      soc: battery/soc\n      charged_energy: ahu/heartbeat\n")
    _, problems = read_site(_make_site(tmp_path / "taken", _watchdog("heartbeat", 10, 60), heartbeat, taken))
    assert any("ahu/heartbeat is the watchdog heartbeat of ahu; no asset may use it" in p.message for p in problems), \
        "\n".join(str(p) for p in problems)
