"""A token bucket per client: enough to keep one token or address from starving the others."""

from __future__ import annotations

import contextlib
import hashlib
import http.cookies
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate_per_second: float, burst: int, *, monotonic: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self.monotonic = monotonic
        self.max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until a token is available."""
        now = self.monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                # Full buckets carry no information: dropping them only forgets idle clients.
                self._buckets = {k: b for k, b in self._buckets.items() if b.tokens < self.burst - 1}
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def bearer_token(authorization: bytes) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; the scheme's case and spacing don't matter."""
    scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token else None


def client_keys(scope: dict[str, Any], session_cookie: str | None = None) -> tuple[str, str]:
    """(the client's address, the bucket of its bearer token, else of its session cookie, else of its address)."""
    client = scope.get("client")
    address = client[0] if client else "unknown"
    session = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            token = bearer_token(value)
            if token is not None:
                return address, "t:" + _digest(token)
        elif name == b"cookie" and session_cookie is not None:
            cookies = http.cookies.SimpleCookie()
            with contextlib.suppress(http.cookies.CookieError):
                cookies.load(value.decode("latin-1"))
            if session_cookie in cookies and cookies[session_cookie].value:
                session = cookies[session_cookie].value
    if session is not None:
        return address, "s:" + _digest(session)
    return address, "a:" + address


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:32]
