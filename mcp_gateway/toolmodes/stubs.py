"""Typed Python stubs for code mode, generated from each tool's JSON Schema.

Every tool the caller may use becomes `async def <func>(*, arg: T = default, ...) -> R` in the
module `tools.<upstream>`. The stubs serve twice: the sandbox type-checks model-written code
against them before running it (a wrong argument name or type never reaches an upstream), and
`get_tool_docs` shows them to the model as documentation.

Return convention (what the host function hands the sandbox): the tool's `structuredContent`
when present, typed from `outputSchema` when the tool declares one; otherwise its text, parsed
as JSON when a single text block holds a JSON object or array. Tools without an `outputSchema`
are therefore typed `-> Any`: `dict[str, Any]` would make the checker reject correct code on
tools that answer with plain text.

Why one module of this length: one translation, JSON Schema → Python type expressions, whose
cases (unions, enums, nested objects, defaults, names that are not identifiers) are all needed
together and tested together (`tests/test_stubs.py`).

Names are derived deterministically from the upstream and tool names (`python_identifier`);
collisions within a module get `_2`, `_3`, … in sorted order, so the same catalog always yields
the same stubs.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp_gateway.toolmodes.base import ModalTool

PACKAGE = "tools"
"""The module model code imports: `import tools; await tools.<upstream>.<func>(...)`."""

RETURN_CONVENTION = (
    "Each function returns the tool's structured result (typed when the tool declares one), "
    "else its text, parsed as JSON when it is a JSON object or array. A tool error raises RuntimeError."
)

_HEADER = "from typing import Any, Literal, NotRequired, TypedDict\n"

# Names the stubs use in annotations: a function or TypedDict field with one of these names
# would shadow it for every later annotation in the module (the checker then accepts anything).
_ANNOTATION_NAMES = frozenset(
    {"Any", "Literal", "NotRequired", "TypedDict", "list", "dict", "str", "int", "float", "bool"}
)

_MAX_DEPTH = 24
_ONE_LINE_SIGNATURE = 90
_REF = re.compile(r"#/(\$defs|definitions)/([^/]+)")
_JSON_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def python_identifier(name: str) -> str:
    """A valid, non-keyword Python identifier for `name`, the same every time.

    Characters outside `[A-Za-z0-9_]` become `_`; leading underscores are dropped (the sandbox
    hides `_` names in host modules), a leading digit gets an `x`, keywords get a trailing `_`.
    """
    ident = re.sub(r"[^0-9A-Za-z_]+", "_", name).lstrip("_")
    if not ident:
        return "unnamed"
    if ident[0].isdigit():
        ident = "x" + ident
    if keyword.iskeyword(ident):
        ident += "_"
    return ident


@dataclass(frozen=True, slots=True)
class StubbedTool:
    """One tool as code mode exposes it: where it lives in `tools` and how its keywords map back."""

    tool: ModalTool
    module: str
    """The attribute of `tools`: `tools.<module>`."""
    func: str
    """The function in that module."""
    params: Mapping[str, str]
    """Python keyword → JSON property name (they differ for names such as `from` or `user-id`)."""
    stub: str
    """The TypedDicts this tool needs, then its `async def`."""

    @property
    def path(self) -> str:
        """`<module>.<func>`, the name `list_tools` shows and `get_tool_docs` accepts."""
        return f"{self.module}.{self.func}"


@dataclass(slots=True)
class ToolLayout:
    """The caller's tools arranged as the `tools` package: module → function → tool."""

    modules: dict[str, dict[str, StubbedTool]]
    stubs: dict[str, str] = field(default_factory=dict)
    """`.pyi` text: `tools` (the package) and `tools.<module>` for each module."""

    def find(self, name: str) -> StubbedTool | None:
        """A tool by `module.func`, `tools.module.func` or exposed name."""
        if name.startswith(PACKAGE + "."):
            name = name[len(PACKAGE) + 1 :]
        module, _, func = name.partition(".")
        found = self.modules.get(module, {}).get(func)
        if found is not None:
            return found
        for functions in self.modules.values():
            for stubbed in functions.values():
                if stubbed.tool.name == name:
                    return stubbed
        return None


def build_layout(tools: Iterable[ModalTool]) -> ToolLayout:
    """Arrange tools into modules and functions, with collision-free names and their stubs."""
    by_upstream: dict[str, list[ModalTool]] = {}
    for tool in tools:
        by_upstream.setdefault(tool.upstream, []).append(tool)
    module_names = _unique_names(sorted(by_upstream), set())
    layout = ToolLayout(modules={})
    layout.stubs[PACKAGE] = "".join(f"from . import {m} as {m}\n" for m in sorted(module_names.values()))
    for upstream, members in sorted(by_upstream.items()):
        module = module_names[upstream]
        # Tools whose name already is an identifier keep it; the rest take what is left.
        members.sort(key=lambda t: (python_identifier(t.original) != t.original, t.original, t.name))
        taken = set(_ANNOTATION_NAMES)
        funcs = [_unique_name(tool.original, taken, _ANNOTATION_NAMES) for tool in members]
        functions: dict[str, StubbedTool] = {}
        for tool, func in zip(members, funcs, strict=True):
            writer = _StubWriter(func, taken)
            stub = writer.function(tool)
            functions[func] = StubbedTool(tool, module, func, writer.params, stub)
        layout.modules[module] = dict(sorted(functions.items()))
        body = "\n\n".join(s.stub for s in layout.modules[module].values())
        layout.stubs[f"{PACKAGE}.{module}"] = f"{_HEADER}\n\n{body}"
    return layout


def module_stubs(tools: Sequence[ModalTool]) -> dict[str, str]:
    """The `.pyi` text of the `tools` package (key `tools`) and each upstream module (`tools.<module>`)."""
    return build_layout(tools).stubs


def tool_stub(tool: ModalTool, func: str | None = None) -> str:
    """One tool's TypedDicts and `async def` stub; `func` defaults to `python_identifier(tool.original)`
    (with a trailing `_` when that would shadow a name the stubs use, e.g. `list`)."""
    taken = set(_ANNOTATION_NAMES)
    name = func or _unique_name(tool.original, taken, _ANNOTATION_NAMES)
    return _StubWriter(name, taken | {name}).function(tool)


def _unique_names(names: Sequence[str], taken: set[str]) -> dict[str, str]:
    """Map each distinct name to a distinct identifier, in the given order."""
    return {name: _unique_name(name, taken) for name in dict.fromkeys(names)}


def _unique_name(name: str, taken: set[str], reserved: frozenset[str] = frozenset()) -> str:
    """`python_identifier(name)`, suffixed `_2`, `_3`, … until it is not in `taken` (which it joins)."""
    base = python_identifier(name)
    if base in reserved:
        base += "_"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def _camel(name: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", name)
    camel = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return camel if camel and not camel[0].isdigit() else "T" + camel


class _StubWriter:
    """Renders one tool: its TypedDict classes (nested ones first) and its `async def`."""

    def __init__(self, func: str, taken: set[str]) -> None:
        self.func = func
        self.prefix = _camel(func)
        self.taken = taken
        self.classes: list[str] = []
        self.params: dict[str, str] = {}
        self.variadic = False
        self._root: Mapping[str, Any] = {}
        self._refs: dict[str, str] = {}
        self._resolving: set[str] = set()

    def function(self, tool: ModalTool) -> str:
        schema = _as_schema(tool.tool.input_schema)
        self._root = schema
        properties = _properties(schema)
        required = set(_required(schema))
        taken_params: set[str] = set()
        lines: list[str] = []
        docs: list[str] = []
        for prop, sub in properties.items():
            param = _unique_name(prop, taken_params)
            self.params[param] = prop
            annotation = self.annotation(sub, f"{self.prefix}{_camel(prop)}")
            default = "" if prop in required else f" = {_default(sub)}"
            lines.append(f"{param}: {annotation}{default}")
            docs.append(_param_doc(param, prop, sub))
        extra = schema.get("additionalProperties")
        if not properties and (extra is True or (isinstance(extra, dict) and extra)):
            self.variadic = True
            lines.append(f"**kwargs: {self.annotation(extra, self.prefix + 'Value')}")
        if lines and not self.variadic:
            lines.insert(0, "*")
        signature = ", ".join(lines)
        if len(signature) + len(self.func) > _ONE_LINE_SIGNATURE:
            signature = "".join(f"\n    {line}," for line in lines) + "\n"
        output = tool.tool.output_schema
        if output:
            self._root, self._refs = _as_schema(output), {}  # its `$defs` are its own
            returns = self.annotation(self._root, f"{self.prefix}Result")
        else:
            returns = "Any"
        doc = _docstring(tool.tool.description or tool.tool.title or "", docs)
        definition = f"async def {self.func}({signature}) -> {returns}:" + (f"\n{doc}" if doc else " ...\n")
        return "\n\n".join([*self.classes, definition])

    def annotation(self, schema: Any, hint: str, depth: int = 0) -> str:
        """The Python type for a JSON Schema; anything it cannot express precisely is `Any`."""
        if depth > _MAX_DEPTH or not isinstance(schema, dict) or not schema:
            return "Any"
        if isinstance(schema.get("$ref"), str):
            return self._ref(schema["$ref"], depth)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                rest = {k: v for k, v in schema.items() if k != key}
                return _union(
                    self.annotation(_overlay(rest, option), f"{hint}{i + 1 if i else ''}", depth + 1)
                    for i, option in enumerate(options)
                )
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            if len(parts) == 1:
                return self.annotation(_overlay(rest, parts[0]), hint, depth + 1)
            for part in parts:
                if isinstance(part, dict) and isinstance(part.get("$ref"), str):
                    part = self._deref(part["$ref"])
                rest = _overlay(rest, part)
            rest.pop("$ref", None)
            return self.annotation(rest, hint, depth + 1)
        literal = _literal(schema)
        if literal is not None:
            return literal
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return _union(self.annotation({**schema, "type": k}, hint, depth + 1) for k in kinds if isinstance(k, str))
        if kinds is None:
            if "properties" in schema or "additionalProperties" in schema:
                kinds = "object"
            elif "items" in schema:
                kinds = "array"
            else:
                return "Any"
        python = self._single(schema, kinds, hint, depth)
        return _union([python, "None"]) if schema.get("nullable") is True else python

    def _single(self, schema: Mapping[str, Any], kind: Any, hint: str, depth: int) -> str:
        if kind in _JSON_TYPES:
            return _JSON_TYPES[kind]
        if kind == "array":
            items = schema.get("items")
            return f"list[{self.annotation(items, hint + 'Item', depth + 1) if isinstance(items, dict) else 'Any'}]"
        if kind == "object":
            if _properties(schema):
                return self._typed_dict(schema, hint, depth)
            extra = schema.get("additionalProperties")
            value = self.annotation(extra, hint + "Value", depth + 1) if isinstance(extra, dict) else "Any"
            return f"dict[str, {value}]"
        return "Any"

    def _typed_dict(self, schema: Mapping[str, Any], hint: str, depth: int, name: str | None = None) -> str:
        name = name or self._class_name(hint)
        required = set(_required(schema))
        fields: list[tuple[str, str]] = []
        for key, sub in _properties(schema).items():
            annotation = self.annotation(sub, name + _camel(key), depth + 1)
            fields.append((key, annotation if key in required else f"NotRequired[{annotation}]"))
        docs = [f"{k}: {_one_line(str(s['description']))}" for k, s in _properties(schema).items() if _described(s)]
        self.classes.append(_render_typed_dict(name, fields, docs, self.taken))
        return name

    def _ref(self, ref: str, depth: int) -> str:
        if ref in self._refs:
            return self._refs[ref]
        target = self._deref(ref)
        if not isinstance(target, dict) or ref in self._resolving:
            return "Any"
        hint = self.prefix + _camel(ref.rsplit("/", 1)[-1])
        if _properties(target) and not any(k in target for k in ("anyOf", "oneOf", "allOf", "$ref")):
            # Registered before the body is rendered so a recursive schema refers to itself.
            name = self._refs[ref] = self._class_name(hint)
            return self._typed_dict(target, hint, depth + 1, name=name)
        self._resolving.add(ref)
        try:
            return self.annotation(target, hint, depth + 1)
        finally:
            self._resolving.discard(ref)

    def _deref(self, ref: str) -> Any:
        match = _REF.fullmatch(ref)
        return self._root.get(match.group(1), {}).get(match.group(2)) if match else None

    def _class_name(self, hint: str) -> str:
        candidate, n = hint, 1
        while candidate in self.taken:
            n += 1
            candidate = f"{hint}{n}"
        self.taken.add(candidate)
        return candidate


def _as_schema(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _overlay(base: Mapping[str, Any], extra: Any) -> dict[str, Any]:
    """`base` with `extra`'s keys on top; properties and required lists are combined."""
    if not isinstance(extra, dict):
        return dict(base)
    merged = {**base, **extra}
    if "properties" in base or "properties" in extra:
        merged["properties"] = {**_properties(base), **_properties(extra)}
        merged["required"] = [*_required(base), *_required(extra)]
    return merged


def _properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    return {str(k): v for k, v in properties.items()} if isinstance(properties, dict) else {}


def _required(schema: Mapping[str, Any]) -> list[str]:
    required = schema.get("required")
    return [r for r in required if isinstance(r, str)] if isinstance(required, list) else []


def _literal(schema: Mapping[str, Any]) -> str | None:
    """`Literal[...]` for `enum`/`const` of strings, integers and booleans; `None` when not expressible."""
    if "const" in schema:
        values = [schema["const"]]
    elif isinstance(schema.get("enum"), list) and schema["enum"]:
        values = list(schema["enum"])
    else:
        return None
    literals = [v for v in values if v is not None]
    if not all(isinstance(v, str | int) for v in literals):
        return None
    parts = [f"Literal[{', '.join(repr(v) for v in literals)}]"] if literals else []
    return _union([*parts, *(["None"] if None in values else [])])


def _union(parts: Iterable[str]) -> str:
    unique = list(dict.fromkeys(parts))
    if not unique or "Any" in unique:
        return "Any"
    unique.sort(key=lambda p: p == "None")
    return " | ".join(unique)


def _default(schema: Any) -> str:
    """The schema's default as a literal when it is a simple value, else `...` (the upstream decides)."""
    value = schema.get("default", ...) if isinstance(schema, dict) else ...
    if value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 80):
        return repr(value)
    return "..."


def _described(schema: Any) -> bool:
    return isinstance(schema, dict) and isinstance(schema.get("description"), str) and bool(schema["description"])


def _param_doc(param: str, prop: str, schema: Any) -> str:
    text = _one_line(str(schema["description"])) if _described(schema) else ""
    if param != prop:
        text = f'(JSON name "{prop}") {text}'.rstrip()
    return f"{param}: {text}".rstrip() if text else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _docstring(description: str, params: list[str]) -> str:
    body = description.strip()
    args = [p for p in params if p]
    if args:
        body += ("\n\n" if body else "") + "Args:\n" + "\n".join(f"    {a}" for a in args)
    if not body:
        return ""
    text = _escape(body)
    if "\n" not in text and not text.endswith(('"', "\\")):
        return f'    """{text}"""\n'
    return f'    """{_indent(text)}\n    """\n'


def _render_typed_dict(name: str, fields: list[tuple[str, str]], docs: list[str], taken: set[str]) -> str:
    class_syntax = all(k.isidentifier() and not keyword.iskeyword(k) and k not in taken for k, _ in fields)
    if not class_syntax:
        items = ", ".join(f"{k!r}: {a}" for k, a in fields)
        comment = "".join(f"# {_escape_comment(d)}\n" for d in docs)
        return f'{comment}{name} = TypedDict("{name}", {{{items}}})\n'
    doc = _docstring("\n".join(docs), [])
    body = "".join(f"    {k}: {a}\n" for k, a in fields)
    return f"class {name}(TypedDict):\n{doc}{body}"


def _escape(text: str) -> str:
    text = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text)
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _escape_comment(text: str) -> str:
    return " ".join(text.split())


def _indent(text: str) -> str:
    return text.replace("\n", "\n    ").replace("\n    \n", "\n\n")
