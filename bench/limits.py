"""The limits the service is judged against, each run as its own process by ``bench/load.py``.

    python bench/limits.py sign   --seconds 3   # RS256 (RSA-2048) signatures/s on one core
    python bench/limits.py verify --seconds 3   # RS256 verifications/s on one core
    python bench/limits.py argon2 --seconds 3   # argon2 verifies/s on one core, service parameters
    python bench/limits.py bare --port 9000     # a bare aiohttp handler on SO_REUSEPORT

Each rate is printed as one number on stdout: the operations done divided by
the time taken, over the whole duration (no best-of-rounds), so it compares
fairly with what ``wrk`` reports for the service.
"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Callable

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# About the signing input of an access token (header.payload, base64url).
SIGNING_INPUT = b"e" * 400
# About the size of a JWKS with an active key and its pending successor.
BARE_BODY = b'{"keys":[' + b'"k"' * 300 + b"]}"


def rate(fn: Callable[[], object], seconds: float) -> float:
    fn()  # warm up (first use builds caches)
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def sign_rate(seconds: float) -> float:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pad, alg = padding.PKCS1v15(), hashes.SHA256()
    return rate(lambda: key.sign(SIGNING_INPUT, pad, alg), seconds)


def verify_rate(seconds: float) -> float:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pad, alg = padding.PKCS1v15(), hashes.SHA256()
    signature = key.sign(SIGNING_INPUT, pad, alg)
    public = key.public_key()
    return rate(lambda: public.verify(signature, SIGNING_INPUT, pad, alg), seconds)


def argon2_rate(seconds: float) -> float:
    # The service's own hasher, so the parameters cannot drift from what logins pay.
    from issuer.services.passwords import _hasher

    hasher = _hasher()
    stored = hasher.hash("correct horse battery staple")
    return rate(lambda: hasher.verify(stored, "correct horse battery staple"), seconds)


def serve_bare(port: int) -> None:
    """One worker: fixed bytes, no access log, the port shared with the others."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=BARE_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", handle)
    sock = socket.create_server(("127.0.0.1", port), backlog=1024, reuse_port=True)
    web.run_app(app, sock=sock, access_log=None, print=None)  # exits 0 on SIGTERM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["sign", "verify", "argon2", "bare"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.what == "bare":
        serve_bare(args.port)
        return
    measure = {"sign": sign_rate, "verify": verify_rate, "argon2": argon2_rate}[args.what]
    print(f"{measure(args.seconds):.1f}")


if __name__ == "__main__":
    main()
