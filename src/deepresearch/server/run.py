"""Run the app under uvicorn and say where it listens once the socket is bound (port 0 picks one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from deepresearch.config import Settings
from deepresearch.server.app import ServerConfig, create_app


async def serve(
    settings: Settings, config: ServerConfig, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; shutdown lets running jobs finish their step (``config.grace_s``)."""
    import uvicorn

    app = create_app(settings, config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # the guard decides whether X-Forwarded-For names the client
            timeout_graceful_shutdown=int(config.grace_s) + 5,
        )
    )

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown}:{port}")

    watcher = asyncio.create_task(announce())
    try:
        await server.serve()
    finally:
        watcher.cancel()
