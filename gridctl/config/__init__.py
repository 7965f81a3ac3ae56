"""Site descriptions: YAML files validated into typed models."""

from gridctl.config.loader import Problem, SiteError, load_site, read_site
from gridctl.config.models import (
    BacnetDevice,
    BacnetPoint,
    ModbusDevice,
    ModbusPoint,
    OpcuaDevice,
    OpcuaPoint,
    Point,
    PointKind,
    Site,
)

__all__ = [
    "BacnetDevice",
    "BacnetPoint",
    "ModbusDevice",
    "ModbusPoint",
    "OpcuaDevice",
    "OpcuaPoint",
    "Point",
    "PointKind",
    "Problem",
    "Site",
    "SiteError",
    "load_site",
    "read_site",
]
