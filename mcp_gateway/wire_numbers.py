"""Numbers keep the JSON form the upstream gave them, after a typed model shaped a result.

The SDK shapes every result it sends through the protocol version's pydantic models (the "sieve":
fields of other revisions dropped, `None`s left out). A field typed `float` there turns an
integer into a float: an upstream's `"priority": 1` reaches the client as `1.0`, progress
`{"progress": 1, "total": 4}` as `1.0` / `4.0`. The values are equal, the bytes are not, and a
client that compares or hashes results sees a difference the upstream never made.

`keep_number_forms` walks the shaped result beside the one it was shaped from and puts each such
integer back. Only a float that sits where the original had an integer of the same value is
touched, so whatever the sieve dropped or added stays dropped or added.
"""

from __future__ import annotations

from typing import Any


def keep_number_forms(shaped: Any, original: Any) -> Any:
    """`shaped` (modified in place where it is a dict or list) with integers of `original` put back.

    `shaped` must be the caller's own (a fresh dump); `original` is only read.
    """
    kind = type(shaped)
    if kind is float:
        if type(original) is int and float(original) == shaped:
            return original
        return shaped
    if kind is dict:
        if type(original) is dict:
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
