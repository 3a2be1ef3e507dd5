"""Naming, routing and collision rules of the merged catalog."""

from __future__ import annotations

import re

import mcp_types as types

from mcp_gateway.catalog import MAX_NAME_LENGTH, Catalog, Collision, Contribution, Route, exposed_name
from mcp_gateway.config import DedupeGroup

HASH_SUFFIX = re.compile(r"_[0-9a-f]{8}$")


def tool(name: str) -> types.Tool:
    return types.Tool(name=name, description=f"the {name} tool", input_schema={"type": "object"})


def test_exposed_name_joins_prefix_and_name() -> None:
    assert exposed_name("github", "-", "create_issue") == "github-create_issue"
    assert exposed_name("gh", "__", "create_issue") == "gh__create_issue"


def test_empty_prefix_exposes_name_unchanged() -> None:
    assert exposed_name("", "-", "create_issue") == "create_issue"


def test_name_of_exactly_max_length_is_kept() -> None:
    name = "t" * (MAX_NAME_LENGTH - len("lab-"))

    assert exposed_name("lab", "-", name) == f"lab-{name}"


def test_long_name_is_shortened_deterministically() -> None:
    name = "a_really_long_tool_name_that_an_upstream_server_chose_without_thinking_of_limits"

    first = exposed_name("upstream", "-", name)

    assert len(first) <= MAX_NAME_LENGTH
    assert first.startswith("upstream-a_really_long")
    assert HASH_SUFFIX.search(first)
    assert exposed_name("upstream", "-", name) == first


def test_long_names_sharing_a_long_start_stay_distinct() -> None:
    common = "x" * 70
    names = {exposed_name("lab", "-", f"{common}{suffix}") for suffix in ("_read", "_write", "_delete")}

    assert len(names) == 3
    assert all(len(n) <= MAX_NAME_LENGTH for n in names)


def test_invalid_characters_are_replaced_and_hashed() -> None:
    slashed = exposed_name("fs", "-", "files/read")
    spaced = exposed_name("fs", "-", "read file")

    assert re.fullmatch(r"fs-files_read_[0-9a-f]{8}", slashed)
    assert re.fullmatch(r"fs-read_file_[0-9a-f]{8}", spaced)
    assert slashed != exposed_name("fs", "-", "files_read")  # the hash keeps the sanitised name distinct


def test_build_renames_and_routes_back_to_the_original() -> None:
    long_name = "n" * 80
    original = tool("echo")

    catalog = Catalog.build(
        [
            Contribution("lab", "lab", tools=[original, tool(long_name)]),
            Contribution("notes", "", tools=[tool("search")]),
        ],
        separator="-",
    )

    names = [t.name for t in catalog.tools]
    assert names[0] == "lab-echo"
    assert len(names[1]) <= MAX_NAME_LENGTH
    assert names[2] == "search"
    assert catalog.tool_routes["lab-echo"] == Route("lab", "echo")
    assert catalog.tool_routes[names[1]] == Route("lab", long_name)
    assert catalog.tool_routes["search"] == Route("notes", "search")
    assert catalog.tools[0].description == "the echo tool"
    assert original.name == "echo"  # the upstream's own object is not renamed in place
    assert catalog.collisions == ()


def test_tool_collision_keeps_first_upstream_and_reports_both() -> None:
    catalog = Catalog.build(
        [
            Contribution("alpha", "", tools=[tool("search"), tool("only_alpha")]),
            Contribution("beta", "", tools=[tool("search"), tool("only_beta")]),
        ],
        separator="-",
    )

    assert [t.name for t in catalog.tools] == ["search", "only_alpha", "only_beta"]
    assert catalog.tool_routes["search"] == Route("alpha", "search")
    assert catalog.collisions == (Collision("tool", "search", "alpha", "beta"),)
    description = catalog.collisions[0].describe()
    assert "'alpha'" in description
    assert "'beta'" in description
    assert "'search'" in description


def test_prompt_collision_keeps_first_upstream_and_reports_both() -> None:
    catalog = Catalog.build(
        [
            Contribution("alpha", "", prompts=[types.Prompt(name="summarise")]),
            Contribution("beta", "", prompts=[types.Prompt(name="summarise"), types.Prompt(name="review")]),
            Contribution("gamma", "gamma", prompts=[types.Prompt(name="summarise")]),
        ],
        separator="-",
    )

    assert [p.name for p in catalog.prompts] == ["summarise", "review", "gamma-summarise"]
    assert catalog.prompt_routes["summarise"] == Route("alpha", "summarise")
    assert catalog.prompt_routes["gamma-summarise"] == Route("gamma", "summarise")
    assert catalog.collisions == (Collision("prompt", "summarise", "alpha", "beta"),)
    description = catalog.collisions[0].describe()
    assert "'alpha'" in description
    assert "'beta'" in description


def test_plain_resource_uri_routes_to_its_upstream() -> None:
    catalog = Catalog.build(
        [Contribution("notes", "notes", resources=[types.Resource(uri="notes://note/1", name="first")])],
        separator="-",
    )

    assert [r.uri for r in catalog.resources] == ["notes://note/1"]
    assert catalog.resource_route("notes://note/1") == ("notes", "notes://note/1")


def test_duplicate_resource_uri_is_listed_in_explicit_form() -> None:
    catalog = Catalog.build(
        [
            Contribution("alpha", "alpha", resources=[types.Resource(uri="file:///README.md", name="readme")]),
            Contribution("beta", "beta", resources=[types.Resource(uri="file:///README.md", name="readme")]),
        ],
        separator="-",
    )

    assert [r.uri for r in catalog.resources] == ["file:///README.md", "mcpgw://beta/file:///README.md"]
    assert catalog.resource_route("file:///README.md") == ("alpha", "file:///README.md")
    assert catalog.resource_route("mcpgw://beta/file:///README.md") == ("beta", "file:///README.md")
    assert catalog.resource_route("mcpgw://alpha/file:///README.md") == ("alpha", "file:///README.md")


def test_resource_template_routes_matching_uris() -> None:
    catalog = Catalog.build(
        [
            Contribution("lab", "lab", resources=[types.Resource(uri="lab://item/000", name="item")]),
            Contribution(
                "notes",
                "notes",
                resource_templates=[types.ResourceTemplate(uri_template="notes://note/{id}", name="note")],
            ),
        ],
        separator="-",
    )

    assert [t.uri_template for t in catalog.resource_templates] == ["notes://note/{id}"]
    assert catalog.resource_route("notes://note/abc") == ("notes", "notes://note/abc")
    assert catalog.resource_route("notes://note/") is None  # a variable matches at least one character
    assert catalog.resource_route("notes://other/abc") is None


def test_unknown_uri_has_no_route() -> None:
    catalog = Catalog.build(
        [Contribution("notes", "notes", resources=[types.Resource(uri="notes://note/1", name="first")])],
        separator="-",
    )

    assert catalog.resource_route("notes://note/2") is None
    assert catalog.resource_route("mcpgw://notes") is None  # explicit form without an original URI


# --- dedupe groups -----------------------------------------------------------------------------

REPLICAS = {"kb": DedupeGroup(upstreams=["kb_a", "kb_b", "kb_c"])}


def schema_tool(name: str, schema: dict[str, object]) -> types.Tool:
    return types.Tool(name=name, description=f"the {name} tool", input_schema=schema)


SEARCH_V1 = {"type": "object", "properties": {"q": {"type": "string"}}}
SEARCH_V2 = {"type": "object", "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}}}


def test_route_without_alternates_is_constructible_as_before() -> None:
    route = Route("lab", "echo")

    assert route.alternates == ()
    assert route.candidates == ("lab",)


def test_identical_tools_of_replicas_become_one_entry_with_failover_order() -> None:
    catalog = Catalog.build(
        [
            Contribution("kb_a", "kb_a", tools=[tool("search"), tool("fetch")]),
            Contribution("kb_b", "kb_b", tools=[tool("search"), tool("fetch")]),
            Contribution("kb_c", "kb_c", tools=[tool("search")]),
        ],
        separator="-",
        dedupe_groups=REPLICAS,
    )

    assert [t.name for t in catalog.tools] == ["kb-search", "kb-fetch"]
    assert catalog.tool_routes["kb-search"] == Route("kb_a", "search", ("kb_b", "kb_c"))
    assert catalog.tool_routes["kb-fetch"].candidates == ("kb_a", "kb_b")
    assert catalog.collisions == ()


def test_candidates_follow_the_group_order_not_the_contribution_order() -> None:
    catalog = Catalog.build(
        [Contribution("kb_c", "kb_c", tools=[tool("search")]), Contribution("kb_a", "kb_a", tools=[tool("search")])],
        separator="-",
        dedupe_groups=REPLICAS,
    )

    assert catalog.tool_routes["kb-search"].candidates == ("kb_a", "kb_c")


def test_merged_names_are_stable_when_members_connect_and_disconnect() -> None:
    a = Contribution("kb_a", "kb_a", tools=[tool("search"), tool("fetch")])
    b = Contribution("kb_b", "kb_b", tools=[tool("search"), tool("fetch")])

    both = Catalog.build([a, b], "-", REPLICAS)
    only_b = Catalog.build([b], "-", REPLICAS)
    only_a = Catalog.build([a], "-", REPLICAS)

    assert [t.name for t in both.tools] == [t.name for t in only_a.tools] == [t.name for t in only_b.tools]
    assert only_b.tool_routes["kb-search"] == Route("kb_b", "search")
    assert only_a.tool_routes["kb-search"] == Route("kb_a", "search")


def test_a_tool_whose_schema_differs_is_exposed_under_the_member_prefix() -> None:
    catalog = Catalog.build(
        [
            Contribution("kb_a", "kb_a", tools=[schema_tool("search", SEARCH_V1)]),
            Contribution("kb_b", "kb_b", tools=[schema_tool("search", SEARCH_V2)]),
            Contribution("kb_c", "kb_c", tools=[schema_tool("search", SEARCH_V1)]),
        ],
        separator="-",
        dedupe_groups=REPLICAS,
    )

    assert [t.name for t in catalog.tools] == ["kb-search", "kb_b-search"]
    assert catalog.tool_routes["kb-search"] == Route("kb_a", "search", ("kb_c",))
    assert catalog.tool_routes["kb_b-search"] == Route("kb_b", "search")
    assert catalog.tools[1].input_schema == SEARCH_V2


def test_group_prefix_overrides_the_group_name_and_members_keep_their_place() -> None:
    catalog = Catalog.build(
        [
            Contribution("notes", "notes", tools=[tool("read")]),
            Contribution("kb_a", "kb_a", tools=[tool("search")]),
            Contribution("lab", "lab", tools=[tool("echo")]),
            Contribution("kb_b", "kb_b", tools=[tool("search")]),
        ],
        separator="__",
        dedupe_groups={"kb": DedupeGroup(upstreams=["kb_a", "kb_b"], prefix="docs")},
    )

    assert [t.name for t in catalog.tools] == ["notes__read", "docs__search", "lab__echo"]
    assert catalog.tool_routes["docs__search"].candidates == ("kb_a", "kb_b")


def test_upstreams_outside_groups_still_collide_with_merged_names() -> None:
    catalog = Catalog.build(
        [
            Contribution("kb_a", "kb_a", tools=[tool("search")]),
            Contribution("kb_b", "kb_b", tools=[tool("search")]),
            Contribution("other", "kb", tools=[tool("search")]),
        ],
        separator="-",
        dedupe_groups={"kb": DedupeGroup(upstreams=["kb_a", "kb_b"])},
    )

    assert catalog.tool_routes["kb-search"].candidates == ("kb_a", "kb_b")
    assert catalog.collisions == (Collision("tool", "kb-search", "kb_a", "other"),)


def test_replica_prompts_and_resources_are_listed_once() -> None:
    resource = types.Resource(uri="kb://doc/1", name="doc")
    template = types.ResourceTemplate(uri_template="kb://doc/{id}", name="doc")
    members = [
        Contribution(
            name, name, prompts=[types.Prompt(name="summarise")], resources=[resource], resource_templates=[template]
        )
        for name in ("kb_a", "kb_b")
    ]

    catalog = Catalog.build(members, "-", {"kb": DedupeGroup(upstreams=["kb_a", "kb_b"])})

    assert [p.name for p in catalog.prompts] == ["kb-summarise"]
    assert catalog.prompt_routes["kb-summarise"].candidates == ("kb_a", "kb_b")
    assert [str(r.uri) for r in catalog.resources] == ["kb://doc/1"]
    assert catalog.resource_route("kb://doc/1") == ("kb_a", "kb://doc/1")
    assert catalog.resource_route("mcpgw://kb_b/kb://doc/1") == ("kb_b", "kb://doc/1")
    assert [t.uri_template for t in catalog.resource_templates] == ["kb://doc/{id}"]


def test_without_groups_same_named_upstreams_are_not_merged() -> None:
    catalog = Catalog.build(
        [Contribution("kb_a", "kb_a", tools=[tool("search")]), Contribution("kb_b", "kb_b", tools=[tool("search")])],
        separator="-",
    )

    assert [t.name for t in catalog.tools] == ["kb_a-search", "kb_b-search"]
