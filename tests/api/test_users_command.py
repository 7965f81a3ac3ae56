"""`gridctl users`: the token is printed once, works against the store, and stops working when revoked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridctl.api.db import open_database
from gridctl.api.store import ApiStore, Role
from gridctl.cli import main


def test_add_list_and_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "gridctl.sqlite")
    assert main(["db", "upgrade", "--db", db]) == 0
    capsys.readouterr()
    assert main(["users", "add", "alice@example.org", "--role", "resident", "--scope",
                 "zac-saint-sauveur/a-01", "--db", db]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("gct_") and len(token) > 40
    assert token not in out.err

    async def lookup():
        database = open_database(db)
        await database.open()
        try:
            return await ApiStore(database).user_for_token(token)
        finally:
            await database.close()

    import asyncio

    user = asyncio.run(lookup())
    assert user is not None and user.role is Role.RESIDENT and user.scope == ("zac-saint-sauveur/a-01",)
    assert user.active(datetime.now(UTC))

    assert main(["users", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "alice@example.org\tresident\tzac-saint-sauveur/a-01\tactive" in listing and token not in listing

    assert main(["users", "revoke", "alice@example.org", "--db", db]) == 0
    assert not asyncio.run(lookup()).active(datetime.now(UTC))
    assert main(["users", "revoke", "alice@example.org", "--db", db]) == 1


def test_scopes_must_fit_the_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "gridctl.sqlite")
    main(["db", "upgrade", "--db", db])
    assert main(["users", "add", "bob", "--role", "resident", "--scope", "zac-saint-sauveur", "--db", db]) == 1
    assert "<site>/<dwelling>" in capsys.readouterr().err
    assert main(["users", "add", "carol", "--role", "operator", "--scope", "zac-union/x", "--db", db]) == 1
    assert main(["users", "add", "dan", "--role", "admin", "--scope", "*", "--db", db]) == 0


def test_a_database_without_the_api_tables_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "empty.sqlite")
    assert main(["users", "list", "--db", db]) == 1
    assert "gridctl db upgrade" in capsys.readouterr().err


def _sign_in(db: str, name: str, password: str) -> bool:
    import asyncio

    from gridctl.api.signin import SignIn

    async def run() -> bool:
        database = open_database(db)
        await database.open()
        try:
            now = datetime.now(UTC)
            return await SignIn(ApiStore(database)).authenticate(name, password, "127.0.0.1", now) is not None
        finally:
            await database.close()

    return asyncio.run(run())


def test_a_password_from_standard_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    db = str(tmp_path / "gridctl.sqlite")
    main(["db", "upgrade", "--db", db])
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["users", "add", "op@lille.fr", "--role", "operator", "--scope", "*", "--password-stdin",
                 "--db", db]) == 0
    out = capsys.readouterr()
    assert "password set" in out.err and "correct horse" not in out.err + out.out
    assert _sign_in(db, "op@lille.fr", "correct horse battery")
    assert not _sign_in(db, "op@lille.fr", "correct horse battery!")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "op2", "--role", "operator", "--scope", "*", "--password-stdin", "--db", db]) == 1
    assert "12 characters" in capsys.readouterr().err


def test_an_activation_link_is_printed_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "gridctl.sqlite")
    main(["db", "upgrade", "--db", db])
    assert main(["users", "add", "marie@lille.fr", "--role", "resident", "--scope", "zac-union/b-02",
                 "--activation-link", "--base-url", "https://energie.lille.fr/", "--db", db]) == 0
    err = capsys.readouterr().err
    link = next(w for w in err.split() if w.startswith("https://"))
    assert link.startswith("https://energie.lille.fr/ui/activate#token=")
    assert main(["users", "link", "marie@lille.fr", "--db", db]) == 0
    second = capsys.readouterr().out.strip()
    assert second.startswith("http://127.0.0.1:8080/ui/activate#token=") and second != link
    assert main(["users", "link", "nobody", "--db", db]) == 1
