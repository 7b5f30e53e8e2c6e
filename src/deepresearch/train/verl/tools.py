"""Our tools as verl tools: ``BaseTool`` subclasses that run ``deepresearch.tools`` in verl's rollouts.

verl's tool agent loop calls ``create`` → ``execute`` → ``release`` for every tool call, and shows the
model the schema ``tool_schema`` dumps. ``RegistryTool`` takes both from our registry: the schema is
our tool's own (``Tool.schema()``, not rewritten by hand), and ``execute`` goes through
``deepresearch.tools.execute.execute``, the same code the agent loop runs, so validation errors and
tool failures reach the model as ``Error: …`` results exactly as they do in ``deepresearch research``.

Each instance (one call) gets its own ``ToolContext``: a fresh workspace directory (opened pages are
saved there, as in a run) removed on ``release``, and its own source registry — citation keys are a
function of the URL, so a key the model saw in one call is the same in every other. The search
backend and fetcher are built once per tool object, on the first call, inside the rollout worker's
event loop, from ``Settings`` (environment, config file) updated with the tool config's ``settings``
(``tools.yaml``: search backend and index path, never secrets).

This module imports verl; it runs only in the verl venv (``.ci/verl-env``).
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from pydantic import ConfigDict, PrivateAttr
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import (
    OpenAIFunctionParametersSchema,
    OpenAIFunctionPropertySchema,
    OpenAIFunctionSchema,
    OpenAIFunctionToolSchema,
    ToolResponse,
)

from deepresearch.config import Settings, load_settings
from deepresearch.llm.messages import ToolCall
from deepresearch.search import SearchBackend
from deepresearch.sources import SourceRegistry
from deepresearch.tools.base import Tool, ToolContext
from deepresearch.tools.execute import execute
from deepresearch.tools.registry import builtin_tools

if TYPE_CHECKING:
    from deepresearch.fetch.http import HttpFetcher


class _Property(OpenAIFunctionPropertySchema):  # type: ignore[misc]  # verl is untyped here
    """verl's property schema knows ``type``, ``description`` and ``enum`` only; ours also uses
    ``anyOf``, ``items``, ``default``, ``minimum``…, which must reach the chat template unchanged."""

    model_config = ConfigDict(extra="allow")
    type: str | list[str] | None = None


class _Parameters(OpenAIFunctionParametersSchema):  # type: ignore[misc]  # verl is untyped here
    model_config = ConfigDict(extra="allow")
    properties: dict[str, _Property]


class _Function(OpenAIFunctionSchema):  # type: ignore[misc]  # verl is untyped here
    model_config = ConfigDict(extra="allow")
    parameters: _Parameters


class _ToolSchema(OpenAIFunctionToolSchema):  # type: ignore[misc]  # verl is untyped here
    """The registry's schema, validated as verl's type and dumped verbatim: verl dumps it with
    ``exclude_none``, which would drop ``"default": null`` from our optional arguments."""

    function: _Function
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(self._raw)


def registry_schema(tool: Tool) -> OpenAIFunctionToolSchema:
    """``tool``'s OpenAI schema from our registry, in verl's schema type."""
    raw = tool.schema()
    schema = _ToolSchema.model_validate(raw)
    schema._raw = raw
    return schema


class RegistryTool(BaseTool):  # type: ignore[misc]
    """One of our tools, named by ``config["name"]``, for verl's multi-turn rollouts."""

    def __init__(self, config: dict[str, Any], tool_schema: OpenAIFunctionToolSchema | None = None) -> None:
        name = str(config.get("name") or "")
        tools = builtin_tools()
        if name not in tools:
            raise ValueError(f"tools.yaml: unknown deepresearch tool {name!r}; use one of {', '.join(tools)}")
        if tool_schema is not None:
            raise ValueError(f"tools.yaml: leave out tool_schema for {name}: the model sees our tool's own")
        self.tool = tools[name]
        self.overrides: dict[str, Any] = dict(config.get("settings") or {})
        root = config.get("workspace_root") or Path(tempfile.gettempdir()) / "deepresearch-verl"
        self.workspace_root = Path(root)
        """Where each call's workspace is made (``<root>/<instance id>``, removed on release)."""
        self.contexts: dict[str, ToolContext] = {}
        self.search: SearchBackend | None = None
        self.fetcher: HttpFetcher | None = None
        self.settings: Settings | None = None
        super().__init__(config, None)  # so BaseTool asks get_openai_tool_schema: the registry's schema
        from deepresearch.search.backends import check_search

        check_search(self._settings())  # a missing index or key fails the worker now, not every call

    def get_openai_tool_schema(self) -> OpenAIFunctionToolSchema:
        return registry_schema(self.tool)

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, ToolResponse]:
        """A fresh context for one call: its own workspace and source registry."""
        instance_id = instance_id or uuid4().hex
        settings = self._settings()
        workspace = self.workspace_root / instance_id
        workspace.mkdir(parents=True, exist_ok=True)
        self.contexts[instance_id] = ToolContext(
            workspace=workspace,
            sources=SourceRegistry(),
            state={},
            workspace_max_bytes=settings.workspace_max_mb * 1024 * 1024,
        )
        return instance_id, ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict[str, Any]]:
        """Run the call through our executor; the text is what the model reads, ``data`` the metrics."""
        ctx = self.contexts[instance_id]
        ctx.search, ctx.fetcher = await self._services()
        call = ToolCall(id=instance_id, name=self.tool.name, arguments=json.dumps(parameters))
        result = await execute(call, {self.tool.name: self.tool}, ctx)
        metrics = {"is_error": result.is_error, "sources": len(result.sources)}
        return ToolResponse(text=result.text), 0.0, metrics

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        ctx = self.contexts.pop(instance_id, None)
        if ctx is not None:
            shutil.rmtree(ctx.workspace, ignore_errors=True)

    async def aclose(self) -> None:
        """Close the search backend and the fetcher (verl never does; a test or a script may)."""
        if self.search is not None:
            await self.search.aclose()
        if self.fetcher is not None:
            await self.fetcher.aclose()
        self.search = self.fetcher = None

    def _settings(self) -> Settings:
        if self.settings is None:
            self.settings = load_settings(self.overrides)
        return self.settings

    async def _services(self) -> tuple[SearchBackend, HttpFetcher]:
        """The search backend and fetcher, built on the first call in the worker's event loop."""
        if self.search is None or self.fetcher is None:
            from deepresearch.search.backends import open_search
            from deepresearch.services import open_fetcher

            settings = self._settings()
            self.search = open_search(settings)
            self.fetcher = open_fetcher(settings)
        return self.search, self.fetcher
