"""Verify one RS256 access token in a loop: this library vs PyJWT vs the raw RSA operation.

    python bench/verify.py [--seconds 3]

All three run in one process, interleaved in short rounds, and each reports its
best round, so a neighbour's load skews them alike. The JWKS comes from a local
aiohttp server and is warm, as it is for a resource service after its first
request. PyJWT gets the key object (its best case: no JWK or PEM parsing).
Targets: this library >= 2x PyJWT and >= 50 % of the raw verify rate.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import time

import cryptography
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from issuer.jose.keys import generate_key
from issuer.jose.tokens import AccessTokenRequest, Signer, access_token_claims
from issuer.verifier import JWKSClient, Verifier

ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"


async def main(seconds: float) -> None:
    key = generate_key("RS256")
    now = int(time.time())
    claims = access_token_claims(
        AccessTokenRequest(
            issuer=ISSUER,
            subject="user-1",
            audience=AUDIENCE,
            client_id="client-1",
            scope="read write",
            now=now,
            ttl=600,
            roles=("user",),
        )
    )
    token = Signer(key.kid, key.alg, key.private_pem).sign(claims)

    app = web.Application()
    jwks_body = json.dumps({"keys": [key.public_jwk]})

    async def handle_jwks(request: web.Request) -> web.Response:
        return web.Response(text=jwks_body, headers={"Cache-Control": "max-age=300"})

    app.router.add_get("/jwks.json", handle_jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async with JWKSClient(f"http://127.0.0.1:{port}/jwks.json") as jwks:
        verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks)
        public_key = jwks.keys[key.kid].key
        assert isinstance(public_key, rsa.RSAPublicKey)
        signing_input, _, sig_b64 = token.encode().rpartition(b".")
        signature = base64.urlsafe_b64decode(sig_b64 + b"=" * (-len(sig_b64) % 4))

        # Same answers first: the loops below measure equivalent work.
        ours_claims = await verifier.verify(token)
        pyjwt_claims = jwt.decode(
            token, public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
        )
        assert ours_claims == pyjwt_claims == claims

        async def ours(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                await verifier.verify(token)
            return time.perf_counter() - start

        def pyjwt(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                jwt.decode(
                    token, public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER
                )
            return time.perf_counter() - start

        def raw(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return time.perf_counter() - start

        batch = 500
        rates: dict[str, list[float]] = {"ours": [], "pyjwt": [], "raw": []}
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(rates["ours"]) < 3:
            rates["ours"].append(batch / await ours(batch))
            rates["pyjwt"].append(batch / pyjwt(batch))
            rates["raw"].append(batch / raw(batch))
    await runner.cleanup()

    ours_rate, pyjwt_rate, raw_rate = (max(rates[k]) for k in ("ours", "pyjwt", "raw"))
    ratio = ours_rate / pyjwt_rate
    share = ours_rate / raw_rate
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"PyJWT {jwt.__version__}; {len(rates['ours'])} rounds of {batch}, best round each"
    )
    print(f"issuer.verifier Verifier.verify : {ours_rate:9.0f} tokens/s")
    print(f"PyJWT jwt.decode (key object)   : {pyjwt_rate:9.0f} tokens/s")
    print(f"raw RSA-2048 PKCS1v15 SHA-256   : {raw_rate:9.0f} verifies/s")
    print(f"ratio to PyJWT                  : {ratio:9.2f}x   (target >= 2x)")
    print(f"share of the raw verify rate    : {share:9.0%}    (target >= 50%)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure")
    asyncio.run(main(parser.parse_args().seconds))
