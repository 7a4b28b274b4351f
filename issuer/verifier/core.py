"""Offline verification of RFC 9068 access tokens: parse, pick the key, verify, check claims.

Pure and synchronous: no I/O, no clock (``now`` is an argument). Follows RFC 8725
(JWT BCP): the algorithm comes from an explicit allow-list and must fit the key
(§3.1, §3.2); keys come only from the JWKS, never from ``jwk``/``jku``/``x5u``/
``x5c`` headers; ``typ`` must be ``at+jwt`` (§3.11, RFC 9068 §4); unknown
``crit`` is rejected (RFC 7515 §4.1.11); only the compact serialization is read
(RFC 7515 §7.1); duplicate JSON members are rejected (RFC 7515 §5.2 step 4).

The hot path is :func:`prepare` then :func:`complete`: the header segment is
checked once and remembered (:class:`HeaderCache`; an issuer's headers repeat
byte for byte), the signature is checked before the payload is parsed, and key
objects are parsed once per JWKS (:func:`issuer.verifier.keys.load_jwks`). A verify then costs one
signature check and one small JSON parse.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from issuer.verifier.errors import (
    BadSignatureError,
    DisallowedAlgorithmError,
    ExcessiveLifetimeError,
    ExpiredTokenError,
    MalformedTokenError,
    MissingClaimError,
    NotYetValidError,
    TokenError,
    UnknownKeyError,
    WrongAudienceError,
    WrongIssuerError,
    WrongTypeError,
)
from issuer.verifier.keys import SUPPORTED_ALGS, VerificationKey, load_jwks

MAX_TOKEN_BYTES = 8192
DEFAULT_MAX_LIFETIME = 24 * 3600.0
# base64url -> standard base64, and every byte outside the base64url alphabet -> '!'
# (which no base64 alphabet contains), so one translate both converts a segment and
# marks any stray byte ('=', '+', '/', whitespace, '.') for a single find.
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_STRAY = bytes(c for c in range(256) if c not in _ALPHABET)
_B64URL_TO_STD = bytes.maketrans(_ALPHABET + _STRAY, _ALPHABET[:62] + b"+/" + b"!" * len(_STRAY))
_PADDING = (b"", b"", b"==", b"=")
# Byte values, for ``in``: with an int, bytes.__contains__ is one memchr; with a bytes
# needle it first tries the needle as an int and formats the TypeError it catches.
_STRAY_MARK = ord("!")
_DOT = ord(".")
_a2b = binascii.a2b_base64
# Stateless, immutable helpers built once instead of on every verify.
_SHA256 = hashes.SHA256()
_PKCS1 = padding.PKCS1v15()
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_ECDSA = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class Policy:
    """What a token must satisfy besides its signature.

    ``max_lifetime`` bounds ``exp - iat`` (and ``exp - now``): the issuer never
    issues longer-lived tokens, so a far-future ``exp`` means a forged or
    mis-issued token, not a lucky client. ``None`` switches the bound off.
    """

    issuer: str
    audience: str
    algorithms: frozenset[str] = frozenset({"RS256"})
    leeway: float = 60.0
    typ: str = "at+jwt"
    max_token_bytes: int = MAX_TOKEN_BYTES
    required_claims: tuple[str, ...] = ("iss", "sub", "aud", "exp", "iat", "jti")
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME
    # The required claims check_claims' sweep does not establish by itself.
    _required_rest: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rest = frozenset(self.required_claims) - _PRESENT_IN_SWEEP
        object.__setattr__(self, "_required_rest", rest)
        unknown = set(self.algorithms) - SUPPORTED_ALGS
        if unknown or not self.algorithms:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGS)}")
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience must be non-empty")
        if not 0 <= self.leeway <= 300:
            raise ValueError("leeway must be between 0 and 300 seconds")
        if self.max_lifetime is not None and self.max_lifetime <= 0:
            raise ValueError("max_lifetime must be positive")


@dataclass(frozen=True, slots=True)
class ParsedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


class PreparedToken:
    """A compact token whose size, shape and header passed; signature and claims not yet.

    A plain slotted class, not a frozen dataclass: it is built once per verification,
    and a frozen dataclass pays an ``object.__setattr__`` per field.
    """

    __slots__ = ("alg", "kid", "payload", "signature", "signing_input")

    def __init__(
        self, alg: str, kid: str, signing_input: bytes, payload: bytes, signature: bytes
    ) -> None:
        self.alg = alg
        self.kid = kid
        self.signing_input = signing_input
        self.payload = payload
        self.signature = signature


# The last character of an unpadded segment carries 4 (length % 4 == 2) or 2 (== 3)
# unused bits, which canonical base64url (RFC 4648 §3.5) sets to zero. Accepting
# others would let one token be spelled several ways.
_CANONICAL_LAST = {
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i % 16 == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i % 4 == 0),
}
# The same rule as one lookup, indexed by length % 4, for segments already known to be
# non-empty and within the alphabet: any last character when the length is a multiple of
# 4, none when it is one more (never a whole byte), the canonical ones otherwise.
_LAST_BY_REST = (frozenset(_ALPHABET), frozenset[int](), _CANONICAL_LAST[2], _CANONICAL_LAST[3])


def _b64decode(part: bytes) -> bytes:
    # Strict base64url without padding (RFC 7515 §2): reject '=', '+', '/', whitespace.
    # Stray bytes became '!' in the translation, so the faster non-strict decoder
    # only ever sees valid input.
    rest = len(part) & 3
    std = part.translate(_B64URL_TO_STD)
    if _STRAY_MARK in std or rest == 1 or (rest and part[-1] not in _CANONICAL_LAST[rest]):
        raise MalformedTokenError("invalid base64url")
    return _a2b(std + _PADDING[rest])


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedTokenError("duplicate member in JSON object")
    return out


def _reject_constant(name: str) -> Any:
    raise MalformedTokenError(f"non-standard JSON constant {name}")


# Built once: json.loads(..., object_pairs_hook=...) would build a decoder per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
# The same scanner without the pairs hook: it builds dicts directly (a duplicate member
# silently overwrites), so its result is only used once _json_object has ruled
# duplicates out.
_PLAIN_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(  # type: ignore[attr-defined]
    parse_constant=_reject_constant
).scan_once


def _json_object_exact(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        # The scanner alone when the text is exactly one value (as the issuer writes it);
        # surrounding whitespace or trailing data goes through the full decoder, which
        # accepts the one and refuses the other.
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text)
    except MalformedTokenError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedTokenError(f"{what} is not valid UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise MalformedTokenError(f"{what} is not a JSON object")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object with no duplicate member (RFC 7515 §5.2 step 4, RFC 7519 §4).

    The fast path parses without the pairs hook and rules duplicates out by
    counting. Every member has exactly one colon outside strings, and that colon
    is followed by whitespace or a value, never by '/': so, in text that parsed,
    members <= count(':') - count(':/'). Decoding keeps one member per distinct
    name, so len(value) <= the sum of all the objects' sizes <= members, with
    equality throughout only if no object anywhere has two members whose names
    decode alike ("a" and "\\u0061" included). So when the bound equals
    len(value) there is no duplicate. An issuer's claims meet it: their only
    colons inside strings are the "://" of URLs. Anything else (a failure, a
    non-object, a count that cannot tell) goes to :func:`_json_object_exact`, so
    results and errors are always that function's.
    """
    try:
        text = raw.decode("utf-8")
        value, end = _PLAIN_SCAN(text, 0)
    except Exception:  # the exact decoder says what is wrong, as it always did
        return _json_object_exact(raw, what)
    if (
        end == len(text)
        and type(value) is dict
        and text.count(":") - text.count(":/") == len(value)
    ):
        return value
    return _json_object_exact(raw, what)


def _split(token: str | bytes, max_bytes: int) -> tuple[bytes, bytes, bytes, bytes]:
    """(signing input, header, payload, signature) segments of a compact JWS."""
    if isinstance(token, str):
        # Length first: a huge token is refused before it is even encoded.
        if len(token) > max_bytes:
            raise MalformedTokenError(f"token is longer than {max_bytes} bytes")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedTokenError("token is not ASCII") from None
    elif isinstance(token, bytes):
        raw = token
    else:
        raise MalformedTokenError("token must be a string")
    if len(raw) > max_bytes:
        raise MalformedTokenError(f"token is longer than {max_bytes} bytes")
    # Exactly two dots (five parts is a JWE; JSON serialization has none), found with
    # find (memchr) rather than count and split, which walk the token byte by byte.
    first = raw.find(b".")
    second = raw.find(b".", first + 1) if first >= 0 else -1
    if second < 0 or raw.find(b".", second + 1) >= 0:
        raise MalformedTokenError("not a JWS compact serialization")
    if first == 0 or second == first + 1 or second == len(raw) - 1:
        raise MalformedTokenError("empty header, payload or signature")
    return raw[:second], raw[:first], raw[first + 1 : second], raw[second + 1 :]


def parse_compact(token: str | bytes, max_bytes: int = MAX_TOKEN_BYTES) -> ParsedToken:
    """Split and decode a JWS compact serialization; no signature check yet."""
    signing_input, h, p, s = _split(token, max_bytes)
    header = _json_object(_b64decode(h), "header")
    claims = _json_object(_b64decode(p), "payload")
    return ParsedToken(header, claims, signing_input, _b64decode(s))


# Concrete classes seen to be RSA public keys: isinstance against the ABC costs more
# than the rest of the dispatch. Only ever grows with classes that passed isinstance.
_RSA_TYPES: set[type] = set()


def _is_rsa(k: object) -> TypeGuard[rsa.RSAPublicKey]:
    if type(k) in _RSA_TYPES:
        return True
    if isinstance(k, rsa.RSAPublicKey):
        _RSA_TYPES.add(type(k))
        return True
    return False


def _verify_signature(key: VerificationKey, alg: str, data: bytes, sig: bytes) -> None:
    k = key.key
    try:
        if alg == "RS256" and _is_rsa(k):
            k.verify(sig, data, _PKCS1, _SHA256)
        elif alg == "PS256" and _is_rsa(k):
            k.verify(sig, data, _PSS, _SHA256)
        elif alg == "ES256" and isinstance(k, ec.EllipticCurvePublicKey):
            if len(sig) != 64:
                raise BadSignatureError("ES256 signature must be 64 bytes")
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            # r = s = 0 ("psychic signatures", CVE-2022-21449) must never verify.
            if r == 0 or s == 0:
                raise BadSignatureError("ES256 signature with a zero component")
            k.verify(encode_dss_signature(r, s), data, _ECDSA)
        elif alg == "EdDSA" and isinstance(k, ed25519.Ed25519PublicKey):
            k.verify(sig, data)
        else:
            raise DisallowedAlgorithmError(f"alg {alg} does not fit key {key.kid}")
    except InvalidSignature:
        raise BadSignatureError("signature does not verify") from None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise MissingClaimError(f"claim {name} is null")
        return None
    # bool is an int in Python; a NumericDate must be a finite real number (RFC 7519 §2).
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise MissingClaimError(f"claim {name} is out of range") from None
    if type(value) is float and math.isfinite(value):
        return value
    raise MissingClaimError(f"claim {name} is not a NumericDate")


def check_header(header: Mapping[str, Any], policy: Policy) -> tuple[str, str]:
    """Returns (alg, kid) after the header checks that need no key.

    ``jwk``, ``jku``, ``x5u`` and ``x5c`` are never read: the key comes from the
    JWKS by ``kid`` only (RFC 8725 §3.10).
    """
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms:
        raise DisallowedAlgorithmError("alg is not allowed")
    if "crit" in header:
        # We understand no extension header, so any crit is unknown (RFC 7515 §4.1.11).
        raise MalformedTokenError("unsupported crit header")
    if "enc" in header or "zip" in header:
        raise MalformedTokenError("encrypted or compressed tokens are not accepted")
    typ = header.get("typ")
    # Media type names compare case-insensitively (RFC 7515 §4.1.9).
    if not isinstance(typ, str) or typ.lower() not in (policy.typ, "application/" + policy.typ):
        raise WrongTypeError(f"typ must be {policy.typ}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnknownKeyError("token has no kid")
    return alg, kid


_NO_ROLES: list[str] = []
_ABSENT: Any = object()
# Claims check_claims' one sweep requires to be present (with the right type) anyway.
_PRESENT_IN_SWEEP = frozenset({"iss", "sub", "aud", "exp", "iat", "jti"})


def check_claims(claims: Mapping[str, Any], policy: Policy, now: float) -> None:
    """RFC 7519 §4.1 and RFC 9068 §4 claim checks, each with ``policy.leeway``.

    A token as the issuer writes it (integer times, string claims) passes in one
    sweep that makes exactly the checks below, with the same arithmetic. Anything
    else, including any failure, goes through :func:`_check_claims_in_order`, so
    the error raised is always the first failing check's, in its documented order.
    """
    if _sweep(claims, policy, now) is None:
        _check_claims_in_order(claims, policy, now)


def _sweep(claims: Mapping[str, Any], policy: Policy, now: float) -> tuple[float, float] | None:
    """:func:`check_claims`' one sweep: the window :func:`window` gives if it passes, else None.

    None means only that the sweep cannot vouch for the claims; the checks in order decide.
    """
    try:
        # Subscripts rather than get() for the claims the sweep needs anyway: cheaper,
        # and a missing one (KeyError) is simply a token the sweep cannot vouch for.
        exp, iat, iss, aud = claims["exp"], claims["iat"], claims["iss"], claims["aud"]
        sub, jti = claims["sub"], claims["jti"]
    except KeyError:
        return None
    get = claims.get
    nbf, roles = get("nbf", _ABSENT), get("roles", _NO_ROLES)
    leeway, max_lifetime, audience = policy.leeway, policy.max_lifetime, policy.audience
    if (
        type(exp) is int
        and type(iat) is int
        and (nbf is _ABSENT or type(nbf) is int)
        and type(iss) is str
        and type(sub) is str
        and type(jti) is str
        and type(get("client_id", "")) is str
        and type(get("scope", "")) is str
        and type(roles) is list
        and (not policy._required_rest or claims.keys() >= policy._required_rest)
        and iss == policy.issuer
        and (aud == audience if type(aud) is str else type(aud) is list and audience in aud)
    ):
        try:
            # x + 0.0 is float(x) for an int x (the same conversion, the same OverflowError)
            # without a call.
            exp_f, iat_f = exp + 0.0, iat + 0.0
            nbf_f = 0.0 if nbf is _ABSENT else nbf + 0.0
        except OverflowError:  # an integer time beyond float range: refused in order
            return None
        until = exp_f + leeway
        if (
            now < until
            and now + leeway >= nbf_f
            and now + leeway >= iat_f
            and (
                max_lifetime is None
                or (exp_f - now <= max_lifetime + leeway and exp_f - iat_f <= max_lifetime)
            )
        ):
            for role in roles:
                if type(role) is not str:
                    return None
            # window(claims, policy), from the values at hand (iat is present here; an
            # int minus a float is the int's float minus it).
            start = iat_f - leeway
            if nbf is not _ABSENT and nbf_f - leeway > start:
                start = nbf_f - leeway
            if max_lifetime is not None and exp_f - max_lifetime - leeway > start:
                start = exp_f - max_lifetime - leeway
            return start, until
    return None


def window(claims: Mapping[str, Any], policy: Policy) -> tuple[float, float]:
    """The ``now`` for which the time checks of claims that passed :func:`check_claims`
    still pass: ``start <= now < until``. They are the only checks that depend on ``now``,
    solved for it; check_claims has already refused anything that is not a finite number.
    """
    leeway, max_lifetime = policy.leeway, policy.max_lifetime
    exp, nbf, iat = claims["exp"], claims.get("nbf"), claims.get("iat")
    start = -math.inf
    if nbf is not None:
        start = nbf - leeway
    if iat is not None and iat - leeway > start:
        start = iat - leeway
    if max_lifetime is not None and exp - max_lifetime - leeway > start:
        start = exp - max_lifetime - leeway
    return start, exp + leeway


def _check_claims_in_order(claims: Mapping[str, Any], policy: Policy, now: float) -> None:
    for name in policy.required_claims:
        if name not in claims:
            raise MissingClaimError(f"claim {name} is required")
    exp = _number(claims, "exp")
    if exp is None:
        raise MissingClaimError("claim exp is required")
    nbf = _number(claims, "nbf") if "nbf" in claims else None
    iat = _number(claims, "iat") if "iat" in claims else None
    leeway = policy.leeway
    if now >= exp + leeway:
        raise ExpiredTokenError("token has expired")
    if nbf is not None and now + leeway < nbf:
        raise NotYetValidError("token is not valid yet (nbf)")
    if iat is not None and now + leeway < iat:
        raise NotYetValidError("token was issued in the future (iat)")
    max_lifetime = policy.max_lifetime
    if max_lifetime is not None and (
        exp - now > max_lifetime + leeway or (iat is not None and exp - iat > max_lifetime)
    ):
        raise ExcessiveLifetimeError("token lives longer than the issuer ever issues")
    iss = claims.get("iss")
    if type(iss) is not str or iss != policy.issuer:
        raise WrongIssuerError("wrong issuer")
    aud = claims.get("aud")
    if type(aud) is str:
        if aud != policy.audience:
            raise WrongAudienceError("wrong audience")
    elif not (type(aud) is list and policy.audience in aud):
        raise WrongAudienceError("wrong audience")
    for name in ("sub", "jti", "client_id", "scope"):
        if name in claims and type(claims[name]) is not str:
            raise MissingClaimError(f"claim {name} must be a string")
    roles = claims.get("roles")
    if roles is not None and not (type(roles) is list and all(type(role) is str for role in roles)):
        raise MissingClaimError("claim roles must be a list of strings")


class HeaderCache:
    """Checked header segments: raw base64url bytes -> (alg, kid), for one policy.

    Only headers that passed :func:`check_header` are remembered, and at most
    ``max_entries`` of them, so junk tokens cannot grow it: an issuer's headers
    repeat byte for byte (one per signing key), so the cache holds a handful.
    """

    __slots__ = ("_entries", "_max_entries", "policy")

    def __init__(self, policy: Policy, max_entries: int = 64) -> None:
        self.policy = policy
        self._max_entries = max_entries
        self._entries: dict[bytes, tuple[str, str]] = {}

    def check(self, segment: bytes) -> tuple[str, str]:
        hit = self._entries.get(segment)
        if hit is not None:
            return hit
        result = check_header(_json_object(_b64decode(segment), "header"), self.policy)
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[segment] = result
        return result


# What prepare() found, as a tuple: (alg, kid, signing input, payload, signature), the
# last two still base64url. The verifier's hot path passes this rather than a
# PreparedToken, which costs several times as much to build.
Parts = tuple[str, str, bytes, bytes, bytes]


def prepare(
    token: str | bytes, policy: Policy, headers: HeaderCache | None = None
) -> PreparedToken:
    """Size, shape and header checks: everything before a key is needed."""
    return PreparedToken(*prepare_parts(token, policy, headers))


def prepare_parts(token: str | bytes, policy: Policy, headers: HeaderCache | None = None) -> Parts:
    """:func:`prepare`, returning :data:`Parts`."""
    if headers is not None and type(token) is str and len(token) <= policy.max_token_bytes:
        # The usual token in one sweep: ASCII, exactly two dots, no empty segment, a
        # header segment that passed check_header before. Anything else takes the
        # checks in order below (the same checks, and the error of the first that fails).
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raw = b""
        signing_input, _, s = raw.rpartition(b".")
        h, dot, p = signing_input.partition(b".")
        if dot and h and p and s and _DOT not in p:
            hit = headers._entries.get(h)
            if hit is not None:
                return hit[0], hit[1], signing_input, p, s
    try:
        signing_input, h, p, s = _split(token, policy.max_token_bytes)
        if headers is not None:
            alg, kid = headers.check(h)
        else:
            alg, kid = check_header(_json_object(_b64decode(h), "header"), policy)
        return alg, kid, signing_input, p, s
    except TokenError:
        raise
    except Exception:  # any surprise inside decoding is a malformed token
        raise MalformedTokenError("token could not be decoded") from None


def complete(
    prepared: PreparedToken, key: VerificationKey, policy: Policy, now: float
) -> dict[str, Any]:
    """Signature first, then the payload: claims are only parsed once authenticated."""
    p = prepared
    return complete_parts(p.alg, p.signing_input, p.payload, p.signature, key, policy, now)[0]


def complete_parts(
    alg: str,
    signing_input: bytes,
    p: bytes,
    s: bytes,
    key: VerificationKey,
    policy: Policy,
    now: float,
) -> tuple[dict[str, Any], tuple[float, float]]:
    """:func:`complete` from :data:`Parts`: the claims and their :func:`window`."""
    k = key.key
    rest_s, rest_p = len(s) & 3, len(p) & 3
    sig, payload = s.translate(_B64URL_TO_STD), p.translate(_B64URL_TO_STD)
    if (
        # RS256 with an RSA key that fits it (key.fits, _verify_signature) and two
        # segments that _b64decode accepts, inlined; anything else takes the general
        # path below, in its order, with its errors.
        alg == "RS256"
        and type(k) in _RSA_TYPES
        and key.kty == "RSA"
        and (key.alg is None or key.alg == "RS256")
        # ``in`` with a byte value rather than find(): no argument tuple to parse.
        and _STRAY_MARK not in sig
        and _STRAY_MARK not in payload
        and s
        and p
        and s[-1] in _LAST_BY_REST[rest_s]
        and p[-1] in _LAST_BY_REST[rest_p]
    ):
        # type(k) in _RSA_TYPES means isinstance(k, rsa.RSAPublicKey), which mypy cannot see.
        rsa_key: rsa.RSAPublicKey = k  # type: ignore[assignment]
        try:
            try:
                rsa_key.verify(_a2b(sig + _PADDING[rest_s]), signing_input, _PKCS1, _SHA256)
            except InvalidSignature:
                raise BadSignatureError("signature does not verify") from None
            # _json_object's fast path, inlined (see there); anything else goes to it.
            raw = _a2b(payload + _PADDING[rest_p])
            try:
                text = raw.decode("utf-8")
                claims, end = _PLAIN_SCAN(text, 0)
                plain = (
                    end == len(text)
                    and type(claims) is dict
                    and text.count(":") - text.count(":/") == len(claims)
                )
            except Exception:
                plain = False
            if not plain:
                claims = _json_object(raw, "payload")
            valid = _sweep(claims, policy, now)
            if valid is None:
                _check_claims_in_order(claims, policy, now)
                valid = window(claims, policy)
            return claims, valid
        except TokenError:
            raise
        except Exception:  # any surprise inside decoding is a malformed token
            raise MalformedTokenError("token could not be decoded") from None
    try:
        if not key.fits(alg):
            raise DisallowedAlgorithmError(f"alg {alg} does not fit key {key.kid}")
        _verify_signature(key, alg, signing_input, _b64decode(s))
        claims = _json_object(_b64decode(p), "payload")
        check_claims(claims, policy, now)
        return claims, window(claims, policy)
    except TokenError:
        raise
    except Exception:  # any surprise inside decoding is a malformed token
        raise MalformedTokenError("token could not be decoded") from None


def verify_parsed(
    parsed: ParsedToken, keys: Mapping[str, VerificationKey], policy: Policy, now: float
) -> dict[str, Any]:
    alg, kid = check_header(parsed.header, policy)
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyError("no key with this kid")
    if not key.fits(alg):
        raise DisallowedAlgorithmError(f"alg {alg} does not fit key {kid}")
    _verify_signature(key, alg, parsed.signing_input, parsed.signature)
    check_claims(parsed.claims, policy, now)
    return parsed.claims


def verify_token(
    token: str | bytes,
    keys: Mapping[str, VerificationKey],
    policy: Policy,
    now: float,
    headers: HeaderCache | None = None,
) -> dict[str, Any]:
    """The claims of a valid token; otherwise a :class:`TokenError` subclass, nothing else."""
    alg, kid, signing_input, p, s = prepare_parts(token, policy, headers)
    key = keys.get(kid)
    if key is None:
        raise UnknownKeyError("no key with this kid")
    return complete_parts(alg, signing_input, p, s, key, policy, now)[0]


__all__ = [
    "DEFAULT_MAX_LIFETIME",
    "MAX_TOKEN_BYTES",
    "SUPPORTED_ALGS",
    "HeaderCache",
    "ParsedToken",
    "Parts",
    "Policy",
    "PreparedToken",
    "VerificationKey",
    "check_claims",
    "check_header",
    "complete",
    "complete_parts",
    "load_jwks",
    "parse_compact",
    "prepare",
    "prepare_parts",
    "verify_parsed",
    "verify_token",
    "window",
]
