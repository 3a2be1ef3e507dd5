"""An upstream reached with one OAuth token for everybody, which an admin obtains once.

Until someone has signed in (`mcpgw upstream authorize NAME`), and whenever the token can no
longer be refreshed, the upstream waits in `needs_reauth` rather than retrying on a timer: only
a person can fix it. Tokens are refreshed before they expire, like per-user ones.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from mcp_gateway.config import HttpUpstream, SharedOAuth, SseUpstream, StdioUpstream
from mcp_gateway.credentials.broker import SHARED_PRINCIPAL, CredentialBroker
from mcp_gateway.errors import CredentialError
from mcp_gateway.supervisor import Supervisor
from mcp_gateway.upstreams.connection import ChangeCallback, ResourceUpdatedCallback, UpstreamConnection
from mcp_gateway.upstreams.per_user import CallerAuth, bearer_credentials
from mcp_gateway.upstreams.transports import Streams, open_transport


class SharedOAuthUpstream(UpstreamConnection):
    def __init__(
        self,
        name: str,
        config: HttpUpstream | SseUpstream,
        settings: SharedOAuth,
        *,
        broker: CredentialBroker | None,
        on_change: ChangeCallback,
        on_resource_updated: ResourceUpdatedCallback,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._auth = CallerAuth(self._bearer)
        super().__init__(
            name,
            config,
            on_change=on_change,
            on_resource_updated=on_resource_updated,
            open_transport=self._open,
            supervisor=supervisor,
        )
        self._token = bearer_credentials(broker, SHARED_PRINCIPAL, name, settings, config.url, None) if broker else None

    def _open(self, config: StdioUpstream | HttpUpstream | SseUpstream) -> AbstractAsyncContextManager[Streams]:
        return open_transport(config, self._auth)

    async def _bearer(self, fresh: bool) -> dict[str, str]:
        if self._token is None:
            raise CredentialError(self.name, "the credential vault is not open")
        return await self._token(fresh)

    async def _connect_and_serve(self) -> bool:
        self._auth.rejected = False
        try:
            return await super()._connect_and_serve()
        finally:
            if self._auth.rejected:
                self.needs_reauth(
                    f"not authorized: an admin must sign in once (mcpgw upstream authorize {self.name}, "
                    f"or POST /api/mcp/client/{self.name}/authorize)"
                )
