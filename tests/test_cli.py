"""The CLI, working directly on the configured database (both stores)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest

from issuer.cli import main
from issuer.clock import SystemClock
from issuer.config import Settings
from issuer.context import Context
from issuer.errors import ConfigError
from issuer.lifecycle import start, stop


@pytest.fixture(autouse=True)
def keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() would point the root logger at pytest's captured stderr, which closes
    # after the test while aiosqlite's thread may still log.
    monkeypatch.setattr("issuer.cli.setup_logging", lambda *args, **kwargs: None)


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISSUER_DATABASE_URL", database_url)
    monkeypatch.setenv("ISSUER_KEK", base64.urlsafe_b64encode(os.urandom(32)).decode())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def await_service_start(folder: Path) -> None:
    """What the first `issuer serve` does to a migrated database: the first two keys."""
    settings = Settings.from_env()
    ctx = Context(settings, SystemClock())

    async def once() -> None:
        await start(ctx)
        await stop(ctx)

    asyncio.run(once())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_keys_and_clients(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "migrate")
    assert code == 0
    assert "applied: 0001_" in out
    assert run(capsys, "migrate")[1].strip() == "database is up to date"

    # The CLI uses the installation as it is: listing creates nothing.
    code, out, _ = run(capsys, "keys", "list", "--json")
    assert code == 0
    assert json.loads(out)["keys"] == []
    await_service_start(env)
    code, out, _ = run(capsys, "keys", "list", "--json")
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

    code, out, _ = run(capsys, "clients", "disable", "billing")
    assert code == 0
    assert json.loads(out)["disabled"] is True
    code, out, _ = run(capsys, "clients", "enable", created["client_id"])
    assert json.loads(out)["disabled"] is False

    code, out, _ = run(capsys, "clients", "list", "--json")
    listed = json.loads(out)["clients"]
    assert [c["client_id"] for c in listed] == [created["client_id"]]
    assert created["client_secret"] not in out


def test_errors_are_one_line_and_non_zero(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "migrate")
    code, _, err = run(capsys, "keys", "revoke", "no-such-kid")
    assert code == 1
    assert err.strip().splitlines()[-1] == "issuer: no key with kid no-such-kid"
    run(capsys, "clients", "create", "dup")
    code, _, err = run(capsys, "clients", "create", "dup")
    assert code == 1
    assert "exists already" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, "clients", "create", "web", "--redirect-uri", "http://a.example/cb")
    assert code == 1
    assert "plain http only for loopback" in err.strip().splitlines()[-1]


def test_clients_create_with_redirect_uris(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "migrate")
    code, out, _ = run(
        capsys,
        "clients",
        "create",
        "spa",
        "--public",
        "--scope",
        "openid read",
        "--redirect-uri",
        "https://spa.example/callback",
        "--redirect-uri",
        "https://spa.example/silent",
        "--post-logout-redirect-uri",
        "https://spa.example/",
    )
    assert code == 0
    created = json.loads(out)
    assert created["public"] is True
    assert "client_secret" not in created
    assert created["redirect_uris"] == [
        "https://spa.example/callback",
        "https://spa.example/silent",
    ]
    assert created["post_logout_redirect_uris"] == ["https://spa.example/"]
    assert created["web_origins"] == ["https://spa.example"]
    code, out, _ = run(
        capsys,
        "clients",
        "create",
        "shell",
        "--public",
        "--redirect-uri",
        "https://spa.example/cb",
        "--web-origin",
        "https://shell.example",
    )
    assert json.loads(out)["web_origins"] == ["https://shell.example"]
    code, out, _ = run(capsys, "clients", "list", "--json")
    listed = {c["name"]: c for c in json.loads(out)["clients"]}
    assert listed["spa"]["redirect_uris"] == created["redirect_uris"]


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["keys", "--help"], ["keys", "rotate", "--help"], ["clients", "create", "--help"]],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: issuer" in capsys.readouterr().out


def test_commands_on_an_empty_folder_create_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ISSUER_"):
            monkeypatch.delenv(name)
    for argv in (["clients", "list"], ["keys", "list"], ["users", "list"]):
        code, _, err = run(capsys, *argv)
        assert code == 2
        last = err.strip().splitlines()[-1]
        assert last.startswith(
            f"issuer: ISSUER_DATABASE_URL: no database at {tmp_path}/var/issuer.db "
            "(relative to the current directory): "
        )
    assert list(tmp_path.iterdir()) == []


def test_rewrap_under_a_kek_that_cannot_open_the_keys_is_one_line(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "migrate")
    await_service_start(env)
    monkeypatch.setenv("ISSUER_KEK", base64.urlsafe_b64encode(os.urandom(32)).decode())
    code, _, err = run(capsys, "keys", "rewrap")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("issuer: key ")
    assert "not configured" in last
    assert "Traceback" not in err


def test_a_kid_that_begins_with_a_dash_can_be_revoked(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate")
    code, _, err = run(capsys, "keys", "revoke", "-U5-fCItcL2AyvV2qWjlI5sXYidtiGHjG6OnFstroKA")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "issuer: no key with kid -U5-fCItcL2AyvV2qWjlI5sXYidtiGHjG6OnFstroKA"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # The file is not an SQLite database (random bytes, written below).
        (
            "sqlite:///not-a-database.db",
            "issuer: ISSUER_DATABASE_URL: database error: file is not a database",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/issuer_no_such_db",
            "issuer: ISSUER_DATABASE_URL: database error:"
            ' database "issuer_no_such_db" does not exist',
        ),
    ],
    ids=["sqlite-unopenable", "postgres-no-database"],
)
def test_a_database_that_refuses_is_one_line(
    url: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if url.startswith("postgresql") and os.environ.get("ISSUER_TEST_POSTGRES") == "off":
        pytest.skip("PostgreSQL half skipped")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-database.db").write_bytes(b"\x07" * 4096)
    monkeypatch.setenv("ISSUER_DATABASE_URL", url)
    code, _, err = run(capsys, "migrate")
    assert code == 2  # as a configuration error: the command never started
    lines = err.strip().splitlines()
    assert lines == [message]


def test_a_lost_kek_file_next_to_wrapped_keys_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ISSUER_"):
            monkeypatch.delenv(name)
    await_service_start(tmp_path)  # creates var/issuer.db, keys/kek.json and two keys
    (tmp_path / "keys" / "kek.json").unlink()
    with pytest.raises(ConfigError, match=r"^ISSUER_KEK_FILE: keys/kek.json is missing, but"):
        await_service_start(tmp_path)
    assert not (tmp_path / "keys" / "kek.json").exists()
