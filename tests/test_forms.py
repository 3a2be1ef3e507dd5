"""The credential form, in process: rendering, CSRF, validation, single use, expiry, escaping, headers."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx2
import pytest
from markupsafe import escape
from starlette.applications import Starlette

from mcp_gateway.credentials.flows import FlowKind, FlowRegistry, PendingFlow
from mcp_gateway.http.web.forms import CSRF_COOKIE, CSRF_FIELD, FIELD_PREFIX, MAX_FORM_BYTES, credential_form_routes
from mcp_gateway.http.web.pages import SECURITY_HEADERS

pytestmark = pytest.mark.anyio

KEYS = {"github": ["X-Api-Token", "X-Org"]}
EXPIRED_TEXT = "This link has expired or was already used; call the tool again for a fresh link."


@dataclass
class Harness:
    """The form routes alone in an app, a clock the test moves, and a `save` that records its calls."""

    flows: FlowRegistry
    client: httpx2.AsyncClient
    keys: dict[str, list[str]]
    now: list[float]
    saved: list[tuple[PendingFlow, dict[str, str]]] = field(default_factory=list)
    fail_save: BaseException | None = None

    def start(self, upstream: str = "github", kind: FlowKind = FlowKind.HEADERS) -> PendingFlow:
        return self.flows.start(kind, "user:alice", upstream)

    async def open(self, flow: PendingFlow) -> httpx2.Response:
        return await self.client.get(url(flow))

    async def submit(
        self,
        flow: PendingFlow,
        values: dict[str, str],
        *,
        csrf: str | None = None,
        cookie: str | None = None,
    ) -> httpx2.Response:
        """POST the form; `cookie` sends that CSRF cookie explicitly (clear the jar first) instead of the jar's."""
        form = {CSRF_FIELD: flow.csrf_token if csrf is None else csrf}
        form.update({FIELD_PREFIX + key: value for key, value in values.items()})
        headers = {} if cookie is None else {"cookie": f"{CSRF_COOKIE}={cookie}"}
        return await self.client.post(url(flow), data=form, headers=headers)


def url(flow: PendingFlow) -> str:
    return f"/forms/credentials/{flow.id}"


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    now = [1000.0]
    flows = FlowRegistry(ttl=600, clock=lambda: now[0])
    keys = dict(KEYS)
    state: dict[str, Harness] = {}

    def header_keys_of(upstream: str) -> Sequence[str] | None:
        return keys.get(upstream)

    async def save(flow: PendingFlow, values: dict[str, str]) -> None:
        h = state["h"]
        if h.fail_save is not None:
            raise h.fail_save
        h.saved.append((flow, values))

    app = Starlette(routes=credential_form_routes(flows, header_keys_of, save))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://testserver") as client:
        state["h"] = Harness(flows=flows, client=client, keys=keys, now=now)
        yield state["h"]


def assert_security_headers(response: httpx2.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def hidden_csrf(page: str) -> str:
    match = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', page)
    assert match, page
    return html.unescape(match.group(1))


async def test_get_renders_one_password_field_per_header_and_sets_the_csrf_cookie(harness: Harness) -> None:
    flow = harness.start()
    response = await harness.open(flow)
    assert response.status_code == 200
    page = response.text
    assert "github" in page
    for index, key in enumerate(KEYS["github"]):
        assert f'<label for="header-{index}">{key}</label>' in page
        tag = re.search(rf'<input type="password" id="header-{index}"[^>]*>', page, re.S)
        assert tag, page
        assert f'name="{FIELD_PREFIX}{key}"' in tag.group(0)
        assert 'autocomplete="off"' in tag.group(0)
        assert "value=" not in tag.group(0)
    assert hidden_csrf(page) == flow.csrf_token
    assert '<form method="post"' in page
    assert "<script" not in page

    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}={flow.csrf_token};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", f"path=/forms/credentials/{flow.id}".lower()} <= attributes
    assert "secure" not in attributes  # plain http (localhost): a Secure cookie would never come back
    assert_security_headers(response)
    assert len(harness.flows) == 1  # looking does not use the link up


async def test_a_post_without_the_csrf_cookie_or_with_a_wrong_token_is_refused(harness: Harness) -> None:
    flow = harness.start()
    values = {"X-Api-Token": "tok", "X-Org": "acme"}

    # No GET first, so no cookie: what a cross-site POST looks like with SameSite=Strict.
    response = await harness.submit(flow, values)
    assert response.status_code == 403
    assert "could not be verified" in response.text
    assert_security_headers(response)

    await harness.open(flow)
    assert (await harness.submit(flow, values, csrf="not-the-token")).status_code == 403
    assert (await harness.submit(flow, values, csrf="")).status_code == 403

    # The right field but a cookie holding something else.
    harness.client.cookies.clear()
    forged = await harness.submit(flow, values, cookie="forged")
    assert forged.status_code == 403

    assert harness.saved == []
    assert not flow.done.is_set()
    assert harness.flows.peek(flow.id, FlowKind.HEADERS) is flow  # a refused POST does not burn the link


async def test_a_missing_or_empty_field_re_renders_the_form_with_400(harness: Harness) -> None:
    flow = harness.start()
    await harness.open(flow)

    response = await harness.submit(flow, {"X-Api-Token": "secret-token-value"})
    assert response.status_code == 400
    assert "X-Org: missing from the form" in response.text
    assert "secret-token-value" not in response.text
    assert hidden_csrf(response.text) == flow.csrf_token
    assert 'id="header-1" name="header:X-Org" autocomplete="off" required' in response.text
    assert 'aria-invalid="true"' in response.text
    assert_security_headers(response)

    response = await harness.submit(flow, {"X-Api-Token": "secret-token-value", "X-Org": "  "})
    assert response.status_code == 400
    assert "X-Org: is empty" in response.text
    assert "secret-token-value" not in response.text

    assert harness.saved == []
    # The form can be fixed and sent again on the same link.
    assert (await harness.submit(flow, {"X-Api-Token": "t", "X-Org": "o"})).status_code == 200


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("secret\r\nX-Injected: 1", "line break"),
        ("secret\nX-Injected: 1", "line break"),
        ("secret\rX", "line break"),
        ("secret\x00", "NUL"),
        ("secret\x7f", "only printable ASCII"),
        ("secret\u00e9", "only printable ASCII"),
        ("secret" + "x" * 8 * 1024, "longer than 8 KiB"),
    ],
)
async def test_values_that_are_not_valid_header_values_are_refused(harness: Harness, value: str, problem: str) -> None:
    flow = harness.start()
    await harness.open(flow)
    response = await harness.submit(flow, {"X-Api-Token": value, "X-Org": "acme"})
    assert response.status_code == 400
    assert "X-Api-Token: " in response.text and problem in response.text
    assert "secret" not in response.text and "acme" not in response.text  # no value comes back, valid or not
    assert harness.saved == []
    assert not flow.done.is_set()


async def test_a_valid_submission_saves_exactly_the_values_once(harness: Harness) -> None:
    flow = harness.start()
    await harness.open(flow)
    response = await harness.submit(
        flow, {"X-Api-Token": "  ghp_abc123/+=.~  ", "X-Org": "acme\tcorp", "unrelated": "ignored"}
    )
    assert response.status_code == 200, response.text
    assert "Saved your credentials for github. You can return to your client." in response.text
    assert "ghp_abc123" not in response.text
    assert_security_headers(response)
    assert f"{CSRF_COOKIE}=" in response.headers["set-cookie"] and "Max-Age=0" in response.headers["set-cookie"]

    assert harness.saved == [(flow, {"X-Api-Token": "ghp_abc123/+=.~", "X-Org": "acme\tcorp"})]
    assert flow.done.is_set()
    assert len(harness.flows) == 0

    # Single use: both the form and a replayed POST now get the expired page.
    again = await harness.open(flow)
    assert again.status_code == 404 and EXPIRED_TEXT in again.text
    replay = await harness.submit(flow, {"X-Api-Token": "other", "X-Org": "other"}, cookie=flow.csrf_token)
    assert replay.status_code == 404 and EXPIRED_TEXT in replay.text
    assert len(harness.saved) == 1


async def test_expired_unknown_and_foreign_links_all_get_the_same_404(harness: Harness) -> None:
    flow = harness.start()
    first = await harness.open(flow)
    assert first.status_code == 200

    harness.now[0] += 601  # past the TTL
    expired_get = await harness.open(flow)
    expired_post = await harness.submit(flow, {"X-Api-Token": "t", "X-Org": "o"})
    unknown = await harness.client.get("/forms/credentials/never-existed")
    oauth_flow = harness.start(kind=FlowKind.OAUTH)  # a live flow, but not a form's
    foreign = await harness.open(oauth_flow)

    pages = [expired_get, expired_post, unknown, foreign]
    for response in pages:
        assert response.status_code == 404
        assert EXPIRED_TEXT in response.text
        assert "set-cookie" not in response.headers
        assert_security_headers(response)
    # Nothing tells a never-issued id from a used or expired one.
    assert len({r.text for r in pages}) == 1
    assert harness.saved == []


async def test_a_removed_upstream_makes_the_link_404(harness: Harness) -> None:
    flow = harness.start()
    await harness.open(flow)
    del harness.keys["github"]
    assert (await harness.open(flow)).status_code == 404
    response = await harness.submit(flow, {"X-Api-Token": "t", "X-Org": "o"})
    assert response.status_code == 404 and EXPIRED_TEXT in response.text
    assert harness.saved == []


async def test_names_from_configuration_are_escaped(harness: Harness) -> None:
    upstream = "<script>alert('up')</script>"
    key = 'X-<script>alert("key")</script>'
    harness.keys[upstream] = [key]
    flow = harness.start(upstream)

    page = (await harness.open(flow)).text
    assert "<script" not in page
    assert escape(upstream) in page
    assert f'<label for="header-0">{escape(key)}</label>' in page

    response = await harness.submit(flow, {key: "bad\r\n"})  # the error message quotes the key
    assert response.status_code == 400 and "<script" not in response.text
    assert f"{escape(key)}: contains a line break" in response.text

    response = await harness.submit(flow, {key: "good"})
    assert response.status_code == 200
    assert "<script" not in response.text
    assert f"Saved your credentials for {escape(upstream)}." in response.text
    assert harness.saved == [(flow, {key: "good"})]


async def test_a_failing_save_is_a_generic_500_that_logs_no_values(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    flow = harness.start()
    await harness.open(flow)
    harness.fail_save = RuntimeError("INSERT ... VALUES ('hunter2-secret')")
    with caplog.at_level(logging.DEBUG, logger="mcp_gateway.http.web.forms"):
        response = await harness.submit(flow, {"X-Api-Token": "hunter2-secret", "X-Org": "acme"})
    assert response.status_code == 500
    assert "could not be saved because of a server error" in response.text
    assert "hunter2" not in response.text and "INSERT" not in response.text
    assert_security_headers(response)
    assert "RuntimeError" in caplog.text
    assert "hunter2" not in caplog.text and flow.id not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)
    assert not flow.done.is_set()


async def test_oversized_malformed_and_non_form_bodies_are_refused(harness: Harness) -> None:
    flow = harness.start()
    await harness.open(flow)
    target = url(flow)
    form_type = {"content-type": "application/x-www-form-urlencoded"}

    too_big = f"{CSRF_FIELD}={flow.csrf_token}&{FIELD_PREFIX}X-Api-Token=" + "a" * MAX_FORM_BYTES
    response = await harness.client.post(target, content=too_big, headers=form_type)
    assert response.status_code == 413
    assert_security_headers(response)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_FORM_BYTES // 1024 + 2):
            yield b"a" * 1024

    response = await harness.client.post(target, content=chunks(), headers=form_type)
    assert response.status_code == 413

    duplicated = f"{CSRF_FIELD}={flow.csrf_token}&header%3AX-Org=a&header%3AX-Org=b&header%3AX-Api-Token=t"
    assert (await harness.client.post(target, content=duplicated, headers=form_type)).status_code == 400
    bad_utf8 = f"{CSRF_FIELD}={flow.csrf_token}&header%3AX-Org=%ff&header%3AX-Api-Token=t"
    assert (await harness.client.post(target, content=bad_utf8, headers=form_type)).status_code == 400

    as_json = await harness.client.post(target, json={CSRF_FIELD: flow.csrf_token})
    assert as_json.status_code == 415
    multipart = await harness.client.post(
        target, data={CSRF_FIELD: flow.csrf_token}, files={"f": ("f.txt", b"x", "text/plain")}
    )
    assert multipart.status_code == 415

    assert harness.saved == []
    assert harness.flows.peek(flow.id, FlowKind.HEADERS) is flow
