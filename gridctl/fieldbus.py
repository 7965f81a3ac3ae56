"""Turn a site's device descriptions into the specs the protocol drivers take."""

from __future__ import annotations

from pathlib import Path

from drivers.specs import (
    BacnetDeviceSpec,
    BacnetPointSpec,
    DeviceSpec,
    ModbusDeviceSpec,
    ModbusPointSpec,
    OpcuaDeviceSpec,
    OpcuaPointSpec,
    OpcuaSecuritySpec,
)
from gridctl.config.models import BacnetDevice, BacnetSettings, ModbusDevice, OpcuaDevice, Site

_COMMON = ("id", "unit", "writable", "min", "max", "states")


def device_spec(device: ModbusDevice | BacnetDevice | OpcuaDevice, site_dir: Path | None = None, *,
                bacnet: BacnetSettings | None = None) -> DeviceSpec:
    """The driver spec of one site device; certificate paths are resolved against `site_dir`, and a BACnet
    device talks from the site's `bacnet` local address and port."""
    common = {"id": device.id, "timeout_s": device.timeout_s, "retries": device.retries,
              "poll_interval_s": device.poll_interval_s}
    if isinstance(device, ModbusDevice):
        points = tuple(
            ModbusPointSpec(**{k: getattr(p, k) for k in _COMMON}, function=p.function,
                            register=p.register_address, data_type=p.data_type, word_order=p.word_order,
                            byte_order=p.byte_order, scale=p.scale, offset=p.offset, bit=p.bit)
            for p in device.points
        )
        return ModbusDeviceSpec(**common, host=device.host, port=device.port, unit_id=device.unit_id,
                                max_gap_registers=device.max_gap_registers, points=points)
    if isinstance(device, BacnetDevice):
        points = tuple(
            BacnetPointSpec(**{k: getattr(p, k) for k in _COMMON}, object_type=p.object_type,
                            instance=p.instance, property=p.property, priority=p.priority)
            for p in device.points
        )
        local = bacnet or BacnetSettings()
        return BacnetDeviceSpec(**common, address=device.address, device_instance=device.device_instance,
                                default_priority=device.default_priority, points=points,
                                local_address=local.local_address, local_port=local.local_port)
    security = device.security

    def resolve(path: str | None) -> str | None:
        if path is None or site_dir is None:
            return path
        return str((site_dir / path).resolve())

    points = tuple(
        OpcuaPointSpec(**{k: getattr(p, k) for k in _COMMON}, node_id=p.node_id, data_type=p.data_type)
        for p in device.points
    )
    return OpcuaDeviceSpec(
        **common, endpoint=device.endpoint, subscription=device.subscription, points=points,
        security=OpcuaSecuritySpec(policy=security.policy, mode=security.mode,
                                   certificate=resolve(security.certificate),
                                   private_key=resolve(security.private_key),
                                   server_certificate=resolve(security.server_certificate)),
    )


def device_specs(site: Site, site_dir: Path | None = None) -> list[DeviceSpec]:
    return [device_spec(device, site_dir, bacnet=site.bacnet) for device in site.devices]
