"""What a point role expects of the point it names: quantity, kind, writability."""

from __future__ import annotations

from dataclasses import dataclass

from gridctl.config.models import PointKind
from gridctl.config.units import Quantity

MEASURED = frozenset({PointKind.MEASUREMENT})
COUNTER = frozenset({PointKind.ENERGY_COUNTER})
SETPOINT = frozenset({PointKind.SETPOINT})
STATE = frozenset({PointKind.STATE})


@dataclass(frozen=True)
class Role:
    quantity: Quantity
    kinds: frozenset[PointKind]
    required: bool = False
    writable: bool = False


# Roles of the site's own points; each asset type's roles are its adapter's (`gridctl.assets`).
ROLES: dict[str, dict[str, Role]] = {
    "grid": {
        "power": Role(Quantity.POWER, MEASURED, required=True),
        "import_energy": Role(Quantity.ENERGY, COUNTER, required=True),
        "export_energy": Role(Quantity.ENERGY, COUNTER),
    },
    "dwelling": {
        "meter": Role(Quantity.ENERGY, COUNTER, required=True),
    },
}
