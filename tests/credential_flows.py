"""Test helpers that act as the person behind a caller: fill the gateway's credential form like a browser."""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx2

from mcp_gateway.http.web.forms import CSRF_FIELD, FIELD_PREFIX

LINK = re.compile(r"(https?://\S+/forms/credentials/[A-Za-z0-9_-]+)")


def form_link(text: str) -> str:
    found = LINK.search(text)
    assert found is not None, f"no credential form link in: {text!r}"
    return found.group(1)


async def fill_form(url: str, values: Mapping[str, str]) -> httpx2.Response:
    """GET the form (which sets the CSRF cookie), then POST it back with `values`, as a browser would."""
    async with httpx2.AsyncClient(timeout=30) as browser:
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        token = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', page.text)
        assert token is not None, "the form has no CSRF field"
        fields = {CSRF_FIELD: token.group(1)} | {FIELD_PREFIX + k: v for k, v in values.items()}
        return await browser.post(url, data=fields)
