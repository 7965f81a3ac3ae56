"""The TCP fault proxy the fault drills put between gridctl and its database or devices."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from sim.faults import FaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A plain threaded echo server on loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def _client(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def _roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return sock.recv(4096)


def test_passes_traffic_and_adds_latency(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy, _client(proxy) as sock:
        assert _roundtrip(sock) == b"ping"
        proxy.latency(0.3)
        started = time.monotonic()
        assert _roundtrip(sock) == b"ping"
        # Held once on the way in and once on the way back.
        assert time.monotonic() - started >= 0.55
        proxy.heal()
        assert _roundtrip(sock) == b"ping"
        assert proxy.stats.bytes_to_server == proxy.stats.bytes_to_client == 12


def test_reset_aborts_open_connections_and_refuses_new_ones(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        sock = _client(proxy)
        assert _roundtrip(sock) == b"ping"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            _roundtrip(sock)
            _roundtrip(sock)
        sock.close()
        # Reset on arrival: the connect itself or the first exchange fails.
        with pytest.raises((ConnectionResetError, BrokenPipeError)), _client(proxy) as again:
            _roundtrip(again)
        proxy.heal()
        with _client(proxy) as healed:
            assert _roundtrip(healed) == b"ping"


def test_blackhole_answers_nothing_and_closes_nothing(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        old = _client(proxy, timeout=0.5)
        assert _roundtrip(old) == b"ping"
        proxy.blackhole()
        with pytest.raises(TimeoutError):
            _roundtrip(old)
        with _client(proxy, timeout=0.5) as new, pytest.raises(TimeoutError):
            _roundtrip(new)
        proxy.heal()
        with _client(proxy) as healed:
            assert _roundtrip(healed) == b"ping"
        old.close()


def test_half_open_keeps_the_client_side_open_but_dead(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        old = _client(proxy, timeout=0.5)
        assert _roundtrip(old) == b"ping"
        proxy.half_open()
        # No reset, no close: the client just never hears back.
        with pytest.raises(TimeoutError):
            _roundtrip(old)
        with _client(proxy) as new:
            assert _roundtrip(new) == b"ping"
        old.close()


@pytest.mark.timescale
def test_postgres_through_the_proxy(timescale_db: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(timescale_db)
    with FaultProxy("127.0.0.1", int(info["port"])) as proxy:
        dsn = psycopg.conninfo.make_conninfo(timescale_db, host="127.0.0.1", port=proxy.port, connect_timeout=2)
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            proxy.reset()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn)
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn)
        assert time.monotonic() - started >= 1.5
        proxy.heal()
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)
