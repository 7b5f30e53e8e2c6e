"""``deepresearch serve``: the HTTP API, web page, OpenAI-compatible endpoint and MCP server.

FastAPI, uvicorn and the MCP SDK come with the ``server`` extra; without them the command says which
extra to install instead of failing on an import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepresearch.cli.common import needs_extra, run_or_exit
from deepresearch.cli.options import BUDGETS, ENDPOINT, MODEL, SEARCH, SettingsFlags, settings_options

DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", help="Where jobs and their run directories are kept.")
]


@settings_options(*ENDPOINT, *SEARCH, *BUDGETS, *MODEL, "language")
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (anything but loopback needs a token).")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 8000,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="DEEPRESEARCH_SERVER_TOKEN", help="API token clients send as Bearer."),
    ] = None,
    data_dir: DataDirOpt = Path("server-data"),
    workers: Annotated[int, typer.Option("--workers", help="Research jobs run at once.")] = 4,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allow browser calls from this origin.")
    ] = None,
    rate: Annotated[int, typer.Option("--rate", help="Job submissions per client per minute.")] = 30,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Also answer to this Host (name or name:port), e.g. a reverse proxy's; '*': any.",
        ),
    ] = None,
    trust_forwarded_for: Annotated[
        bool,
        typer.Option(
            "--trust-forwarded-for",
            help="Rate-limit by the client in X-Forwarded-For (only behind a proxy that sets it).",
        ),
    ] = False,
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds a shutdown waits for running steps to finish.")
    ] = 30.0,
    *,
    flags: SettingsFlags,
) -> None:
    """Serve research over HTTP: JSON API with live events, a web page, /v1/chat/completions and MCP."""
    from pydantic import SecretStr

    with needs_extra("server", "deepresearch serve"):
        import uvicorn  # noqa: F401  (imported when the server starts; checked before anything begins)

        from deepresearch.server.app import ServerConfig
        from deepresearch.server.run import serve as run_server

    settings = flags.settings()
    server_config = ServerConfig(
        host=host,
        port=port,
        token=SecretStr(token) if token else None,
        data_dir=data_dir,
        workers=workers,
        grace_s=grace,
        cors_origins=cors_origin or [],
        rate_per_minute=rate,
        allowed_hosts=allowed_host or [],
        trust_forwarded_for=trust_forwarded_for,
    )

    def ready(url: str) -> None:
        typer.echo(f"listening on {url}", err=True)

    run_or_exit(run_server(settings, server_config, ready=ready))
