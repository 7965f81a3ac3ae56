"""What a data column holds, read from its header: `load_kw`, `pv:roof [kWh]`, `price [EUR/MWh]`.

A header is a series name, optionally `:` and the id of the building or asset it belongs to, then its
unit in brackets or as a suffix after `_`. The same syntax serves in the YAML beside the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Series a backtest reads, and what each means.
ROLES = {
    "load": "consumption gridctl does not control (a building's, with `:building`, or the site's)",
    "grid": "the site's net import from the grid (export negative); flexible assets' measured power is removed",
    "pv": "PV production (of the asset named after `:`; the site's only PV array when unnamed)",
    "battery": "a battery's measured power (charging positive), removed from the load or grid series",
    "ev": "an EV charger's measured power, removed from the load or grid series",
    "appliance": "a deferrable appliance's measured power, removed from the load or grid series",
    "price": "import price per kWh",
    "export_price": "export price per kWh",
    "carbon": "grid carbon intensity",
}
# Roles whose measured power is taken out of the load (it is simulated instead).
REMOVED = ("battery", "ev", "appliance")


@dataclass(frozen=True)
class Unit:
    """A unit and how to bring a value to the backtest's own: kW, per kWh, kg/kWh."""

    text: str
    kind: str  # power, energy, per_kwp_power, per_kwp_energy, price, carbon
    factor: float
    currency: str | None = None


def _units() -> dict[str, Unit]:
    units: dict[str, Unit] = {}

    def add(kind: str, factor: float, *names: str, currency: str | None = None) -> None:
        for name in names:
            units[name.lower()] = Unit(name, kind, factor, currency)

    add("power", 0.001, "W")
    add("power", 1.0, "kW")
    add("power", 1000.0, "MW")
    add("energy", 0.001, "Wh")
    add("energy", 1.0, "kWh")
    add("energy", 1000.0, "MWh")
    add("per_kwp_power", 0.001, "W/kWp")
    add("per_kwp_power", 1.0, "kW/kWp")
    add("per_kwp_energy", 0.001, "Wh/kWp")
    add("per_kwp_energy", 1.0, "kWh/kWp")
    for symbols, code in ((("EUR", "€"), "EUR"), (("USD", "$"), "USD"), (("GBP", "£"), "GBP"), (("CHF",), "CHF")):
        for symbol in symbols:
            add("price", 1.0, f"{symbol}/kWh", currency=code)
            add("price", 0.001, f"{symbol}/MWh", currency=code)
    add("price", 0.01, "c€/kWh", "ct/kWh", "c$/kWh", currency="EUR")
    add("carbon", 1.0, "kg/kWh", "kgCO2/kWh", "kgCO2e/kWh", "t/MWh", "tCO2/MWh", "tCO2e/MWh")
    add("carbon", 0.001, "g/kWh", "gCO2/kWh", "gCO2e/kWh", "kg/MWh", "kgCO2/MWh", "kgCO2e/MWh")
    return units


UNITS = _units()
# `_unit` suffixes in identifier style: load_kw, price_eur_per_kwh, carbon_g_per_kwh.
SUFFIXES = {
    "w": "W", "kw": "kW", "mw": "MW", "wh": "Wh", "kwh": "kWh", "mwh": "MWh",
    "w_per_kwp": "W/kWp", "kw_per_kwp": "kW/kWp", "wh_per_kwp": "Wh/kWp", "kwh_per_kwp": "kWh/kWp",
    "eur_per_kwh": "EUR/kWh", "eur_per_mwh": "EUR/MWh", "usd_per_kwh": "USD/kWh", "usd_per_mwh": "USD/MWh",
    "gbp_per_kwh": "GBP/kWh", "kg_per_kwh": "kg/kWh", "g_per_kwh": "g/kWh",
}
# What each role's unit must measure.
KINDS = {
    "load": ("power", "energy"), "grid": ("power", "energy"), "battery": ("power", "energy"),
    "ev": ("power", "energy"), "appliance": ("power", "energy"),
    "pv": ("power", "energy", "per_kwp_power", "per_kwp_energy"),
    "price": ("price",), "export_price": ("price",), "carbon": ("carbon",),
}
_BRACKETED = re.compile(r"^\s*(?P<name>[^\[\]]+?)\s*[\[(](?P<unit>[^\[\]()]*)[\])]\s*$")


@dataclass(frozen=True)
class Column:
    """A data column: its role, the building or asset it belongs to, its unit."""

    role: str
    target: str | None
    unit: Unit

    def label(self) -> str:
        return self.role if self.target is None else f"{self.role}:{self.target}"


class ColumnError(ValueError):
    pass


def parse_column(header: str) -> Column:
    """The column a header describes; ColumnError says what is wrong with it."""
    text = header.strip()
    matched = _BRACKETED.match(text)
    if matched:
        name, unit_text = matched["name"].strip(), matched["unit"].strip()
    else:
        name, unit_text = _split_suffix(text)
    role, _, target = name.partition(":")
    role = role.strip().lower()
    target = target.strip() or None
    if role not in ROLES:
        raise ColumnError(f"unknown series {role!r}; known: {', '.join(ROLES)} (e.g. 'load [kW]', 'pv:roof_kwh')")
    if unit_text is None or not unit_text:
        raise ColumnError(f"no unit: write it in brackets or as a suffix, e.g. '{name} [kW]' or '{name}_kw'")
    unit = UNITS.get(unit_text.lower())
    if unit is None:
        raise ColumnError(f"unknown unit {unit_text!r} for {role}; known: "
                          f"{', '.join(u.text for u in UNITS.values() if u.kind in KINDS[role])}")
    if unit.kind not in KINDS[role]:
        raise ColumnError(f"{role} cannot be in {unit.text}; use one of "
                          f"{', '.join(u.text for u in UNITS.values() if u.kind in KINDS[role])}")
    if target is None and role in REMOVED:
        raise ColumnError(f"{role} names its asset: '{role}:<asset id> [kW]'")
    return Column(role, target, unit)


def _split_suffix(text: str) -> tuple[str, str | None]:
    lowered = text.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lowered.endswith("_" + suffix) and len(text) > len(suffix) + 1:
            return text[:-len(suffix) - 1], SUFFIXES[suffix]
    return text, None
