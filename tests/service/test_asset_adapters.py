"""Asset types live in their adapters: the registry covers every type of the site model, and no module
outside `gridctl/assets/` branches on an asset class or an asset type string."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from gridctl.assets import ADAPTERS, site_adapters
from gridctl.config import load_site
from gridctl.config import models as m

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


def _names(node: ast.AST) -> set[str]:
    """Class names a type expression mentions (`A`, `m.A`, `(A, B)`, `A | B`)."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
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
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "isinstance", "issubclass") and len(node.args) == 2:
            named = _names(node.args[1]) & ASSET_CLASSES
            if named:
                found.append(f"{where}: {node.func.id} on {', '.join(sorted(named))}")
        elif isinstance(node, ast.match_case):
            named = {n for sub in ast.walk(node.pattern) if isinstance(sub, ast.MatchClass)
                     for n in _names(sub.cls)} & ASSET_CLASSES
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
        "if isinstance(asset, m.BatteryAsset): pass",
        "if isinstance(asset, (PvArray, LightingZone)): pass",
        "if isinstance(asset, m.ThermalZone | m.EvChargerPool): pass",
        "if asset.type == 'battery': pass",
        "if 'pv' != a.type: pass",
        "match asset:\n    case m.DeferrableAppliance(): pass",
        "match asset.type:\n    case 'public_lighting_circuit': pass",
        "if isinstance(device, ModbusDevice) and asset.id == 'battery': pass",
    ])
    assert len(branches_on_asset_types(source, "example.py")) == 7


def test_no_module_outside_the_adapters_branches_on_asset_types() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ADAPTERS_DIR in path.parents or path == MODELS:
            continue
        found += branches_on_asset_types(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "asset types belong in gridctl/assets/:\n" + "\n".join(found)
