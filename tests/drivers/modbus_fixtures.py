"""Realistic Modbus device maps and helpers for the Modbus driver tests (shared by the test modules)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable

from drivers.base import Value
from drivers.health import Backoff
from drivers.modbus import EndpointPool
from drivers.specs import ModbusDeviceSpec, ModbusPointSpec
from sim.core import SimDevice, WallClock

P = ModbusPointSpec

# A three-phase energy meter: float32 measurements, 32/64-bit energy counters, a status word.
METER_POINTS = (
    P(id="voltage_l1_v", unit="V", function="input_register", register=0, data_type="float32"),
    P(id="voltage_l2_v", unit="V", function="input_register", register=2, data_type="float32"),
    P(id="voltage_l3_v", unit="V", function="input_register", register=4, data_type="float32"),
    P(id="current_l1_a", unit="A", function="input_register", register=6, data_type="float32"),
    P(id="current_l2_a", unit="A", function="input_register", register=8, data_type="float32"),
    P(id="current_l3_a", unit="A", function="input_register", register=10, data_type="float32"),
    P(id="power_kw", unit="kW", function="input_register", register=12, data_type="int32", scale=0.001),
    P(id="reactive_power_kvar", unit="kvar", function="input_register", register=14, data_type="int32",
      scale=0.001),
    P(id="power_factor", unit="", function="input_register", register=16, data_type="int16", scale=0.001),
    P(id="frequency_hz", unit="Hz", function="input_register", register=17, data_type="uint16", scale=0.01),
    # Energy counters live further up, past a hole the planner bridges or not (max_gap_registers).
    P(id="energy_import_kwh", unit="kWh", function="input_register", register=40, data_type="uint32", scale=0.01),
    P(id="energy_export_kwh", unit="kWh", function="input_register", register=42, data_type="uint32", scale=0.01),
    P(id="energy_import_wh_total", unit="Wh", function="input_register", register=44, data_type="uint64"),
    P(id="energy_export_kwh_total", unit="kWh", function="input_register", register=48, data_type="float64"),
    P(id="status_word", unit="", function="holding_register", register=200, data_type="uint16"),
    P(id="phase_loss_alarm", unit="", function="holding_register", register=201, data_type="bool", bit=0),
    P(id="overvoltage_alarm", unit="", function="holding_register", register=201, data_type="bool", bit=5),
    P(id="ct_ratio", unit="", function="holding_register", register=210, data_type="uint16", writable=True,
      min=1, max=5000),
)

# An AC EV charger: writable current limit, enumerated state, little-endian word order counters, coils.
CHARGER_POINTS = (
    P(id="state", unit="", function="input_register", register=0, data_type="uint16",
      states={0: "available", 1: "preparing", 2: "charging", 3: "suspended", 4: "faulted"}),
    P(id="power_kw", unit="kW", function="input_register", register=1, data_type="int32", word_order="little",
      scale=0.001),
    P(id="session_energy_kwh", unit="kWh", function="input_register", register=3, data_type="uint32",
      word_order="little", scale=0.001),
    P(id="current_limit_a", unit="A", function="holding_register", register=10, data_type="uint16", scale=0.1,
      writable=True, min=6, max=32),
    P(id="phases", unit="", function="holding_register", register=11, data_type="uint16", writable=True,
      states={1: "single_phase", 3: "three_phase"}),
    P(id="max_power_kw", unit="kW", function="holding_register", register=12, data_type="float32",
      writable=True, min=0, max=22),
    P(id="charging_enabled", unit="", function="coil", register=0, data_type="bool", writable=True),
    P(id="locked", unit="", function="coil", register=1, data_type="bool", writable=True),
    P(id="cable_connected", unit="", function="discrete_input", register=0, data_type="bool"),
    P(id="fault", unit="", function="discrete_input", register=5, data_type="bool"),
)

# A PV inverter: mixed word/byte orders, int64/float64 counters, temperature with an offset, a command word.
INVERTER_POINTS = (
    P(id="ac_power_kw", unit="kW", function="input_register", register=100, data_type="float32",
      word_order="little"),
    P(id="dc_voltage_v", unit="V", function="input_register", register=102, data_type="uint16", scale=0.1),
    P(id="dc_current_a", unit="A", function="input_register", register=103, data_type="int16", scale=0.01),
    P(id="temperature_c", unit="°C", function="input_register", register=104, data_type="int16", scale=0.1,
      offset=-40.0),
    P(id="energy_today_kwh", unit="kWh", function="input_register", register=105, data_type="uint64",
      byte_order="little", scale=0.001),
    P(id="energy_total_kwh", unit="kWh", function="input_register", register=109, data_type="float64",
      word_order="little", byte_order="little"),
    P(id="grid_offset_wh", unit="Wh", function="input_register", register=113, data_type="int64",
      word_order="little"),
    P(id="power_limit_pct", unit="%", function="holding_register", register=300, data_type="uint16",
      writable=True, min=0, max=100),
    P(id="reactive_setpoint_kvar", unit="kvar", function="holding_register", register=301, data_type="int32",
      scale=0.01, writable=True, min=-50, max=50),
    P(id="cos_phi_setpoint", unit="", function="holding_register", register=303, data_type="float32",
      byte_order="little", writable=True, min=-1, max=1),
    P(id="run", unit="", function="holding_register", register=310, data_type="bool", bit=0, writable=True),
    P(id="curtail", unit="", function="holding_register", register=310, data_type="bool", bit=1, writable=True),
    P(id="reset_count", unit="", function="holding_register", register=311, data_type="uint32",
      writable=True, min=0, max=4_000_000_000),
)

METER_VALUES: dict[str, Value] = {
    "voltage_l1_v": 231.25, "voltage_l2_v": 229.5, "voltage_l3_v": 230.75, "current_l1_a": 12.5,
    "current_l2_a": 11.0, "current_l3_a": 13.25, "power_kw": -8.432, "reactive_power_kvar": 1.25,
    "power_factor": 0.987, "frequency_hz": 49.98, "energy_import_kwh": 123456.78, "energy_export_kwh": 4567.89,
    "energy_import_wh_total": 9_876_543_210_123, "energy_export_kwh_total": 4567.890123456,
    "status_word": 0x8001, "phase_loss_alarm": True, "overvoltage_alarm": False, "ct_ratio": 200,
}
CHARGER_VALUES: dict[str, Value] = {
    "state": 2, "power_kw": 11.04, "session_energy_kwh": 17.532, "current_limit_a": 16.0, "phases": 3,
    "max_power_kw": 11.0, "charging_enabled": True, "locked": True, "cable_connected": True, "fault": False,
}
INVERTER_VALUES: dict[str, Value] = {
    "ac_power_kw": 45.5, "dc_voltage_v": 612.3, "dc_current_a": -0.75, "temperature_c": 41.3,
    "energy_today_kwh": 187.654, "energy_total_kwh": 1_234_567.875, "grid_offset_wh": -123_456_789_012,
    "power_limit_pct": 80, "reactive_setpoint_kvar": -3.5, "cos_phi_setpoint": 0.95, "run": True,
    "curtail": False, "reset_count": 3_000_000_000,
}

FAST_BACKOFF = {"initial_s": 0.05, "cap_s": 0.4}


def fast_pool() -> EndpointPool:
    """An endpoint pool that reconnects quickly, so recovery tests stay short."""
    return EndpointPool(lambda: Backoff(**FAST_BACKOFF))


def device_spec(device_id: str, points: tuple[ModbusPointSpec, ...], *, port: int = 0, unit_id: int = 1,
                timeout_s: float = 0.5, retries: int = 0, poll_interval_s: float = 1.0,
                max_gap_registers: int = 8) -> ModbusDeviceSpec:
    return ModbusDeviceSpec(id=device_id, host="127.0.0.1", port=port, unit_id=unit_id, timeout_s=timeout_s,
                            retries=retries, poll_interval_s=poll_interval_s, max_gap_registers=max_gap_registers,
                            points=points)


def sim_device(spec: ModbusDeviceSpec, values: dict[str, Value] | None = None) -> SimDevice:
    return SimDevice(spec, WallClock(), values)


def at_port(spec: ModbusDeviceSpec, port: int) -> ModbusDeviceSpec:
    return dataclasses.replace(spec, port=port)


def close_enough(expected: Value, actual: Value, point: ModbusPointSpec) -> bool:
    """Equality up to the resolution the wire type gives the point."""
    if isinstance(expected, bool) or isinstance(actual, bool) or point.states:
        return expected == actual
    if point.data_type == "float32":
        return math.isclose(float(expected), float(actual), rel_tol=1e-6, abs_tol=1e-6)
    return math.isclose(float(expected), float(actual), rel_tol=1e-12, abs_tol=abs(point.scale) / 2 + 1e-9)


async def eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0,
                     step_s: float = 0.05) -> None:
    """Wait until `condition()` holds; fail the test after a generous timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(step_s)
