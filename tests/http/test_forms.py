"""issuer.http.forms.parse_form decides every body exactly as urllib's parse_qsl does."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from issuer.http.forms import MAX_FIELDS, form_decoded, parse_form

# Form bodies are mostly these characters; the rest of Unicode comes in too.
FORM_ALPHABET = st.sampled_from("ab=&%+2F0Ae;é \x00") | st.characters()


def reference(text: str) -> list[tuple[str, str]] | str:
    try:
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except ValueError:
        return "refused"


def ours(text: str) -> list[tuple[str, str]] | str:
    try:
        return parse_form(text)
    except ValueError:
        return "refused"


@given(st.text(FORM_ALPHABET, max_size=80))
@example("grant_type=client_credentials&scope=read+write")
@example("a=%FF%FE&b=%e2%82%ac&c=%zz&d=%&e=%2")
@example("=&&=x&a&a=&a==b")
@example("&" * (MAX_FIELDS - 1))
@example("&" * MAX_FIELDS)
def test_parse_form_is_parse_qsl(text: str) -> None:
    assert ours(text) == reference(text)


@pytest.mark.parametrize("fields", [MAX_FIELDS, MAX_FIELDS + 1])
def test_the_field_limit_is_parse_qsls(fields: int) -> None:
    text = "&".join(f"f{i}=v" for i in range(fields))
    assert ours(text) == reference(text)
    assert (ours(text) == "refused") is (fields > MAX_FIELDS)


@given(st.text(FORM_ALPHABET, max_size=40))
@example("a%3Ab+c")
@example("%E2%82%AC%FF")
def test_form_decoded_is_unquote_plus(text: str) -> None:
    assert form_decoded(text) == unquote_plus(text)
