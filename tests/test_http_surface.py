"""The HTTP surface around /mcp: CORS for browser clients, health endpoints' shape."""

from __future__ import annotations

import httpx2
import pytest

from tests.conftest import lab, running_gateway

pytestmark = pytest.mark.anyio


async def test_cors_preflight_allows_the_gateway_headers_for_configured_origins() -> None:
    async with (
        running_gateway({"lab": lab()}, cors_origins=["https://app.example.test"]) as gw,
        httpx2.AsyncClient() as http,
    ):
        allowed = await http.options(
            gw.url,
            headers={
                "Origin": "https://app.example.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization, x-bf-vk, x-api-key",
            },
        )
        refused = await http.options(
            gw.url,
            headers={"Origin": "https://evil.example.test", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.test"
    allowed_headers = allowed.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "authorization", "x-bf-vk", "x-api-key", "x-stainless-timeout"):
        assert header in allowed_headers
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
