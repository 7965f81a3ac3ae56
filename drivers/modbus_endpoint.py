"""One Modbus TCP connection per host:port, shared by every unit id behind it.

The endpoint owns a task that (re)connects with capped exponential back-off and a lock that keeps one
request in flight. Timeouts and retries are the caller's (per device), applied around each request;
pymodbus itself never retries and never closes the socket after unanswered requests, because a silent
unit id behind a gateway must not cut its neighbours off. The endpoint drops the connection itself only
when the transport breaks or when no unit has answered for `drop_after_timeouts` requests in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from drivers.base import ConnectionLost, DecodeError, DeviceException, DeviceTimeout, DriverError, IllegalAddress
from drivers.health import Backoff

log = logging.getLogger(__name__)

Send = Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]

# pymodbus closes the socket after this many unanswered requests; the endpoint decides instead.
_NEVER = 1 << 30

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def exception_error(code: int, what: str, unit_id: int) -> DriverError:
    """The typed error for a Modbus exception response; the code is kept as `exception_code`.

    A gateway's "target failed to respond" (11) is a timeout of the device behind it, and "path
    unavailable" (10) a lost connection to it.
    """
    text = f"{what}: unit {unit_id} answered exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
    kind: type[DriverError] = {2: IllegalAddress, 10: ConnectionLost, 11: DeviceTimeout}.get(code, DeviceException)
    error = kind(text)
    error.exception_code = code  # type: ignore[attr-defined]
    return error


class PriorityLock:
    """A lock handed over in order, where waiters of units that stopped answering come last.

    A unit that times out holds the connection for its whole timeout; its next attempts wait until
    the units that do answer have had their turn, so a silent neighbour costs them one timeout at
    most, not one per request.
    """

    def __init__(self) -> None:
        self._locked = False
        self._normal: deque[asyncio.Future[None]] = deque()
        self._low: deque[asyncio.Future[None]] = deque()

    @property
    def locked(self) -> bool:
        return self._locked

    async def acquire(self, low_priority: bool = False) -> None:
        if not self._locked and not self._normal and not self._low:
            self._locked = True
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._low if low_priority else self._normal).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the lock was handed to us as we were cancelled: pass it on
            raise

    def release(self) -> None:
        if self._hand_to(self._normal):
            return
        if any(not waiter.done() for waiter in self._low):
            # Wait one loop turn before serving a silent unit: the holder that just released is often
            # about to ask again (its next block), and it goes first.
            asyncio.get_running_loop().call_soon(self._hand_over)
            return
        self._low.clear()
        self._locked = False

    def _hand_over(self) -> None:
        if not (self._hand_to(self._normal) or self._hand_to(self._low)):
            self._locked = False

    @staticmethod
    def _hand_to(queue: deque[asyncio.Future[None]]) -> bool:
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # ownership passes directly: nobody can barge in
                return True
        return False


class ModbusEndpoint:
    """A TCP connection to one Modbus server or gateway, with its reconnect task and request lock."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float = 2.0,
                 backoff: Backoff | None = None, drop_after_timeouts: int = 8) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        self.drop_after_timeouts = drop_after_timeouts
        self.requests_sent = 0
        self.connects = 0
        self.last_error: str | None = None
        self._client: AsyncModbusTcpClient | None = None
        self._lock = PriorityLock()
        # Unit ids whose last request went unanswered.
        self._silent_units: set[int] = set()
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        # Set while no connection attempt is running; requests wait for an attempt in progress.
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._timeouts_in_row = 0
        self._answered = False
        self._in_flight = False
        self._users = 0

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    # ------------------------------------------------------------------ life cycle

    def acquire(self) -> None:
        self._users += 1
        if self._task is None:
            self._idle.clear()
            self._task = asyncio.get_running_loop().create_task(self._maintain(), name=f"modbus {self.name}")

    async def release(self) -> bool:
        """Drop one user; the last one closes the connection. True when the endpoint is closed."""
        self._users -= 1
        if self._users > 0:
            return False
        await self.close()
        return True

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._idle.set()
        self._disconnect()

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    async def _maintain(self) -> None:
        while True:
            self._lost.clear()
            self._idle.clear()
            try:
                await self._connect()
            except ConnectionLost as exc:
                self.last_error = str(exc)
                self._idle.set()
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self._idle.set()
            await self._lost.wait()
            self._disconnect()
            if not self._answered:
                # Accepted, then dropped before answering anything: do not hammer it with reconnects.
                await asyncio.sleep(self.backoff.next_delay())

    async def _connect(self) -> None:
        holder: list[AsyncModbusTcpClient] = []
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.connect_timeout_s, retries=0, reconnect_delay=0,
            name=f"modbus {self.name}", trace_connect=lambda up: self._connection_changed(holder, up),
        )
        holder.append(client)
        client.set_max_no_responses(_NEVER)
        try:
            async with asyncio.timeout(self.connect_timeout_s + 1.0):
                ok = await client.connect()
        except TimeoutError:
            ok = False
        if not ok or not client.connected:
            client.close()
            raise ConnectionLost(f"{self.name}: connection refused or timed out")
        self._client = client
        self._answered = False
        log.info("modbus %s: connected", self.name)
        self._timeouts_in_row = 0
        self.connects += 1
        self.last_error = None
        self._up.set()

    def _connection_changed(self, holder: list[AsyncModbusTcpClient], connected: bool) -> None:
        if connected or not holder or holder[0] is not self._client:
            return
        client = holder[0]
        # The peer closed or reset the socket: fail the request in flight now instead of at its timeout.
        pending = getattr(client.ctx, "response_future", None)
        if self._in_flight and pending is not None and not pending.done():
            pending.set_exception(ConnectionLost(f"{self.name}: connection closed by the device"))
            # The request awaiting it gets the error all the same; this only keeps asyncio from
            # reporting it as never retrieved should that request be cancelled at this very moment.
            pending.exception()
        self._mark_lost("connection closed by the device")

    def _mark_lost(self, reason: str) -> None:
        log.warning("modbus %s: %s; reconnecting", self.name, reason)
        self.last_error = reason
        self._up.clear()
        # The maintain task reconnects at once: requests meanwhile wait for that attempt.
        self._idle.clear()
        self._lost.set()

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        self._up.clear()
        if client is not None:
            client.close()

    # ------------------------------------------------------------------ requests

    async def call(self, what: str, send: Send, *, unit_id: int, timeout_s: float, retries: int) -> ModbusPDU:
        """Send one request (`send` calls the pymodbus client) and return the good response.

        Raises ConnectionLost, DeviceTimeout, IllegalAddress, DeviceException. The lock is released
        between retries so other units behind the same gateway get their turn, and a unit whose last
        request went unanswered gets one attempt, not `retries + 1`, until it answers again: retries
        ride over a lost frame, not over a device that is gone, and its neighbours wait meanwhile.
        """
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.connect_timeout_s + 1.0):
                    await self._idle.wait()
        attempts = 1 if unit_id in self._silent_units else retries + 1
        for _attempt in range(attempts):
            await self._lock.acquire(low_priority=unit_id in self._silent_units)
            try:
                client = self._client
                if client is None or not client.connected:
                    raise ConnectionLost(f"{what}: not connected to {self.name} ({self.last_error or 'connecting'})")
                self.requests_sent += 1
                self._in_flight = True
                try:
                    async with asyncio.timeout(timeout_s):
                        response = await send(client)
                except TimeoutError:
                    self._silent_units.add(unit_id)
                    self._timeouts_in_row += 1
                    if self._timeouts_in_row >= self.drop_after_timeouts and client is self._client:
                        # No unit answers at all: the link is probably half-open; start afresh.
                        self._mark_lost(f"no answer to {self._timeouts_in_row} requests in a row")
                        self._disconnect()
                    continue
                except (ConnectionException, ConnectionLost, OSError) as exc:
                    # Only if the reconnect task has not already replaced this connection.
                    if client is self._client:
                        self._mark_lost(str(exc))
                        self._disconnect()
                    raise ConnectionLost(f"{what}: {exc}") from exc
                except ModbusIOException as exc:
                    raise DeviceException(f"{what}: {exc}") from exc
                finally:
                    self._in_flight = False
                self._timeouts_in_row = 0
                self._silent_units.discard(unit_id)
                if not self._answered:
                    # The back-off restarts from its shortest delay only once the device really answers.
                    self._answered = True
                    self.backoff.reset()
            finally:
                self._lock.release()
            if response.isError():
                raise exception_error(getattr(response, "exception_code", 0), what, unit_id)
            return response
        raise DeviceTimeout(f"{what}: unit {unit_id} at {self.name} did not answer within {timeout_s:g} s "
                            f"({attempts} attempt{'s' if attempts > 1 else ''})")


async def read_block(endpoint: ModbusEndpoint, what: str, function: str, start: int, count: int, *,
                     unit_id: int, timeout_s: float, retries: int) -> Sequence[int] | Sequence[bool]:
    """Registers (or bits) `start`..`start+count-1` as the device sent them (the caller checks the length)."""
    method, code = _READ_METHODS[function]
    response = await endpoint.call(
        what, lambda client: getattr(client, method)(start, count=count, device_id=unit_id),
        unit_id=unit_id, timeout_s=timeout_s, retries=retries)
    if response.function_code != code:
        raise DecodeError(f"{what}: the device answered function {response.function_code} to function {code}")
    if function in ("coil", "discrete_input"):
        return response.bits
    return response.registers


_READ_METHODS = {"coil": ("read_coils", 1), "discrete_input": ("read_discrete_inputs", 2),
                 "holding_register": ("read_holding_registers", 3), "input_register": ("read_input_registers", 4)}


class EndpointPool:
    """Endpoints by host:port, so drivers for several unit ids behind one gateway share a connection."""

    def __init__(self, backoff_factory: Callable[[], Backoff] = Backoff) -> None:
        self.backoff_factory = backoff_factory
        self._endpoints: dict[tuple[str, int], ModbusEndpoint] = {}

    def acquire(self, host: str, port: int, *, connect_timeout_s: float) -> ModbusEndpoint:
        key = (host, port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = ModbusEndpoint(host, port, connect_timeout_s=connect_timeout_s,
                                      backoff=self.backoff_factory())
            self._endpoints[key] = endpoint
        endpoint.acquire()
        return endpoint

    async def release(self, endpoint: ModbusEndpoint) -> None:
        if await endpoint.release():
            self._endpoints.pop((endpoint.host, endpoint.port), None)

    def endpoints(self) -> list[ModbusEndpoint]:
        return list(self._endpoints.values())
