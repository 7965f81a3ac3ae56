"""Sign-in for people: argon2id passwords, server-side sessions with a CSRF token, one-time activation
links and a back-off after failed attempts. Machines keep their bearer tokens (see auth)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gridctl.api.store import ApiStore, User

# OWASP's password storage recommendation for argon2id: 19 MiB, two passes, one lane.
DEFAULT_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


class PasswordRejected(ValueError):
    """A new password that does not meet the rules; the message says which."""


def check_password(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip().lower() == name.strip().lower():
        raise PasswordRejected("the password must not be the user name")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Backoff:
    """After `free_failures` failed attempts in `window`, each further attempt waits `base` doubled per failure,
    at most `longest`, counted from the last failure."""

    free_failures: int = 5
    base: timedelta = timedelta(seconds=30)
    longest: timedelta = timedelta(minutes=15)
    window: timedelta = timedelta(minutes=15)
    # Per client address, whatever the name, so one address cannot try many names.
    address_free_failures: int = 20

    def wait(self, failures: int, free: int, last_failure: datetime | None, now: datetime) -> float:
        if failures < free or last_failure is None:
            return 0.0
        delay = min(self.base * 2 ** (failures - free), self.longest)
        return max(0.0, (last_failure + delay - now).total_seconds())


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    id_hash: str


class LockedOut(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed sign-in attempts; try again in {max(1, round(retry_after_s))} s")
        self.retry_after_s = retry_after_s


class SignIn:
    """Passwords, sessions, activation links and attempts, in the API's tables (migration 103)."""

    def __init__(self, store: ApiStore, hasher: PasswordHasher = DEFAULT_HASHER, backoff: Backoff = Backoff(),
                 idle: timedelta = timedelta(hours=2), lifetime: timedelta = timedelta(hours=12)) -> None:
        self.store = store
        self.db = store.db
        self.hasher = hasher
        self.backoff = backoff
        self.idle = idle
        self.lifetime = lifetime
        # Verified against for unknown names, so that a wrong name costs as long as a wrong password.
        self._dummy = hasher.hash(secrets.token_urlsafe(16))

    # --- passwords -------------------------------------------------------------------------------

    async def set_password(self, user: User, password: str, now: datetime) -> None:
        check_password(user.name, password)
        hashed = await asyncio.to_thread(self.hasher.hash, password)
        await self.db.script([
            ("DELETE FROM api_passwords WHERE user_id = ?", [user.id]),
            ("INSERT INTO api_passwords (user_id, hash, updated_at) VALUES (?, ?, ?)",
             [user.id, hashed, self.db.ts(now)]),
            # A new password ends every session opened with the old one.
            ("DELETE FROM api_sessions WHERE user_id = ?", [user.id]),
        ])

    async def has_password(self, user: User) -> bool:
        return bool(await self.db.fetch("SELECT 1 FROM api_passwords WHERE user_id = ?", [user.id]))

    async def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return await asyncio.to_thread(self.hasher.verify, stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    async def _failures(self, column: str, value: str, now: datetime) -> tuple[int, datetime | None]:
        """Failed attempts in the window since the last success, and when the last one was."""
        since = now - self.backoff.window
        rows = await self.db.fetch(
            f"SELECT at, success FROM api_login_attempts WHERE {column} = ? AND at >= ? ORDER BY at DESC, id DESC "
            "LIMIT 200", [value, self.db.ts(since)],
        )
        count, last = 0, None
        for at, success in rows:
            if success:
                break
            count += 1
            last = last or self.db.from_ts(at)
        return count, last

    async def retry_after(self, name: str, address: str, now: datetime) -> float:
        by_name = await self._failures("name", name, now)
        by_address = await self._failures("address", address, now)
        return max(self.backoff.wait(by_name[0], self.backoff.free_failures, by_name[1], now),
                   self.backoff.wait(by_address[0], self.backoff.address_free_failures, by_address[1], now))

    async def authenticate(self, name: str, password: str, address: str, now: datetime,
                           active_at: datetime | None = None) -> User | None:
        """The user when the password is right and the account active at `active_at` (the service's clock,
        default `now`); None otherwise. Raises LockedOut while backing off, without checking the password
        (so guessing during the wait learns nothing)."""
        name = name.strip()[:200]
        wait = await self.retry_after(name, address, now)
        if wait > 0:
            raise LockedOut(wait)
        user = await self.store.user(name)
        rows = await self.db.fetch("SELECT hash FROM api_passwords WHERE user_id = ?", [user.id]) if user else []
        stored = rows[0][0] if rows else None
        ok = await self._verify(stored, password) and user is not None and user.active(active_at or now)
        await self.db.execute("INSERT INTO api_login_attempts (name, address, at, success) VALUES (?, ?, ?, ?)",
                              [name, address[:64], self.db.ts(now), self.db.flag(ok)])
        if ok and stored is not None and self.hasher.check_needs_rehash(stored):
            await self.set_password(user, password, now)  # type: ignore[arg-type]
        return user if ok else None

    # --- sessions --------------------------------------------------------------------------------

    async def open_session(self, user: User, now: datetime) -> tuple[str, str]:
        """A new session's id (for the cookie; only its digest is stored) and its CSRF token."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await self.db.script([
            # Sessions past their end are removed as new ones open.
            ("DELETE FROM api_sessions WHERE expires_at < ? OR last_seen_at < ?",
             [self.db.ts(now), self.db.ts(now - self.idle)]),
            ("INSERT INTO api_sessions (id_hash, user_id, csrf, created_at, last_seen_at, expires_at) "
             "VALUES (?, ?, ?, ?, ?, ?)",
             [_digest(session_id), user.id, csrf, self.db.ts(now), self.db.ts(now), self.db.ts(now + self.lifetime)]),
        ])
        return session_id, csrf

    async def session(self, session_id: str, now: datetime) -> Session | None:
        """The session's user and CSRF token while it is neither idle too long nor past its lifetime (the
        caller checks that the user is still active)."""
        digest = _digest(session_id)
        rows = await self.db.fetch(
            "SELECT id_hash, user_id, csrf, last_seen_at, expires_at FROM api_sessions WHERE id_hash = ?", [digest]
        )
        if not rows or not hmac.compare_digest(rows[0][0], digest):
            return None
        _id, user_id, csrf, last_seen, expires = rows[0]
        last_seen_at, expires_at = self.db.from_ts(last_seen), self.db.from_ts(expires)
        if now >= expires_at or now - last_seen_at >= self.idle:  # type: ignore[operator]
            await self.end_session(session_id)
            return None
        user = await self.store.user_by_id(user_id)
        if user is None:
            return None
        # Write the last use at most once a minute: a page refreshing every few seconds costs no writes.
        if now - last_seen_at >= timedelta(minutes=1):  # type: ignore[operator]
            await self.db.execute("UPDATE api_sessions SET last_seen_at = ? WHERE id_hash = ?",
                                  [self.db.ts(now), digest])
        return Session(user, csrf, digest)

    async def end_session(self, session_id: str) -> None:
        await self.db.execute("DELETE FROM api_sessions WHERE id_hash = ?", [_digest(session_id)])

    async def end_sessions(self, user: User) -> None:
        await self.db.execute("DELETE FROM api_sessions WHERE user_id = ?", [user.id])

    # --- activation links ------------------------------------------------------------------------

    async def new_activation(self, user: User, now: datetime, valid_for: timedelta = timedelta(days=7)) -> str:
        """A one-time token letting its holder set the user's password; earlier unused ones stop working."""
        token = secrets.token_urlsafe(32)
        await self.db.script([
            ("DELETE FROM api_activations WHERE user_id = ? AND used_at IS NULL", [user.id]),
            ("INSERT INTO api_activations (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
             [_digest(token), user.id, self.db.ts(now), self.db.ts(now + valid_for)]),
        ])
        return token

    async def activate(self, token: str, password: str, now: datetime,
                       active_at: datetime | None = None) -> User | None:
        """Set the password of the activation's user and use the token up; None when it is unknown, used or
        expired. Raises PasswordRejected before using the token up, so the holder can try another password."""
        digest = _digest(token)
        rows = await self.db.fetch(
            "SELECT user_id, expires_at, used_at FROM api_activations WHERE token_hash = ?", [digest]
        )
        if not rows or rows[0][2] is not None or now >= self.db.from_ts(rows[0][1]):  # type: ignore[operator]
            return None
        user = await self.store.user_by_id(rows[0][0])
        if user is None or not user.active(active_at or now):
            return None
        check_password(user.name, password)
        used = await self.db.execute(
            "UPDATE api_activations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL", [self.db.ts(now), digest]
        )
        if not used:
            return None
        await self.set_password(user, password, now)
        return user
