"""Signing speed: issuer's Signer vs PyJWT ``jwt.encode`` vs the raw RSA-2048 signature.

    .venv/bin/python bench/sign.py [--seconds 3]

Signing an RS256 token is one RSA private-key operation plus a little JSON and
base64; the target is the Signer at >= 90 % of the raw ``cryptography`` rate
(work done once per key — loading the key, encoding the header — stays out of
the per-token path). Not a timed test: a report to read.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import cryptography
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from issuer.jose.keys import generate_key
from issuer.jose.tokens import AccessTokenRequest, Signer, access_token_claims


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Best of short rounds, interleaving nothing: operations per second."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        n, start = 0, time.perf_counter()
        while n < 200:
            fn()
            n += 1
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per contender")
    args = parser.parse_args()

    key = generate_key("RS256", 2048)
    signer = Signer(key.kid, "RS256", key.private_pem)
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    now = int(time.time())
    request = AccessTokenRequest(
        issuer="https://issuer.example",
        subject="user-123",
        audience="api",
        client_id="web",
        scope="read write",
        now=now,
        ttl=600,
        roles=("admin",),
    )
    data = b"x" * 300  # about a token's signing input

    ours = rate(lambda: signer.sign(access_token_claims(request)), args.seconds)
    pyjwt = rate(
        lambda: jwt.encode(
            dict(access_token_claims(request)),
            private,
            algorithm="RS256",
            headers={"kid": key.kid, "typ": "at+jwt"},
        ),
        args.seconds,
    )
    raw = rate(lambda: private.sign(data, padding.PKCS1v15(), hashes.SHA256()), args.seconds)
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"PyJWT {jwt.__version__}; RSA-2048, best round of 200 for {args.seconds:.0f} s each"
    )
    print(f"issuer Signer.sign (claims + sign) : {ours:10.0f} tokens/s")
    print(f"PyJWT jwt.encode (key object)      : {pyjwt:10.0f} tokens/s")
    print(f"raw RSA-2048 PKCS1v15 SHA-256 sign : {raw:10.0f} signatures/s")
    print(f"share of the raw signing rate      : {ours / raw:10.0%}   (target >= 90%)")
    print(f"ratio to PyJWT                     : {ours / pyjwt:10.2f}x")


if __name__ == "__main__":
    main()
