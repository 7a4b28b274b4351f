"""HTTPS terminated by the service: a certificate the test makes, tokens verified over HTTPS,
and a renewed certificate picked up without a restart (SIGHUP, or the files changing)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from issuer.connections import Certificate
from issuer.verifier import TokenError
from issuer.verifier.jwks import JWKSClient
from issuer.verifier.verifier import Verifier
from tests.live import Served, cli, http, issuer_env, serve


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cert_file: Path, key_file: Path, name: str) -> int:
        """A server certificate for 127.0.0.1, written by rename as a renewal tool would."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        for path, data in (
            (
                key_file,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
            (cert_file, cert.public_bytes(serialization.Encoding.PEM)),
        ):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            tmp.replace(path)
        return cert.serial_number

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.pem.decode())
        return ctx


@pytest.fixture(scope="module")
def ca() -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CA(key, cert)


def served_serial(port: int, ctx: ssl.SSLContext) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def wait_for_serial(port: int, ctx: ssl.SSLContext, serial: int, within: float = 5) -> bool:
    """Whether new handshakes present certificate ``serial`` within ``within`` seconds."""
    deadline = time.monotonic() + within
    while served_serial(port, ctx) != serial:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def https(url: str, ctx: ssl.SSLContext, data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10, context=ctx) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class TLSServed:
    served: Served
    ctx: ssl.SSLContext
    cert_file: Path
    key_file: Path

    @property
    def port(self) -> int:
        return int(self.served.env["ISSUER_PORT"])

    @property
    def public(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"https://127.0.0.1:{self.served.env['ISSUER_ADMIN_PORT']}"


@pytest.fixture
def workers() -> str:
    return "1"


@pytest.fixture
def tls_served(ca: CA, tmp_path: Path, workers: str) -> Iterator[TLSServed]:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert_file, key_file, "first")
    env = issuer_env(tmp_path, ISSUER_WORKERS=workers)
    env.update(
        ISSUER_TLS_CERT_FILE=str(cert_file),
        ISSUER_TLS_KEY_FILE=str(key_file),
        ISSUER_ISSUER=f"https://127.0.0.1:{env['ISSUER_PORT']}",
    )
    ctx = ca.client_context()
    with serve(env, tmp_path / "issuer.log") as served:
        s = TLSServed(served, ctx, cert_file, key_file)
        deadline = time.monotonic() + 30
        while True:
            assert served.proc.poll() is None, served.logs()
            try:
                if https(s.public + "/readyz", ctx)[0] == https(s.admin + "/readyz", ctx)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, served.logs()
            time.sleep(0.1)
        yield s


async def verify_over_https(
    jwks_uri: str, issuer: str, ctx: ssl.SSLContext, token: str
) -> dict[str, Any]:
    """The verifier library, fetching the JWKS over HTTPS and trusting the test's CA."""
    connector = aiohttp.TCPConnector(ssl=ctx)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        JWKSClient(jwks_uri, session=session) as jwks,
    ):
        verifier = Verifier(issuer=issuer, audience="aud", jwks=jwks)
        claims = await verifier.verify(token)
        with pytest.raises(TokenError):
            await verifier.verify(token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"))
        return claims


def test_tokens_are_issued_and_verified_over_https(tls_served: TLSServed) -> None:
    created = json.loads(cli(tls_served.served.env, "clients", "create", "api", "--scope", "read"))
    status, body = https(
        tls_served.public + "/token",
        tls_served.ctx,
        f"grant_type=client_credentials&client_id={created['client_id']}"
        f"&client_secret={created['client_secret']}&scope=read".encode(),
    )
    assert status == 200, body
    token = json.loads(body)["access_token"]
    status, body = https(tls_served.public + "/.well-known/openid-configuration", tls_served.ctx)
    discovery = json.loads(body)
    assert discovery["jwks_uri"] == tls_served.public + "/.well-known/jwks.json"

    claims = asyncio.run(
        verify_over_https(discovery["jwks_uri"], tls_served.public, tls_served.ctx, token)
    )
    assert claims["client_id"] == created["client_id"]
    assert claims["iss"] == tls_served.public

    # No plaintext on the TLS port: the request is not understood, no token flows.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        http(f"http://127.0.0.1:{tls_served.port}/.well-known/jwks.json")
    assert not [d for d in tls_served.served.log_lines() if d["level"] == "ERROR"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_reloads_a_renewed_certificate_without_a_restart(
    ca: CA, tls_served: TLSServed, workers: str
) -> None:
    first = served_serial(tls_served.port, tls_served.ctx)
    renewed = ca.issue(tls_served.cert_file, tls_served.key_file, "renewed")
    assert renewed != first
    os.kill(tls_served.served.proc.pid, signal.SIGHUP)
    assert wait_for_serial(tls_served.port, tls_served.ctx, renewed), tls_served.served.logs()
    # Every worker reloaded: the kernel spreads these handshakes over all of them.
    deadline = time.monotonic() + 5
    while True:
        logs = tls_served.served.log_lines()
        reloaded = [d for d in logs if "TLS certificate reloaded" in d["event"]]
        if len(reloaded) == int(workers):
            break
        assert time.monotonic() < deadline, tls_served.served.logs()
        time.sleep(0.05)
    assert {served_serial(tls_served.port, tls_served.ctx) for _ in range(20)} == {renewed}
    assert tls_served.served.proc.poll() is None  # the same process, not a restart
    assert https(tls_served.public + "/livez", tls_served.ctx)[0] == 200
    assert "died unexpectedly" not in tls_served.served.logs()


async def test_a_changed_certificate_file_is_picked_up_and_a_broken_one_is_not(
    ca: CA, tmp_path: Path
) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = ca.issue(cert_file, key_file, "first")
    certificate = Certificate(cert_file, key_file)
    server = await asyncio.get_running_loop().create_server(
        asyncio.Protocol, "127.0.0.1", 0, ssl=certificate.context
    )
    port = server.sockets[0].getsockname()[1]
    watch = asyncio.create_task(certificate.watch(interval=0.05))
    ctx = ca.client_context()
    try:
        assert await asyncio.to_thread(served_serial, port, ctx) == first
        renewed = ca.issue(cert_file, key_file, "renewed")
        assert await asyncio.to_thread(wait_for_serial, port, ctx, renewed)
        watch.cancel()
        # A half-written renewal does not replace a good certificate.
        cert_file.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
        assert certificate.changed()
        assert certificate.reload() is False
        assert await asyncio.to_thread(served_serial, port, ctx) == renewed
        # Nor does one caught between its two files: a new certificate whose key is not
        # written yet (OpenSSL loads the certificate first, then refuses the key).
        spare_cert, spare_key = cert_file.with_name("spare.pem"), key_file.with_name("spare.key")
        ca.issue(spare_cert, spare_key, "next")
        cert_file.write_bytes(spare_cert.read_bytes())
        assert certificate.reload() is False
        assert await asyncio.to_thread(served_serial, port, ctx) == renewed
    finally:
        watch.cancel()
        server.close()
        await server.wait_closed()
