"""Names shared across modules, so signatures say what a string means."""

from typing import TypeAlias

UpstreamName: TypeAlias = str
"""An upstream's configured name: `[A-Za-z0-9_]+`."""

ToolName: TypeAlias = str
"""A tool name as the upstream knows it."""

ExposedName: TypeAlias = str
"""A tool or prompt name as clients of the gateway see it (prefixed, maybe shortened)."""
