"""The CLI, working directly on the configured database (both stores)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from issuer.cli import main


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISSUER_DATABASE_URL", database_url)
    monkeypatch.setenv("ISSUER_KEK", base64.urlsafe_b64encode(os.urandom(32)).decode())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_keys_and_clients(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "migrate")
    assert code == 0
    assert "applied: 0001_" in out
    assert run(capsys, "migrate")[1].strip() == "database is up to date"

    code, out, _ = run(capsys, "keys", "list", "--json")
    assert code == 0
    keys = json.loads(out)["keys"]
    assert [k["state"] for k in keys] == ["pending", "active"]

    code, out, _ = run(capsys, "keys", "rotate", "--immediate")
    assert code == 0
    new = json.loads(out)["key"]
    assert new["state"] == "active"

    code, out, _ = run(capsys, "keys", "list")
    assert code == 0
    table = out.splitlines()
    assert table[0].split()[:3] == ["KID", "ALG", "STATE"]
    assert any(new["kid"] in line and "active" in line for line in table)

    code, out, _ = run(capsys, "keys", "revoke", new["kid"])
    assert code == 0
    assert json.loads(out)["key"]["state"] == "revoked"

    code, out, err = run(capsys, "clients", "create", "billing", "--scope", "read write")
    assert code == 0
    created = json.loads(out)  # exactly one JSON object on stdout
    assert created["name"] == "billing"
    assert created["scopes"] == ["read", "write"]
    assert len(created["client_secret"]) >= 43
    assert "not shown again" in err

    code, out, _ = run(capsys, "clients", "list", "--json")
    listed = json.loads(out)["clients"]
    assert [c["client_id"] for c in listed] == [created["client_id"]]
    assert created["client_secret"] not in out


def test_errors_are_one_line_and_non_zero(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keys", "revoke", "no-such-kid")
    assert code == 1
    assert err.strip().splitlines()[-1] == "issuer: no key with kid no-such-kid"
    run(capsys, "clients", "create", "dup")
    code, _, err = run(capsys, "clients", "create", "dup")
    assert code == 1
    assert "exists already" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["keys", "--help"], ["keys", "rotate", "--help"], ["clients", "create", "--help"]],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: issuer" in capsys.readouterr().out
