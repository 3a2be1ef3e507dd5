#!/usr/bin/env bash
# `make run`: the demo upstream (examples/servers/media_server.py, streamable HTTP) and a stand-in model
# provider (examples/servers/llm_provider.py) next to the gateway, so the demo needs no network and no
# provider account. Ports: PORT (gateway, 8080), MEDIA_PORT (demo upstream, 8931), LLM_PORT (provider, 8933).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PORT="${PORT:-8080}"
MEDIA_PORT="${MEDIA_PORT:-8931}"
LLM_PORT="${LLM_PORT:-8933}"
PY=.venv/bin/python
LOG=.mcpgw/media.log
mkdir -p .mcpgw

port_in_use() { "$PY" -c "import socket, sys; sys.exit(0 if socket.socket().connect_ex(('127.0.0.1', $1)) == 0 else 1)"; }

for pair in "PORT:$PORT" "MEDIA_PORT:$MEDIA_PORT" "LLM_PORT:$LLM_PORT"; do
    if port_in_use "${pair#*:}"; then
        echo "make run: port ${pair#*:} is taken; pick another, e.g. make run ${pair%%:*}=$(( ${pair#*:} + 1 ))" >&2
        exit 1
    fi
done

"$PY" examples/servers/media_server.py --transport http --port "$MEDIA_PORT" >"$LOG" 2>&1 &
media=$!
LLM_LOG=.mcpgw/llm_provider.log
"$PY" examples/servers/llm_provider.py --port "$LLM_PORT" --key demo-provider-key --echo >"$LLM_LOG" 2>&1 &
provider=$!
trap 'kill $media $provider 2>/dev/null || true' EXIT INT TERM

wait_for() {  # wait_for PID PORT LOG WHAT
    for _ in $(seq 100); do
        if ! kill -0 "$1" 2>/dev/null; then
            echo "make run: the $4 did not start (log: $3):" >&2
            cat "$3" >&2
            exit 1
        fi
        port_in_use "$2" && return 0
        sleep 0.1
    done
}
wait_for "$media" "$MEDIA_PORT" "$LOG" "demo upstream"
wait_for "$provider" "$LLM_PORT" "$LLM_LOG" "demo model provider"

MEDIA_PORT="$MEDIA_PORT" LLM_PORT="$LLM_PORT" .venv/bin/mcpgw serve --config examples/gateway.yaml --port "$PORT"
