"""The call pipeline: call a tool as a caller, the one way every face does it.

    route (policy + catalog) → credentials (per-user upstreams) → upstream → failover → one audit record

`/mcp` (`http/mcp_server.py`), the meta tools of search and code mode (through `ToolCalls.access`) and the
LLM gateway's tool injection all come through `ToolCalls.call`. Nothing here knows HTTP or the
SDK's server side: the client a call is made for is a `ClientChannel`, and results are the
upstream's wire dicts. Failures a model or a person can act on come back as tool errors
(`isError: true`); only a tool that does not exist (or is hidden: the same) raises `UnknownTool`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.shared.exceptions import NoBackChannelError

from mcp_gateway.audit import AuditEvent, AuditLog
from mcp_gateway.channel import ClientChannel
from mcp_gateway.config import prefix_of
from mcp_gateway.errors import CredentialRequired, UnknownTool, UpstreamError, UpstreamUnavailable
from mcp_gateway.identity import Identity
from mcp_gateway.policy import Policy
from mcp_gateway.relay import CURRENT_CALLER, Caller
from mcp_gateway.toolmodes.base import ModalTool, ToolAccess, ToolMode
from mcp_gateway.toolmodes.presenter import Presentation
from mcp_gateway.upstreams.connection import UpstreamConnection, UpstreamState
from mcp_gateway.upstreams.manager import UpstreamManager

_URL_ELICITATION = types.ClientCapabilities(
    elicitation=types.ElicitationCapability(url=types.UrlElicitationCapability())
)


class ToolCalls:
    """Calls tools as callers: `call` for one tool, `access` for meta tools acting for a caller."""

    def __init__(self, manager: UpstreamManager, policy: Policy, audit: AuditLog, *, credential_wait: float) -> None:
        self._manager = manager
        self._policy = policy
        self._audit = audit
        self._credential_wait = credential_wait
        """Seconds a client that supports URL elicitation may take to hand over a credential mid-call."""

    async def call(
        self,
        identity: Identity,
        name: str,
        arguments: Mapping[str, Any] | None,
        channel: ClientChannel,
        meta: types.RequestParamsMeta | None = None,
        *,
        llm_request_id: str | None = None,
    ) -> dict[str, Any]:
        """Call the tool the caller knows as `name`; the upstream's result (or a tool error) as a wire dict.

        `llm_request_id`: the model request a tool call was made for (agent mode, `/v1/mcp/tool/execute`),
        kept in the audit record so both trails can be joined.

        Raises:
            UnknownTool: no such tool, or the caller may not see it.
            MCPError: the upstream answered with a JSON-RPC error (passed on unchanged).
        """
        started = time.perf_counter()
        manager = self._manager
        route = self._policy.route_for(identity, manager.catalog, name)
        if route is None:
            unavailable = self._unavailable_owner(identity, name)
            self._record(llm_request_id, identity, None, name, started, "denied" if unavailable is None else "error")
            if unavailable is not None:
                return tool_error(unavailable)
            raise UnknownTool(name)
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(
                name=route.original, arguments=dict(arguments) if arguments is not None else None, _meta=meta
            )
        )
        caller = Caller(channel, identity)
        candidates = route.candidates
        for attempt, upstream_name in enumerate(candidates, start=1):
            upstream = manager.connections.get(upstream_name)
            try:
                if upstream is None:
                    raise UpstreamUnavailable(upstream_name, f"upstream {upstream_name!r} is not configured")
                result = await self._send_with_credentials(upstream, request, caller)
            except CredentialRequired as exc:
                # The link is a secret for the caller's eyes only: not in the audit trail.
                self._record(
                    llm_request_id, identity, upstream_name, route.original, started, "error", "credential required"
                )
                return tool_error(exc.message)
            except UpstreamUnavailable as exc:
                if attempt < len(candidates) and not exc.sent:
                    # A replica is down and never saw the request: the next one in the dedupe group
                    # takes it. Once sent, the tool may have run; retrying could do it twice.
                    continue
                self._record(llm_request_id, identity, upstream_name, route.original, started, "error", exc.message)
                return tool_error(exc.message)
            except UpstreamError as exc:
                self._record(llm_request_id, identity, upstream_name, route.original, started, "error", exc.message)
                return tool_error(exc.message)
            except MCPError as exc:
                self._record(
                    llm_request_id, identity, upstream_name, route.original, started, "error", exc.error.message
                )
                raise
            self._record(
                llm_request_id,
                identity,
                upstream_name,
                route.original,
                started,
                "tool_error" if result.get("isError") else "ok",
            )
            return result
        raise AssertionError("unreachable: a route always has at least one candidate")

    def access(
        self,
        identity: Identity,
        presentation: Presentation,
        channel: ClientChannel,
        meta: types.RequestParamsMeta | None = None,
        *,
        llm_request_id: str | None = None,
    ) -> ToolAccess:
        """What a meta tool (search, code mode) may see and call for this caller: exactly what the caller may."""
        return _CallerAccess(
            presentation,
            lambda name, args: self.call(identity, name, args, channel, meta, llm_request_id=llm_request_id),
        )

    def record_meta_call(
        self,
        identity: Identity,
        name: str,
        started: float,
        result: Mapping[str, Any],
        *,
        llm_request_id: str | None = None,
    ) -> None:
        """The audit record of a meta tool call answered by the gateway itself (its inner calls have their own)."""
        self._record(llm_request_id, identity, None, name, started, "tool_error" if result.get("isError") else "ok")

    async def _send_with_credentials(
        self, upstream: UpstreamConnection, request: types.ClientRequest, caller: Caller
    ) -> dict[str, Any]:
        """`send`, and when the caller first has to hand over a credential, ask for it in-band.

        Clients that support URL-mode elicitation (MCP 2025-11-25) get the link as an elicitation;
        if the person accepts and finishes within `credential_wait` seconds the call goes on as if
        nothing happened. Otherwise (or for other clients) the link comes back in a tool error.
        """
        try:
            return await send(upstream, request, caller)
        except CredentialRequired as needed:
            wait = self._credential_wait
            if wait <= 0 or not caller.channel.supports(_URL_ELICITATION):
                raise
            if not await _elicit_credential(caller.channel, needed, wait):
                raise
            return await send(upstream, request, caller)

    def _unavailable_owner(self, identity: Identity, name: str) -> str | None:
        """Why a tool of a configured but currently unavailable upstream cannot be called, if it is one.

        A disconnected upstream serves no tools, but "Unknown tool" would send the user hunting for a
        typo; naming the upstream and its state says what is actually wrong. Only for upstreams the
        caller may use, so this reveals nothing about the others.
        """
        manager = self._manager
        for connection in manager.connections.values():
            prefix = prefix_of(connection.name, connection.config)
            if (
                prefix
                and name.startswith(prefix + manager.separator)
                and connection.state is not UpstreamState.CONNECTED
                and self._policy.may_use_upstream(identity, connection.name)
            ):
                detail = f" ({connection.last_error})" if connection.last_error else ""
                return f"upstream {connection.name!r} is {connection.state.value}{detail}; try again once it reconnects"
        return None

    def _record(
        self,
        llm_request_id: str | None,
        identity: Identity,
        upstream: str | None,
        tool: str | None,
        started: float,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        self._audit.record(
            AuditEvent(
                identity_mode=identity.mode.value,
                subject=identity.subject,
                virtual_key_id=identity.virtual_key.id if identity.virtual_key else None,
                upstream=upstream,
                tool=tool,
                method="tools/call",
                duration_ms=(time.perf_counter() - started) * 1000,
                outcome=outcome,
                detail=detail[:500] if detail else None,
                llm_request_id=llm_request_id,
            )
        )


async def send(upstream: UpstreamConnection, request: types.ClientRequest, caller: Caller) -> dict[str, Any]:
    """Send any request upstream on behalf of `caller`, relaying progress and what the upstream asks back."""
    channel = caller.channel
    token = CURRENT_CALLER.set(caller)
    try:
        result = await upstream.request(
            request, caller=caller, progress=channel.progress if channel.wants_progress else None
        )
    finally:
        CURRENT_CALLER.reset(token)
    # 2026-07-28 requires `resultType`; handshake-era upstreams never send it and the SDK drops
    # it again for handshake-era clients.
    result.setdefault("resultType", "complete")
    return result


async def _elicit_credential(channel: ClientChannel, needed: CredentialRequired, wait: float) -> bool:
    """True once the flow behind `needed` has stored a credential; False if declined or not in time."""
    done = needed.done
    elicitation_id = uuid.uuid4().hex  # not the flow id: that is the secret part of the link
    request = types.ElicitRequest(
        params=types.ElicitRequestURLParams(message=needed.message, url=needed.url, elicitation_id=elicitation_id)
    )
    try:
        answer = await channel.request(request, types.ElicitResult)
    except (MCPError, NoBackChannelError):
        return False
    if answer.action != "accept" or done is None:
        return False
    with anyio.move_on_after(wait):
        await done.wait()
    if not done.is_set():
        return False
    with contextlib.suppress(MCPError, NoBackChannelError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await channel.notify(
            types.ElicitCompleteNotification(
                params=types.ElicitCompleteNotificationParams(elicitation_id=elicitation_id)
            )
        )
    return True


class _CallerAccess:
    """`ToolAccess` for one caller and request: meta tools see and call only what the caller may."""

    def __init__(
        self,
        presentation: Presentation,
        invoke: Callable[[str, Mapping[str, Any] | None], Awaitable[dict[str, Any]]],
    ) -> None:
        self._presentation = presentation
        self._invoke = invoke

    def tools(self, *modes: ToolMode) -> list[ModalTool]:
        return [t for t in self._presentation.modal if not modes or t.mode in modes]

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        return await self._invoke(name, arguments)


def tool_error(message: str) -> dict[str, Any]:
    """A tool result saying what went wrong, for the model or person to act on."""
    return {"content": [{"type": "text", "text": message}], "isError": True, "resultType": "complete"}
