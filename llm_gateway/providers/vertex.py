"""Claude on Google Vertex AI: `rawPredict` / `streamRawPredict`, with OAuth access tokens from google-auth.

The body is the client's Messages body without `model` (it is in the path) and with
`anthropic_version: vertex-2023-10-16`; `anthropic-beta` is passed as a header. The answer is
Anthropic's own JSON or server-sent events, relayed as they come.

Credentials: the service-account JSON in `credentials_file`, else Application Default
Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud, the metadata server). google-auth is
synchronous, so a token is fetched in a worker thread, cached, and refreshed a minute before it
expires (one refresh at a time). The token endpoint is the one the credentials name (`token_uri`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import google.auth
import google.auth.transport.urllib3
import urllib3
from google.auth.credentials import Credentials as GoogleCredentials
from google.auth.exceptions import GoogleAuthError
from google.oauth2 import service_account

from llm_gateway.providers.anthropic import AnthropicFamily
from llm_gateway.providers.base import Family, ProviderFailure
from llm_gateway.providers.gemini import gemini_action
from llm_gateway.providers.http import ProviderResponse
from llm_gateway.wire import dumps
from mcp_gateway.config_llm import ProviderConfig

VERTEX_VERSION = "vertex-2023-10-16"
_GLOBAL_HOST = "https://aiplatform.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
_REFRESH_MARGIN = datetime.timedelta(seconds=60)


class VertexProvider(AnthropicFamily):
    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        self.region = config.region or "global"
        if not config.base_url:
            host = (
                "aiplatform.googleapis.com" if self.region == "global" else f"{self.region}-aiplatform.googleapis.com"
            )
            self.base_url = f"https://{host}"
        self._credentials: GoogleCredentials | None = None
        self._project = config.project
        self._lock = anyio.Lock()
        self._http = urllib3.PoolManager()

    async def _token(self) -> str:
        async with self._lock:
            if self._credentials is None:
                loaded, project = await anyio.to_thread.run_sync(self._load)
                self._credentials = loaded
                self._project = self._project or project
            credentials: GoogleCredentials = self._credentials
            if not credentials.valid or _expires_soon(credentials):
                transport = google.auth.transport.urllib3.Request(self._http)  # type: ignore[no-untyped-call]
                try:
                    await anyio.to_thread.run_sync(credentials.refresh, transport)
                except GoogleAuthError as exc:
                    raise ProviderFailure(
                        self.name, f"provider {self.name}: cannot get a Google access token: {exc}", status=401
                    ) from None
            token = credentials.token
        if not token:
            raise ProviderFailure(self.name, f"provider {self.name}: Google returned no access token", status=401)
        return str(token)

    def _load(self) -> tuple[GoogleCredentials, str | None]:
        try:
            if self.config.credentials_file:
                found = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    self.config.credentials_file, scopes=SCOPES
                )
                return found, found.project_id
            credentials, project = google.auth.default(scopes=SCOPES)
            return credentials, project
        except (GoogleAuthError, OSError, ValueError) as exc:
            raise ProviderFailure(
                self.name, f"provider {self.name}: cannot load Google credentials: {exc}", status=401
            ) from None

    def family_of(self, model: str) -> Family:
        """Claude models speak Anthropic's Messages API on Vertex; every other model is Gemini."""
        return "anthropic" if model.startswith("claude") else "gemini"

    async def generate(self, body: Mapping[str, Any], model: str, key: str | None, *, stream: bool) -> ProviderResponse:
        """Gemini on Vertex: `generateContent` / `streamGenerateContent?alt=sse` under publishers/google."""
        token = await self._token()
        if not self._project:
            raise ProviderFailure(
                self.name, f"provider {self.name}: set `project` (the Google Cloud project)", status=400
            )
        path = (
            f"/v1/projects/{quote(self._project, safe='')}/locations/{quote(self.region, safe='')}"
            f"/publishers/google/models/{quote(model, safe='')}:{gemini_action(stream)}"
        )
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        return await self.open(f"{self.base_url}{path}", dumps(body), headers)

    async def messages(
        self, body: Mapping[str, Any], model: str, key: str | None, client_headers: Mapping[str, str]
    ) -> ProviderResponse:
        token = await self._token()
        if not self._project:
            raise ProviderFailure(
                self.name, f"provider {self.name}: set `project` (the Google Cloud project)", status=400
            )
        payload: dict[str, Any] = {k: v for k, v in body.items() if k != "model"}
        payload["anthropic_version"] = VERTEX_VERSION
        action = "streamRawPredict" if body.get("stream") else "rawPredict"
        path = (
            f"/v1/projects/{quote(self._project, safe='')}/locations/{quote(self.region, safe='')}"
            f"/publishers/anthropic/models/{quote(model, safe='')}:{action}"
        )
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        if client_headers.get("anthropic-beta"):
            headers["anthropic-beta"] = client_headers["anthropic-beta"]
        return await self.open(f"{self.base_url}{path}", dumps(payload), headers)


def _expires_soon(credentials: GoogleCredentials) -> bool:
    expiry = credentials.expiry
    if expiry is None:
        return False
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # google-auth keeps naive UTC
    return bool(expiry - now < _REFRESH_MARGIN)
