"""No password, refresh token or access token in any log record.

conftest records every log record of the whole run at DEBUG and every secret at
its source (argon2 and the token response), and fails the run at the end if any
secret shows up in any record, whichever tests ran and in whatever order. These
tests check that the machinery itself works.
"""

from __future__ import annotations

import logging

from tests.conftest import (
    ISSUED_SECRETS,
    LOG_MESSAGES,
    Login,
    MakeClient,
    MakeUser,
    _attach_recorder,
    find_leaks,
)


def test_recording_survives_a_test_that_reconfigures_logging() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    # What the autouse fixture does before the next test:
    _attach_recorder()
    logging.getLogger("issuer.test").debug("recorded again")
    assert LOG_MESSAGES[-1].endswith("recorded again")


def test_a_planted_secret_is_found() -> None:
    assert find_leaks(["login ok token=s3cr3t-t0ken"], {"s3cr3t-t0ken"}) == ["s3cr3t…"]
    assert find_leaks(["nothing here"], {"s3cr3t-t0ken"}) == []


async def test_secrets_are_registered_and_every_record_is_kept(
    make_client: MakeClient, make_user: MakeUser, login: Login
) -> None:
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    user = await make_user()
    tokens = await login(await make_client(first_party=True), user)
    mine = {user.password, tokens["access_token"], tokens["refresh_token"]}
    assert mine <= ISSUED_SECRETS
    logging.getLogger("issuer.test").debug("a marker record")
    assert LOG_MESSAGES[-1].endswith("a marker record")
    assert find_leaks(LOG_MESSAGES, mine) == []
