"""``deepresearch mcp``: the MCP server on stdin/stdout, for MCP clients that start their servers as
commands. Stdout carries the protocol only; logs and anything else go to stderr. The MCP SDK comes
with the ``server`` extra; without it the command names the extra instead of failing on an import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepresearch.cli.common import needs_extra, run_or_exit
from deepresearch.cli.options import BUDGETS, ENDPOINT, MODEL, SEARCH, SettingsFlags, settings_options
from deepresearch.cli.serve import DataDirOpt


@settings_options(*ENDPOINT, *SEARCH, *BUDGETS, *MODEL, "language")
def mcp(
    data_dir: DataDirOpt = Path("server-data"),
    workers: Annotated[int, typer.Option("--workers", help="Research jobs run at once.")] = 2,
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds a shutdown waits for running steps to finish.")
    ] = 10.0,
    *,
    flags: SettingsFlags,
) -> None:
    """Serve the deep_research tool over MCP on stdin/stdout (jobs and runs are kept in --data-dir)."""
    with needs_extra("server", "deepresearch mcp"):
        from deepresearch.server.mcp_server import serve_stdio

    settings = flags.settings()
    run_or_exit(serve_stdio(settings, data_dir=data_dir, workers=workers, grace_s=grace))
