"""The sync transport: the JWKS cache policy and the revocation feed over the standard library.

For WSGI services (Flask, Django) and scripts: no event loop, no dependency
beyond the base install. Every object here is safe to share between threads:
the policy objects (:class:`~issuer.verifier.cache.JWKSCache`,
:class:`~issuer.verifier.revocation.FeedState`) are changed under a lock, one
thread fetches while the others that need the result wait for it (single
flight), and a daemon thread keeps the keys and the deny list fresh.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
from types import TracebackType
from typing import Any, Self

from issuer.verifier.cache import JWKSCache
from issuer.verifier.clock import UnixClock, system_clock
from issuer.verifier.keys import VerificationKey
from issuer.verifier.revocation import FeedState, RevocationList


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could lead from https:// to http:// or to another host: keys and the
    # deny list come from the configured URL only.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _lower(message: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def http_get(
    url: str, headers: Mapping[str, str], timeout: float, max_bytes: int
) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: (status, lower-case headers, body). Raises OSError or ValueError on trouble."""
    request = urllib.request.Request(url, headers=dict(headers), method="GET")  # noqa: S310 - checked by check_url
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            status, message = resp.status, resp.headers
            body = resp.read(max_bytes + 1) if status == 200 else b""
    except urllib.error.HTTPError as exc:  # 304 and every non-2xx land here
        status, message, body = exc.code, exc.headers, b""
        exc.close()
    if len(body) > max_bytes:
        raise ValueError("response body is too large")
    return status, _lower(message), body


class _Thread:
    """A daemon thread that calls ``step()`` after each ``delay()`` until stopped."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, step: Any, delay: Any) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            # A floor of one second keeps a misbehaving clock from spinning the loop.
            while not self._stop.wait(max(delay(), 1.0)):
                step()

        self._thread = threading.Thread(target=loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None


class _Closing:
    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncJWKSClient(_Closing):
    """:class:`~issuer.verifier.JWKSClient` for threads; ``with SyncJWKSClient(uri) as jwks``."""

    def __init__(
        self,
        jwks_uri: str,
        *,
        clock: UnixClock = system_clock,
        default_max_age: float = 300.0,
        min_max_age: float = 30.0,
        max_max_age: float = 3600.0,
        refresh_ahead: float = 0.2,
        cooldown: float = 30.0,
        stale_if_error: float = 3600.0,
        timeout: float = 5.0,
        max_bytes: int = 512 * 1024,
        background_refresh: bool = True,
        framework: str = "urllib",
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.cache = JWKSCache(
            jwks_uri,
            default_max_age=default_max_age,
            min_max_age=min_max_age,
            max_max_age=max_max_age,
            refresh_ahead=refresh_ahead,
            cooldown=cooldown,
            stale_if_error=stale_if_error,
            max_bytes=max_bytes,
            framework=framework,
        )
        self.jwks_uri = self.cache.jwks_uri
        # The fast path, once per verify (the key for ``kid`` if the cached set is fresh,
        # else None): the cache's own method, bound here rather than called through one.
        self.cached_key: Callable[[str, float], VerificationKey | None] = self.cache.cached_key
        self._clock = clock
        self._timeout = timeout
        self._background_refresh = background_refresh
        self._lock = threading.Lock()
        self._flight: threading.Event | None = None
        self._thread = _Thread("jwks-refresh")

    @property
    def fetches(self) -> int:
        return self.cache.fetches

    @property
    def keys(self) -> Mapping[str, VerificationKey]:
        return self.cache.keys

    def start(self) -> None:
        """Fetch once (failures are logged, not raised) and start the refresh thread."""
        if self._thread.running:
            return
        self.refresh()
        if self._background_refresh:
            self._thread.start(self.refresh, self.refresh_due)

    def close(self) -> None:
        self._thread.stop()

    def refresh_due(self) -> float:
        return self.cache.refresh_due(self._clock())

    def get_key(self, kid: str) -> VerificationKey:
        """The key for ``kid``, fetching when the set is stale or the kid is new."""
        with self._lock:
            fetch = self.cache.should_fetch(kid, self._clock(), in_flight=self._flight is not None)
        if fetch:
            self.refresh()
        with self._lock:
            return self.cache.key_after_fetch(kid, self._clock())

    def refresh(self) -> None:
        """Fetch now, or wait for the fetch another thread has in flight. Never raises."""
        with self._lock:
            flight = self._flight
            leader = flight is None
            if flight is None:
                flight = self._flight = threading.Event()
        if not leader:
            flight.wait()
            return
        try:
            self._fetch()
        finally:
            with self._lock:
                self._flight = None
            flight.set()

    def _fetch(self) -> None:
        with self._lock:
            fetch = self.cache.start_fetch(self._clock())
        try:
            status, headers, body = http_get(
                fetch.url, fetch.headers, self._timeout, self.cache.max_bytes
            )
        except Exception as exc:  # network, timeout, a body too large: all the same here
            with self._lock:
                self.cache.fail(fetch, exc)
            return
        with self._lock:
            self.cache.receive(fetch, status, headers, body)


class SyncRevocationFeed(_Closing):
    """:class:`~issuer.verifier.RevocationFeed` for threads, polled by a daemon thread."""

    def __init__(
        self,
        feed_uri: str,
        client_id: str,
        client_secret: str,
        *,
        interval: float = 30.0,
        max_token_lifetime: float = 24 * 3600.0,
        clock: UnixClock = system_clock,
        timeout: float = 5.0,
        max_pages: int = 100,
        max_bytes: int = 4 * 1024 * 1024,
        framework: str = "urllib",
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self.state = FeedState(
            feed_uri,
            client_id,
            client_secret,
            max_token_lifetime=max_token_lifetime,
            max_pages=max_pages,
            max_bytes=max_bytes,
            framework=framework,
        )
        self.feed_uri = self.state.feed_uri
        self.client_id = client_id
        self.interval = interval
        self._clock = clock
        self._timeout = timeout
        self._poll_lock = threading.Lock()
        self._thread = _Thread("revocation-feed")

    def __repr__(self) -> str:
        return f"SyncRevocationFeed({self.feed_uri!r}, client_id={self.client_id!r})"

    @property
    def revocations(self) -> RevocationList:
        return self.state.revocations

    def start(self) -> None:
        """Poll once (failures are logged) and keep polling every ``interval`` seconds."""
        if self._thread.running:
            return
        self.poll()
        self._thread.start(self.poll, lambda: self.interval)

    def close(self) -> None:
        self._thread.stop()

    def check(self, claims: Mapping[str, Any]) -> None:
        self.state.revocations.check(claims)

    def key_revoked(self, kid: str) -> bool:
        return kid in self.state.revocations.revoked_keys

    def poll(self) -> None:
        """Read every new page; on failure keep the last known list and log one warning."""
        with self._poll_lock:
            try:
                for _ in range(self.state.max_pages):
                    url, headers = self.state.request()
                    status, _, body = http_get(url, headers, self._timeout, self.state.max_bytes)
                    if not self.state.receive(status, body):
                        break
            except Exception as exc:  # network, status, garbage: keep what we have
                self.state.failed(self._clock(), exc)
            else:
                self.state.succeeded(self._clock())
