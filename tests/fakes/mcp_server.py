"""A small MCP server for the MCP-client tests, built with the SDK's ``MCPServer``.

It runs in its own process, as a configured server would: over stdio (what a ``command`` entry in
``mcp_servers`` starts) ::

    python -m tests.fakes.mcp_server

or over streamable HTTP on 127.0.0.1, printing ``listening on <url>`` once it accepts connections ::

    python -m tests.fakes.mcp_server --http --port 0 [--token SECRET]

With ``--token`` every HTTP request must carry ``Authorization: Bearer SECRET`` (else 401), so the
tests see configured headers arrive. ``FAKE_MCP_LABEL`` names the server in ``lookup``'s answer (the
configured ``env`` reached the process); ``FAKE_MCP_PID_FILE`` receives the process id, so a test can
check that the process is gone after the run.

Tools: ``lookup(term)``, ``fail(reason)`` (raises, so the call comes back with ``isError``),
``nap(seconds)``, ``long_text(chars)``, ``picture()`` (text plus an image block) and ``dotted.name``
(a name that must be sanitized).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import mcp_types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def build_server() -> MCPServer:
    server = MCPServer("fake-mcp", log_level="WARNING")
    label = os.environ.get("FAKE_MCP_LABEL", "fake")

    @server.tool(description="Look a term up in the fake glossary.")
    def lookup(term: str) -> str:
        return f"{term}: a definition from the {label} glossary."

    @server.tool(description="Always fails with the given reason.")
    def fail(reason: str) -> str:
        raise ToolError(f"the fake tool failed on purpose: {reason}")

    @server.tool(description="Sleeps, then answers.")
    async def nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"slept {seconds}s"

    @server.tool(description="Returns a long text of paragraphs.")
    def long_text(chars: int) -> str:
        paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4 + "\n\n"
        return (paragraph * (chars // len(paragraph) + 1))[:chars]

    @server.tool(description="A caption and a tiny picture.")
    def picture() -> list[mcp_types.ContentBlock]:
        return [
            mcp_types.TextContent(type="text", text="A one-pixel image:"),
            mcp_types.ImageContent(
                type="image", data=base64.b64encode(PNG_1X1).decode(), mime_type="image/png"
            ),
        ]

    @server.tool(name="dotted.name", description="A tool whose name needs sanitizing. " + "x" * 3000)
    def dotted(value: int = 1) -> str:
        return f"dotted {value}"

    return server


def require_token(app: App, token: str) -> App:
    """``app`` behind a bearer-token check on every HTTP request."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"missing or wrong token"})
            return
        await app(scope, receive, send)

    return guarded


async def serve_http(server: MCPServer, port: int, token: str | None) -> None:
    import uvicorn

    app: App = server.streamable_http_app(host="127.0.0.1")
    if token:
        app = require_token(app, token)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    http = uvicorn.Server(config)
    serving = asyncio.create_task(http.serve())
    while not http.started:
        if serving.done():
            raise RuntimeError("the fake MCP server did not start")
        await asyncio.sleep(0.01)
    bound = http.servers[0].sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{bound}/mcp", flush=True)
    await serving


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    options = parser.parse_args()
    if os.environ.get("FAKE_MCP_PID_FILE"):
        Path(os.environ["FAKE_MCP_PID_FILE"]).write_text(str(os.getpid()))
    server = build_server()
    if options.http:
        asyncio.run(serve_http(server, options.port, options.token))
    else:
        server.run("stdio")
    sys.exit(0)


if __name__ == "__main__":
    main()
