"""Build bacpypes3 applications on a UDP socket we bind ourselves.

bacpypes3 binds with SO_REUSEPORT, so two applications asking for the same port (or the kernel handing the
same ephemeral port to two reuse-port sockets) silently share traffic. Binding the socket here, without
SO_REUSEPORT, makes each application's port exclusive, and lets a caller ask for port 0 and learn the port.
The layers are composed the way bacpypes3's own applications compose them; only the socket differs.

A client that must talk from one fixed address and port (the one a BBMD table or a firewall rule names)
shares that socket between its applications: each application talks to one device, and datagrams are
handed to the application of the device they come from (`SharedSocket`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bacpypes3.app import Application
from bacpypes3.comm import Server, bind
from bacpypes3.ipv4 import IPv4DatagramServer
from bacpypes3.ipv4.bvll import BVLLCodec
from bacpypes3.ipv4.service import BIPBBMD, BIPForeign, BIPNormal, UDPMultiplexer
from bacpypes3.pdu import PDU, IPv4Address

log = logging.getLogger(__name__)

Mode = Literal["normal", "foreign", "bbmd"]
# Decides what happens to an incoming datagram before the stack sees it: True lets it through.
DatagramGate = Callable[[PDU], Awaitable[bool]]


def split_address(address: str, default_port: int = 47808) -> tuple[str, int]:
    """'ip[:port]' -> (ip, port)."""
    host, _, port = address.partition(":")
    return host, int(port) if port else default_port


def bind_udp(host: str, port: int = 0) -> socket.socket:
    """A UDP socket bound exclusively to host:port (port 0: a free port chosen by the kernel)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _check_shared_bind(address: tuple[str, int]) -> None:
    """Raise OSError now if bacpypes3 could not bind `address` with SO_REUSEPORT: it would retry forever."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind(address)


class _GatedDatagramServer(IPv4DatagramServer):
    """The bacpypes3 datagram server with an optional gate on incoming datagrams (simulated faults)."""

    def __init__(self, address: IPv4Address, bind_socket: socket.socket | None, gate: DatagramGate | None) -> None:
        # Without our own socket, bacpypes3 binds the address and, for an address with a network prefix,
        # its broadcast address too (both SO_REUSEPORT: that is how several stacks share a LAN port).
        super().__init__(address, no_broadcast=bind_socket is not None, bind_socket=bind_socket)
        self._gate = gate

    async def confirmation(self, pdu: PDU) -> None:
        if self._gate is not None and not await self._gate(pdu):
            return
        await _answer(super().confirmation(pdu), pdu)


class SharedSocket:
    """One UDP socket on a fixed local address, shared by applications that each talk to one peer.

    Incoming datagrams go to the port of the peer ("ip", port) they come from; datagrams from anyone
    else are dropped. Get one through `shared_socket`, which keeps one per local address and event loop.
    """

    def __init__(self, host: str, port: int, registry: dict[tuple[str, int], SharedSocket] | None = None) -> None:
        self._registry = registry if registry is not None else {}
        self._key = (host, port)
        self.sock = bind_udp(host, port)
        bound_host, bound_port = self.sock.getsockname()
        self.address = IPv4Address(f"{bound_host}:{bound_port}")
        self.server = _SharedDatagramServer(self)
        self.ports: dict[tuple[str, int], _PeerPort] = {}

    def open_port(self, peer: tuple[str, int]) -> _PeerPort:
        if peer in self.ports:
            raise OSError(f"{peer[0]}:{peer[1]} is already reached through BACnet/IP {self.address}")
        port = self.ports[peer] = _PeerPort(self, peer)
        return port

    def close_port(self, port: _PeerPort) -> None:
        if self.ports.get(port.peer) is port:
            del self.ports[port.peer]
        if not self.ports:
            for task in self.server._transport_tasks:
                task.cancel()
            self.server.close()
            if self.server.local_transport is None:
                self.sock.close()  # closed before the transport took it over
            if self._registry.get(self._key) is self:
                del self._registry[self._key]


class _SharedDatagramServer(IPv4DatagramServer):
    def __init__(self, shared: SharedSocket) -> None:
        super().__init__(shared.address, no_broadcast=True, bind_socket=shared.sock)
        self._shared = shared

    async def confirmation(self, pdu: PDU) -> None:
        source = pdu.pduSource.addrTuple  # type: ignore[union-attr]
        port = self._shared.ports.get(source)
        if port is None:
            log.debug("BACnet/IP %s: dropped a datagram from %s:%s, no device there", self._shared.address,
                      *source)
            return
        await _answer(port.response(pdu), pdu)


async def _answer(delivery: Awaitable[None], pdu: PDU) -> None:
    """Hand an incoming datagram up the stack. An answer to a request given up meanwhile (timed out, or
    cancelled by a stop) finds bacpypes3's future already done and would end in an unretrieved error."""
    try:
        await delivery
    except asyncio.InvalidStateError:
        log.debug("BACnet/IP: a late answer from %s to a request given up", pdu.pduSource)


class _PeerPort(Server[PDU]):
    """One application's end of a shared socket: sends through it, hears its peer only."""

    def __init__(self, shared: SharedSocket, peer: tuple[str, int]) -> None:
        super().__init__()
        self.shared = shared
        self.peer = peer
        self._transport_tasks: list[Any] = []

    async def indication(self, pdu: PDU) -> None:
        await self.shared.server.indication(pdu)

    def close(self) -> None:
        self.shared.close_port(self)


_shared_sockets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], SharedSocket]] = (
    weakref.WeakKeyDictionary())


def shared_socket(host: str, port: int) -> SharedSocket:
    """The event loop's socket on host:port, bound now if nobody in this loop holds it yet."""
    sockets = _shared_sockets.setdefault(asyncio.get_running_loop(), {})
    shared = sockets.get((host, port))
    if shared is None:
        shared = sockets[(host, port)] = SharedSocket(host, port, sockets)
    return shared


@dataclass
class Stack:
    """An application bound to one socket, and what must be torn down with it."""

    app: Application
    address: IPv4Address
    link: BIPNormal | BIPForeign | BIPBBMD
    server: IPv4DatagramServer | _PeerPort
    _handles: list[Any] = field(default_factory=list)

    @property
    def host_port(self) -> str:
        host, port = self.address.addrTuple
        return f"{host}:{port}"

    async def wait_bound(self, timeout_s: float = 5.0) -> None:
        """Wait until the sockets are bound. bacpypes3 binds in the background and retries a busy
        address forever, so give up with OSError after `timeout_s`."""
        tasks = list(self.server._transport_tasks)
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        if pending:
            for task in pending:
                task.cancel()
            raise OSError(f"could not bind BACnet/IP {self.address} within {timeout_s} s (address in use?)")
        for task in done:
            task.result()

    async def wait_registered(self, timeout_s: float) -> bool:
        """For a foreign device: wait until the BBMD accepted the registration."""
        if not isinstance(self.link, BIPForeign):
            return True
        try:
            await asyncio.wait_for(self.link._registration_event.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.link.bbmdRegistrationStatus == 0

    def close(self) -> None:
        if isinstance(self.link, BIPForeign):
            # Stop renewing; the BBMD drops the entry when its time-to-live runs out.
            self.link._stop_tracking_registration()
        if isinstance(self.link, BIPBBMD):
            self.link._fdt_clock_handle.cancel()
        self.server.close()


def build_stack(
    objects: list[Any],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    mode: Mode = "normal",
    bbmd_address: str | None = None,
    ttl_s: int = 30,
    app_class: type[Application] = Application,
    gate: DatagramGate | None = None,
    peer: tuple[str, int] | None = None,
) -> Stack:
    """An application serving `objects` (one of them the device object) on its own socket.

    `host` is an IPv4 address; "ip/prefix" (e.g. "192.168.1.10/24") also sends and hears local broadcasts,
    which needs a fixed port shared by everyone on that network (BACnet/IP's 47808 on a real LAN).
    With a `peer` ("ip", port) and a fixed port, the application talks to that peer only, through the
    socket this event loop shares on host:port (OSError when the address is taken by another program).
    Must be called from a running event loop. `bbmd_address` ("ip:port") is required for mode "foreign".
    """
    if peer is not None and port != 0:
        if mode != "normal" or "/" in host:
            raise ValueError("a shared socket carries unicast requests to one peer per application")
        shared = shared_socket(host, port)
        peer_port = shared.open_port(peer)
        try:
            app = app_class.from_object_list(objects)
            link = BIPNormal()
            multiplexer = UDPMultiplexer()
            bind(link, BVLLCodec(), multiplexer.annexJ)
            bind(multiplexer, peer_port)
            app.nsap.bind(link, address=shared.address)
        except BaseException:
            peer_port.close()
            raise
        return Stack(app=app, address=shared.address, link=link, server=peer_port)
    sock: socket.socket | None = None
    if "/" in host:
        if port == 0:
            raise ValueError("local broadcasts need a fixed port")
        address = IPv4Address(f"{host}:{port}")
        for probe in {address.addrTuple, address.addrBroadcastTuple}:
            _check_shared_bind(probe)
    else:
        sock = bind_udp(host, port)
        bound_host, bound_port = sock.getsockname()
        address = IPv4Address(f"{bound_host}:{bound_port}")
    try:
        app = app_class.from_object_list(objects)
        link: BIPNormal | BIPForeign | BIPBBMD
        if mode == "normal":
            link = BIPNormal()
        elif mode == "foreign":
            if bbmd_address is None:
                raise ValueError("a foreign device needs the BBMD's address")
            link = BIPForeign()
        elif mode == "bbmd":
            link = BIPBBMD(address)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        codec = BVLLCodec()
        multiplexer = UDPMultiplexer()
        server = _GatedDatagramServer(address, sock, gate)
        bind(link, codec, multiplexer.annexJ)
        bind(multiplexer, server)
        app.nsap.bind(link, address=address)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    if isinstance(link, BIPForeign):
        assert bbmd_address is not None
        bbmd_host, bbmd_port = split_address(bbmd_address)
        link.register(IPv4Address(f"{bbmd_host}:{bbmd_port}"), ttl_s)
    return Stack(app=app, address=address, link=link, server=server)
