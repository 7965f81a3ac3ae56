"""gridctl's optimiser: a pure library, `solve(problem, settings) -> Schedule` (format: FORMAT.md)."""

from optimizer.highs import WarmStart
from optimizer.problem import (
    LIGHTING_CLASS_LEVELS,
    PV,
    Asset,
    Battery,
    DeferrableLoad,
    DemandResponseEvent,
    EVCharger,
    EVPool,
    EVSession,
    HotWaterTank,
    LightingZone,
    Policy,
    Problem,
    PublicLightingCircuit,
    Settings,
    Site,
    ThermalZone,
)
from optimizer.rolling import roll_forward
from optimizer.schedule import ObjectiveTerm, Schedule, Violation
from optimizer.solve import solve

__all__ = [
    "LIGHTING_CLASS_LEVELS",
    "PV",
    "Asset",
    "Battery",
    "DeferrableLoad",
    "DemandResponseEvent",
    "EVCharger",
    "EVPool",
    "EVSession",
    "HotWaterTank",
    "LightingZone",
    "ObjectiveTerm",
    "Policy",
    "Problem",
    "PublicLightingCircuit",
    "Schedule",
    "Settings",
    "Site",
    "ThermalZone",
    "Violation",
    "WarmStart",
    "roll_forward",
    "solve",
]
