"""Claude on Amazon Bedrock: InvokeModel / InvokeModelWithResponseStream, SigV4-signed, AWS event streams.

The body is the client's Messages body without `model` and `stream` (the model id is in the
path: `global.anthropic.claude-sonnet-4-6` or a regional inference profile), with
`anthropic_version: bedrock-2023-05-31` and the client's `anthropic-beta` list as `anthropic_beta`.
Requests are signed with botocore's SigV4 (service `bedrock`); credentials come from the config
(`access_key_id`/`secret_access_key`/`session_token`) or botocore's standard chain (environment,
shared files, SSO, instance metadata), resolved once off the event loop.

A streamed answer arrives as AWS event-stream frames, each a `chunk` whose payload holds one
Anthropic event (base64 JSON); they are decoded with botocore's parser and re-framed as the
server-sent events an Anthropic client expects. An `exception` frame ends the stream with an error.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.eventstream import EventStreamBuffer, InvalidHeadersLength, InvalidPayloadLength

from llm_gateway.providers.anthropic import AnthropicFamily, beta_list
from llm_gateway.providers.base import ProviderFailure
from llm_gateway.providers.http import ProviderResponse
from llm_gateway.translate.common import StreamError
from llm_gateway.wire import dumps, loads, sse
from mcp_gateway.config_llm import ProviderConfig

BEDROCK_VERSION = "bedrock-2023-05-31"
_DROPPED = ("model", "stream")


class BedrockProvider(AnthropicFamily):
    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        self.region = (
            config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        if not config.base_url:
            self.base_url = f"https://bedrock-runtime.{self.region}.amazonaws.com"
        self._static = (
            Credentials(config.access_key_id, config.secret_access_key, config.session_token)
            if config.access_key_id and config.secret_access_key
            else None
        )
        self._chain: Credentials | None = None
        self._lock = anyio.Lock()

    async def _credentials(self) -> ReadOnlyCredentials:
        if self._static is not None:
            return self._static.get_frozen_credentials()
        async with self._lock:
            if self._chain is None:
                found = await anyio.to_thread.run_sync(lambda: botocore.session.get_session().get_credentials())
                if found is None:
                    raise ProviderFailure(
                        self.name,
                        f"provider {self.name}: no AWS credentials (set access_key_id/secret_access_key, or the "
                        "standard AWS environment variables, profile or instance role)",
                        status=401,
                    )
                self._chain = found
            chain = self._chain
        # Refreshable credentials may refresh here (a network call): off the event loop.
        frozen: ReadOnlyCredentials = await anyio.to_thread.run_sync(chain.get_frozen_credentials)
        return frozen

    async def messages(
        self, body: Mapping[str, Any], model: str, key: str | None, client_headers: Mapping[str, str]
    ) -> ProviderResponse:
        stream = bool(body.get("stream"))
        payload: dict[str, Any] = {k: v for k, v in body.items() if k not in _DROPPED}
        payload["anthropic_version"] = BEDROCK_VERSION
        betas = beta_list(client_headers)
        if betas:
            payload["anthropic_beta"] = betas
        action = "invoke-with-response-stream" if stream else "invoke"
        url = f"{self.base_url}/model/{quote(model, safe='')}/{action}"
        data = dumps(payload)
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        request = AWSRequest(
            method="POST", url=url, data=data, headers={"content-type": "application/json", "accept": accept}
        )
        SigV4Auth(await self._credentials(), "bedrock", self.region).add_auth(request)
        return await self.open(url, data, dict(request.headers.items()))

    def events(self, response: ProviderResponse) -> AsyncIterator[bytes]:
        return _anthropic_events(response.aiter_bytes())


async def _anthropic_events(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """AWS event-stream bytes in, Anthropic server-sent events out."""
    buffer = EventStreamBuffer()
    async for chunk in frames:
        buffer.add_data(chunk)
        out = b""
        try:
            for message in buffer:
                out += _event_of(message.headers, message.payload)
        except (InvalidHeadersLength, InvalidPayloadLength, binascii.Error, ValueError) as exc:
            raise StreamError(
                {"error": {"type": "api_error", "message": f"malformed Bedrock event stream: {exc}"}}
            ) from None
        if out:
            yield out


def _event_of(headers: Mapping[str, Any], payload: bytes) -> bytes:
    if headers.get(":message-type") == "exception":
        kind = str(headers.get(":exception-type", "exception"))
        detail = loads(payload) if payload else {}
        message = detail.get("message") if isinstance(detail, dict) else None
        overloaded = kind in ("throttlingException", "serviceUnavailableException")
        error = {
            "type": "overloaded_error" if overloaded else "api_error",
            "message": f"Bedrock {kind}: {message or ''}",
        }
        raise StreamError({"error": error})
    if headers.get(":event-type") != "chunk":
        return b""
    envelope = loads(payload)
    encoded = envelope.get("bytes") if isinstance(envelope, dict) else None
    if not isinstance(encoded, str):
        return b""
    event = base64.b64decode(encoded)
    kind = loads(event).get("type", "message")
    return sse(str(kind), event)
