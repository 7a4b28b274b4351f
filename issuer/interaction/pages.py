"""Server-rendered pages (Jinja2, autoescaped) with the headers every such page needs.

- ``Content-Security-Policy``: nothing but this server's stylesheet; no script at
  all; ``frame-ancestors 'none'`` against clickjacking; ``form-action`` limited to
  this server and the client the form's redirect leads to (Chromium applies
  form-action to the redirect that follows a form post).
- ``Cache-Control: no-store``: a page with a CSRF token or an error is never cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

import jinja2
from aiohttp import web

from issuer.config import Settings

SCOPE_DESCRIPTIONS = {
    "openid": "confirm who you are",
    "offline_access": "stay signed in when you are away",
}


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("issuer.interaction", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def page_headers(form_targets: Iterable[str] = ()) -> dict[str, str]:
    form_action = " ".join(["'self'", *form_targets])
    return {
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'self'; img-src 'self'; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


def render(
    settings: Settings,
    template: str,
    *,
    title: str,
    status: int = 200,
    form_targets: Iterable[str] = (),
    headers: dict[str, str] | None = None,
    **context: Any,
) -> web.Response:
    body = (
        environment()
        .get_template(template)
        .render(
            title=title,
            display_name=settings.display_name,
            descriptions=SCOPE_DESCRIPTIONS,
            **context,
        )
    )
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**page_headers(form_targets), **(headers or {})},
    )


def error_page(settings: Settings, message: str, code: str, status: int) -> web.Response:
    return render(
        settings,
        "error.html",
        title="Something went wrong",
        status=status,
        message=message,
        code=code,
    )
