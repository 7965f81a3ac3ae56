"""Backtests on recorded data: no peeking, a hand-computed saving, the oracle as a bound, the command."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gridctl.backtest import BacktestSettings, LookaheadError, load_data, run_backtest
from gridctl.backtest.replay import replay
from gridctl.cli import main
from gridctl.config import load_site

DATA = Path(__file__).resolve().parents[1] / "data"
HOMES = DATA / "citylearn-homes"
CITYLEARN = DATA / "citylearn-2022-homes-1-5"


def homes_subset(tmp_path: Path, homes: list[int]):
    """The CityLearn site reduced to some homes, and a description of their data."""
    site = load_site(HOMES)
    keep = {f"home-{i}-battery" for i in homes} | {f"home-{i}-pv" for i in homes}
    site = site.model_copy(update={"assets": [a for a in site.assets if a.id in keep],
                                   "buildings": [b for b in site.buildings if b.id in {f"home-{i}" for i in homes}]})
    files = [f'  - {{path: "{CITYLEARN / f"Building_{i}.csv"}", columns: {{non_shiftable_load: "load:home-{i} [kWh]", '
             f'solar_generation: "pv:home-{i}-pv [Wh/kWp]"}}}}' for i in homes]
    (tmp_path / "backtest.yaml").write_text(
        "timezone: America/Los_Angeles\nstart: 2016-08-01T00:00\nstep: 60\nfiles:\n" + "\n".join(files) + "\n"
        f'  - {{path: "{CITYLEARN / "pricing.csv"}", columns: {{electricity_pricing: "price [USD/kWh]"}}}}\n'
        f'  - {{path: "{CITYLEARN / "carbon_intensity.csv"}", columns: {{carbon_intensity: "carbon [kg/kWh]"}}}}\n')
    return site, load_data(tmp_path, site)


def local(text: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("America/Los_Angeles")).astimezone(UTC)


def test_a_past_view_refuses_the_future(tmp_path: Path) -> None:
    _site, recording = homes_subset(tmp_path, [1])
    cut = local("2016-08-10T12:00")
    view = recording.view(cut)
    assert view.at("load_kw", cut - timedelta(hours=1)) == recording.value("load_kw", recording.position(cut) - 1)
    with pytest.raises(LookaheadError):
        view.at("load_kw", cut)
    assert len(view.last("load_kw", 10_000)) == recording.position(cut)


def test_gridctl_never_reads_past_now(tmp_path: Path) -> None:
    """A recording poisoned from T on (every value 10⁶, no session after T) leaves every command gridctl gave
    before T as it was: nothing it decided before T read anything recorded from T on."""
    site, recording = homes_subset(tmp_path, [1, 2])
    start, poison = local("2016-08-09T00:00"), local("2016-08-10T05:00")
    settings = BacktestSettings(start=start, end=poison + timedelta(hours=12))
    clean = asyncio.run(replay(site, recording, settings, "gridctl"))
    poisoned = asyncio.run(replay(site, recording.poisoned(poison), settings, "gridctl"))
    before = clean.trace.index < poison
    commands = [c for c in clean.trace.columns if c.startswith("command:")]
    assert commands and before.sum() == 29
    for column in commands:
        np.testing.assert_array_equal(clean.trace.loc[before, column], poisoned.trace.loc[before, column])
    # The poison is seen from T on: the test would catch a replay that read the future.
    after = ~before
    assert not all(np.array_equal(clean.trace.loc[after, c], poisoned.trace.loc[after, c]) for c in commands)


def test_gridctl_cuts_no_pv_it_can_export_for_nothing(tmp_path: Path) -> None:
    """The homes' tariff pays nothing for export and the connection takes 100 kW: nothing is worth curtailing
    for, so the inverter is never limited (plans that tied curtailing with exporting for free cut 18 kWh of
    these three days, some of it while the home was importing)."""
    site, recording = homes_subset(tmp_path, [1])
    start = local("2016-08-09T00:00")
    replayed = asyncio.run(replay(site, recording, BacktestSettings(start=start, end=start + timedelta(days=3)),
                                  "gridctl"))
    assert replayed.plans == 72 and replayed.plan_failures == 0
    trace = replayed.trace
    assert trace["home-1-pv.curtailed_kw"].abs().max() < 1e-9
    assert (trace["command:home-1-inverter/curtailment-limit"] == 100.0).all()
    assert trace["home-1-pv.power_kw"].max() > 2.0  # it was sunny


def test_perfect_forecasts_plan_on_the_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis switch that tells forecast error apart from planning choices: gridctl's plans read the
    recorded load and PV instead of its forecasts of them, and only those."""
    import gridctl.backtest.replay as replay_module

    site, recording = homes_subset(tmp_path, [1])
    start = local("2016-08-09T10:00")
    seen: list[tuple[int, list[float], list[float]]] = []
    build = replay_module.build_problem

    def spy(site_, policy, snapshot, forecasts, memory=None):
        seen.append((recording.position(forecasts.start), forecasts.base_load_kw, forecasts.pv_kw["home-1-pv"]))
        return build(site_, policy, snapshot, forecasts, memory)

    monkeypatch.setattr(replay_module, "build_problem", spy)
    for perfect in (frozenset({"load", "pv"}), frozenset()):
        seen.clear()
        settings = BacktestSettings(start=start, end=start + timedelta(hours=4), perfect_forecasts=perfect)
        asyncio.run(replay(site, recording, settings, "gridctl"))
        assert len(seen) == 4
        for first, load, pv in seen:
            assert np.allclose(load, recording.values("load_kw", first, first + 24)) == bool(perfect)
            assert np.allclose(pv, recording.values("pv_kw:home-1-pv", first, first + 24)) == bool(perfect)
    with pytest.raises(ValueError, match="weather"):
        asyncio.run(replay(site, recording, BacktestSettings(start=start, end=start + timedelta(hours=1),
                                                             perfect_forecasts=frozenset({"weather"})), "gridctl"))


def write_two_price_site(tmp_path: Path) -> tuple[Path, Path]:
    """One home, a 10 kWh battery without losses, no PV, 2 kW of load, 0.10 €/kWh until noon then 0.30."""
    site_dir = tmp_path / "site"
    (site_dir / "maps").mkdir(parents=True)
    for name in ("home-battery.yaml", "pv-inverter.yaml", "grid-meter.yaml"):
        (site_dir / "maps" / name).write_text((HOMES / "maps" / name).read_text())
    (site_dir / "site.yaml").write_text("""id: two-price
name: Two prices
timezone: Europe/Paris
location: {latitude: 50.6, longitude: 3.06}
grid: {import_limit_kw: 50, export_limit_kw: 50, subscribed_power_kw: 50,
       points: {power: meter/power, import_energy: meter/import-energy}}
tariff: {kind: spot}
buildings: [{id: home, use: residential}]
devices:
  - {id: meter, protocol: modbus, map: grid-meter, host: 127.0.0.1, port: 15500, unit_id: 1}
  - {id: battery, protocol: modbus, map: home-battery, host: 127.0.0.1, port: 15500, unit_id: 2}
assets:
  - {id: battery, type: battery, capacity_kwh: 10, max_charge_power_kw: 5, max_discharge_power_kw: 5,
     charge_efficiency: 1.0, discharge_efficiency: 1.0, soc_min_pct: 0, soc_max_pct: 100,
     cycling_cost_eur_per_kwh: 0,
     points: {power: battery/power, power_setpoint: battery/power-setpoint, soc: battery/soc}}
""")
    data = tmp_path / "data.csv"
    rows = ["timestamp,load [kW],price [EUR/kWh]"]
    moment = datetime(2024, 3, 4, tzinfo=UTC) - timedelta(hours=1)  # midnight in Paris (UTC+1)
    for _ in range(24 * 6):
        hour = (moment + timedelta(hours=1)).hour
        rows.append(f"{moment.isoformat()},2.0,{0.10 if hour < 12 else 0.30}")
        moment += timedelta(hours=1)
    data.write_text("\n".join(rows) + "\n")
    return site_dir, data


def test_a_lossless_battery_on_two_prices_saves_what_a_hand_computes(tmp_path: Path) -> None:
    """Three days: the battery starts half full (5 kWh) and must end so. It can empty itself into the first
    afternoon (10 kWh after a morning top-up), cycle 10 kWh on the second day and 5 on the last: 25 kWh moved
    from 0.30 to 0.10 €/kWh, a saving of 25 × 0.20 = 5.00 €."""
    site_dir, data = write_two_price_site(tmp_path)
    site = load_site(site_dir)
    recording = load_data(data, site)
    start = datetime(2024, 3, 6, tzinfo=UTC) - timedelta(hours=1)
    result = run_backtest(site, recording, BacktestSettings(start=start, end=start + timedelta(days=3)),
                          workers=1, progress=None)
    cost = {name: k.period["cost"] for name, k in result.kpis.items()}
    assert cost["baseline"] == pytest.approx(3 * (12 * 2 * 0.10 + 12 * 2 * 0.30))
    assert cost["baseline"] - cost["oracle"] == pytest.approx(5.00, abs=1e-6)
    assert result.kpis["oracle"].period["battery_stored_delta_kwh"] == pytest.approx(0.0, abs=1e-6)
    # gridctl may end with less in the battery than it started with: the objective (the oracle's own terms,
    # energy left short included) is what it cannot beat.
    objective = {name: k.period["objective"] for name, k in result.kpis.items()}
    assert objective["oracle"] == pytest.approx(cost["oracle"], abs=1e-6)
    assert objective["oracle"] <= objective["gridctl"] < objective["baseline"]


def test_the_oracle_is_never_beaten_over_a_month(tmp_path: Path) -> None:
    site, recording = homes_subset(tmp_path, [1])
    start = local("2016-08-09T00:00")
    result = run_backtest(site, recording, BacktestSettings(start=start, end=start + timedelta(days=30)),
                          progress=None)
    period = {name: k.period for name, k in result.kpis.items()}
    oracle = result.replays["oracle"].oracle
    assert oracle is not None and oracle["bound"] is True
    bound = oracle["lower_bound_eur"]
    for name in ("baseline", "gridctl", "oracle"):
        assert bound <= period[name]["objective"] + 1e-6, name
    assert period["oracle"]["cost"] <= period["gridctl"]["cost"] < period["baseline"]["cost"]
    share = result.share_of_oracle_saving
    assert share is not None and 0.0 < share <= 1.0
    assert len(result.kpis["gridctl"].daily) == 30
    assert period["gridctl"]["battery_cycles"] > 5


def test_the_command_reports_kpis_and_writes_setpoints_days_and_a_week(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["backtest", str(HOMES), "--data", str(CITYLEARN), "--from", "2016-08-09", "--to", "2016-08-10",
                 "--json", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert set(report["controllers"]) == {"baseline", "gridctl", "oracle"}
    for kpis in report["controllers"].values():
        assert {"cost", "co2_kg", "import_kwh", "peak_kw", "ramping_kw", "load_factor"} <= set(kpis)
    assert report["currency"] == "USD"
    setpoints = (out / "setpoints.csv").read_text().splitlines()
    assert len(setpoints) == 1 + 48
    assert "gridctl:command:home-1-battery/power-setpoint" in setpoints[0]
    assert len((out / "daily.csv").read_text().splitlines()) == 1 + 2
    page = (out / "week.html").read_text()
    assert "<svg" in page and "<script" not in page
