"""``issuer users …`` through issuer.cli.main, on each store."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from issuer import cli


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISSUER_KEK", "A" * 43)
    monkeypatch.setenv("ISSUER_DATABASE_URL", database_url)
    # Keep the test run's log handlers (conftest records every record for the secrets check).
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)
    assert cli.main(["migrate"]) == 0  # an installation to work on


async def run(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as patch:
        if stdin is not None:
            patch.setattr("sys.stdin", io.StringIO(stdin))
        # main() runs its own event loop (asyncio.run): give it a thread of its own.
        code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_create_list_set_roles_disable_enable(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run(
        capsys,
        "users", "create", "Frank", "--role", "reader", "--role", "ops", "--password-stdin",
        stdin="a long passphrase\n",
    )  # fmt: skip
    assert code == 0
    created = json.loads(out)
    assert created["username"] == "Frank"
    assert created["roles"] == ["reader", "ops"]
    assert "password" not in out
    assert "argon2" not in out

    code, out, _ = await run(capsys, "users", "set-roles", "FRANK", "editor")
    assert code == 0
    assert json.loads(out)["roles"] == ["editor"]
    code, out, _ = await run(capsys, "users", "disable", "frank")
    assert code == 0
    assert json.loads(out)["disabled"] is True
    code, out, _ = await run(capsys, "users", "list", "--json")
    assert [(u["username"], u["disabled"]) for u in json.loads(out)["users"]] == [("Frank", True)]
    code, out, _ = await run(capsys, "users", "enable", "frank")
    assert json.loads(out)["disabled"] is False
    code, out, _ = await run(capsys, "users", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["ID", "USERNAME", "ROLES", "DISABLED", "CREATED_AT"]


async def test_the_password_prompt_asks_twice(
    cli_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["first passphrase", "second passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, out, err = await run(capsys, "users", "create", "grace")
    assert code == 1
    assert err.strip().splitlines()[-1] == "issuer: the two passwords differ"
    answers = iter(["same passphrase", "same passphrase"])
    code, out, err = await run(capsys, "users", "create", "grace")
    assert code == 0
    assert json.loads(out)["username"] == "grace"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("users", "disable", "nobody"), "issuer: no such user"),
        (("users", "set-roles", "nobody", "x"), "issuer: no such user"),
    ],
)
async def test_errors_are_one_line_and_exit_non_zero(
    cli_env: None, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, _, err = await run(capsys, *argv)
    assert code == 1
    assert err.strip().splitlines()[-1] == message


async def test_short_password_and_duplicate_name(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run(capsys, "users", "create", "h", "--password-stdin", stdin="short\n")
    assert code == 1
    assert "at least 8 characters" in err
    args = ("users", "create", "h", "--password-stdin")
    assert (await run(capsys, *args, stdin="a long passphrase\n"))[0] == 0
    code, _, err = await run(
        capsys, "users", "create", "H", "--password-stdin", stdin="another one!\n"
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == "issuer: a user with this username exists already"
