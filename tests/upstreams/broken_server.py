"""An HTTP "MCP server" that is broken on purpose, for the gateway's fault tests.

Every request to ``/mcp`` gets the same wrong answer, chosen with ``BROKEN_MODE``:

===============  ====================================================================
``BROKEN_MODE``  answer
===============  ====================================================================
``500``          HTTP 500 with a plain-text body (a crashing app behind a proxy)
``garbage``      HTTP 200, ``Content-Type: application/json``, a body that is not JSON
``html``         HTTP 200 with an HTML page (a login portal or a misrouted URL)
===============  ====================================================================

Run ``python tests/upstreams/broken_server.py [--port N]``; ``--transport`` is accepted and ignored so the
server starts like the others (``tests.conftest.upstream_process``).
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ANSWERS = {
    "500": Response("Internal Server Error", status_code=500, media_type="text/plain"),
    "garbage": Response(b"\x00{not json at all", status_code=200, media_type="application/json"),
    "html": Response("<html><body>Please sign in</body></html>", status_code=200, media_type="text/html"),
}


def build_app(mode: str) -> Starlette:
    answer = _ANSWERS[mode]

    async def mcp(request: Request) -> Response:
        await request.body()
        return answer

    return Starlette(routes=[Route("/mcp", endpoint=mcp, methods=["GET", "POST", "DELETE"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", default="http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8933)
    args = parser.parse_args()
    uvicorn.run(build_app(os.environ.get("BROKEN_MODE", "500")), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
