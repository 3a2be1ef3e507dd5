#!/usr/bin/env bash
# Install the npm-based peers that the client-compatibility tests drive:
#   - node@22: the conformance suite needs Node >= 22 and the machine ships Node 20,
#     so a Node 22 binary is installed from npm as a package (the only reachable source).
#   - @modelcontextprotocol/conformance: the official MCP conformance suite.
#   - @modelcontextprotocol/inspector: its `mcp-inspector --cli` is a second real client.
#   - @anthropic-ai/claude-code: the MCP host most users point at the gateway (the package
#     ships its native binary, ~245 MB; it runs here only with a throwaway HOME).
#   - @modelcontextprotocol/server-everything: the reference server in TypeScript, a real
#     upstream whose JSON (integers in annotations and progress) no Python model has touched.
# Everything goes into the git-ignored, project-local `.cache/npm`; nothing global changes.
# Idempotent: a stamp file records the package list, so a second run returns at once.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
    "node@22"
    "@modelcontextprotocol/conformance@0.1.16"
    "@modelcontextprotocol/inspector@2.12.0"
    "@anthropic-ai/claude-code@2.1.197"
    "@modelcontextprotocol/server-everything@2026.8.31"
)
PREFIX=".cache/npm"
BIN="$PREFIX/node_modules/.bin"
STAMP="$PREFIX/.installed"
NODE="$BIN/node"
INSPECTOR="$BIN/mcp-inspector"
CLAUDE="$BIN/claude"
EVERYTHING="$BIN/mcp-server-everything"
CONFORMANCE_PKG="$PREFIX/node_modules/@modelcontextprotocol/conformance"
WANTED="${PACKAGES[*]}"

# The suite's entry point comes from its package.json "bin" field rather than a
# hard-coded path, so a repackaged release keeps working.
conformance_entry() {
    "$NODE" -e '
        const path = require("path");
        const dir = path.resolve(process.argv[1]);
        const pkg = require(path.join(dir, "package.json"));
        const bin = typeof pkg.bin === "string" ? pkg.bin : Object.values(pkg.bin)[0];
        console.log(path.join(dir, bin));
    ' "$CONFORMANCE_PKG"
}

installed() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANTED" && -x "$NODE" && -x "$INSPECTOR" && -x "$CLAUDE" && -x "$EVERYTHING" \
        && -f "$CONFORMANCE_PKG/package.json" ]]
}

if installed; then
    echo "npm peers already installed in $PREFIX"
else
    echo "installing into $PREFIX: $WANTED"
    mkdir -p "$PREFIX"
    rm -f "$STAMP"
    npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact --loglevel=error "${PACKAGES[@]}"

    node_version="$("$NODE" --version)"
    if [[ "$node_version" != v22.* ]]; then
        echo "error: $NODE reports $node_version, expected v22.x" >&2
        exit 1
    fi
    # Smoke-run both tools with the Node 22 binary: a wrong Node dies on import here.
    "$NODE" "$(conformance_entry)" list --server >/dev/null
    "$NODE" "$INSPECTOR" --cli --help >/dev/null
    HOME="$(mktemp -d)" DISABLE_AUTOUPDATER=1 "$CLAUDE" --version >/dev/null

    echo "$WANTED" >"$STAMP"
fi

echo "node:        $(pwd)/$NODE ($("$NODE" --version))"
echo "conformance: $(conformance_entry)"
echo "inspector:   $(pwd)/$INSPECTOR (run as: $INSPECTOR --cli …, with $BIN first on PATH)"
echo "claude code: $(pwd)/$CLAUDE"
echo "everything:  $(pwd)/$EVERYTHING"
