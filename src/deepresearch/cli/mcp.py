"""``deepresearch mcp``: the MCP server on stdin/stdout, for MCP clients that start their servers as
commands. Stdout carries the protocol only; logs and anything else go to stderr. The MCP SDK comes
with the ``server`` extra; without it the command names the extra instead of failing on an import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepresearch.cli.common import (
    ApiKeyFileOpt,
    ApiKeyOpt,
    BaseUrlOpt,
    ConfigOpt,
    IndexOpt,
    MaxStepsOpt,
    ModelOpt,
    SearchOpt,
    cli_settings,
    needs_extra,
    run_or_exit,
)
from deepresearch.cli.serve import DataDirOpt


def mcp(
    data_dir: DataDirOpt = Path("server-data"),
    workers: Annotated[int, typer.Option("--workers", help="Research jobs run at once.")] = 2,
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds a shutdown waits for running steps to finish.")
    ] = 10.0,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    search: SearchOpt = None,
    index: IndexOpt = None,
    max_steps: MaxStepsOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the deep_research tool over MCP on stdin/stdout (jobs and runs are kept in --data-dir)."""
    with needs_extra("server", "deepresearch mcp"):
        from deepresearch.server.mcp_server import serve_stdio

    settings = cli_settings(
        config,
        base_url=base_url,
        model=model,
        api_key=api_key,
        api_key_file=api_key_file,
        search=search,
        index=index,
        max_steps=max_steps,
    )
    run_or_exit(serve_stdio(settings, data_dir=data_dir, workers=workers, grace_s=grace))
