"""A TCP fault proxy on loopback: put it between gridctl and a database or a device, then break the link.

The proxy runs its own event loop in a thread, so faults keep their timing even while the process under
test is busy or blocked. Faults, switchable at any time:

- ``latency(s)``: every chunk, both ways, is held `s` seconds before it is passed on;
- ``reset()``: open connections are aborted with a TCP RST and new ones are reset as they arrive
  (a server that refuses or crashes);
- ``blackhole()``: nothing passes any more, nothing is closed; new connections are accepted and then
  never answered (a cable pulled, a firewall dropping packets);
- ``half_open()``: the connections open now stay open on the client's side but their server side is
  gone: what the client sends vanishes, nothing comes back; new connections pass (a NAT or a server
  that lost its state);
- ``heal()``: back to passing everything without delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

CHUNK = 65536


class Fault(StrEnum):
    NONE = "none"
    LATENCY = "latency"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    HALF_OPEN = "half_open"


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    # Set when the link's server side is gone (half-open): it relays nothing any more.
    severed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    bytes_to_server: int = 0
    bytes_to_client: int = 0


class FaultProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` until told to fail."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1",
                 listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._listen = (listen_host, listen_port)
        self.fault = Fault.NONE
        self.latency_s = 0.0
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._stopping: asyncio.Event

    # ------------------------------------------------------------------ life cycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def address(self) -> str:
        return f"{self._listen[0]}:{self.port}"

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as error:  # reported to the caller of start()
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close_all())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"fault-proxy→{self.target[1]}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        if self._port is None:
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults (thread-safe)

    def heal(self) -> None:
        self._set(Fault.NONE)

    def latency(self, seconds: float) -> None:
        self.latency_s = seconds
        self._set(Fault.LATENCY)

    def reset(self) -> None:
        self._set(Fault.RESET)
        self._call(self._abort_all())

    def blackhole(self) -> None:
        self._set(Fault.BLACKHOLE)

    def half_open(self) -> None:
        self._call(self._sever_all())

    def _set(self, fault: Fault) -> None:
        self.fault = fault

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the proxy is not started")
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # ------------------------------------------------------------------ the proxy

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, *self._listen)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled when the proxy stops: end quietly, asyncio would log a cancelled callback as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await self._relay(reader, writer)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        link = _Link(writer)
        if self.fault is Fault.RESET:
            _abort(writer)
            self.stats.resets += 1
            return
        self._links.add(link)
        try:
            if self.fault is Fault.BLACKHOLE:
                # Accepted, never answered: what the client sends is read and dropped.
                while await reader.read(CHUNK):
                    pass
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _abort(writer)
                return
            link.server = server_writer
            up = asyncio.create_task(self._pump(link, reader, server_writer, to_server=True))
            down = asyncio.create_task(self._pump(link, server_reader, writer, to_server=False))
            link.tasks = [up, down]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in link.tasks:
                task.cancel()
            if link.severed:
                # The client's side stays open, unanswered, until the proxy stops.
                await self._stopping.wait()
            for end in (writer, server_writer):
                with contextlib.suppress(OSError):
                    end.close()
        finally:
            self._links.discard(link)

    async def _pump(self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *,
                    to_server: bool) -> None:
        while True:
            try:
                data = await source.read(CHUNK)
            except (ConnectionError, OSError):
                return
            if not data:
                return
            if link.severed or self.fault is Fault.BLACKHOLE:
                continue
            if self.fault is Fault.LATENCY and self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            if to_server:
                self.stats.bytes_to_server += len(data)
            else:
                self.stats.bytes_to_client += len(data)
            try:
                sink.write(data)
                await sink.drain()
            except (ConnectionError, OSError):
                return

    async def _abort_all(self) -> None:
        for link in list(self._links):
            for end in (link.client, link.server):
                if end is not None:
                    _abort(end)
            self.stats.resets += 1

    async def _sever_all(self) -> None:
        """The server side of every open link goes away without telling the client."""
        for link in list(self._links):
            link.severed = True
            if link.server is not None:
                _abort(link.server)

    async def _close_all(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            for task in link.tasks:
                task.cancel()
            for end in (link.client, link.server):
                if end is not None:
                    with contextlib.suppress(OSError):
                        end.close()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN, as a crashed or refusing peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    with contextlib.suppress(OSError):
        transport.abort()
