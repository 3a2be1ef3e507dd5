"""Rendering of the gateway's HTML pages, with the security headers every one of them needs.

The pages sit behind single-use links whose path is a secret, and they may show upstream names and
header names taken from configuration. So: autoescaping is on for every template whatever its file
name, and each response forbids framing, external resources, scripts, caching and sending the URL
on in a Referer header.
"""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.responses import HTMLResponse

SECURITY_HEADERS: dict[str, str] = {
    # No scripts, images or fonts at all; inline <style> is the only resource the templates use.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "Referrer-Policy": "no-referrer",  # the page's URL is the secret: never leak it to another site
    "Cache-Control": "no-store",  # nor keep a copy of a page that may hold a form token
    "X-Content-Type-Options": "nosniff",
}

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("mcp_gateway.http.web", "templates"),
    # True rather than select_autoescape(): escaping must not depend on a template's file extension.
    autoescape=True,
    # A misspelt variable fails loudly in tests instead of rendering as an empty string.
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_page(template: str, /, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render `template` from the package's templates into a response carrying `SECURITY_HEADERS`."""
    html = _environment.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def result_page(title: str, message: str, *, ok: bool, status_code: int) -> HTMLResponse:
    """The end of a browser flow (credential form, OAuth callback): one message, success or failure."""
    return render_page("result.html", status_code=status_code, title=title, message=message, ok=ok)
