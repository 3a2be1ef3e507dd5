"""One model request, from the client's body to the client's answer: route, translate, send, fall back, record.

`LlmService.complete(api, body, headers, identity)` is what both faces call. It routes the
request (`routing.Router`), and for each target in turn (first, then fallbacks) tries the
provider with its keys: a 429 rests that key and tries the next key of the same provider; a
connection failure, timeout, 429 or 5xx moves on to the next target, as long as nothing has been
sent to the client yet (streams: the provider's status is known before the first byte is
relayed). Any other error status ends the request with the provider's message, in the client
API's shape.

Same wire format on both sides (an Anthropic client, an Anthropic-family provider): the body is
sent with only `model` replaced and the answer relayed byte for byte. Different formats go
through `translate/`. Streams are relayed as they arrive, cut only after complete events; a
failure mid-stream ends the stream with an error event in the client's format. Reading an
answer (token counts) and shaping a failure are `answers.py`.

Why this module is longer than most (~420 lines): the four ways a request can travel (same
format, Anthropic ⇄ OpenAI either way, through Gemini) and the relay share the fallback loop's
state (the usage event, the attempt, what was already sent); split apart, each would reach into
the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import httpx2

from llm_gateway.answers import (
    Counts,
    anthropic_counts,
    anthropic_usage,
    apply_counts,
    counts_in,
    describe_failure,
    in_api_shape,
    json_or_none,
    last_event_end,
    merge_counts,
    openai_usage,
    overloaded,
    read_json_answer,
    stream_error,
    stream_failure,
)
from llm_gateway.errors import Api, LlmError, error_body, message_of
from llm_gateway.limits import KeyLimits, SpentSince
from llm_gateway.providers import (
    AnthropicFamily,
    GeminiProvider,
    OpenAIProvider,
    Provider,
    ProviderFailure,
    VertexProvider,
    build_providers,
)
from llm_gateway.providers.http import ProviderResponse
from llm_gateway.reply import Reply
from llm_gateway.routing import RequestFacts, Route, Router, RoutingError, Target
from llm_gateway.tools.agent import Agent
from llm_gateway.tools.injection import Injector, ToolSource
from llm_gateway.tools.runner import ToolRunner
from llm_gateway.translate import anthropic_to_gemini as a2g
from llm_gateway.translate import anthropic_to_openai as a2o
from llm_gateway.translate import openai_to_anthropic as o2a
from llm_gateway.translate.common import StreamError
from llm_gateway.usage import UsageEvent, UsageLog, cost_of, known_models
from llm_gateway.wire import SseParser, dumps
from mcp_gateway.config_llm import LlmSettings
from mcp_gateway.identity import Identity

logger = logging.getLogger(__name__)

DEFAULT_PROVIDER: dict[Api, str] = {"anthropic": "anthropic", "openai": "openai"}
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class LlmService:
    """Routes and serves model requests with the providers of one `llm` settings block."""

    def __init__(
        self,
        settings: LlmSettings,
        usage: UsageLog | None = None,
        *,
        spent_since: SpentSince | None = None,
        clock: Callable[[], float] = time.perf_counter,
        tools: ToolSource | None = None,
    ) -> None:
        """`spent_since`: what a key's recorded requests cost since a moment (for USD budgets);
        `tools`: the callers' MCP tools, for injection and agent mode (None: requests go as sent)."""
        self.settings = settings
        self.router = Router(settings)
        self.providers: dict[str, Provider] = build_providers(settings.providers)
        self.known_models = known_models(settings)
        """`provider/model` names the settings mention: the only model values metrics use as labels."""
        self.usage = usage or UsageLog()
        self.limits = KeyLimits(spent_since)
        self._clock = clock
        self._retired: list[Provider] = []
        self.tools = Injector(tools) if tools is not None else None
        self.agent_keepalive_seconds = Agent.keepalive_seconds

    def reconfigure(self, settings: LlmSettings) -> None:
        """Apply new settings at once (requests already under way finish with what they started with).

        Providers whose settings did not change keep their connection pools; replaced ones are
        closed when the gateway stops (a stream may still be reading from them).
        """
        if settings == self.settings:
            return
        kept = {n: p for n, p in self.providers.items() if settings.providers.get(n) == p.config}
        fresh = build_providers({n: c for n, c in settings.providers.items() if n not in kept})
        self._retired += [p for n, p in self.providers.items() if n not in kept]
        self.providers = {**kept, **fresh}
        self.router = Router(settings)
        self.known_models = known_models(settings)
        self.settings = settings

    def _record(self, event: UsageEvent) -> None:
        event.cost_usd = cost_of(event, self.settings.prices)
        tokens = event.input_tokens + event.output_tokens + event.cache_read_tokens + event.cache_write_tokens
        self.limits.used(event.virtual_key_id, tokens, event.cost_usd)
        self.usage.record(event)

    async def aclose(self) -> None:
        for provider in [*self.providers.values(), *self._retired]:
            await provider.aclose()

    def route(self, api: Api, model: str, headers: Mapping[str, str], identity: Identity | None) -> Route:
        facts = RequestFacts(model, headers, identity, DEFAULT_PROVIDER[api])
        return self.router.route(facts)

    async def complete(
        self,
        api: Api,
        body: Any,
        headers: Mapping[str, str],
        identity: Identity | None,
        *,
        base_url: str | None = None,
        request_id: str | None = None,
    ) -> Reply:
        """Serve one `/v1/messages` (api `anthropic`) or `/v1/chat/completions` (api `openai`) body.

        With the caller's MCP tools injected (`tools/injection.py`) the request runs in agent mode
        (`tools/agent.py`); `base_url` (for credential links in tool results) and `request_id` (for
        the audit records of the tools run) serve it.
        """
        if not isinstance(body, dict):
            raise LlmError(400, "the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise LlmError(400, "`model` is required: a model name, or <provider>/<model>")
        if not isinstance(body.get("messages"), list):
            raise LlmError(400, "`messages` is required and must be a list")
        injection = None
        if self.tools is not None and identity is not None:
            found = self.limits.policy_of(identity)
            injection = self.tools.prepare(api, body, headers, identity, self.settings, found[1] if found else None)
        if injection is None or identity is None or self.tools is None:
            return await self._round(api, body, headers, identity, request_id)
        runner = ToolRunner(self.tools.source, identity, base_url=base_url, request_id=request_id)

        async def send_round(round_body: dict[str, Any]) -> Reply:
            return await self._round(api, round_body, headers, identity, request_id)

        agent = Agent(api, injection, send_round, runner, self.settings.max_agent_depth)
        agent.keepalive_seconds = self.agent_keepalive_seconds
        return await agent.run(bool(body.get("stream")))

    async def _round(
        self,
        api: Api,
        body: dict[str, Any],
        headers: Mapping[str, str],
        identity: Identity | None,
        request_id: str | None,
    ) -> Reply:
        """One model request: route, check the key's limits, try each target, record the usage."""
        started = self._clock()
        model = body["model"]
        event = _usage_event(api, model, identity, stream=bool(body.get("stream")))
        event.request_id = request_id
        try:
            route = self.route(api, model, headers, identity)
        except RoutingError as exc:
            raise LlmError(400, exc.message) from None
        event.rule = route.rule
        targets = self.limits.allowed_targets(identity, model, route.targets)
        await self.limits.admit(identity)
        last: ProviderFailure | None = None
        for position, target in enumerate(targets):
            provider = self.providers.get(target.provider)
            if provider is None:
                kind = self.settings.providers[target.provider].kind
                last = ProviderFailure(target.provider, f"provider kind {kind!r} is not supported by this gateway yet")
                continue
            event.provider, event.model, event.fallback = target.provider, target.model, position > 0
            for _ in range(max(1, provider.key_count)):
                event.attempts += 1
                index, key = provider.pick_key()
                try:
                    return await self._send(api, body, headers, provider, target, key, event, started)
                except ProviderFailure as failure:
                    last = failure
                    logger.warning("llm: %s for %s: %s", target, model, describe_failure(failure))
                    if failure.status == 429 and provider.key_count > 1:
                        provider.rest(index, failure.retry_after)
                        continue
                    break
            if last is not None and not last.retryable:
                break
        assert last is not None
        event.status = last.status or 502
        event.error = last.message
        event.duration_ms = (self._clock() - started) * 1000
        self._record(event)
        return self._failure_reply(api, last, len(targets) > 1)

    async def count_tokens(self, body: Any, headers: Mapping[str, str], identity: Identity | None) -> Reply:
        """`/v1/messages/count_tokens`: passed to the routed provider when it speaks Anthropic's API.

        Other providers have no equivalent; the 404 makes Claude Code fall back to a one-token request.
        """
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise LlmError(400, "`model` is required: a model name, or <provider>/<model>")
        try:
            route = self.route("anthropic", body["model"], headers, identity)
        except RoutingError as exc:
            raise LlmError(400, exc.message) from None
        target = route.targets[0]
        provider = self.providers.get(target.provider)
        if not isinstance(provider, AnthropicFamily):
            raise LlmError(404, f"token counting is only available for Anthropic-family providers, not {target}")
        _, key = provider.pick_key()
        try:
            response = await provider.count_tokens(body, target.model, key, headers)
        except ProviderFailure as failure:
            return self._failure_reply("anthropic", failure, False)
        if response is None:
            raise LlmError(404, f"token counting is not available through provider {target.provider}")
        try:
            data = await response.aread()
        finally:
            await response.aclose()
        return Reply(200, body=data)

    async def _send(
        self,
        api: Api,
        body: dict[str, Any],
        headers: Mapping[str, str],
        provider: Provider,
        target: Target,
        key: str | None,
        event: UsageEvent,
        started: float,
    ) -> Reply:
        stream = bool(body.get("stream"))
        if provider.family_of(target.model) == "gemini" and isinstance(provider, GeminiProvider | VertexProvider):
            return await self._send_to_gemini(api, body, provider, target, key, event, started)
        if api == "anthropic" and isinstance(provider, AnthropicFamily):
            response = await provider.messages(body, target.model, key, headers)
            return await self._relay(api, response, provider.events(response), event, started, stream, anthropic_usage)
        if api == "openai" and isinstance(provider, OpenAIProvider):
            response = await provider.chat(dumps({**body, "model": target.model}), key, target.model)
            return await self._relay(api, response, response.aiter_bytes(), event, started, stream, openai_usage)
        if api == "anthropic" and isinstance(provider, OpenAIProvider):
            converted = a2o.request(
                body,
                target.model,
                max_tokens_field=provider.max_tokens_field,
                reasoning=provider.config.kind in ("openai", "azure"),
            )
            response = await provider.chat(dumps(converted), key, target.model)
            if stream:
                translator = a2o.StreamTranslator(body["model"])
                chunks = a2o.stream(response.aiter_bytes(), translator)
                return self._streaming(
                    api, response, chunks, event, started, lambda: anthropic_counts(translator.usage)
                )
            data = await read_json_answer(response, provider.name)
            answer = a2o.response(data, body["model"])
            return self._whole(answer, event, started, anthropic_counts(answer["usage"]))
        if api == "openai" and isinstance(provider, AnthropicFamily):
            converted = o2a.request(body, target.model)
            response = await provider.messages(converted, target.model, key, {})
            if stream:
                o_translator = _chat_stream_translator(body)
                chunks = o2a.stream(provider.events(response), o_translator)
                return self._streaming(
                    api, response, chunks, event, started, lambda: anthropic_counts(o_translator.usage)
                )
            data = await read_json_answer(response, provider.name)
            answer = o2a.response(data, body["model"])
            return self._whole(answer, event, started, anthropic_counts(data.get("usage")))
        raise ProviderFailure(provider.name, f"provider {provider.name} cannot serve the {api} API")

    async def _send_to_gemini(
        self,
        api: Api,
        body: dict[str, Any],
        provider: GeminiProvider | VertexProvider,
        target: Target,
        key: str | None,
        event: UsageEvent,
        started: float,
    ) -> Reply:
        """Gemini speaks neither API: requests go through the Anthropic shape (OpenAI ones are made Anthropic first)."""
        stream = bool(body.get("stream"))
        anthropic_body = body if api == "anthropic" else o2a.request(body, target.model)
        response = await provider.generate(a2g.request(anthropic_body), target.model, key, stream=stream)
        if stream:
            translator = a2g.StreamTranslator(body["model"])
            events = a2g.stream(response.aiter_bytes(), translator)
            if api == "anthropic":
                return self._streaming(
                    api, response, events, event, started, lambda: anthropic_counts(translator.usage)
                )
            chunks = o2a.stream(events, _chat_stream_translator(body))
            return self._streaming(api, response, chunks, event, started, lambda: anthropic_counts(translator.usage))
        answer = a2g.response(await read_json_answer(response, provider.name), body["model"])
        counts = anthropic_counts(answer["usage"])
        return self._whole(
            answer if api == "anthropic" else o2a.response(answer, body["model"]), event, started, counts
        )

    async def _relay(
        self,
        api: Api,
        response: ProviderResponse,
        body_chunks: AsyncIterator[bytes],
        event: UsageEvent,
        started: float,
        stream: bool,
        counts_of: Callable[[Any], Counts | None],
    ) -> Reply:
        """Same wire format both sides: the provider's bytes go to the client as they are."""
        content_type = response.headers.get("content-type", "")
        if stream and not content_type.startswith("application/json"):
            parser = SseParser()
            counts: list[Counts] = []

            async def chunks() -> AsyncIterator[bytes]:
                # Relayed up to the last complete event of each read: a client can do nothing with half
                # an event, and a provider that writes in small pieces would otherwise cost one write
                # (through every middleware) per piece. Nothing complete is ever held back.
                pending = b""
                async for chunk in body_chunks:
                    for sse_event in parser.feed(chunk):
                        found = counts_in(sse_event.data, counts_of)
                        if found is not None:
                            counts.append(merge_counts(counts[-1] if counts else None, found))
                    pending += chunk
                    end = last_event_end(pending)
                    if end:
                        yield pending[:end]
                        pending = pending[end:]
                if pending:
                    yield pending

            return self._streaming(api, response, chunks(), event, started, lambda: counts[-1] if counts else None)
        try:
            data = await response.aread()
        except httpx2.HTTPError as exc:
            raise ProviderFailure(
                event.provider or "?", f"provider {event.provider} broke off its answer: {exc}"
            ) from None
        finally:
            await response.aclose()
        found = counts_in(data, counts_of)
        return self._finish_whole(data, event, started, found)

    def _whole(self, answer: dict[str, Any], event: UsageEvent, started: float, counts: Counts | None) -> Reply:
        return self._finish_whole(dumps(answer), event, started, counts)

    def _finish_whole(self, data: bytes, event: UsageEvent, started: float, counts: Counts | None) -> Reply:
        apply_counts(event, counts)
        event.duration_ms = event.ttfb_ms = (self._clock() - started) * 1000
        self._record(event)
        return Reply(200, body=data)

    def _streaming(
        self,
        api: Api,
        response: ProviderResponse,
        chunks: AsyncIterator[bytes],
        event: UsageEvent,
        started: float,
        counts: Callable[[], Counts | None],
    ) -> Reply:
        clock = self._clock

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in chunks:
                    if event.ttfb_ms is None:
                        event.ttfb_ms = (clock() - started) * 1000
                    yield chunk
            except (httpx2.HTTPError, StreamError) as exc:
                message = stream_failure(exc, event.provider)
                logger.warning("llm: stream from %s ended early: %s", event.provider, message)
                event.status, event.error = 502, message
                yield stream_error(api, message, overloaded=overloaded(exc))
            except Exception:  # a bug here: the client still gets a well-formed end, the log the traceback
                logger.exception("llm: relaying the stream from %s failed", event.provider)
                event.status, event.error = 500, "internal error in mcpgw"
                yield stream_error(api, "internal error in mcpgw; see the gateway log", overloaded=False)
            finally:
                with anyio.CancelScope(shield=True):  # also when the client left: give the connection back
                    await response.aclose()
                apply_counts(event, counts())
                event.duration_ms = (clock() - started) * 1000
                self._record(event)

        return Reply(200, stream=relay(), headers=dict(_SSE_HEADERS))

    def _failure_reply(self, api: Api, failure: ProviderFailure, had_fallbacks: bool) -> Reply:
        """The last provider failure, in the client's format.

        A provider's own error body goes through when it already is in the client API's shape. A
        provider refusing the gateway's own credentials (401/403) is the operator's problem, not the
        caller's: it becomes a 502 that names the provider setting, with `x-should-retry: false`.
        """
        status = failure.status or 502
        body = json_or_none(failure.body)
        if failure.status not in (401, 403) and in_api_shape(api, body):
            headers = {k: v for k, v in failure.headers.items() if k in ("retry-after", "x-should-retry")}
            return Reply(status, body=failure.body, headers=headers)
        detail = message_of(body) if body is not None else None
        message = failure.message + (f": {detail}" if detail else "")
        extra: dict[str, str] = {}
        if failure.status in (401, 403):
            message = (
                f"provider {failure.provider} refused the gateway's credentials (HTTP {failure.status})"
                + (f": {detail}" if detail else "")
                + f"; an administrator must fix llm.providers.{failure.provider}"
            )
            status, extra = 502, {"x-should-retry": "false"}
        if had_fallbacks:
            message += " (every fallback failed too)"
        if failure.status is None:
            status = 529 if api == "anthropic" else 502
        error = LlmError(status, message, retry_after=failure.retry_after)
        return Reply(status, body=dumps(error_body(api, status, message)), headers={**error.headers(), **extra})


def _chat_stream_translator(body: Mapping[str, Any]) -> o2a.StreamTranslator:
    """Anthropic events → Chat Completions chunks for this client's request (with usage if it asked)."""
    options = body.get("stream_options")
    include = isinstance(options, dict) and bool(options.get("include_usage"))
    return o2a.StreamTranslator(body["model"], include_usage=include)


def _usage_event(api: Api, model: str, identity: Identity | None, *, stream: bool) -> UsageEvent:
    event = UsageEvent(api=api, requested_model=model, stream=stream)
    if identity is not None:
        event.identity_mode = identity.mode.value
        event.subject = identity.subject
        event.virtual_key_id = identity.virtual_key.id if identity.virtual_key is not None else None
    return event
