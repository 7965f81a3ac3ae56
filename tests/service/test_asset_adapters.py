"""Asset types live in their adapters: the registry covers every type of the site model, and no module
outside `gridctl/assets/` branches on an asset class or an asset type string."""

from __future__ import annotations

import ast
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Literal

import pandas as pd
import pytest

import optimizer as opt
from gridctl.assets import (
    ADAPTERS,
    AssetAdapter,
    AssetForecast,
    DispatchContext,
    ForecastContext,
    ForecastModel,
    KpiPart,
    ProblemContext,
    site_adapters,
)
from gridctl.config import load_site
from gridctl.config import models as m
from gridctl.config.roles import MEASURED, STATE, Role
from gridctl.config.units import Quantity
from gridctl.config.windows import in_any
from gridctl.dispatch import WriteRequest
from gridctl.forecast.forecaster import SignalForecaster
from gridctl.policy import SitePolicy
from gridctl.service import planner
from gridctl.service.problem import build_problem
from gridctl.service.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gridctl"
ADAPTERS_DIR = PACKAGE / "assets"
# Where the asset classes are defined (and discriminated by pydantic).
MODELS = PACKAGE / "config" / "models.py"


def _asset_classes() -> list[type]:
    union = typing.get_args(m.Asset)[0]
    return list(typing.get_args(union))


ASSET_CLASSES = {cls.__name__ for cls in _asset_classes()} | {"EvCharger"}
ASSET_TYPES = {typing.get_args(cls.model_fields["type"].annotation)[0] for cls in _asset_classes()}


def test_every_asset_type_of_the_site_model_has_its_adapter() -> None:
    for cls in _asset_classes():
        tag = typing.get_args(cls.model_fields["type"].annotation)[0]
        assert tag in ADAPTERS, f"no adapter registered for asset type {tag!r}"
        assert ADAPTERS[tag].model is cls and ADAPTERS[tag].type == tag
    assert set(ADAPTERS) == ASSET_TYPES


@pytest.mark.parametrize("name", ["zac-saint-sauveur", "zac-union", "zac-haute-deule"])
def test_every_demonstrator_asset_gets_an_adapter_in_file_order(name: str) -> None:
    site = load_site(ROOT / "sites" / name)
    assert [adapter.id for adapter in site_adapters(site)] == [asset.id for asset in site.assets]


def _model_imports(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(aliases of the site-model module, asset classes imported by name) in a module."""
    modules, classes = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("gridctl.config", "gridctl.config.models"):
            for alias in node.names:
                if alias.name == "models":
                    modules.add(alias.asname or alias.name)
                elif alias.name in ASSET_CLASSES:
                    classes.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {alias.asname for alias in node.names if alias.name == "gridctl.config.models" and alias.asname}
    return modules, classes


def _asset_classes_named(node: ast.AST, modules: set[str], classes: set[str]) -> set[str]:
    """Site-model asset classes a type expression names (`A`, `m.A`, `(A, B)`, `A | B`)."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in classes:
            found.add(sub.id)
        elif (isinstance(sub, ast.Attribute) and sub.attr in ASSET_CLASSES and isinstance(sub.value, ast.Name)
              and sub.value.id in modules):
            found.add(sub.attr)
    return found


def _is_type_attribute(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "type"


def _type_strings(node: ast.AST) -> set[str]:
    return {sub.value for sub in ast.walk(node) if isinstance(sub, ast.Constant) and sub.value in ASSET_TYPES}


def branches_on_asset_types(source: str, filename: str) -> list[str]:
    """Where `source` tells asset types apart: isinstance/issubclass or a match on an asset class, or a
    comparison of `.type` with an asset type's name."""
    found = []
    tree = ast.parse(source, filename)
    modules, classes = _model_imports(tree)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "isinstance", "issubclass") and len(node.args) == 2:
            named = _asset_classes_named(node.args[1], modules, classes)
            if named:
                found.append(f"{where}: {node.func.id} on {', '.join(sorted(named))}")
        elif isinstance(node, ast.match_case):
            named = {n for sub in ast.walk(node.pattern) if isinstance(sub, ast.MatchClass)
                     for n in _asset_classes_named(sub.cls, modules, classes)}
            if named:
                found.append(f"{where}: match on {', '.join(sorted(named))}")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_type_attribute(side) for side in sides) and any(_type_strings(side) for side in sides):
                found.append(f"{where}: compares .type with {', '.join(sorted(set().union(*map(_type_strings, sides))))}")
        elif isinstance(node, ast.Match) and _is_type_attribute(node.subject):
            strings = set().union(*(_type_strings(case.pattern) for case in node.cases))
            if strings:
                found.append(f"{where}: match on .type with {', '.join(sorted(strings))}")
    return found


def test_the_scan_finds_each_kind_of_branch() -> None:
    source = "\n".join([
        "from gridctl.config import models as m",
        "from gridctl.config.models import LightingZone, PvArray",
        "import optimizer as opt",
        "if isinstance(asset, m.BatteryAsset): pass",
        "if isinstance(asset, (PvArray, LightingZone)): pass",
        "if isinstance(asset, m.ThermalZone | m.EvChargerPool): pass",
        "if asset.type == 'battery': pass",
        "if 'pv' != a.type: pass",
        "match asset:\n    case m.DeferrableAppliance(): pass",
        "match asset.type:\n    case 'public_lighting_circuit': pass",
        "if isinstance(device, ModbusDevice) and asset.id == 'battery': pass",
        "if isinstance(part, opt.ThermalZone): pass",  # the optimiser's classes are not the site's
    ])
    assert len(branches_on_asset_types(source, "example.py")) == 7


def test_no_module_outside_the_adapters_branches_on_asset_types() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ADAPTERS_DIR in path.parents or path == MODELS:
            continue
        found += branches_on_asset_types(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "asset types belong in gridctl/assets/:\n" + "\n".join(found)


# --------------------------------------------------------------------------- a new type through the interface


class HotWaterTank(m.AssetBase):
    """A domestic hot-water tank as a site model would describe it (not yet in the `Asset` union)."""

    type: Literal["hot_water_tank"]
    power_kw: float
    min_temperature_c: float = 50.0


class _Draws(ForecastModel):
    def forecast(self, ctx: ForecastContext) -> AssetForecast:
        # Morning and evening draws, kWh of hot water per step.
        return AssetForecast(series={"draw_kwh": [1.0 if t.hour in (6, 19) else 0.1 for t in ctx.mids]})


class Tank(AssetAdapter[HotWaterTank]):
    """A tank written only against the adapter interface: nothing of the service knows it."""

    type = "hot_water_tank"
    model = HotWaterTank
    roles = MappingProxyType({
        "tank_temperature": Role(Quantity.TEMPERATURE, MEASURED, required=True),
        "heater_command": Role(Quantity.DIMENSIONLESS, STATE, required=True, writable=True),
        "power": Role(Quantity.POWER, MEASURED),
    })
    seen_draws: ClassVar[list[list[float]]] = []

    def watched_points(self) -> list[str]:
        return [self.asset.points["tank_temperature"]]

    def forecast_model(self, history_days: int) -> ForecastModel:
        return _Draws()

    def problem_assets(self, ctx: ProblemContext) -> list[opt.Asset]:
        draws = ctx.forecasts.series[self.id]["draw_kwh"]
        Tank.seen_draws.append(draws)
        # Until the optimiser has a tank, its heater is a load to place before the draws.
        return [opt.DeferrableLoad(id=self.id, earliest_start=ctx.start, finish_by=ctx.end,
                                   power_profile_kw=[self.asset.power_kw] * 4)]

    def follow(self, ctx: DispatchContext) -> list[WriteRequest]:
        return [ctx.request(self.asset.points["heater_command"], (ctx.planned_value(f"{self.id}.power_kw") or 0) > 0)]

    def safe_default(self, ctx: DispatchContext) -> list[WriteRequest]:
        # The off-peak contactor: heat during the tariff's off-peak hours.
        return [ctx.request(self.asset.points["heater_command"], in_any(ctx.now, ctx.site.tariff.offpeak_windows,
                                                                         ctx.tz))]

    baseline = safe_default

    def history_kpis(self, hourly) -> dict[str, KpiPart]:
        below = (hourly(self.asset.points["tank_temperature"], "value_avg") < self.asset.min_temperature_c).sum()
        return {"hot_water_below_minimum": KpiPart(float(below), "h", "hours the tank was below its minimum")}


@pytest.fixture
def tank_site(monkeypatch: pytest.MonkeyPatch) -> m.Site:
    monkeypatch.setitem(ADAPTERS, "hot_water_tank", Tank)
    site = load_site(ROOT / "sites" / "zac-haute-deule")
    tank = HotWaterTank(id="dhw-tank", type="hot_water_tank", power_kw=6.0, points={
        "tank_temperature": "bms/dhw-temperature", "heater_command": "bms/dhw-boost", "power": "bms/dhw-heater-power"})
    # The tank replaces the appliance that drove the same boost contact.
    return site.model_copy(update={"assets": [*(a for a in site.assets if a.id != "dhw-boost"), tank]})


async def test_a_new_asset_type_plugs_in_through_its_adapter_and_registry_line_alone(tank_site: m.Site) -> None:
    night = datetime(2026, 1, 13, 23, 0, tzinfo=UTC)  # 00:00 in Lille: off-peak
    snapshot = Snapshot(night, MappingProxyType({}), MappingProxyType({}))
    forecasts = await SignalForecaster().forecast(tank_site, snapshot, night, 96, timedelta(minutes=15))
    assert len(forecasts.series["dhw-tank"]["draw_kwh"]) == 96
    problem = build_problem(tank_site, SitePolicy(), snapshot, forecasts)
    assert "dhw-tank" in {a.id for a in problem.assets} and Tank.seen_draws[-1][0] == 0.1
    # No reading of the tank's temperature: the tank is on its contactor, alarmed like any other asset.
    result = planner.plan(tank_site, None, snapshot, night, lambda _t: True)
    assert result.stale["dhw-tank"] == ["bms/dhw-temperature"]
    command = next(r for r in result.requests if r.address == "bms/dhw-boost")
    assert command.actor == "gridctl:fallback" and command.value is True
    morning = night + timedelta(hours=9)
    assert next(r.value for r in planner.baseline(tank_site, snapshot, morning, lambda _t: False)
                if r.address == "bms/dhw-boost") is False
    # Its KPI from the history's hourly means: two hours of three below 50 °C.
    tank = site_adapters(tank_site)[-1]
    kpi = tank.history_kpis(lambda _address, _column: pd.Series([45.0, 55.0, 48.0]))["hot_water_below_minimum"]
    assert (kpi.value, kpi.unit) == (2.0, "h")
