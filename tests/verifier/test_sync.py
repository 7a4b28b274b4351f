"""The sync transport: one policy with the async one, shared safely between threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from issuer.jose.keys import GeneratedKey
from issuer.verifier import (
    FeedState,
    JWKSClient,
    ManualClock,
    RevokedTokenError,
    SyncJWKSClient,
    SyncRevocationFeed,
    SyncVerifier,
    UnknownKeyError,
)

from .conftest import AUDIENCE, ISSUER, NOW, mint
from .servers import KeyServer


@pytest.fixture
def key_server(rsa_key: GeneratedKey) -> Iterator[KeyServer]:
    with KeyServer(keys=[rsa_key.public_jwk]).running() as server:
        yield server


@pytest.fixture
def sync_jwks(key_server: KeyServer, clock: ManualClock) -> Iterator[SyncJWKSClient]:
    with SyncJWKSClient(
        f"{key_server.url}/.well-known/jwks.json", clock=clock, background_refresh=False
    ) as jwks:
        yield jwks


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.005)


def test_threads_that_meet_a_new_key_share_one_fetch(
    sync_jwks: SyncJWKSClient,
    key_server: KeyServer,
    clock: ManualClock,
    rsa_key: GeneratedKey,
    next_rsa_key: GeneratedKey,
) -> None:
    verifier = SyncVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=sync_jwks, clock=clock)
    assert key_server.jwks_hits == 1
    # An emergency rotation: a new key signs before this verifier has fetched it.
    key_server.keys = [next_rsa_key.public_jwk, rsa_key.public_jwk]
    key_server.gate = threading.Event()
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    results: list[Any] = [None] * threads_n

    def work(n: int) -> None:
        barrier.wait()
        try:
            results[n] = verifier.verify(mint(next_rsa_key, jti=f"t{n}"))["jti"]
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    # Force the interleaving: one thread is inside the fetch (held at the gate) and every
    # other one waits for that same fetch before any answer comes back.
    wait_until(lambda: key_server.jwks_hits == 2, "the fetch")
    flight = sync_jwks._flight
    assert flight is not None
    wait_until(lambda: len(flight._cond._waiters) == threads_n - 1, "the other threads")  # type: ignore[attr-defined]
    key_server.gate.set()
    for thread in threads:
        thread.join(10)
    assert results == [f"t{n}" for n in range(threads_n)]
    assert key_server.jwks_hits == 2


def test_many_threads_verify_concurrently_with_the_cache(
    sync_jwks: SyncJWKSClient, clock: ManualClock, rsa_key: GeneratedKey
) -> None:
    verifier = SyncVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=sync_jwks, clock=clock, cache_size=16
    )
    tokens = [mint(rsa_key, jti=f"j{n}") for n in range(40)]
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        barrier.wait()
        try:
            for n in range(200):
                token = tokens[(n + offset) % len(tokens)]
                assert verifier.verify(token)["jti"] == f"j{(n + offset) % len(tokens)}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert verifier.cached_tokens <= 16


def test_the_sync_feed_refuses_revoked_tokens_and_keys(
    sync_jwks: SyncJWKSClient, key_server: KeyServer, clock: ManualClock, rsa_key: GeneratedKey
) -> None:
    with SyncRevocationFeed(
        f"{key_server.url}/revocations", "resource", "secret", clock=clock
    ) as feed:
        verifier = SyncVerifier(
            issuer=ISSUER, audience=AUDIENCE, jwks=sync_jwks, clock=clock, revocations=feed
        )
        verifier.verify(mint(rsa_key, jti="j1"))
        key_server.feed_items.append({"jti": "j1", "exp": NOW + 600})
        feed.poll()
        with pytest.raises(RevokedTokenError):
            verifier.verify(mint(rsa_key, jti="j1"))
        other = mint(rsa_key, jti="j2")
        verifier.verify(other)
        key_server.feed_items.append({"kid": rsa_key.kid, "revoked_at": NOW})
        feed.poll()
        with pytest.raises(RevokedTokenError, match="key"):
            verifier.verify(other)
    assert "issuer-verifier/0.1.0 (urllib)" in key_server.user_agents


def test_an_unknown_kid_is_unknown(sync_jwks: SyncJWKSClient, clock: ManualClock) -> None:
    with pytest.raises(UnknownKeyError):
        sync_jwks.get_key("nope")


@pytest.mark.parametrize(
    "url",
    [
        "http://issuer.example/.well-known/jwks.json",
        "http://10.0.0.1/jwks",
        "ftp://issuer.example/jwks",
        "https:///jwks",
        "/jwks",
    ],
)
def test_keys_and_revocations_travel_only_over_https(url: str) -> None:
    for build in (
        lambda: JWKSClient(url),
        lambda: SyncJWKSClient(url),
        lambda: FeedState(url, "id", "secret"),
        lambda: SyncRevocationFeed(url, "id", "secret"),
    ):
        with pytest.raises(ValueError, match="https://"):
            build()


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example/jwks",
        "http://127.0.0.1:8080/jwks",
        "http://[::1]/j",
        "http://localhost/j",
    ],
)
def test_https_or_a_loopback_host_is_accepted(url: str) -> None:
    assert SyncJWKSClient(url).jwks_uri == url
    assert FeedState(url, "id", "secret").feed_uri == url
