"""`compact` mode: every tool stays listed and callable, but costs a fraction of the context.

A tool keeps its name, input schema structure (types, `required`, enums, defaults, titles) and
annotations; its description shrinks to the first sentence and every `description` keyword inside
the input schema is dropped. The output schema is left alone: clients validate structured results
against it. `compact_tool` is pure and never mutates its argument, so callers can compute the
compact list once per catalog snapshot and share it between callers.
"""

from __future__ import annotations

import re
from typing import Any

import mcp_types as types

# Keywords whose value is one subschema, a name → subschema map, or a list of subschemas
# (JSON Schema 2020-12 plus the draft-07 spellings upstreams still send).
_SUBSCHEMA = frozenset(
    {
        "additionalProperties",
        "additionalItems",
        "contains",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_SUBSCHEMA_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SUBSCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})

# A sentence ends at . ! or ? followed by whitespace, unless the word is a common abbreviation.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "eg", "ie", "etc", "vs", "cf", "approx", "incl"})
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def first_sentence(text: str | None) -> str | None:
    """The first sentence of `text` (up to the first paragraph break), whitespace collapsed."""
    if not text:
        return text
    paragraph = " ".join(_PARAGRAPH_BREAK.split(text.strip(), maxsplit=1)[0].split())
    for match in _SENTENCE_END.finditer(paragraph):
        word = paragraph[: match.start()].rsplit(" ", 1)[-1].lower()
        if word not in _ABBREVIATIONS:
            return paragraph[: match.end()]
    return paragraph


def strip_descriptions(schema: Any) -> Any:
    """A copy of a JSON Schema without `description` keywords at any depth.

    Only keywords are removed: a property *named* "description" is a parameter and stays.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in _SUBSCHEMA_MAP and isinstance(value, dict):
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMA_LIST and isinstance(value, list):
            out[key] = [strip_descriptions(sub) for sub in value]
        elif key in _SUBSCHEMA:
            out[key] = strip_descriptions(value)
        else:
            out[key] = value  # enums, defaults, examples, const: data, not schemas
    return out


def compact_tool(tool: types.Tool) -> types.Tool:
    """The same tool with a first-sentence description and no descriptions in its input schema."""
    return tool.model_copy(
        update={"description": first_sentence(tool.description), "input_schema": strip_descriptions(tool.input_schema)}
    )
