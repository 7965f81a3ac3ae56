"""`gridctl db upgrade/sync/status/rollup/retention` on both back ends."""

from __future__ import annotations

import json

import yaml
from history_site import SITE

from gridctl.cli import main
from gridctl.history.migrations import MIGRATIONS


def test_db_commands(backend: str, tmp_path, capsys):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "site.yaml").write_text(yaml.safe_dump(SITE, allow_unicode=True))

    assert main(["db", "upgrade", "--db", backend, "--site", str(site_dir)]) == 0
    out = capsys.readouterr().out
    assert f"applied {', '.join(str(m.version) for m in MIGRATIONS)}" in out and "test-site: 6 points, 2 dwellings" in out
    assert "no series was shared by several sites" in out

    assert main(["db", "upgrade", "--db", backend]) == 0
    assert "applied" not in capsys.readouterr().out

    assert main(["db", "sync", "--db", backend, str(site_dir), "--retention-days", "30"]) == 0
    assert main(["db", "status", "--db", backend]) == 0
    capsys.readouterr()
    assert main(["db", "status", "--db", backend]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["schema_version"] >= 2
    assert status["uses"]["continuous_aggregates"] is False

    assert main(["db", "rollup", "--db", backend]) == 0
    assert "0 hourly buckets" in capsys.readouterr().out
    assert main(["db", "retention", "--db", backend]) == 0
    assert "test-site" in json.loads(capsys.readouterr().out)["raw_cutoffs"]


def test_sync_needs_the_schema(tmp_path, capsys):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "site.yaml").write_text(yaml.safe_dump(SITE, allow_unicode=True))
    assert main(["db", "sync", "--db", str(tmp_path / "empty.db"), str(site_dir)]) == 1
    assert "gridctl db upgrade" in capsys.readouterr().err
