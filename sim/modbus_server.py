"""Simulated Modbus TCP devices served by pymodbus's server.

One `SimModbusServer` per host:port; each `SimDevice` answers at its unit id (a gateway when there are
several). Registers are computed at request time from the devices' engineering values with the same
codec the driver uses, and writes are decoded back into engineering values for `SimDevice.write`.
Each device's `fault` is honoured per request:

* offline: the unit's gateway answers exception 11; when every device of the server is offline, the
  server stops listening and drops its connections (connection refused), and listens again when one
  comes back;
* slow: answers after `fault.delay_s`;
* silent: never answers that unit id (its neighbours still do);
* exception: exception 4 (server device failure);
* garbage: a well-framed answer with the wrong number of values (a register more than asked for, half
  the bits).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Iterable, Sequence
from types import TracebackType

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from drivers.base import LimitViolation, Value
from drivers.codec import ModbusCodec, check_write
from drivers.specs import ModbusDeviceSpec
from sim.core import FaultKind, SimDevice

log = logging.getLogger(__name__)

_TABLE_OF_FUNCTION_CODE = {
    1: "coil", 5: "coil", 15: "coil",
    2: "discrete_input",
    3: "holding_register", 6: "holding_register", 16: "holding_register", 22: "holding_register",
    23: "holding_register",
    4: "input_register",
}
_SUPERVISE_PERIOD_S = 0.02


class _NoAnswer(Exception):
    """The addressed unit stays silent."""


class _Table:
    """The points of one device in one Modbus table, indexed by start address."""

    def __init__(self, codecs: Sequence[ModbusCodec]) -> None:
        self.codecs = sorted(codecs, key=lambda c: c.point.register)
        self.starts = [c.point.register for c in self.codecs]
        self.end = max((c.point.register + c.register_count for c in self.codecs), default=0)
        self.covered: set[int] = {c.point.register + i for c in self.codecs for i in range(c.register_count)}

    def overlapping(self, address: int, count: int) -> list[ModbusCodec]:
        first = bisect.bisect_left(self.starts, address - 3)
        last = bisect.bisect_left(self.starts, address + count)
        return [c for c in self.codecs[first:last] if c.point.register + c.register_count > address]


class _Unit:
    """One simulated device behind the server: its tables and how to read and write them."""

    def __init__(self, device: SimDevice, strict_addresses: bool) -> None:
        if not isinstance(device.spec, ModbusDeviceSpec):
            raise TypeError(f"{device.id} is not a Modbus device")
        self.device = device
        self.strict_addresses = strict_addresses
        by_table: dict[str, list[ModbusCodec]] = {}
        for point in device.spec.points:
            by_table.setdefault(point.function, []).append(ModbusCodec.for_point(point))
        self.tables = {name: _Table(codecs) for name, codecs in by_table.items()}

    def _check_range(self, table: _Table | None, address: int, count: int) -> ExcCodes | None:
        if table is None or count < 1 or address + count > table.end:
            return ExcCodes.ILLEGAL_ADDRESS
        if self.strict_addresses and any(a not in table.covered for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    def _wire(self, codec: ModbusCodec, value: Value) -> Value:
        if isinstance(value, str) and codec.point.states:
            return check_write(codec.point, value)
        return value

    def read(self, table_name: str, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        table = self.tables.get(table_name)
        error = self._check_range(table, address, count)
        if error is not None:
            return error
        assert table is not None
        values = self.device.values
        if table_name in ("coil", "discrete_input"):
            bits = [False] * count
            for codec in table.overlapping(address, count):
                bits[codec.point.register - address] = bool(values[codec.point.id])
            return bits
        registers = [0] * count
        for codec in table.overlapping(address, count):
            start = codec.point.register
            current = [registers[start - address]] if codec.point.bit is not None and start >= address else None
            words = codec.encode(self._wire(codec, values[codec.point.id]), current=current, saturate=True)
            for index, word in enumerate(words):
                if 0 <= start + index - address < count:
                    registers[start + index - address] = word
        return registers

    def write(self, table_name: str, address: int, written: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        table = self.tables.get(table_name)
        count = len(written)
        if table is None or any(a not in table.covered for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        touched = table.overlapping(address, count)
        changes: list[tuple[str, Value]] = []
        if table_name == "coil":
            for codec in touched:
                changes.append((codec.point.id, bool(written[codec.point.register - address])))
        else:
            low = min(c.point.register for c in touched)
            high = max(c.point.register + c.register_count for c in touched)
            image = self.read(table_name, low, high - low)
            if isinstance(image, ExcCodes):
                return image
            image = list(image)
            image[address - low:address - low + count] = [int(w) for w in written]
            for codec in touched:
                offset = codec.point.register - low
                value = codec.decode(image[offset:offset + codec.register_count])
                if codec.point.bit is not None:
                    # A register write carries every bit of a status word: only writable bits that change count.
                    if not codec.point.writable or value == self.device.values[codec.point.id]:
                        continue
                changes.append((codec.point.id, value))
        for point_id, value in changes:
            point = self.device.points[point_id]
            if not point.writable:
                return ExcCodes.ILLEGAL_ADDRESS
            try:
                check_write(point, value)
            except LimitViolation:
                return ExcCodes.ILLEGAL_VALUE
        for point_id, value in changes:
            self.device.write(point_id, value)
        return None


class SimStore(ModbusServerContext):
    """The datastore pymodbus's request PDUs call into: routes each request to its unit, live."""

    def __init__(self, devices: Sequence[SimDevice], *, strict_addresses: bool = False) -> None:
        # The parent's constructor wraps datastores of its own kind; this store answers by itself.
        self.old_simulator = True
        self.simdevices = []
        self.units: dict[int, _Unit] = {}
        for device in devices:
            unit_id = device.spec.unit_id  # type: ignore[attr-defined]
            if unit_id in self.units:
                raise ValueError(f"unit id {unit_id} used by {self.units[unit_id].device.id} and {device.id}")
            self.units[unit_id] = _Unit(device, strict_addresses)
        # Requests received, all units together (counted by the request handler).
        self.requests = 0

    def device_ids(self) -> list[int]:
        return list(self.units)

    async def _unit(self, device_id: int) -> _Unit | ExcCodes:
        unit = self.units.get(device_id)
        if unit is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        fault = unit.device.fault
        if fault is None:
            return unit
        if fault.kind is FaultKind.SILENT:
            raise _NoAnswer
        if fault.kind is FaultKind.OFFLINE:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if fault.kind is FaultKind.EXCEPTION:
            return ExcCodes.DEVICE_FAILURE
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
        return unit

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        unit = await self._unit(device_id)
        if isinstance(unit, ExcCodes):
            return unit
        table = _TABLE_OF_FUNCTION_CODE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        values = unit.read(table, address, count)
        fault = unit.device.fault
        if fault is not None and fault.kind is FaultKind.GARBAGE and not isinstance(values, ExcCodes):
            # More registers than asked cannot be a device's honest short answer past its end.
            return values[: len(values) // 2] if table in ("coil", "discrete_input") else [*values, 0]
        return values

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        unit = await self._unit(device_id)
        if isinstance(unit, ExcCodes):
            return unit
        table = _TABLE_OF_FUNCTION_CODE.get(func_code)
        if table not in ("coil", "holding_register"):
            return ExcCodes.ILLEGAL_FUNCTION
        return unit.write(table, address, values)


class _RequestHandler(ServerRequestHandler):
    """Answers each request with its own PDU, so a slow answer keeps its own transaction id."""

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        used = super().callback_data(data, addr)
        if self.last_pdu is not None:
            task = self.loop.create_task(self._answer(self.last_pdu, self.last_addr))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)
        return used

    def handle_later(self) -> None:
        """Requests are answered from `callback_data`."""

    async def _answer(self, request: ModbusPDU, addr: tuple | None) -> None:
        self.server.context.requests += 1
        try:
            response = await request.datastore_update(self.server.context, request.dev_id)
        except _NoAnswer:
            return
        except Exception:
            log.exception("simulated device failed on %s", request)
            response = ExceptionResponse(request.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = request.transaction_id
        response.dev_id = request.dev_id
        if self.transport is not None:
            self.server_send(response, addr)


class _TcpServer(ModbusTcpServer):
    def __init__(self, store: SimStore, address: tuple[str, int]) -> None:
        super().__init__(store, address=address)
        self.tasks: set[asyncio.Task[None]] = set()

    def callback_new_connection(self) -> _RequestHandler:
        return _RequestHandler(self, None, None, None)

    async def stop(self) -> None:
        await self.shutdown()
        for task in list(self.tasks):
            task.cancel()


class SimModbusServer:
    """Serves simulated devices on host:port (port 0: a free port, see `port` after `start`)."""

    def __init__(self, devices: Sequence[SimDevice], host: str = "127.0.0.1", port: int = 0, *,
                 strict_addresses: bool = False) -> None:
        if not devices:
            raise ValueError("a Modbus server needs at least one device")
        self.devices = list(devices)
        self.host = host
        self.port = port
        self.store = SimStore(self.devices, strict_addresses=strict_addresses)
        self._server: _TcpServer | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def requests(self) -> int:
        """Requests received so far (all units)."""
        return self.store.requests

    def _all_offline(self) -> bool:
        return all(d.fault is not None and d.fault.kind is FaultKind.OFFLINE for d in self.devices)

    async def start(self) -> SimModbusServer:
        await self._listen()
        if self._all_offline():
            await self._close_listener()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name=f"sim modbus {self.port}")
        return self

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._close_listener()

    async def __aenter__(self) -> SimModbusServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.stop()

    async def _listen(self) -> None:
        server = _TcpServer(self.store, (self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus's way of saying the address is taken or unusable
            raise OSError(f"simulated Modbus server cannot listen on {self.host}:{self.port}: {exc}") from exc
        if self.port == 0:
            self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._server = server

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(_SUPERVISE_PERIOD_S)
            offline = self._all_offline()
            if offline and self._server is not None:
                await self._close_listener()
            elif not offline and self._server is None:
                try:
                    await self._listen()
                except OSError as exc:  # the port is not free yet: try again next round
                    log.warning("simulated Modbus server %s:%s cannot listen again: %s", self.host, self.port, exc)


async def start_modbus_servers(devices: Iterable[SimDevice], *, free_ports: bool = False) -> list[SimModbusServer]:
    """One started server per host:port of the devices' specs, each device at its unit id.

    With `free_ports`, each server takes any free port instead of its spec's (see `server.port`).
    """
    by_endpoint: dict[tuple[str, int], list[SimDevice]] = {}
    for device in devices:
        if not isinstance(device.spec, ModbusDeviceSpec):
            raise TypeError(f"{device.id} is not a Modbus device")
        by_endpoint.setdefault((device.spec.host, device.spec.port), []).append(device)
    servers: list[SimModbusServer] = []
    try:
        for (host, port), members in by_endpoint.items():
            servers.append(await SimModbusServer(members, host, 0 if free_ports else port).start())
    except BaseException:
        for server in servers:
            await server.stop()
        raise
    return servers
