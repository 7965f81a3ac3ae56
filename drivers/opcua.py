"""OPC-UA adapter: one asyncua session per device, read by one batched Read or by a subscription.

Each driver owns its connection, a supervisor task that (re)connects with capped exponential
back-off, and a lock serialising its requests, so a dead, slow or silent server only ever costs its
own device time. Two devices behind one endpoint get a session each rather than sharing one: servers
answer a connection's requests in order, so a shared session would let one stuck device hold up the
other. Namespaces are resolved by URI on every (re)connection (indexes differ between servers and
may change across restarts).

Readings are stamped with the driver's clock when the answer arrives (poll mode) or when read from
a live subscription; stale readings carry the time their value was read or received.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from drivers.base import (
    ConnectionLost,
    DecodeError,
    DeviceException,
    DeviceHealth,
    DeviceTimeout,
    Driver,
    DriverError,
    IllegalAddress,
    NotAttempted,
    Quality,
    Reading,
    Value,
    WriteMismatch,
    WriteRejected,
    WriteResult,
    not_attempted,
)
from drivers.health import Backoff, HealthTracker, Now, utc_now
from drivers.opcua_codec import (
    ParsedNodeId,
    decode,
    encode,
    error_for_status,
    parse_node_id,
    quality_of,
    same_value,
    status_name,
    variant_type,
)
from drivers.opcua_security import apply_security
from drivers.specs import OpcuaDeviceSpec, OpcuaPointSpec

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

_PLAIN_PYTHON_TYPES = frozenset({bool, int, float, str})


@dataclass(frozen=True, slots=True)
class _Cached:
    """The last notification of one point in subscription mode."""

    value: Value | None
    quality: Quality
    error: str | None
    received: datetime


class OpcuaDriver(Driver):
    """`drivers.base.Driver` for an OPC-UA server (`OpcuaDeviceSpec`).

    `connect()` starts the device's supervisor task and waits for its first attempt; the
    supervisor keeps reconnecting in the background until `close()`, so `read()` never waits for a
    dead server: while disconnected it answers at once with the last good values (stale) or bad.
    """

    def __init__(self, spec: OpcuaDeviceSpec, *, now: Now = utc_now, backoff: Backoff | None = None,
                 offline_after: int = 3, max_age_s: float | None = None) -> None:
        self.spec = spec
        self.device_id = spec.id
        self._points: dict[str, OpcuaPointSpec] = {p.id: p for p in spec.points}
        for point in spec.points:
            variant_type(point.data_type)
        self._parsed: dict[str, ParsedNodeId] = {p.id: parse_node_id(p.node_id) for p in spec.points}
        self._now = now
        self._backoff = backoff or Backoff()
        self._health = HealthTracker(spec.id, offline_after=offline_after, now=now)
        # Subscription timing: publish at most every second, keep-alive about once per poll interval.
        self._publishing_interval_s = min(1.0, max(0.05, spec.poll_interval_s / 2))
        self._keepalive_count = max(1, math.ceil(min(spec.poll_interval_s, 5.0) / self._publishing_interval_s))
        keepalive_s = self._publishing_interval_s * self._keepalive_count
        self.max_age_s = max_age_s if max_age_s is not None else 3 * keepalive_s + spec.timeout_s
        # Connecting takes several round trips (hello, channel, session, activate, namespaces, ...).
        self._connect_timeout_s = spec.timeout_s * 4

        self._lock = asyncio.Lock()
        self._client: Client | None = None
        self._node_ids: dict[str, ua.NodeId] = {}
        self._unresolved: dict[str, str] = {}
        self._max_nodes_per_read = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._attempt_waiters: list[asyncio.Future[DriverError | None]] = []
        self._last_error: DriverError | None = None
        self._last_good: dict[str, Reading] = {}
        self._addresses = {p.id: f"{spec.id}/{p.id}" for p in spec.points}
        # Points whose Good value of the declared Variant type is their engineering value as is.
        self._plain = {p.id: variant_type(p.data_type) for p in spec.points if not p.states}
        # Read requests built once per set of points and connection (node ids differ between servers).
        self._requests: dict[tuple[str, ...], list[tuple[tuple[str, ...], ua.ReadParameters]]] = {}
        self._subscription: Any = None
        self._subscribed_at = 0.0
        self._cache: dict[str, _Cached] = {}
        self._by_node: dict[ua.NodeId, list[str]] = {}
        # Service requests sent to read values (Read, or CreateMonitoredItems in subscription mode).
        self.read_requests = 0
        self.connections = 0

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        self._closed = False
        if self._connected.is_set():
            return
        waiter: asyncio.Future[DriverError | None] = asyncio.get_running_loop().create_future()
        self._attempt_waiters.append(waiter)
        self._ensure_supervisor()
        self._wake.set()
        error = await waiter
        if error is not None:
            raise error

    async def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._lost.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._discard_client()
        self._resolve_waiters(ConnectionLost("driver closed", device_id=self.device_id))

    def health(self) -> DeviceHealth:
        return self._health.snapshot()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _ensure_supervisor(self) -> None:
        if self._task is None or self._task.done():
            self._stop.clear()
            self._task = asyncio.create_task(self._supervise(), name=f"opcua:{self.device_id}")

    async def _supervise(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._open(), self._connect_timeout_s)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = self._typed(exc, "connect")
                    self._last_error = error
                    self._health.failure(error)
                    self._resolve_waiters(error)
                    delay = self._backoff.next_delay()
                    _logger.info("%s: connect failed (%s); retry in %.2f s", self.device_id, error, delay)
                    await self._pause(delay)
                    continue
                self._backoff.reset()
                self._last_error = None
                self._health.success()
                self._lost.clear()
                self._connected.set()
                self._resolve_waiters(None)
                await self._lost.wait()
                self._connected.clear()
                await self._discard_client()
        finally:
            self._connected.clear()

    async def _pause(self, delay_s: float) -> None:
        """Sleep `delay_s`, cut short by close() or by an explicit connect()."""
        stop = asyncio.ensure_future(self._stop.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((stop, wake), timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()

    def _resolve_waiters(self, error: DriverError | None) -> None:
        waiters, self._attempt_waiters = self._attempt_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(error)

    async def _open(self) -> None:
        spec = self.spec
        # asyncua probes the server between our requests to notice a connection that died silently;
        # once per poll interval is enough, and a probe may take as long as any other request.
        watchdog_s = max(1.0, spec.timeout_s, min(spec.poll_interval_s, 30.0))
        client = Client(spec.endpoint, timeout=spec.timeout_s, watchdog_intervall=watchdog_s)
        client.name = client.description = f"gridctl {self.device_id}"
        client.application_uri = "urn:gridctl:client"
        client.product_uri = "urn:gridctl"
        # A session we abandon (crash, lost network) is freed by the server after this long.
        client.session_timeout = max(60_000, int(spec.poll_interval_s * 10_000))
        client.connection_lost_callback = functools.partial(self._on_connection_lost, client)
        try:
            await apply_security(client, spec.security, self.device_id)
            await client.connect()
            self._client = client
            self.connections += 1
            namespaces = await client.get_namespace_array()
            self._resolve(namespaces)
            self._max_nodes_per_read = await self._operation_limit(client)
            if spec.subscription:
                await self._subscribe(client)
        except BaseException:
            self._client = None
            await self._shutdown(client)
            raise

    def _resolve(self, namespaces: list[str]) -> None:
        self._node_ids.clear()
        self._unresolved.clear()
        self._requests.clear()
        for point_id, parsed in self._parsed.items():
            try:
                self._node_ids[point_id] = parsed.resolve(namespaces)
            except IllegalAddress as exc:
                self._unresolved[point_id] = str(exc)

    async def _operation_limit(self, client: Client) -> int:
        """The server's MaxNodesPerRead (0: no limit), so a poll is split only when the server demands it."""
        limit_node = ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead)
        params = ua.ReadParameters(NodesToRead=[ua.ReadValueId(NodeId=limit_node, AttributeId=ua.AttributeIds.Value)])
        [value] = await client.uaclient.read(params)
        if value.StatusCode is not None and value.StatusCode.is_good() and value.Value is not None:
            with contextlib.suppress(TypeError, ValueError):
                return max(0, int(value.Value.Value or 0))
        return 0

    async def _on_connection_lost(self, client: Client, exc: Exception) -> None:
        self._connection_ended(client, f"connection lost: {exc!r}")

    def _connection_ended(self, client: Client, reason: str) -> None:
        """Hand the connection back to the supervisor, unless it is an old one already replaced."""
        if client is not self._client:
            return
        _logger.info("%s: %s", self.device_id, reason)
        self._last_error = ConnectionLost(reason, device_id=self.device_id)
        self._lost.set()

    async def _discard_client(self) -> None:
        client, self._client = self._client, None
        self._subscription = None
        if client is not None:
            await self._shutdown(client)

    async def _shutdown(self, client: Client) -> None:
        if client.uaclient.state is UaClientState.CONNECTED:
            try:
                await asyncio.wait_for(client.disconnect(), self.spec.timeout_s)
                return
            except (Exception, asyncio.CancelledError):
                pass
        # The server is gone or silent: stop the client's own tasks (close_session does that first;
        # its CloseSession request then fails) and drop the socket without the goodbye.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(client.close_session(), self.spec.timeout_s)
        with contextlib.suppress(Exception):
            client.disconnect_socket()
        # asyncua 2.1 leaves a subscription's publish loop retrying forever when the transport was
        # already gone at close time.
        publish = getattr(getattr(client.uaclient, "session", None), "_publish_task", None)
        if publish is not None and not publish.done():
            publish.cancel()

    # ------------------------------------------------------------------ requests

    def _typed(self, exc: BaseException, context: str, point_id: str | None = None) -> DriverError:
        error = self._classify(exc, context, point_id)
        if context == "connect" and not isinstance(error, ConnectionLost | DeviceTimeout):
            # Whatever stops a connection (a refused security mode, a rejection asyncua cannot even
            # parse) leaves the device unreachable.
            return ConnectionLost(str(error), device_id=self.device_id)
        return error

    def _classify(self, exc: BaseException, context: str, point_id: str | None) -> DriverError:
        if isinstance(exc, DriverError):
            if exc.device_id is None:
                exc.device_id = self.device_id
            return exc
        if isinstance(exc, TimeoutError):
            return DeviceTimeout(f"{context}: no answer within {self.spec.timeout_s} s", device_id=self.device_id,
                                 point_id=point_id)
        if isinstance(exc, ua.UaStatusCodeError):
            return error_for_status(exc.code, context, device_id=self.device_id, point_id=point_id)
        if isinstance(exc, ConnectionError | OSError | ua.UaError):
            return ConnectionLost(f"{context}: {type(exc).__name__}: {exc}", device_id=self.device_id,
                                  point_id=point_id)
        return DeviceException(f"{context}: {type(exc).__name__}: {exc}", device_id=self.device_id,
                               point_id=point_id)

    async def _call(self, request: Callable[[Client], Awaitable[_T]], context: str,
                    point_id: str | None = None) -> _T:
        """One service request with the device's timeout and retries; typed errors only.

        A dead transport or a server silent through every retry hands the connection back to the
        supervisor, which reconnects with back-off.
        """
        client = self._client
        if client is None or not self._connected.is_set():
            raise self._not_connected(point_id)
        error: DriverError | None = None
        for _attempt in range(self.spec.retries + 1):
            try:
                return await asyncio.wait_for(request(client), self.spec.timeout_s)
            except Exception as exc:
                error = self._typed(exc, context, point_id)
                if not isinstance(error, DeviceTimeout) or self._client is not client:
                    break
        assert error is not None
        if isinstance(error, ConnectionLost | DeviceTimeout):
            self._last_error = error
            self._lost.set()
        raise error

    def _not_connected(self, point_id: str | None = None) -> DriverError:
        reason = f" ({self._last_error})" if self._last_error is not None else ""
        return ConnectionLost(f"not connected to {self.spec.endpoint}{reason}", device_id=self.device_id,
                              point_id=point_id)

    # ------------------------------------------------------------------ reads

    async def read(self, point_ids: Sequence[str] | None = None) -> list[Reading]:
        points = self._select(point_ids)
        if self._task is None and not self._closed:
            # Reading without connect() first: connect in the background, answer now.
            self._ensure_supervisor()
        if self.spec.subscription:
            return self._read_cache(points)
        if not self._connected.is_set():
            return self._unavailable(points, self._not_connected())
        async with self._lock:
            try:
                values = await self._read_values(tuple(p.id for p in points if p.id in self._node_ids))
            except DriverError as exc:
                self._health.failure(exc)
                return self._unavailable(points, exc)
        now = self._now()
        readings = []
        plain, addresses, good = self._plain, self._addresses, Quality.GOOD
        for point in points:
            data_value = values.get(point.id)
            if isinstance(data_value, DriverError):
                readings.append(self._unavailable([point], data_value)[0])
                continue
            if data_value is None:
                readings.append(Reading(addresses[point.id], now, None, Quality.BAD,
                                        self._unresolved.get(point.id, "not read")))
                continue
            # Fast path for the common case (Good, the declared type, nothing to convert); the
            # general decoder handles the rest and says what is wrong.
            status, variant = data_value.StatusCode, data_value.Value
            if (variant is not None and (status is None or status.value == 0)
                    and variant.VariantType is plain.get(point.id)):
                value = variant.Value
                if type(value) in _PLAIN_PYTHON_TYPES and (type(value) is not float or math.isfinite(value)):
                    readings.append(Reading(addresses[point.id], now, value, good, None))
                    continue
            readings.append(self._reading(point, data_value, now))
        failures = [v for v in values.values() if isinstance(v, DriverError) and not isinstance(v, NotAttempted)]
        if failures and all(isinstance(v, DriverError) for v in values.values()):
            self._health.failure(failures[0])  # no request of the read was answered
            return readings
        self._record(points, readings)
        if failures:
            self._health.partial(f"{len(failures)} read requests failed; {type(failures[0]).__name__}: "
                                 f"{failures[0]}")
        return readings

    async def _read_values(self, point_ids: tuple[str, ...]) -> dict[str, ua.DataValue | DriverError]:
        """Value attributes of the points in one ReadRequest, or in chunks the server accepts.

        Raises the error of a read that is one request. Read in chunks, a point whose request failed maps
        to that error, and once the server stops answering, the points of the requests not sent map to
        NotAttempted.
        """
        if not point_ids:
            return {}
        while True:
            requests = self._requests.get(point_ids)
            if requests is None:
                requests = self._requests[point_ids] = self._plan_reads(point_ids)
            results: dict[str, ua.DataValue | DriverError] = {}
            unreachable: DriverError | None = None
            try:
                for batch, params in requests:
                    if unreachable is not None:
                        results.update(dict.fromkeys(batch, not_attempted(unreachable, self.device_id)))
                        continue
                    self.read_requests += 1
                    try:
                        values = await self._call(lambda client, params=params: client.uaclient.read(params),
                                                  "read")
                        if len(values) != len(batch):
                            raise DecodeError(f"read {len(batch)} nodes, got {len(values)} results",
                                              device_id=self.device_id)
                    except DriverError as exc:
                        if len(requests) == 1 or "BadTooManyOperations" in str(exc):
                            raise
                        results.update(dict.fromkeys(batch, exc))
                        if isinstance(exc, ConnectionLost | DeviceTimeout):
                            unreachable = exc
                        continue
                    results.update(zip(batch, values, strict=True))
            except DeviceException as exc:
                # Some servers state their limit only by refusing: split and try again.
                largest = max(len(batch) for batch, _ in requests)
                if "BadTooManyOperations" not in str(exc) or largest == 1:
                    raise
                self._max_nodes_per_read = max(1, largest // 2)
                self._requests.clear()
                continue
            return results

    def _plan_reads(self, point_ids: tuple[str, ...]) -> list[tuple[tuple[str, ...], ua.ReadParameters]]:
        """The ReadRequests for these points on this connection: one, unless the server's limit is lower."""
        chunk = self._max_nodes_per_read or len(point_ids)
        plan = []
        for start in range(0, len(point_ids), chunk):
            batch = point_ids[start:start + chunk]
            plan.append((batch, ua.ReadParameters(
                TimestampsToReturn=ua.TimestampsToReturn.Neither,
                NodesToRead=[ua.ReadValueId(NodeId=self._node_ids[pid], AttributeId=ua.AttributeIds.Value)
                             for pid in batch],
            )))
        return plan

    def _reading(self, point: OpcuaPointSpec, data_value: ua.DataValue, ts: datetime) -> Reading:
        status = data_value.StatusCode
        quality = Quality.GOOD if status is None or status.value == 0 else quality_of(status)
        address = self._addresses[point.id]
        if quality is Quality.BAD:
            return Reading(address, ts, None, quality, status_name(status))
        try:
            value = decode(point, data_value.Value)
        except DecodeError as exc:
            return Reading(address, ts, None, Quality.BAD, f"DecodeError: {exc}")
        return Reading(address, ts, value, quality, None if quality is Quality.GOOD else status_name(status))

    def _record(self, points: list[OpcuaPointSpec], readings: list[Reading]) -> None:
        bad = []
        last_good = self._last_good
        for point, reading in zip(points, readings, strict=True):
            if reading.quality is Quality.GOOD:
                last_good[point.id] = reading
            elif reading.quality is Quality.BAD:
                bad.append(f"{point.id}: {reading.error}")
        if bad:
            self._health.partial(f"{len(bad)} of {len(readings)} points bad; {bad[0]}")
        else:
            self._health.success()

    def _unavailable(self, points: list[OpcuaPointSpec], error: DriverError) -> list[Reading]:
        """Last good values as stale (with the time they were read), bad where there is none."""
        readings = []
        for point in points:
            last = self._last_good.get(point.id)
            if last is not None:
                readings.append(Reading(last.address, last.ts, last.value, Quality.STALE, str(error)))
            else:
                readings.append(Reading(self._address(point.id), self._now(), None, Quality.BAD, str(error)))
        return readings

    def _select(self, point_ids: Sequence[str] | None) -> list[OpcuaPointSpec]:
        if point_ids is None:
            return list(self._points.values())
        unknown = [pid for pid in point_ids if pid not in self._points]
        if unknown:
            raise KeyError(f"{self.device_id} has no point {', '.join(unknown)}")
        return [self._points[pid] for pid in point_ids]

    def _address(self, point_id: str) -> str:
        return self._addresses[point_id]

    # ------------------------------------------------------------------ subscription mode

    async def _subscribe(self, client: Client) -> None:
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=self._publishing_interval_s * 1000,
            RequestedLifetimeCount=self._keepalive_count * 4,
            RequestedMaxKeepAliveCount=self._keepalive_count,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        subscription = await client.create_subscription(params, _SubscriptionHandler(self, client))
        by_node: dict[ua.NodeId, list[str]] = {}
        for point_id, node_id in self._node_ids.items():
            by_node.setdefault(node_id, []).append(point_id)
        if by_node:
            node_ids = list(by_node)
            self.read_requests += 1
            handles = await subscription.subscribe_data_change(
                [client.get_node(node_id) for node_id in node_ids],
                sampling_interval=self._publishing_interval_s * 1000,
            )
            for node_id, handle in zip(node_ids, handles, strict=True):
                if isinstance(handle, ua.StatusCode):
                    for point_id in by_node[node_id]:
                        self._unresolved[point_id] = status_name(handle)
        self._by_node = by_node
        # Publish responses after this carry the monitored items' initial values.
        self._subscribed_at = time.monotonic()
        self._subscription = subscription

    def _notified(self, node_id: ua.NodeId, data_value: ua.DataValue) -> None:
        now = self._now()
        for point_id in self._by_node.get(node_id, ()):
            reading = self._reading(self._points[point_id], data_value, now)
            self._cache[point_id] = _Cached(reading.value, reading.quality, reading.error, now)

    def _subscription_state(self) -> tuple[bool, bool]:
        """(alive, silent): alive once a publish carried the initial values and publishes keep coming;
        silent when connected but nothing was published for longer than max_age_s."""
        subscription = self._subscription
        if subscription is None or not self._connected.is_set():
            return False, False
        last = subscription.last_publish_at
        now = time.monotonic()
        if last is None or last < self._subscribed_at:
            return False, now - self._subscribed_at > self.max_age_s
        fresh = now - last <= self.max_age_s
        return fresh, not fresh

    def _read_cache(self, points: list[OpcuaPointSpec]) -> list[Reading]:
        now = self._now()
        alive, silent = self._subscription_state()
        if silent:
            # Connected but no publish (not even a keep-alive) for too long: start over.
            self._last_error = DeviceTimeout(f"subscription silent for more than {self.max_age_s:.1f} s",
                                             device_id=self.device_id)
            self._health.failure(self._last_error)
            self._lost.set()
        if alive:
            reason = "no value received yet"
        elif self._connected.is_set() and not silent:
            reason = "waiting for the subscription's first publish"
        else:
            reason = str(self._last_error or self._not_connected())
        readings = []
        for point in points:
            address = self._address(point.id)
            cached = self._cache.get(point.id)
            if point.id in self._unresolved:
                readings.append(Reading(address, now, None, Quality.BAD, self._unresolved[point.id]))
            elif cached is None:
                readings.append(Reading(address, now, None, Quality.BAD, reason))
            elif alive:
                readings.append(Reading(address, now, cached.value, cached.quality, cached.error))
            elif cached.value is not None:
                readings.append(Reading(address, cached.received, cached.value, Quality.STALE, reason))
            else:
                readings.append(Reading(address, cached.received, None, Quality.BAD, cached.error or reason))
        if alive:
            self._record(points, readings)
        return readings

    # ------------------------------------------------------------------ writes

    async def write(self, point_id: str, value: Value | None, *, priority: int | None = None) -> WriteResult:
        """Write the point's typed Variant, read it back and compare. OPC-UA has no priorities."""
        point = self._points.get(point_id)
        if point is None:
            raise KeyError(f"{self.device_id} has no point {point_id}")
        if value is None:
            raise WriteRejected("OPC-UA has no relinquish; write a value", device_id=self.device_id,
                                point_id=point_id)
        if not point.writable:
            raise WriteRejected("point is read-only", device_id=self.device_id, point_id=point_id)
        try:
            variant = encode(point, value)
        except DriverError as exc:
            exc.device_id = self.device_id
            raise
        if point_id in self._unresolved:
            raise IllegalAddress(self._unresolved[point_id], device_id=self.device_id, point_id=point_id)
        async with self._lock:
            if point_id not in self._node_ids:
                raise self._not_connected(point_id)
            node_id = self._node_ids[point_id]
            write = ua.WriteParameters(NodesToWrite=[ua.WriteValue(
                NodeId=node_id, AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(Value=variant))])
            [status] = await self._call(lambda client: client.uaclient.write(write), "write", point_id)
            if not status.is_good():
                raise error_for_status(status, "write", device_id=self.device_id, point_id=point_id)
            read = ua.ReadParameters(
                TimestampsToReturn=ua.TimestampsToReturn.Neither,
                NodesToRead=[ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value)])
            [data_value] = await self._call(lambda client: client.uaclient.read(read), "read back", point_id)
        if data_value.StatusCode is not None and data_value.StatusCode.is_bad():
            raise error_for_status(data_value.StatusCode, "read back", device_id=self.device_id, point_id=point_id)
        try:
            read_back = decode(point, data_value.Value)
        except DecodeError as exc:
            exc.device_id = self.device_id
            raise
        if not same_value(point, variant, read_back):
            raise WriteMismatch(f"wrote {variant.Value!r}, read back {read_back!r}", device_id=self.device_id,
                                point_id=point_id)
        now = self._now()
        if self.spec.subscription:
            # Read-your-writes: don't serve the old value until the data change is published.
            self._cache[point_id] = _Cached(read_back, Quality.GOOD, None, now)
        return WriteResult(self._address(point_id), value, variant.Value, read_back, now)


class _SubscriptionHandler:
    """asyncua subscription callbacks of one connection, forwarded to the driver's cache."""

    def __init__(self, driver: OpcuaDriver, client: Client) -> None:
        self._driver = driver
        self._client = client

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        if self._driver._client is self._client:
            self._driver._notified(node.nodeid, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        # The server ended the subscription (lifetime expired, shutdown): reconnect and subscribe again.
        self._driver._connection_ended(self._client, f"subscription ended: {status_name(status.Status)}")
