#!/usr/bin/env bash
# `make run`: the demo upstream (examples/servers/media_server.py, streamable HTTP) next to the gateway,
# so the demo needs no network. Ports: PORT (gateway, 8080) and MEDIA_PORT (demo upstream, 8931).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PORT="${PORT:-8080}"
MEDIA_PORT="${MEDIA_PORT:-8931}"
PY=.venv/bin/python
LOG=.mcpgw/media.log
mkdir -p .mcpgw

port_in_use() { "$PY" -c "import socket, sys; sys.exit(0 if socket.socket().connect_ex(('127.0.0.1', $1)) == 0 else 1)"; }

for pair in "PORT:$PORT" "MEDIA_PORT:$MEDIA_PORT"; do
    if port_in_use "${pair#*:}"; then
        echo "make run: port ${pair#*:} is taken; pick another, e.g. make run ${pair%%:*}=$(( ${pair#*:} + 1 ))" >&2
        exit 1
    fi
done

"$PY" examples/servers/media_server.py --transport http --port "$MEDIA_PORT" >"$LOG" 2>&1 &
media=$!
trap 'kill $media 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
    if ! kill -0 "$media" 2>/dev/null; then
        echo "make run: the demo upstream did not start (log: $LOG):" >&2
        cat "$LOG" >&2
        exit 1
    fi
    port_in_use "$MEDIA_PORT" && break
    sleep 0.1
done

MEDIA_PORT="$MEDIA_PORT" .venv/bin/mcpgw serve --config examples/gateway.yaml --port "$PORT"
