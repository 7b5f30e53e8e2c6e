"""The composition root: build every component a run talks to from ``Settings``, typed where they meet.

``Services.open`` builds the search backend, the fetcher, the embedded model server (``--model local``),
the chat client and the MCP sessions — in that order, before any run directory exists, so a bad setting
creates nothing — and ``aclose`` releases them in reverse. ``research.py`` drives a run with them; the
CLI's ``search`` and ``index`` commands use ``search_once`` and ``open_local_index`` without loading the
agent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from deepresearch.config import Settings, default_cache_dir, default_data_dir
from deepresearch.errors import ConfigError, LLMError
from deepresearch.llm.tokens import count_tokens
from deepresearch.tools.base import ShellConfig
from deepresearch.tools.registry import Registry, register

if TYPE_CHECKING:
    from pathlib import Path

    from deepresearch.agent.loop import Agent
    from deepresearch.agent.state import RunState
    from deepresearch.fetch.http import HttpFetcher
    from deepresearch.llm.client import ChatClient, LLMConfig
    from deepresearch.llm.local.server import LocalModelServer
    from deepresearch.runs import Recorder
    from deepresearch.search import SearchBackend, SearchHit
    from deepresearch.search.local import LocalIndex
    from deepresearch.tools.mcp import McpTools

ProgressCallback = Callable[[int, int], None]
"""``(processed, total)`` prompt tokens while the embedded model loads a prompt."""


def _shell_config(settings: Settings) -> ShellConfig:
    return ShellConfig(
        sandbox=settings.shell_sandbox,
        memory_mb=settings.shell_memory_mb,
        max_timeout=settings.shell_max_timeout,
    )


def open_local_index(settings: Settings) -> LocalIndex:
    """The local index named by ``settings.index`` (default: in the user data dir)."""
    from deepresearch.search.local import LocalIndex

    return LocalIndex(settings.index or default_data_dir() / "index.sqlite")


async def search_once(query: str, settings: Settings, *, limit: int = 10) -> list[SearchHit]:
    """One search through the configured backend, re-ranked as the agent sees it (``deepresearch search``)."""
    from deepresearch.search.backends import open_search

    backend = open_search(settings)
    try:
        return list(await backend.search(query, limit=limit))
    finally:
        await backend.aclose()


def llm_config(settings: Settings, role: Literal["agent", "judge"] = "agent") -> LLMConfig:
    """The one mapping from settings to a chat client's config: the agent's endpoint, or the judge's
    (``judge_*`` settings, each falling back to the agent's). Prices apply to both."""
    from deepresearch.llm import pricing
    from deepresearch.llm.client import LLMConfig

    if role == "judge":
        base_url = settings.judge_base_url or settings.base_url
        model = settings.judge_model or settings.model
        if not base_url or not model:
            raise ConfigError(
                "no judge endpoint: pass --judge-model and --judge-base-url (or base_url/model)"
            )
        key = settings.judge_api_key or settings.api_key
        agent_only: dict[str, Any] = {}
    else:
        base_url, model = _require_endpoint(settings)
        key = settings.api_key
        agent_only = {
            "temperature": settings.temperature,
            "max_output_tokens": settings.max_output_tokens,
            "tool_mode": settings.effective_tool_mode,
            "prompt_progress": settings.is_local,
        }
    return LLMConfig(
        base_url=base_url,
        model=model,
        api_key=key,
        stream=settings.stream,
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        retry_base_delay=settings.retry_base_delay,
        retry_max_delay=settings.retry_max_delay,
        prices=pricing.overrides(settings.prices),
        **agent_only,
    )


def _require_endpoint(settings: Settings) -> tuple[str, str]:
    """``(base_url, model)``, or the error a user must fix first."""
    if not settings.base_url or not settings.model:
        raise ConfigError(
            "no model endpoint configured: pass --base-url and --model (or set DEEPRESEARCH_BASE_URL "
            "and DEEPRESEARCH_MODEL, or put base_url/model in deepresearch.toml)"
        )
    return settings.base_url, settings.model


def _client(
    settings: Settings,
    counter: Callable[[str], int] = count_tokens,
    on_progress: ProgressCallback | None = None,
) -> ChatClient:
    from deepresearch.llm.client import ChatClient

    return ChatClient(llm_config(settings), count_tokens=counter, on_progress=on_progress)


def open_fetcher(settings: Settings) -> HttpFetcher:
    from pydantic import ValidationError

    from deepresearch.fetch.http import FetchConfig, HttpFetcher

    try:
        config = FetchConfig(
            timeout_s=settings.fetch_timeout,
            max_bytes=settings.fetch_max_bytes,
            allow_private=settings.allow_private_urls,
            allowlist=settings.fetch_allowlist,
            host_delay_s=settings.fetch_host_delay,
            host_burst=settings.fetch_host_burst,
            cache_path=settings.fetch_cache or default_cache_dir() / "fetch.sqlite",
            cache_ttl_s=settings.fetch_cache_ttl,
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid fetch settings: {exc.errors()[0]['msg']}") from exc
    return HttpFetcher(config)


@dataclass
class Services:
    """What a run talks to. Built before the run directory, so a bad setting creates nothing."""

    client: ChatClient
    search: SearchBackend
    fetcher: HttpFetcher
    shell: ShellConfig
    sandbox: str
    server: LocalModelServer | None = None
    """The embedded model server of ``--model local`` (stopped with the rest)."""
    mcp: McpTools | None = None
    """The open MCP sessions of ``mcp_servers`` and their tools (``tools.mcp.McpTools``), closed with
    the rest; opened here, in the run's task, because anyio must close them in the task that opened them."""
    shell_limits: dict[str, str] = field(default_factory=dict)
    """How the shell is confined here (``tools.sandbox.describe_limits``), recorded in ``run.json``."""

    @property
    def count_tokens(self) -> Callable[[str], int]:
        """The model's own tokenizer for the embedded model (o200k undercounts small models' tokens
        by about a third), else o200k."""
        return self.server.count_tokens if self.server is not None else count_tokens

    @property
    def local_threads(self) -> dict[str, Any]:
        """How the embedded server's thread count was chosen, for ``run.json``; empty without one."""
        if self.server is None:
            return {}
        return {
            "threads": self.server.threads_used,
            "decided": self.server.threads_decided,
            "timings_ms": self.server.thread_timings,
        }

    @classmethod
    async def open(
        cls, settings: Settings, on_progress: ProgressCallback | None = None, *, search: bool = True
    ) -> Services:
        """``search=False`` is for work that never searches (a synthesis step over given documents):
        no backend is opened, so none has to be configured; a search then raises ``ConfigError``."""
        from deepresearch.search.backends import open_search
        from deepresearch.tools.sandbox import describe_limits, detect_sandbox

        shell = _shell_config(settings)
        sandbox = str(detect_sandbox(shell))
        limits = describe_limits(shell, workspace_max_bytes=settings.workspace_max_mb * 1024 * 1024)
        if not settings.is_local:
            _require_endpoint(settings)  # the first thing a user must fix, named before the index
        backend: SearchBackend = open_search(settings) if search else _NoSearch()
        fetcher = server = client = mcp = None
        try:
            fetcher = open_fetcher(settings)
            if settings.is_local:
                server = await _start_local_server(settings)
                settings = settings.model_copy(
                    update={
                        "base_url": server.base_url,
                        "model": server.model_name,
                        "api_key": SecretStr(server.api_key),
                        "tool_mode": settings.effective_tool_mode,  # decided by "local", kept after renaming
                    }
                )
            client = _client(
                settings, server.count_tokens if server is not None else count_tokens, on_progress
            )
            if settings.mcp_servers:  # last: a server that fails to start fails the run before it starts
                from deepresearch.tools.mcp import open_servers

                mcp = await open_servers(settings.mcp_servers)
        except BaseException:
            if client is not None:
                await client.aclose()
            if server is not None:
                await asyncio.to_thread(server.stop)
            if fetcher is not None:
                await fetcher.aclose()
            await backend.aclose()
            raise
        return cls(client, backend, fetcher, shell, sandbox, server, mcp, limits)

    def agent(
        self,
        settings: Settings,
        state: RunState,
        recorder: Recorder,
        tools: Registry,
        workspace: Path,
        stop: asyncio.Event | None = None,
    ) -> Agent:
        """The ReAct loop wired to these services: its budgets and context policy from ``settings``,
        a tool context per call that lends the run's ``workspace``, search, fetcher and shell."""
        from deepresearch.agent.budget import Budget
        from deepresearch.agent.context import ContextPolicy
        from deepresearch.agent.loop import Agent, LoopConfig
        from deepresearch.tools.base import ToolContext

        def make_context(step: int, call_id: str) -> ToolContext:
            return ToolContext(
                workspace=workspace,
                sources=state.sources,
                state=state.tool_state,
                step=step,
                call_id=call_id,
                search=self.search,
                fetcher=self.fetcher,
                shell=self.shell,
                workspace_max_bytes=settings.workspace_max_mb * 1024 * 1024,
            )

        config = LoopConfig(
            budget=Budget(
                max_steps=settings.max_steps,
                max_total_tokens=settings.max_total_tokens,
                max_cost_usd=settings.max_cost,
                max_wall_seconds=settings.max_wall_time,
            ),
            policy=ContextPolicy(
                upper=settings.context_upper,
                lower=settings.context_lower,
                fixed_text=json.dumps([t.schema() for t in tools.values()]),
                count=self.count_tokens,
            ),
            tool_result_max_chars=settings.tool_result_max_chars,
            encoded_messages=settings.effective_tool_mode == "native",
        )
        return Agent(
            model=self.client,
            tools=tools,
            state=state,
            recorder=recorder,
            config=config,
            make_context=make_context,
            stop=stop,
        )

    def registry(self, tools: Registry) -> Registry:
        """``tools`` plus the MCP servers' tools, in a new dict; a name taken twice is a ``ConfigError``."""
        merged = dict(tools)
        for tool in self.mcp.tools if self.mcp is not None else ():
            register(merged, tool)
        return merged

    def explain(self, exc: BaseException) -> None:
        """Add the embedded server's crash report to ``exc`` when that is why the run failed."""
        if self.server is None:
            return
        try:
            self.server.check()
        except LLMError as crash:
            exc.add_note(str(crash))

    async def aclose(self) -> None:
        if self.mcp is not None:
            await self.mcp.aclose()
        await self.client.aclose()
        await self.fetcher.aclose()
        await self.search.aclose()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)


class _NoSearch:
    """The search backend of services opened without one."""

    name = "none"

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        raise ConfigError("this command opened no search backend, yet something asked it to search")

    async def aclose(self) -> None:
        return None


async def _start_local_server(settings: Settings) -> LocalModelServer:
    from deepresearch.llm.local.models import model_path
    from deepresearch.llm.local.server import LocalModelServer

    path = model_path(settings.model or "local", default_data_dir())
    server = LocalModelServer(path, context=settings.local_context, threads=settings.local_threads)
    await server.astart()
    return server
