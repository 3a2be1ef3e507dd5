"""`compact` mode: first-sentence descriptions, no descriptions inside the input schema."""

from __future__ import annotations

import copy
from typing import Any

import mcp_types as types

from mcp_gateway.toolmodes.compact import compact_tool, first_sentence

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Arguments of create_issue.",
    "properties": {
        "title": {"type": "string", "title": "Title", "description": "One-line summary."},
        "description": {"type": "string", "description": "A parameter that happens to be called description."},
        "priority": {"type": "string", "enum": ["low", "high"], "default": "low", "description": "How urgent."},
        "labels": {"type": "array", "items": {"type": "string", "description": "A label."}, "description": "Labels."},
        "assignee": {"$ref": "#/$defs/person"},
        "due": {"anyOf": [{"type": "string", "description": "A date."}, {"type": "null"}]},
        "meta": {
            "type": "object",
            "description": "Extra data.",
            "properties": {"source": {"type": "string", "description": "Where it came from."}},
            "additionalProperties": {"type": "string", "description": "Any other key."},
        },
    },
    "required": ["title"],
    "$defs": {"person": {"type": "object", "description": "A person.", "properties": {"login": {"type": "string"}}}},
}


def issue_tool() -> types.Tool:
    return types.Tool(
        name="create_issue",
        title="Create issue",
        description="Create a new issue in the tracker. The issue starts open.\n\nArgs: see the schema.",
        input_schema=copy.deepcopy(SCHEMA),
        output_schema={"type": "object", "properties": {"id": {"type": "string", "description": "The new id."}}},
        annotations=types.ToolAnnotations(destructive_hint=False),
    )


def test_description_is_cut_to_the_first_sentence() -> None:
    assert compact_tool(issue_tool()).description == "Create a new issue in the tracker."


def test_first_sentence_rules() -> None:
    assert first_sentence("Search issues, e.g. by label. Slow.") == "Search issues, e.g. by label."
    assert first_sentence("Uses version 1.2 of the API! More text.") == "Uses version 1.2 of the API!"
    assert first_sentence("No full stop here\n\nSecond paragraph.") == "No full stop here"
    assert first_sentence("Spread over\n  two lines. Then more.") == "Spread over two lines."
    assert first_sentence(None) is None
    assert first_sentence("") == ""


def test_every_description_keyword_is_removed_but_parameters_named_description_stay() -> None:
    schema = compact_tool(issue_tool()).input_schema

    assert "description" not in str(_keywords(schema))
    assert schema["properties"]["description"] == {"type": "string"}
    assert schema["properties"]["labels"] == {"type": "array", "items": {"type": "string"}}
    assert schema["properties"]["due"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["properties"]["meta"]["properties"]["source"] == {"type": "string"}
    assert schema["properties"]["meta"]["additionalProperties"] == {"type": "string"}
    assert schema["$defs"]["person"] == {"type": "object", "properties": {"login": {"type": "string"}}}


def test_names_types_required_enums_titles_and_annotations_are_kept() -> None:
    original = issue_tool()
    compact = compact_tool(original)

    assert compact.name == "create_issue"
    assert compact.title == "Create issue"
    assert compact.annotations == original.annotations
    assert compact.output_schema == original.output_schema
    assert compact.input_schema["required"] == ["title"]
    assert compact.input_schema["properties"]["title"] == {"type": "string", "title": "Title"}
    assert compact.input_schema["properties"]["priority"] == {
        "type": "string",
        "enum": ["low", "high"],
        "default": "low",
    }
    assert compact.input_schema["properties"]["assignee"] == {"$ref": "#/$defs/person"}


def test_the_input_tool_is_not_mutated() -> None:
    original = issue_tool()

    compact_tool(original)

    assert original == issue_tool()
    assert original.input_schema == SCHEMA


def test_compact_is_smaller_on_the_wire() -> None:
    original = issue_tool()

    def size(tool: types.Tool) -> int:
        return len(tool.model_dump_json(by_alias=True, exclude_none=True))

    assert size(compact_tool(original)) < size(original) * 0.8


def _keywords(node: Any, under_properties: bool = False) -> list[str]:
    """Every schema keyword at any depth (property names under `properties` are not keywords)."""
    if isinstance(node, list):
        return [k for item in node for k in _keywords(item)]
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        if not under_properties:
            found.append(key)
        found += _keywords(value, under_properties=key in ("properties", "$defs") and not under_properties)
    return found
