"""Choose and build the search backend a run uses, from the settings, by name.

A backend is named by ``settings.search``: ``local`` (the embedded index, the default, offline), a
web provider, or ``auto``. ``BACKENDS`` maps each name to ``module:Class`` and the module is imported
only when chosen, so a run never loads providers it does not use; adding a provider is one module
plus one entry here (and its setting in ``_SETTING``).

``auto`` takes the first provider whose key or URL is set, in ``PREFERENCE`` order, else ``local``.
The order puts free, self-hosted SearXNG first, then the APIs that return page text with the hits
(Tavily, Exa), then the plain web indexes (Brave, Serper), then Jina and StepFun. DuckDuckGo needs no
key and so is never "configured": it is used only when asked for by name, because it answers
scrapers with rate-limit pages. ``search_endpoint`` replaces the chosen provider's API root.

``open_search`` refuses a local index that is missing or holds no document, with the commands that
make one: an agent searching nothing writes a report from nothing, and the run, the search command and
the benchmark all open their backend here before they create anything or contact a model.
"""

from __future__ import annotations

import logging
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from deepresearch.config import Settings, default_data_dir
from deepresearch.errors import ConfigError
from deepresearch.search import SearchBackend
from deepresearch.search.wrapped import WrappedBackend

if TYPE_CHECKING:
    from deepresearch.search.local import LocalIndex

logger = logging.getLogger(__name__)

_PROVIDERS = "deepresearch.search.providers"
BACKENDS: dict[str, str] = {
    "local": "deepresearch.search.local:LocalIndex",
    "searxng": f"{_PROVIDERS}.searxng:SearxngSearch",
    "tavily": f"{_PROVIDERS}.tavily:TavilySearch",
    "exa": f"{_PROVIDERS}.exa:ExaSearch",
    "brave": f"{_PROVIDERS}.brave:BraveSearch",
    "serper": f"{_PROVIDERS}.serper:SerperSearch",
    "jina": f"{_PROVIDERS}.jina:JinaSearch",
    "stepfun": f"{_PROVIDERS}.stepfun:StepFunSearch",
    "ddg": f"{_PROVIDERS}.duckduckgo:DuckDuckGoSearch",
}
"""Backend name → ``module:Class``."""
PREFERENCE: tuple[str, ...] = ("searxng", "tavily", "exa", "brave", "serper", "jina", "stepfun")
"""The order in which ``auto`` picks among configured providers."""
_SETTING: dict[str, str] = {
    "searxng": "searxng_url",
    "tavily": "tavily_api_key",
    "exa": "exa_api_key",
    "brave": "brave_api_key",
    "serper": "serper_api_key",
    "jina": "jina_api_key",
    "stepfun": "stepfun_search_api_key",
}
"""The setting each provider cannot work without."""
INDEX_ADVICE = (
    "make one with `deepresearch index fetch debian-docs` (the Debian documentation) or "
    "`deepresearch index add PATH` (your own files), or search the web with --search"
)
"""What to do about a missing or empty local index, in every message that reports one."""


def configured_providers(settings: Settings) -> list[str]:
    """Providers whose key or URL is set, in ``PREFERENCE`` order."""
    return [name for name in PREFERENCE if _value(settings, _SETTING[name])]


def backend_name(settings: Settings) -> str:
    """The backend ``settings.search`` means: ``auto`` resolved, unknown names refused."""
    name = settings.search.strip().lower()
    if name == "auto":
        configured = configured_providers(settings)
        return configured[0] if configured else "local"
    if name not in BACKENDS:
        raise ConfigError(
            f"unknown search backend {settings.search!r}; choose one of: auto, {', '.join(BACKENDS)}"
        )
    return name


def open_backend(settings: Settings) -> SearchBackend:
    """Build the backend ``settings.search`` names (``ConfigError`` when its key or URL is missing)."""
    name = backend_name(settings)
    if settings.search.strip().lower() == "auto":
        logger.info("search: auto chose %s", name)
    module, _, attribute = BACKENDS[name].partition(":")
    cls: Any = getattr(import_module(module), attribute)
    backend: SearchBackend = cls(*_arguments(name, settings), **_options(name, settings))
    return backend


def open_search(settings: Settings) -> SearchBackend:
    """The backend the agent uses: ``open_backend``, re-ranked — densely for the local index when
    ``settings.dense`` is on, then by source authority (the report's authority boost) for every backend."""
    from deepresearch.search.authority import AuthorityList, AuthorityRanked

    authority = AuthorityList.load(settings.authority_file)  # a bad user file fails before any search
    backend = open_backend(settings)
    if settings.search_cache is not None:
        from deepresearch.search.cache import CachedSearch

        backend = CachedSearch(backend, settings.search_cache)
    if backend.name == "local":
        from deepresearch.search.local import LocalIndex  # loaded already: open_backend built one

        inner = backend.backend if isinstance(backend, WrappedBackend) else backend
        if isinstance(inner, LocalIndex):
            require_documents(inner)
    if settings.dense and backend.name == "local":
        from deepresearch.search.dense import HybridRanked, MiniLMEmbedder

        backend = HybridRanked(backend, MiniLMEmbedder(), candidates=20)
    return AuthorityRanked(backend, authority)


def check_search(settings: Settings) -> None:
    """Raise what ``open_search`` would about the backend itself (an unknown name, a missing key or
    URL, a missing or empty local index) while building nothing that needs closing: for a command
    that opens its backend later, once per task (``bench run``)."""
    name = backend_name(settings)
    arguments = _arguments(name, settings)
    if name == "local":
        from deepresearch.search.local import LocalIndex

        index = LocalIndex(arguments[0])
        require_documents(index)
        index.close()


def local_index_path(settings: Settings) -> Path:
    """The local index file: ``settings.index``, else ``index.sqlite`` in the user data dir."""
    return settings.index or default_data_dir() / "index.sqlite"


def no_index(path: Path, *, empty: bool = False) -> ConfigError:
    """The error for a local index that does not exist (or, ``empty``, holds no document)."""
    what = f"the local index at {path} holds no document" if empty else f"no local index at {path}"
    return ConfigError(f"{what}: {INDEX_ADVICE}")


def require_documents(index: LocalIndex) -> None:
    """Raise ``no_index`` unless ``index`` exists and holds a document, closing it when it raises.

    A missing file stays missing: nothing is created to find that out."""
    if not index.path.is_file():
        raise no_index(index.path)
    try:
        documents = index.has_documents()
    except BaseException:
        index.close()
        raise
    if not documents:
        index.close()
        raise no_index(index.path, empty=True)


def _arguments(name: str, settings: Settings) -> list[Any]:
    if name == "local":
        return [local_index_path(settings)]
    if name == "ddg":
        return []
    setting = _SETTING[name]
    value = settings.search_endpoint if name == "searxng" and settings.search_endpoint else None
    value = value or _value(settings, setting)
    if not value:
        what = "an instance URL" if name == "searxng" else "an API key"
        from deepresearch.search.providers._http import key_variables

        raise ConfigError(
            f"search backend {name!r} needs {what}: set {setting} (environment "
            f"{key_variables(setting)}, or `{setting}` in deepresearch.toml)"
        )
    return [value]


def _options(name: str, settings: Settings) -> dict[str, Any]:
    if name == "local":
        return {}
    options: dict[str, Any] = {"timeout": settings.search_timeout}
    if settings.search_endpoint and name != "searxng":
        options["endpoint"] = settings.search_endpoint
    return options


def _value(settings: Settings, setting: str) -> str:
    value = getattr(settings, setting)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value.strip() if isinstance(value, str) else ""
