"""Settings: built once from ``ISSUER_*`` environment variables, frozen, validated.

A bad value raises :class:`ConfigError` with one line that names the variable;
``issuer.cli`` prints that line and exits non-zero, without a traceback.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from issuer.cpus import available_cpus
from issuer.errors import ConfigError

T = TypeVar("T")

SIGNING_ALGS = ("RS256", "PS256", "ES256", "EdDSA")
RSA_KEY_SIZES = (2048, 3072, 4096)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*")


def parse_duration(text: str) -> int:
    """``600``, ``10m``, ``24h``, ``30d`` -> seconds."""
    m = _DURATION.fullmatch(text)
    if not m:
        raise ValueError("expected a duration such as 600, 90s, 10m, 24h or 30d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_int(text: str) -> int:
    """A whole number; int()'s own message names Python internals, not the setting."""
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def parse_port(text: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        raise ValueError("expected a port number from 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return port


def parse_kek_list(text: str) -> tuple[bytes, ...]:
    """Comma-separated base64url 256-bit keys; the first wraps, all unwrap."""
    keys = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("each key must be base64url") from None
        if len(raw) != 32:
            raise ValueError("each key must be 32 bytes (256 bits), base64url-encoded")
        keys.append(raw)
    if not keys:
        raise ValueError("expected at least one base64url 256-bit key")
    return tuple(keys)


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in text.replace(",", " ").split():
        nets.append(ipaddress.ip_network(part, strict=False))
    return tuple(nets)


def _database_url(text: str) -> str:
    scheme = urlsplit(text).scheme
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise ValueError("expected sqlite:///path or postgresql://user@host/db")
    if scheme == "sqlite" and not text.startswith("sqlite:///"):
        raise ValueError("expected sqlite:///relative/path or sqlite:////absolute/path")
    return text


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _issuer_url(text: str) -> str:
    parts = urlsplit(text)
    # RFC 8414 §2: https URL with no query or fragment (http allowed for local use).
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        # Tokens travel only over HTTPS (RFC 9700 §2.6 / RFC 8414 §2); plain http is
        # for a service on this machine only.
        raise ValueError("must be https:// unless its host is a loopback address")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment (RFC 8414 §2)")
    if text.endswith("/"):
        # iss is compared exactly (RFC 8414 §3.3): dropping the slash silently would make
        # every token's iss differ from what the verifiers were configured with.
        raise ValueError("must not end with / (iss is compared exactly)")
    return text


def _optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _choice(options: tuple[T, ...], convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = convert(text.strip())
        if value not in options:
            raise ValueError("expected one of " + ", ".join(str(o) for o in options))
        return value

    return parse


def _default_workers() -> int:
    return available_cpus()


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every setting, with its default; see the README's configuration table."""

    # repr=False: a PostgreSQL URL may carry the password.
    database_url: str = field(default="sqlite:///./var/issuer.db", repr=False)
    issuer: str = "http://127.0.0.1:8080"
    audience: str = "aud"
    host: str = "127.0.0.1"
    port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    kek_file: Path = Path("keys/kek.json")
    kek: tuple[bytes, ...] | None = field(default=None, repr=False)
    signing_alg: str = "RS256"
    rsa_key_size: int = 2048
    access_token_ttl: int = 600
    key_rotation_interval: int = 30 * 86400
    key_publish_lead: int = 86400
    jwks_max_age: int = 300
    clock_leeway: int = 60
    # SQLite workers see each other's key changes only by re-reading: keep it short.
    key_refresh_interval: int = 1
    auto_migrate: bool = True
    workers: int = field(default_factory=_default_workers)
    shutdown_grace: int = 20
    # Sessions and login (users, refresh tokens, throttling).
    refresh_token_ttl: int = 30 * 86400
    refresh_idle_ttl: int = 7 * 86400
    refresh_reuse_grace: int = 0
    # Failures per (username, address), per username from all addresses, per address;
    # the trade-offs are in SECURITY.md ("Login throttling").
    login_max_failures: int = 5
    login_max_failures_per_username: int = 100
    login_max_failures_per_address: int = 500
    login_window: int = 900
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Slow and idle connections (per worker). A client gets this long from connecting
    # to the end of its first request's head, and from the head to the end of the body;
    # an idle kept-alive connection is closed after keepalive_timeout.
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    max_connections: int = 800
    admin_max_connections: int = 64
    # Database faults: how long a request waits for a pooled connection (or SQLite's
    # write lock), and for each statement, before it is answered 503.
    db_acquire_timeout: float = 2.0
    db_statement_timeout: float = 5.0
    # TLS terminated by the service itself (both or neither).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    log_level: str = "INFO"
    log_format: str = "json"
    # Browser login: the name on the login page, an operator's stylesheet for it, and how
    # long a browser stays signed in.
    display_name: str = "issuer"
    login_stylesheet: Path | None = None
    browser_session_ttl: int = 12 * 3600
    # `issuer serve` runs its event loop on uvloop when it is installed.
    uvloop: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; each failure names the variable to fix."""

        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"ISSUER_{name.upper()}: {why}")

        need(self.access_token_ttl >= 1, "access_token_ttl", "must be at least 1 second")
        need(self.access_token_ttl <= 86400, "access_token_ttl", "must be at most 24h")
        need(self.jwks_max_age >= 0, "jwks_max_age", "must not be negative")
        # A key must be in every verifier's cached JWKS before it signs.
        # A new key must be in every worker's JWKS (which takes up to one refresh
        # interval) and then in every verifier's cached copy before it signs.
        need(
            self.key_publish_lead >= self.jwks_max_age + self.key_refresh_interval,
            "key_publish_lead",
            f"must be at least ISSUER_JWKS_MAX_AGE + ISSUER_KEY_REFRESH_INTERVAL "
            f"({self.jwks_max_age + self.key_refresh_interval}s), "
            "or verifiers may meet a kid they have not fetched yet",
        )
        need(
            self.key_rotation_interval > self.key_publish_lead,
            "key_rotation_interval",
            f"must be longer than ISSUER_KEY_PUBLISH_LEAD ({self.key_publish_lead}s)",
        )
        need(
            self.key_rotation_interval >= self.access_token_ttl,
            "key_rotation_interval",
            f"must be at least ISSUER_ACCESS_TOKEN_TTL ({self.access_token_ttl}s)",
        )
        need(self.key_refresh_interval >= 1, "key_refresh_interval", "must be at least 1s")
        need(self.workers >= 1, "workers", "must be at least 1")
        need(
            self.port != self.admin_port or self.port == 0,
            "admin_port",
            "must differ from ISSUER_PORT",
        )
        need(self.refresh_idle_ttl >= 1, "refresh_idle_ttl", "must be at least 1 second")
        need(
            self.refresh_idle_ttl <= self.refresh_token_ttl,
            "refresh_idle_ttl",
            f"must not exceed ISSUER_REFRESH_TOKEN_TTL ({self.refresh_token_ttl}s)",
        )
        # A longer grace lets a stolen, already-used refresh token work for longer.
        need(
            0 <= self.refresh_reuse_grace <= 60,
            "refresh_reuse_grace",
            "must be from 0 to 60 seconds",
        )
        need(self.login_max_failures >= 1, "login_max_failures", "must be at least 1")
        for name in ("login_max_failures_per_username", "login_max_failures_per_address"):
            need(getattr(self, name) >= 1, name, "must be at least 1")
        need(self.login_window >= 1, "login_window", "must be at least 1 second")
        for name in ("header_timeout", "body_timeout", "keepalive_timeout"):
            need(getattr(self, name) > 0, name, "must be more than 0 seconds")
        for name in ("db_acquire_timeout", "db_statement_timeout"):
            need(0 < getattr(self, name) <= 300, name, "must be more than 0 and at most 300s")
        need(self.max_connections >= 1, "max_connections", "must be at least 1")
        need(self.admin_max_connections >= 1, "admin_max_connections", "must be at least 1")
        need(
            (self.tls_cert_file is None) == (self.tls_key_file is None),
            "tls_key_file" if self.tls_key_file is None else "tls_cert_file",
            "set both ISSUER_TLS_CERT_FILE and ISSUER_TLS_KEY_FILE, or neither",
        )
        need(
            60 <= self.browser_session_ttl <= 30 * 86400,
            "browser_session_ttl",
            "must be from 1m to 30d",
        )
        need(
            self.login_stylesheet is None or self.login_stylesheet.is_file(),
            "login_stylesheet",
            f"no such file: {self.login_stylesheet}",
        )

    @property
    def key_retention(self) -> int:
        """How long a key stays published after it stops signing."""
        return self.access_token_ttl + self.clock_leeway

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = "ISSUER_" + f.name.upper()
            if name not in env:
                continue
            raw = env[name]
            parser = _PARSERS.get(f.name, str)
            try:
                values[f.name] = parser(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{name}: {exc} (got {_shown(f.name, raw)})") from None
        unknown = sorted(k for k in env if k.startswith("ISSUER_") and k not in _KNOWN)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown setting (see the README's table)")
        return cls(**values)


def parse_seconds(text: str) -> float:
    """A duration (``parse_duration``) or a decimal number of seconds such as ``0.5``."""
    try:
        return float(parse_duration(text))
    except ValueError:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError("expected a duration such as 0.5, 10, 90s or 2m") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("expected a finite number of seconds") from None
        return value


def _shown(name: str, raw: str) -> str:
    if name == "kek":
        return "a hidden value"
    if name == "database_url":
        raw = redact_url(raw)
    return repr(raw[:80])


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


_PARSERS: dict[str, Callable[[str], Any]] = {
    "database_url": _database_url,
    "issuer": _issuer_url,
    "audience": _non_empty,
    "port": parse_port,
    "admin_port": parse_port,
    "kek_file": Path,
    "kek": parse_kek_list,
    "signing_alg": _choice(SIGNING_ALGS, str),
    "rsa_key_size": _choice(RSA_KEY_SIZES, parse_int),
    "access_token_ttl": parse_duration,
    "key_rotation_interval": parse_duration,
    "key_publish_lead": parse_duration,
    "jwks_max_age": parse_duration,
    "clock_leeway": parse_duration,
    "key_refresh_interval": parse_duration,
    "auto_migrate": parse_bool,
    "workers": parse_int,
    "shutdown_grace": parse_duration,
    "refresh_token_ttl": parse_duration,
    "refresh_idle_ttl": parse_duration,
    "refresh_reuse_grace": parse_duration,
    "login_max_failures": parse_int,
    "login_max_failures_per_username": parse_int,
    "login_max_failures_per_address": parse_int,
    "login_window": parse_duration,
    "trusted_proxies": parse_networks,
    "header_timeout": parse_seconds,
    "body_timeout": parse_seconds,
    "keepalive_timeout": parse_seconds,
    "db_acquire_timeout": parse_seconds,
    "db_statement_timeout": parse_seconds,
    "max_connections": parse_int,
    "admin_max_connections": parse_int,
    "tls_cert_file": _optional_path,
    "tls_key_file": _optional_path,
    "log_level": _choice(("DEBUG", "INFO", "WARNING", "ERROR"), str.upper),
    "log_format": _choice(("json", "text"), str.lower),
    "display_name": _non_empty,
    "login_stylesheet": _optional_path,
    "browser_session_ttl": parse_duration,
    "uvloop": parse_bool,
}
# Variables read elsewhere (tests, tooling) that are not settings of the server.
_OTHER = {"ISSUER_TEST_POSTGRES", "ISSUER_TEST_POSTGRES_DSN"}
_KNOWN = {"ISSUER_" + f.name.upper() for f in fields(Settings)} | _OTHER
