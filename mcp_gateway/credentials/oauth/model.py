"""The values an OAuth client keeps between requests, and the one error every step raises.

They live apart from the protocol code because the caller stores them (encrypted) and reads them back
much later: `to_dict`/`from_dict` are that storage format, so `from_dict` validates what it is given
rather than trusting it. The reprs hide secrets, since these objects end up in logs and tracebacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post", "none")
"""Token endpoint client authentication methods the gateway can use, in order of preference."""


# --- value types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthServer:
    """What the gateway needs to know about one upstream's authorization server."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None
    resource: str
    """RFC 8707 resource indicator sent with every request: the upstream's canonical URL."""
    scopes_supported: tuple[str, ...] | None
    code_challenge_methods: tuple[str, ...] | None
    token_endpoint_auth_methods: tuple[str, ...] | None = None
    """As advertised; None means the RFC 8414 default (client_secret_basic)."""
    suggested_scopes: tuple[str, ...] = ()
    """What the upstream asks for: the `scope` of its 401 challenge, else its RFC 9728 `scopes_supported`."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "registration_endpoint": self.registration_endpoint,
            "resource": self.resource,
            "scopes_supported": _list_or_none(self.scopes_supported),
            "code_challenge_methods": _list_or_none(self.code_challenge_methods),
            "token_endpoint_auth_methods": _list_or_none(self.token_endpoint_auth_methods),
            "suggested_scopes": list(self.suggested_scopes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthServer:
        return cls(
            issuer=_required_str(data, "issuer"),
            authorization_endpoint=_required_str(data, "authorization_endpoint"),
            token_endpoint=_required_str(data, "token_endpoint"),
            registration_endpoint=_optional_str(data, "registration_endpoint"),
            resource=_required_str(data, "resource"),
            scopes_supported=_str_tuple(data.get("scopes_supported")),
            code_challenge_methods=_str_tuple(data.get("code_challenge_methods")),
            token_endpoint_auth_methods=_str_tuple(data.get("token_endpoint_auth_methods")),
            suggested_scopes=_str_tuple(data.get("suggested_scopes")) or (),
        )


@dataclass(frozen=True, repr=False)
class ClientRegistration:
    """The gateway's identity at one authorization server: configured, or obtained by RFC 7591."""

    client_id: str
    client_secret: str | None
    redirect_uri: str
    auth_method: AuthMethod | None = None
    """Token endpoint authentication; None: client_secret_basic with a secret, none without."""
    secret_expires_at: float | None = None
    """RFC 7591 `client_secret_expires_at` (epoch seconds); None: never. Re-register once it has passed."""

    @property
    def token_endpoint_auth_method(self) -> AuthMethod:
        if self.auth_method is not None:
            return self.auth_method
        return "client_secret_basic" if self.client_secret else "none"

    def secret_expired(self, now: float) -> bool:
        return self.secret_expires_at is not None and now >= self.secret_expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "auth_method": self.auth_method,
            "secret_expires_at": self.secret_expires_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientRegistration:
        method = _optional_str(data, "auth_method")
        if method is not None and _auth_method_named(method) is None:
            raise ValueError(f"unsupported token endpoint auth method {method!r}")
        return cls(
            client_id=_required_str(data, "client_id"),
            client_secret=_optional_str(data, "client_secret"),
            redirect_uri=_required_str(data, "redirect_uri"),
            auth_method=_auth_method_named(method),
            secret_expires_at=_optional_number(data, "secret_expires_at"),
        )

    def __repr__(self) -> str:
        secret = "set" if self.client_secret else "none"
        return (
            f"ClientRegistration(client_id={self.client_id!r}, client_secret=<{secret}>, "
            f"redirect_uri={self.redirect_uri!r}, auth_method={self.token_endpoint_auth_method!r})"
        )


@dataclass(frozen=True, repr=False)
class TokenSet:
    """One user's tokens for one upstream."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    """Epoch seconds; None when the provider did not say (use the token until the upstream refuses it)."""
    token_type: str
    scope: str | None

    def expires_soon(self, now: float, skew: float = 60.0) -> bool:
        """True when the access token expires within `skew` seconds: refresh before use, not after a 401."""
        return self.expires_at is not None and now + skew >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "token_type": self.token_type,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        return cls(
            access_token=_required_str(data, "access_token"),
            refresh_token=_optional_str(data, "refresh_token"),
            expires_at=_optional_number(data, "expires_at"),
            token_type=_required_str(data, "token_type"),
            scope=_optional_str(data, "scope"),
        )

    def __repr__(self) -> str:
        refresh = "set" if self.refresh_token else "none"
        return (
            f"TokenSet(access_token=<hidden>, refresh_token=<{refresh}>, expires_at={self.expires_at!r}, "
            f"token_type={self.token_type!r}, scope={self.scope!r})"
        )


# --- small helpers --------------------------------------------------------------------------------


def _auth_method_named(value: Any) -> AuthMethod | None:
    return cast(AuthMethod, value) if value in AUTH_METHODS else None


def _same_issuer(advertised: str, expected: str) -> bool:
    """Exact match, except a trailing slash: URL libraries add or drop it on a path-less issuer."""
    return advertised == expected or advertised.rstrip("/") == expected.rstrip("/")


def _str_tuple(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list | tuple):
        return None
    return tuple(item for item in value if isinstance(item, str))


def _list_or_none(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"stored OAuth data lacks {key!r}")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"stored OAuth data has a malformed {key!r}")
    return value or None


def _optional_number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"stored OAuth data has a malformed {key!r}")
    return float(value)
