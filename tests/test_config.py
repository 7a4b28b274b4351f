"""Settings from ISSUER_* variables: defaults, parsing, and one clear line per mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from issuer.config import Settings, parse_duration
from issuer.errors import ConfigError


def test_defaults_match_the_readme() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///./var/issuer.db"
    assert s.issuer == "http://127.0.0.1:8080"
    assert s.audience == "aud"
    assert (s.host, s.port, s.admin_host, s.admin_port) == ("127.0.0.1", 8080, "127.0.0.1", 8081)
    assert s.kek_file == Path("keys/kek.json")
    assert s.signing_alg == "RS256"
    assert s.rsa_key_size == 2048
    assert s.access_token_ttl == 600
    assert s.key_rotation_interval == 30 * 86400
    assert s.key_publish_lead == 86400
    assert s.jwks_max_age == 300
    assert s.auto_migrate is True


@pytest.mark.parametrize(
    ("text", "seconds"), [("600", 600), ("90s", 90), ("10m", 600), ("24h", 86400), ("30d", 2592000)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        (
            {"ISSUER_ACCESS_TOKEN_TTL": "ten minutes"},
            "ISSUER_ACCESS_TOKEN_TTL: expected a duration",
        ),
        ({"ISSUER_PORT": "99999"}, "ISSUER_PORT"),
        ({"ISSUER_SIGNING_ALG": "HS256"}, "ISSUER_SIGNING_ALG: expected one of RS256"),
        ({"ISSUER_RSA_KEY_SIZE": "1024"}, "ISSUER_RSA_KEY_SIZE"),
        ({"ISSUER_DATABASE_URL": "mysql://x"}, "ISSUER_DATABASE_URL"),
        ({"ISSUER_ISSUER": "issuer.example.com"}, "ISSUER_ISSUER"),
        ({"ISSUER_ISSUER": "https://a.example/?x=1"}, "ISSUER_ISSUER"),
        ({"ISSUER_ISSUER": "https://a.example/"}, "ISSUER_ISSUER: must not end with /"),
        ({"ISSUER_AUTO_MIGRATE": "maybe"}, "ISSUER_AUTO_MIGRATE"),
        ({"ISSUER_KEK": "c2hvcnQ"}, "ISSUER_KEK: each key must be 32 bytes"),
        ({"ISSUER_KEY_PUBLISH_LEAD": "1m"}, "ISSUER_KEY_PUBLISH_LEAD: must be at least"),
        (
            {"ISSUER_KEY_PUBLISH_LEAD": "300", "ISSUER_KEY_REFRESH_INTERVAL": "5"},
            "ISSUER_KEY_PUBLISH_LEAD: must be at least ISSUER_JWKS_MAX_AGE + ISSUER_KEY_REFRESH",
        ),
        ({"ISSUER_KEY_ROTATION_INTERVAL": "1h"}, "ISSUER_KEY_ROTATION_INTERVAL"),
        ({"ISSUER_ADMIN_PORT": "8080"}, "ISSUER_ADMIN_PORT"),
        ({"ISSUER_TOKEN_TTL": "5m"}, "ISSUER_TOKEN_TTL: unknown setting"),
        ({"ISSUER_PORT": "abc"}, "ISSUER_PORT: expected a port number from 0 to 65535"),
        ({"ISSUER_WORKERS": "two"}, "ISSUER_WORKERS: expected a whole number"),
        ({"ISSUER_RSA_KEY_SIZE": "big"}, "ISSUER_RSA_KEY_SIZE: expected a whole number"),
        ({"ISSUER_LOGIN_MAX_FAILURES": "x"}, "ISSUER_LOGIN_MAX_FAILURES: expected a whole"),
        ({"ISSUER_MAX_CONNECTIONS": "lots"}, "ISSUER_MAX_CONNECTIONS: expected a whole"),
        ({"ISSUER_MAX_CONNECTIONS": "0"}, "ISSUER_MAX_CONNECTIONS: must be at least 1"),
        ({"ISSUER_HEADER_TIMEOUT": "0"}, "ISSUER_HEADER_TIMEOUT: must be more than 0"),
        ({"ISSUER_BODY_TIMEOUT": "soon"}, "ISSUER_BODY_TIMEOUT: expected a duration"),
        ({"ISSUER_KEEPALIVE_TIMEOUT": "nan"}, "ISSUER_KEEPALIVE_TIMEOUT: expected a finite"),
        ({"ISSUER_TLS_CERT_FILE": "c.pem"}, "ISSUER_TLS_KEY_FILE: set both"),
        ({"ISSUER_TLS_KEY_FILE": "k.pem"}, "ISSUER_TLS_CERT_FILE: set both"),
        (
            {"ISSUER_ISSUER": "http://issuer.example.com"},
            "ISSUER_ISSUER: must be https:// unless its host is a loopback address",
        ),
        ({"ISSUER_ISSUER": "http://10.0.0.1:8080"}, "ISSUER_ISSUER: must be https://"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "invalid literal" not in message


@pytest.mark.parametrize(
    "url",
    ["https://issuer.example.com", "http://127.0.0.1:8080", "http://localhost", "http://[::1]:80"],
)
def test_an_issuer_is_https_or_on_this_machine(url: str) -> None:
    assert Settings.from_env({"ISSUER_ISSUER": url}).issuer == url


def test_connection_bounds_have_defaults_and_take_fractions() -> None:
    s = Settings.from_env({})
    assert (s.header_timeout, s.body_timeout, s.keepalive_timeout) == (10.0, 10.0, 75.0)
    assert (s.max_connections, s.admin_max_connections) == (800, 64)
    s = Settings.from_env({"ISSUER_HEADER_TIMEOUT": "0.5", "ISSUER_KEEPALIVE_TIMEOUT": "2m"})
    assert (s.header_timeout, s.keepalive_timeout) == (0.5, 120.0)


def test_the_kek_never_appears_in_errors_or_reprs() -> None:
    secret = "A" * 43  # 32 bytes, valid
    s = Settings.from_env({"ISSUER_KEK": secret})
    assert secret not in repr(s)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"ISSUER_KEK": "B" * 40})
    assert "B" * 40 not in str(info.value)
    assert "hidden" in str(info.value)


def test_bad_configuration_stops_the_cli_with_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ISSUER_ACCESS_TOKEN_TTL": "forever"}
    proc = subprocess.run(
        [sys.executable, "-m", "issuer", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("issuer: configuration error: ISSUER_ACCESS_TOKEN_TTL")
    assert "Traceback" not in proc.stderr


def test_a_database_password_never_shows() -> None:
    url = "postgresql://issuer:S3cretPw@db.internal/issuer"
    s = Settings.from_env({"ISSUER_DATABASE_URL": url})
    assert "S3cretPw" not in repr(s)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"ISSUER_DATABASE_URL": "mysql://u:S3cretPw@h/db"})
    assert "S3cretPw" not in str(info.value)
    assert "u:***@h" in str(info.value)
