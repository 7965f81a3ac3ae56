"""Simulated OPC-UA devices: `SimDevice`s served by an asyncua server on loopback.

Every point becomes a variable with the point's node id (namespace registered by URI) and data
type; writable points get write access. Values flow both ways: `sync()` (also run periodically)
pushes SimDevice values into the variables, and a client's write lands in `SimDevice.write`.
Faults set on a SimDevice are honoured on the wire:

- offline: the server stops listening (when every device it serves is offline; otherwise the
  offline device's variables answer BadNoCommunication);
- slow: Read/Write requests touching the device are answered after `delay_s`;
- silent: such requests are never answered (until the fault is cleared);
- exception: the device's values carry BadDeviceFailure and its writes fail with it;
- garbage: Reads of the device's variables return strings, whatever their type (subscriptions keep
  the last good value).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.utils import ServiceError
from asyncua.server.binary_server_asyncio import BinaryServer

from drivers.base import Value
from drivers.opcua_codec import INTEGER_RANGES, parse_node_id, variant_type
from drivers.opcua_security import application_uri_of, load_certificate
from drivers.specs import OpcuaDeviceSpec, OpcuaPointSpec
from sim.core import FaultKind, SimDevice, WallClock

_logger = logging.getLogger(__name__)

_FAULT_POLL_S = 0.02


class OpcuaSimServer:
    """An asyncua server for one or more OPC-UA `SimDevice`s. Use as `async with` or start()/stop()."""

    def __init__(self, devices: Sequence[SimDevice], *, host: str = "127.0.0.1", port: int = 0,
                 sync_interval_s: float = 0.05, certificate: str | Path | None = None,
                 private_key: str | Path | None = None, allow_unsecured: bool = True,
                 name: str = "gridctl simulated OPC-UA devices") -> None:
        for device in devices:
            if not isinstance(device.spec, OpcuaDeviceSpec):
                raise TypeError(f"{device.id} is not an OPC-UA device")
        if (certificate is None) != (private_key is None):
            raise ValueError("certificate and private_key go together")
        self.devices = list(devices)
        self.host = host
        self.port = port
        self.sync_interval_s = sync_interval_s
        self.certificate = Path(certificate) if certificate else None
        self.private_key = Path(private_key) if private_key else None
        self.allow_unsecured = allow_unsecured or certificate is None
        self.name = name
        self.application_uri = (application_uri_of(load_certificate(self.certificate)) if self.certificate
                                else "urn:gridctl:sim:opcua")
        self._server: Server | None = None
        self._listening = False
        self._sync_task: asyncio.Task[None] | None = None
        # node id -> (device, point); values last pushed, to write only changes.
        self._nodes: dict[ua.NodeId, tuple[SimDevice, OpcuaPointSpec]] = {}
        self._published: dict[ua.NodeId, tuple[Any, str]] = {}
        # Client Read/Write requests to the simulated devices' variables, and those a slow or silent
        # fault is holding right now.
        self.requests = 0
        self.held_requests = 0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/gridctl/sim"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def listening(self) -> bool:
        return self._listening

    async def __aenter__(self) -> OpcuaSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Build the address space and listen; a restarted server keeps its port."""
        if self._server is not None:
            return
        server = Server()
        await server.init()
        server.set_server_name(self.name)
        # The server clock task only refreshes ServerStatus.CurrentTime, and makes stop() wait up to 1 s.
        server.disable_clock(True)
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        server.set_endpoint(self.endpoint)
        await server.set_application_uri(self.application_uri)
        policies = [ua.SecurityPolicyType.NoSecurity] if self.allow_unsecured else []
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
        server.set_security_policy(policies)
        server.subscribe_server_callback(CallbackType.PreRead, self._before_read)
        server.subscribe_server_callback(CallbackType.PreWrite, self._before_write)
        server.subscribe_server_callback(CallbackType.PostWrite, self._after_write)
        await self._build(server)
        await server.start()
        self._server = server
        self._listening = True
        if self.port == 0:
            # Bound to a free port: advertise the real one in the endpoint descriptions.
            self.port = server.bserver.port
            for endpoint in server.iserver.endpoints:
                endpoint.EndpointUrl = self.endpoint
                endpoint.Server.DiscoveryUrls = [self.endpoint]
            server.set_endpoint(self.endpoint)
        self._published.clear()
        await self.sync()
        self._sync_task = asyncio.create_task(self._sync_loop(), name="opcua-sim-sync")
        _logger.info("simulated OPC-UA server on %s (%d variables)", self.endpoint, len(self._nodes))

    async def stop(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, self._server = self._server, None
        self._listening = False
        if server is not None:
            await server.stop()

    async def _build(self, server: Server) -> None:
        self._nodes.clear()
        objects = server.nodes.objects
        for device in self.devices:
            folder = await objects.add_object(ua.NodeId(f"device:{device.id}", 1), device.id)
            for point in device.spec.points:  # type: ignore[attr-defined]
                parsed = parse_node_id(point.node_id)
                if parsed.namespace_uri is not None:
                    await server.register_namespace(parsed.namespace_uri)
                node_id = parsed.resolve(await server.get_namespace_array())
                if node_id.NamespaceIndex == 0:
                    continue  # a standard node (e.g. the server's own status): served by asyncua itself
                vtype = variant_type(point.data_type)
                variable = await folder.add_variable(node_id, point.id, _coerce(point, device.get(point.id)), vtype)
                if point.writable:
                    await variable.set_writable()
                self._nodes[node_id] = (device, point)

    # ------------------------------------------------------------------ values

    async def sync(self) -> None:
        """Push every SimDevice value (and fault state) into the server's variables now."""
        server = self._server
        if server is None:
            return
        await self._follow_offline(server)
        for node_id, (device, point) in self._nodes.items():
            fault = device.fault.kind if device.fault is not None else None
            if fault is FaultKind.GARBAGE:
                if self._published.get(node_id, (None, ""))[1] != "garbage":
                    server.set_attribute_value_callback(node_id, _garbage)
                    self._published[node_id] = (None, "garbage")
                continue
            if fault in (FaultKind.EXCEPTION, FaultKind.OFFLINE):
                status = ua.StatusCodes.BadDeviceFailure if fault is FaultKind.EXCEPTION else \
                    ua.StatusCodes.BadNoCommunication
                state = f"status:{status}"
                if self._published.get(node_id, (None, ""))[1] != state:
                    await server.write_attribute_value(node_id, ua.DataValue(StatusCode=ua.StatusCode(status)))
                    self._published[node_id] = (None, state)
                continue
            value = _coerce(point, device.get(point.id))
            if self._published.get(node_id) == (value, "good"):
                continue
            data_value = ua.DataValue(Value=ua.Variant(value, variant_type(point.data_type)),
                                      SourceTimestamp=device.clock.now())
            await server.write_attribute_value(node_id, data_value)
            self._published[node_id] = (value, "good")

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                _logger.exception("OPC-UA simulator sync failed")
            await asyncio.sleep(self.sync_interval_s)

    async def _follow_offline(self, server: Server) -> None:
        """Stop listening while every device is offline; listen again (same port) when one is back."""
        all_offline = bool(self.devices) and all(
            d.fault is not None and d.fault.kind is FaultKind.OFFLINE for d in self.devices)
        if all_offline and self._listening:
            self._listening = False
            await server.bserver.stop()
        elif not all_offline and not self._listening:
            binary = BinaryServer(server.iserver, self.host, self.port, server.limits)
            binary.set_policies(server._policies)
            await binary.start()
            server.bserver = binary
            self._listening = True

    # ------------------------------------------------------------------ requests

    def _devices_of(self, node_ids: Sequence[ua.NodeId]) -> list[SimDevice]:
        devices = []
        for node_id in node_ids:
            entry = self._nodes.get(node_id)
            if entry is not None and entry[0] not in devices:
                devices.append(entry[0])
        return devices

    async def _delay_for_faults(self, devices: list[SimDevice]) -> None:
        for device in devices:
            fault = device.fault
            if fault is None or fault.kind not in (FaultKind.SLOW, FaultKind.SILENT):
                continue
            self.held_requests += 1
            try:
                if fault.kind is FaultKind.SLOW and fault.delay_s > 0:
                    await asyncio.sleep(fault.delay_s)
                # SimDevice.fault is a plain attribute the physics or a test sets: poll it.
                while device.fault is not None and device.fault.kind is FaultKind.SILENT:  # noqa: ASYNC110
                    await asyncio.sleep(_FAULT_POLL_S)
            finally:
                self.held_requests -= 1

    async def _before_read(self, event: ServerItemCallback, _dispatcher: Any) -> None:
        if not event.is_external:
            return
        devices = self._devices_of([r.NodeId for r in event.request_params.NodesToRead])
        if devices:
            self.requests += 1
        await self._delay_for_faults(devices)

    async def _before_write(self, event: ServerItemCallback, _dispatcher: Any) -> None:
        if not event.is_external:
            return
        devices = self._devices_of([w.NodeId for w in event.request_params.NodesToWrite])
        if devices:
            self.requests += 1
        await self._delay_for_faults(devices)
        for device in devices:
            if device.fault is not None and device.fault.kind in (FaultKind.EXCEPTION, FaultKind.OFFLINE):
                raise ServiceError(ua.StatusCodes.BadDeviceFailure)

    async def _after_write(self, event: ServerItemCallback, _dispatcher: Any) -> None:
        if not event.is_external:
            return
        for write, status in zip(event.request_params.NodesToWrite, event.response_params, strict=True):
            entry = self._nodes.get(write.NodeId)
            if entry is None or write.AttributeId != ua.AttributeIds.Value or not status.is_good():
                continue
            device, point = entry
            value = write.Value.Value.Value if write.Value.Value is not None else None
            if value is None:
                continue
            try:
                device.write(point.id, value)
            except (KeyError, PermissionError, ValueError):
                _logger.warning("simulated %s/%s refused %r", device.id, point.id, value)
                continue
            self._published[write.NodeId] = (value, "good")


def _coerce(point: OpcuaPointSpec, value: Value | None) -> Any:
    """A SimDevice value as the Python value of the point's OPC-UA type."""
    data_type = point.data_type
    if isinstance(value, str) and point.states and data_type != "String":
        value = next((raw for raw, label in point.states.items() if label == value), 0)
    if data_type == "String":
        return "" if value is None else str(value)
    if data_type == "Boolean":
        return bool(value)
    number = float(value or 0)
    if data_type in INTEGER_RANGES:
        low, high = INTEGER_RANGES[data_type]
        if not math.isfinite(number):
            return 0
        return min(high, max(low, round(number)))
    return number


def _garbage(_node_id: ua.NodeId, _attribute: ua.AttributeIds) -> ua.DataValue:
    return ua.DataValue(Value=ua.Variant("\x00garbage\x7f", ua.VariantType.String))


BENCH_NAMESPACE = "urn:gridctl:bench:opcua"


def bench_spec(endpoint: str = "opc.tcp://127.0.0.1:4840", points: int = 500) -> OpcuaDeviceSpec:
    """A device with `points` Double measurements, for throughput benchmarks."""
    return OpcuaDeviceSpec(
        id="bench", endpoint=endpoint, timeout_s=5.0, retries=0,
        points=tuple(OpcuaPointSpec(id=f"value-{index:04d}", unit="kW", data_type="Double",
                                    node_id=f"nsu={BENCH_NAMESPACE};s=Bench.Value{index:04d}")
                     for index in range(points)),
    )


async def _serve(points: int, port: int) -> None:
    device = SimDevice(bench_spec(points=points), WallClock(),
                       {f"value-{index:04d}": index * 0.5 for index in range(points)})
    async with OpcuaSimServer([device], port=port) as server:
        print(json.dumps({"endpoint": server.endpoint, "points": points}), flush=True)
        # Serve until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: list[str] | None = None) -> int:
    """`python -m sim.opcua_server --points 500`: serve a benchmark device; prints its endpoint as JSON."""
    parser = argparse.ArgumentParser(description="Serve a simulated OPC-UA benchmark device on loopback.")
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_serve(args.points, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
