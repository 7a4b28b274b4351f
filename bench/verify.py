"""Verify RS256 access tokens in a loop: this library vs PyJWT vs the raw RSA operation.

    .venv/bin/python bench/verify.py [--seconds 3]

All run in one process, interleaved in short rounds, timed in CPU time (so a busy
neighbour on a shared machine skews them less), and each reports its best
round. The JWKS comes from a local
aiohttp server and is warm, as it is for a resource service after its first
request. PyJWT gets the key object (its best case: no JWK or PEM parsing).

- cold: every token is one the verifier has never seen (a fresh verifier per
  round over the same warm JWKS), so each costs a full verification;
- repeated: the same token again and again (the verified-token cache).

Targets: cold >= 0.65 x the raw verify rate and >= 2x PyJWT; repeated >= 10 x
the raw verify rate.
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
    signer = Signer(key.kid, key.alg, key.private_pem)
    token = signer.sign(claims)
    batch = 500
    cold_tokens = [signer.sign({**claims, "jti": f"cold-{n}"}) for n in range(batch)]

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

        async def cold(n: int) -> float:
            fresh = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=jwks)
            await fresh.verify(token)  # the header cache warms on the first token, as in life
            tokens = cold_tokens[:n]
            start = time.process_time()
            for one in tokens:
                await fresh.verify(one)
            return time.process_time() - start

        async def repeated(n: int) -> float:
            start = time.process_time()
            for _ in range(n):
                await verifier.verify(token)
            return time.process_time() - start

        def pyjwt(n: int) -> float:
            tokens = cold_tokens[:n]
            start = time.process_time()
            for one in tokens:
                jwt.decode(one, public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
            return time.process_time() - start

        def raw(n: int) -> float:
            start = time.process_time()
            for _ in range(n):
                public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return time.process_time() - start

        rates: dict[str, list[float]] = {"cold": [], "repeated": [], "pyjwt": [], "raw": []}
        deadline = time.process_time() + seconds
        while time.process_time() < deadline or len(rates["cold"]) < 3:
            rates["cold"].append(batch / await cold(batch))
            rates["repeated"].append(10 * batch / await repeated(10 * batch))
            rates["pyjwt"].append(batch / pyjwt(batch))
            rates["raw"].append(batch / raw(batch))
    await runner.cleanup()

    cold_rate, repeated_rate, pyjwt_rate, raw_rate = (
        max(rates[k]) for k in ("cold", "repeated", "pyjwt", "raw")
    )
    print(
        f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"PyJWT {jwt.__version__}; {len(rates['cold'])} rounds, best round each"
    )
    print(f"Verifier.verify, cold token     : {cold_rate:9.0f} tokens/s")
    print(f"Verifier.verify, repeated token : {repeated_rate:9.0f} tokens/s")
    print(f"PyJWT jwt.decode (key object)   : {pyjwt_rate:9.0f} tokens/s")
    print(f"raw RSA-2048 PKCS1v15 SHA-256   : {raw_rate:9.0f} verifies/s")
    print(f"cold / raw verify               : {cold_rate / raw_rate:9.2f}x   (target >= 0.65x)")
    print(f"cold / PyJWT                    : {cold_rate / pyjwt_rate:9.2f}x   (target >= 2x)")
    print(f"repeated / raw verify           : {repeated_rate / raw_rate:9.2f}x   (target >= 10x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure")
    asyncio.run(main(parser.parse_args().seconds))
