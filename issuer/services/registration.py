"""Redirect URIs, post-logout redirect URIs and web origins of a client.

- RFC 6749 §3.1.2: absolute, no fragment; compared as exact strings (RFC 9700 §4.1.3).
- RFC 8252 §7.3: a loopback IP redirect URI (``http://127.0.0.1/cb``,
  ``http://[::1]/cb``) matches whatever port the native app listens on;
  ``localhost`` gets no such leeway (RFC 8252 §8.3).
- RFC 8252 §7.1: private-use schemes (``com.example.app:/cb``) for public clients only.
- Plain ``http`` only for loopback hosts; everything else must be ``https``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from issuer.errors import InvalidRequestError

MAX_URI = 2000
MAX_URIS = 20
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _is_loopback_ip(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _clean(uri: str, what: str) -> str:
    if not uri or len(uri) > MAX_URI:
        raise InvalidRequestError(f"a {what} is 1 to {MAX_URI} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise InvalidRequestError(f"a {what} must not contain spaces or control characters")
    if "*" in uri:
        raise InvalidRequestError(f"a {what} is compared exactly: no wildcards")
    return uri


def validate_redirect_uri(uri: str, *, public: bool, what: str = "redirect URI") -> str:
    uri = _clean(uri, what)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidRequestError(f"{what} {uri[:80]!r} is not a valid URI") from None
    if not parts.scheme:
        raise InvalidRequestError(f"{what} {uri[:80]!r} must be absolute")
    if parts.fragment or uri.endswith("#"):
        raise InvalidRequestError(f"{what} {uri[:80]!r} must not have a fragment")
    if parts.scheme in ("http", "https"):
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise InvalidRequestError(f"{what} {uri[:80]!r} needs a host and no user info")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_NAMES:
            raise InvalidRequestError(
                f"{what} {uri[:80]!r}: plain http only for loopback (127.0.0.1, [::1])"
            )
        return uri
    if not public:
        raise InvalidRequestError(
            f"{what} {uri[:80]!r}: private-use schemes are for public (native) clients"
        )
    if "." not in parts.scheme:
        # RFC 8252 §7.1: a reverse domain name, so apps do not collide.
        raise InvalidRequestError(
            f"{what} {uri[:80]!r}: a private-use scheme is a reverse domain name (com.example.app)"
        )
    return uri


def _any_port_loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and _is_loopback_ip(parts.hostname) and parts.port is None


def origin_of(uri: str) -> str | None:
    """The web origin (RFC 6454) of an http(s) URI, as a browser sends it; else None."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme}://{host}{port}"


def validate_web_origin(origin: str) -> str:
    origin = _clean(origin, "web origin")
    if origin_of(origin) != origin:
        raise InvalidRequestError(
            f"web origin {origin[:80]!r} must be scheme://host[:port] in lower case, no path"
        )
    parts = urlsplit(origin)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_NAMES:
        raise InvalidRequestError(f"web origin {origin[:80]!r}: plain http only for loopback")
    return origin


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    if len(out) > MAX_URIS:
        raise InvalidRequestError(f"at most {MAX_URIS} URIs of each kind")
    return tuple(out)


def registration(
    *,
    public: bool,
    redirect_uris: Iterable[str],
    post_logout_redirect_uris: Iterable[str],
    web_origins: Iterable[str] | None,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Validated redirect URIs, post-logout redirect URIs and web origins.

    Web origins default to the origins of the http(s) redirect URIs: that is where a
    single-page app runs and calls the token endpoint from.
    """
    redirects = _unique(validate_redirect_uri(u, public=public) for u in redirect_uris)
    logouts = _unique(
        validate_redirect_uri(u, public=public, what="post-logout redirect URI")
        for u in post_logout_redirect_uris
    )
    if web_origins is None:
        # A loopback IP redirect without a port is a native app's (any port): no origin.
        origins = _unique(
            o
            for o in map(origin_of, (u for u in redirects if not _any_port_loopback(u)))
            if o is not None
        )
    else:
        origins = _unique(validate_web_origin(o) for o in web_origins)
    return redirects, logouts, origins


def redirect_uri_matches(registered: Iterable[str], presented: str) -> bool:
    """Exact string comparison, except the port of a loopback IP redirect (RFC 8252 §7.3)."""
    registered = tuple(registered)
    if presented in registered:
        return True
    try:
        parts = urlsplit(presented)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "http" or not _is_loopback_ip(parts.hostname) or port is None:
        return False
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.netloc != f"{netloc}:{port}":
        return False  # user info, or an odd spelling of the host: compare nothing loosely
    without_port = parts._replace(netloc=netloc).geturl()
    return without_port in registered
