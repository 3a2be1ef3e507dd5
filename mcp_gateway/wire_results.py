"""An upstream's result goes to the client as the upstream sent it, whenever that is exactly right.

The SDK shapes every result it sends through the protocol version's pydantic models (the "sieve":
fields the version does not define dropped, `None`s left out, keys in model order). For a result
the gateway only relays, that is a second validation of what the upstream hop already validated
(`DirectHttp` / the SDK client check each result against the upstream's protocol version), it
costs CPU on every call, and it changes the JSON: a field typed `float` turns an upstream's
`"priority": 1` into `1.0`, and a client that compares or hashes results sees a difference the
upstream never made.

`shape_result` passes a `RelayedResult` through unchanged (a shallow copy, without the
`resultType` the pipeline adds and handshake-era versions do not define) when the client speaks
the same handshake-era version as the upstream and the result holds no `null` where the sieve
would leave a field out. Anything else — another version, a result the gateway made itself (tool
errors, search/code-mode answers), a 2026-era exchange — goes through the SDK's sieve, and
`keep_number_forms` then puts back the integers it turned into floats.
"""

from __future__ import annotations

from typing import Any

from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

_HANDSHAKE = frozenset(HANDSHAKE_PROTOCOL_VERSIONS)
_FREE_FORM = frozenset({"structuredContent", "_meta", "arguments"})
"""Keys whose values are free JSON: the sieve keeps their `null`s too."""


class RelayedResult(dict[str, Any]):
    """A result as an upstream sent it, validated for that upstream's protocol `version`."""

    __slots__ = ("version",)

    def __init__(self, result: dict[str, Any], version: str | None) -> None:
        super().__init__(result)
        self.version = version


def shape_result(method: str, version: str, result: dict[str, Any]) -> dict[str, Any]:
    """`result` as the client of `version` gets it; a fresh dict the caller owns.

    Raises:
        pydantic.ValidationError: a result that must be sieved is not valid for `version`.
        KeyError: `method` has no result surface (a custom method).
    """
    relayed = as_sent(version, result)
    if relayed is not None:
        return relayed
    shaped: dict[str, Any] = keep_number_forms(_methods.serialize_server_result(method, version, result), result)
    return shaped


def as_sent(version: str, result: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of `result` as the upstream sent it, when that is what the client of `version` should get; else None."""
    if type(result) is not RelayedResult or result.version != version or version not in _HANDSHAKE:
        return None
    if _holds_null(result):
        return None
    relayed = dict(result)
    if relayed.get("resultType") == "complete":
        del relayed["resultType"]  # added by the pipeline; not a field before 2026-07-28
    return relayed


def _holds_null(value: Any) -> bool:
    """Whether a `null` sits where the sieve would drop it (anywhere but inside free-form values)."""
    if type(value) is dict:
        for key, item in value.items():
            if item is None or (key not in _FREE_FORM and type(item) in (dict, list) and _holds_null(item)):
                return True
        return False
    if type(value) is list:
        return any(item is None or (type(item) in (dict, list) and _holds_null(item)) for item in value)
    return False


def keep_number_forms(shaped: Any, original: Any) -> Any:
    """`shaped` (modified in place where it is a dict or list) with integers of `original` put back.

    Only a float that sits where `original` had an integer of the same value is touched, so what the
    sieve dropped or added stays dropped or added. `shaped` must be the caller's own (a fresh dump);
    `original` is only read.
    """
    kind = type(shaped)
    if kind is float:
        if type(original) is int and float(original) == shaped:
            return original
        return shaped
    if kind is dict:
        if type(original) in (dict, RelayedResult):
            for key, value in shaped.items():
                if type(value) in _CONTAINERS_AND_FLOAT and key in original:
                    shaped[key] = keep_number_forms(value, original[key])
        return shaped
    if kind is list and type(original) is list and len(original) == len(shaped):
        for index, value in enumerate(shaped):
            if type(value) in _CONTAINERS_AND_FLOAT:
                shaped[index] = keep_number_forms(value, original[index])
    return shaped


_CONTAINERS_AND_FLOAT = (dict, list, float)
