"""The credential form: where a caller types their own header values for a `per_user_headers` upstream.

A tool call without a stored credential answers with a link `/forms/credentials/<flow-id>`. The flow
id is the secret that binds the page to one identity and one upstream, so this module never logs it
and never says whether an unknown id ever existed. The form works without JavaScript; a POST is
accepted only with the flow's CSRF token both in the body and in a cookie scoped to the link's path
(double submit), so another site cannot post into a flow even if it learned the link. The flow is
consumed only after the submission validates: a typo costs the user a retry, not a new link.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mcp_gateway.credentials.flows import FlowKind, FlowRegistry, PendingFlow
from mcp_gateway.http.web.pages import render_page, result_page

logger = logging.getLogger(__name__)

FORM_PATH = "/forms/credentials/{flow_id}"
CSRF_COOKIE = "mcpgw_csrf"
CSRF_FIELD = "csrf_token"
FIELD_PREFIX = "header:"
"""Header fields are named `header:<key>`, so no header key can collide with the CSRF field."""
MAX_FORM_BYTES = 64 * 1024
MAX_VALUE_BYTES = 8 * 1024
"""Many servers refuse request headers beyond 8 KiB; a longer value would only fail later, upstream."""
_FORM_TYPE = "application/x-www-form-urlencoded"
_WHITESPACE = " \t"

HeaderKeysOf = Callable[[str], Sequence[str] | None]
SaveCredential = Callable[[PendingFlow, dict[str, str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Field:
    id: str
    name: str
    key: str
    invalid: bool


def credential_form_routes(flows: FlowRegistry, header_keys_of: HeaderKeysOf, save: SaveCredential) -> list[Route]:
    """GET shows the form for a pending HEADERS flow; POST validates it and hands the values to `save`.

    `header_keys_of(upstream)` gives the header names to ask for, or None once the upstream is gone.
    `save(flow, values)` stores the values for the flow's identity and upstream; after it returns the
    flow's `done` event is set so a waiting tool call can proceed.
    """
    form = _CredentialForm(flows, header_keys_of, save)
    return [
        Route(FORM_PATH, form.show, methods=["GET"], name="credential_form"),
        Route(FORM_PATH, form.submit, methods=["POST"], name="credential_form_submit"),
    ]


def header_value_problem(value: str) -> str | None:
    """Why `value` cannot be sent as an HTTP header value, or None when it can.

    Only tab and printable ASCII are accepted: CR/LF would split the upstream request (header
    injection), NUL and other controls are refused by servers, and HTTP clients encode header
    values as ASCII, so anything else would fail on every call instead of once, here.
    """
    if not value:
        return "is empty"
    if len(value.encode()) > MAX_VALUE_BYTES:
        return f"is longer than {MAX_VALUE_BYTES // 1024} KiB"
    if any(c in value for c in "\r\n\0"):
        return "contains a line break or NUL character, which a header value cannot hold"
    if not all(c == "\t" or " " <= c <= "~" for c in value):
        return "contains characters that cannot be sent in an HTTP header (only printable ASCII is allowed)"
    return None


def _expired() -> HTMLResponse:
    # The same page for never-existed, expired, used and removed-upstream links: a guessed id learns nothing.
    return result_page(
        "Link expired",
        "This link has expired or was already used; call the tool again for a fresh link.",
        ok=False,
        status_code=404,
    )


def _fields(keys: Sequence[str], invalid: Collection[str]) -> list[_Field]:
    return [
        _Field(id=f"header-{index}", name=FIELD_PREFIX + key, key=key, invalid=key in invalid)
        for index, key in enumerate(keys)
    ]


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it exceeds `limit` (checked as it streams, not after buffering)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _parse_form(body: bytes, max_fields: int) -> dict[str, str] | None:
    """The url-encoded fields, or None when the body is malformed or repeats a field (which value would count?)."""
    try:
        pairs = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=max_fields
        )
    except ValueError:  # non-ASCII body, bad UTF-8 behind a %-escape, too many fields
        return None
    fields = dict(pairs)
    return fields if len(fields) == len(pairs) else None


class _CredentialForm:
    def __init__(self, flows: FlowRegistry, header_keys_of: HeaderKeysOf, save: SaveCredential) -> None:
        self._flows = flows
        self._header_keys_of = header_keys_of
        self._save = save

    def _lookup(self, request: Request) -> tuple[PendingFlow, list[str]] | None:
        flow = self._flows.peek(request.path_params["flow_id"], FlowKind.HEADERS)
        if flow is None:
            return None
        keys = self._header_keys_of(flow.upstream)
        if not keys:  # the upstream was removed (or asks for nothing): nothing this link can do
            return None
        return flow, list(dict.fromkeys(keys))

    def _form(
        self,
        request: Request,
        flow: PendingFlow,
        keys: Sequence[str],
        *,
        errors: Sequence[tuple[str, str]] = (),
        status_code: int,
    ) -> HTMLResponse:
        response = render_page(
            "credential_form.html",
            status_code=status_code,
            title=f"Connect to {flow.upstream}",
            upstream=flow.upstream,
            owner=flow.owner_label,
            action=request.url.path,
            csrf_field=CSRF_FIELD,
            csrf_token=flow.csrf_token,
            fields=_fields(keys, invalid={key for key, _ in errors}),
            errors=[f"{key}: {problem}" for key, problem in errors],
        )
        # Scoped to this one link: it is sent back only to this form, and never to another flow's.
        response.set_cookie(
            CSRF_COOKIE,
            flow.csrf_token,
            path=request.url.path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def show(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _expired()
        flow, keys = found
        return self._form(request, flow, keys, status_code=200)

    async def submit(self, request: Request) -> Response:
        found = self._lookup(request)
        if found is None:
            return _expired()
        flow, keys = found

        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != _FORM_TYPE:
            return result_page(
                "Unsupported form", "The form must be submitted as a plain HTML form.", ok=False, status_code=415
            )
        body = await _read_body(request, MAX_FORM_BYTES)
        if body is None:
            return result_page(
                "Form too large",
                f"The submitted form is larger than {MAX_FORM_BYTES // 1024} KiB. Open the link again and retry.",
                ok=False,
                status_code=413,
            )
        form = _parse_form(body, max_fields=len(keys) + 8)
        if form is None:
            return result_page(
                "Unreadable form",
                "The submitted form could not be read. Open the link again and retry.",
                ok=False,
                status_code=400,
            )

        if not self._csrf_ok(request, flow, form):
            return result_page(
                "Form not verified",
                "This form could not be verified: it was opened in another browser, or cookies are blocked."
                " Open the link again in this browser and resubmit.",
                ok=False,
                status_code=403,
            )

        values: dict[str, str] = {}
        errors: list[tuple[str, str]] = []
        for key in keys:
            raw = form.get(FIELD_PREFIX + key)
            if raw is None:
                errors.append((key, "missing from the form"))
                continue
            value = raw.strip(_WHITESPACE)  # surrounding blanks are never part of a header value (RFC 9110)
            problem = header_value_problem(value)
            if problem is None:
                values[key] = value
            else:
                errors.append((key, problem))
        if errors:
            # Re-rendered without the submitted values: they are secrets and must not come back in a page.
            return self._form(request, flow, keys, errors=errors, status_code=400)

        if self._flows.consume(flow.id, FlowKind.HEADERS) is None:  # used or expired meanwhile
            return _expired()
        try:
            await self._save(flow, values)
        except Exception as exc:
            # The type only: a message or traceback could quote the values being stored.
            logger.error("storing a credential for upstream %r failed: %s", flow.upstream, type(exc).__name__)
            return result_page(
                "Not saved",
                "Your credentials could not be saved because of a server error. Call the tool again for a fresh"
                " link and retry; if it keeps failing, tell the gateway's administrator.",
                ok=False,
                status_code=500,
            )
        flow.done.set()
        response = result_page(
            "Credentials saved",
            f"Saved your credentials for {flow.upstream}. You can return to your client.",
            ok=True,
            status_code=200,
        )
        response.delete_cookie(
            CSRF_COOKIE, path=request.url.path, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    @staticmethod
    def _csrf_ok(request: Request, flow: PendingFlow, form: dict[str, str]) -> bool:
        submitted = form.get(CSRF_FIELD, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        expected = flow.csrf_token.encode()
        # Both checks always run, so the response time does not tell which one failed.
        field_ok = secrets.compare_digest(submitted.encode(), expected)
        cookie_ok = secrets.compare_digest(cookie.encode(), expected)
        return field_ok and cookie_ok
