"""Redirect URIs, post-logout redirect URIs and web origins: what a client may register,
and how a presented redirect URI is compared (RFC 6749 §3.1.2, RFC 8252 §7-8)."""

from __future__ import annotations

import pytest

from issuer.errors import InvalidRequestError
from issuer.services.registration import redirect_uri_matches, registration


def register(
    *uris: str, public: bool = False, origins: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return registration(
        public=public, redirect_uris=uris, post_logout_redirect_uris=(), web_origins=origins
    )


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example:8443/cb?tenant=1",
        "http://127.0.0.1/cb",
        "http://[::1]:8080/cb",
        "http://localhost:5173/cb",
    ],
)
def test_accepted_redirect_uris(uri: str) -> None:
    assert register(uri)[0] == (uri,)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://app.example/cb", "plain http only for loopback"),
        ("https://app.example/cb#frag", "fragment"),
        ("https://*.example/cb", "no wildcards"),
        ("/relative/cb", "absolute"),
        ("https://user:pw@app.example/cb", "user info"),
        ("https://app.example/c b", "spaces"),
        ("com.example.app:/cb", "public (native) clients"),
        ("javascript:alert(1)", "public (native) clients"),
    ],
)
def test_refused_redirect_uris(uri: str, why: str) -> None:
    with pytest.raises(InvalidRequestError, match=why.replace("(", r"\(").replace(")", r"\)")):
        register(uri)


def test_a_native_app_may_register_a_private_use_scheme_with_a_reverse_domain() -> None:
    assert register("com.example.app:/oauth2redirect", public=True)[0] == (
        "com.example.app:/oauth2redirect",
    )
    with pytest.raises(InvalidRequestError, match="reverse domain"):
        register("myapp:/cb", public=True)


def test_web_origins_are_derived_from_http_redirect_uris_unless_given() -> None:
    _, _, origins = register(
        "https://app.example/cb",
        "https://app.example:443/other",
        "http://127.0.0.1:5173/cb",
        "https://App.Example:8443/cb",
    )
    assert origins == ("https://app.example", "http://127.0.0.1:5173", "https://app.example:8443")
    assert register("https://app.example/cb", origins=("https://shell.example",))[2] == (
        "https://shell.example",
    )
    assert register("https://app.example/cb", origins=())[2] == ()
    assert register("http://127.0.0.1/native", "http://[::1]/native", public=True)[2] == ()
    for bad in ("https://shell.example/", "https://shell.example/path", "http://shell.example"):
        with pytest.raises(InvalidRequestError):
            register("https://app.example/cb", origins=(bad,))


@pytest.mark.parametrize(
    ("presented", "matches"),
    [
        ("https://app.example/cb", True),
        ("https://app.example/cb/", False),
        ("https://app.example/Cb", False),
        ("https://app.example:443/cb", False),  # exact strings, no normalization
        ("http://127.0.0.1:50123/native", True),  # RFC 8252 §7.3: any port
        ("http://127.0.0.1/native", True),
        ("http://[::1]:50123/native", True),
        ("http://localhost:50123/native", False),  # RFC 8252 §8.3: not for names
        ("http://127.0.0.1:50123/native?x=1", False),
        ("http://127.0.0.1:50123/other", False),
        ("http://user@127.0.0.1:50123/native", False),
        ("https://127.0.0.1:50123/native", False),
        ("http://127.0.0.1:99999/native", False),
    ],
)
def test_redirect_uri_comparison(presented: str, matches: bool) -> None:
    registered = ("https://app.example/cb", "http://127.0.0.1/native", "http://[::1]/native")
    assert redirect_uri_matches(registered, presented) is matches
