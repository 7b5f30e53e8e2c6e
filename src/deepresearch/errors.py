"""Exceptions, sorted by who has to act on them.

Errors from httpx and the tokenizer are translated into these at one boundary per package (``llm/``,
``fetch/``, ``search/``) and chained with ``from``; nothing here logs itself. The CLI catches
``DeepResearchError`` only, prints one line and exits non-zero.

    DeepResearchError
    ├── ConfigError            a setting is missing or invalid (the user or the developer must fix it)
    ├── LLMError               the model endpoint failed after retries
    │   ├── LLMTimeout
    │   ├── LLMRateLimited
    │   └── LLMBadResponse     malformed JSON, a truncated stream, an unexpected shape
    ├── FetchError             a page could not be read
    │   ├── URLBlocked         the URL points at a private, loopback or otherwise refused address
    │   ├── FetchTimeout
    │   └── ContentTooLarge
    ├── SearchError            a search backend failed
    ├── ToolError              a tool refused its arguments (shown to the model, never fatal)
    │   └── PathOutsideWorkspace
    ├── RunStoreError          the run directory cannot be read or written
    │   └── RunCorrupted       a run file does not parse (names the path and the line)
    └── RewardUnavailable      some rubrics could not be graded, so a reward would be a guess
"""

from __future__ import annotations

import errno
from pathlib import Path


class DeepResearchError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(DeepResearchError):
    """A setting is missing or invalid."""


class LLMError(DeepResearchError):
    """The model endpoint failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class LLMTimeout(LLMError):
    """The endpoint did not answer within the per-call timeout."""


class LLMRateLimited(LLMError):
    """HTTP 429 after every retry; ``retry_after`` holds the server's last hint."""


class LLMBadResponse(LLMError):
    """The endpoint answered with something that is not a usable chat completion."""


class FetchError(DeepResearchError):
    """A URL could not be fetched or read."""


class URLBlocked(FetchError):
    """The URL was refused before any request was sent (scheme, private address, …)."""


class FetchTimeout(FetchError):
    """The server did not answer in time."""


class ContentTooLarge(FetchError):
    """The body (after decompression) exceeded the configured maximum."""


class SearchError(DeepResearchError):
    """A search backend failed; the message says which and why."""


class ToolError(DeepResearchError):
    """A tool refused its input; the message is written for the model."""


class PathOutsideWorkspace(ToolError):
    """A path escapes the run's workspace (``..``, absolute, or a symlink out)."""


class RunStoreError(DeepResearchError):
    """The run directory cannot be read or written."""


class RunCorrupted(RunStoreError):
    """A file of the run directory does not parse."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line


class RewardUnavailable(DeepResearchError):
    """Some rubrics could not be graded, so the reward would be a guess; the message lists them."""


def surfaced(exc: BaseException, run_dir: Path) -> BaseException:
    """What the caller should see of ``exc``: one error a person can act on, not a task group.

    A step's tool calls run in a task group, so a result that cannot be recorded, or a long output
    that cannot be saved in the workspace, arrives as a group. When the group holds nothing but our
    errors and storage failures, the first of them is raised; a storage ``OSError`` (disk full, quota,
    file too large, I/O error, read-only) becomes a ``RunStoreError``. Anything else stays as it is.
    """
    leaf = exc
    if isinstance(exc, BaseExceptionGroup):
        ours, rest = exc.split(lambda e: isinstance(e, DeepResearchError) or storage_failure(e))
        if ours is None or rest is not None:
            return exc
        leaf = ours
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
    if isinstance(leaf, OSError) and storage_failure(leaf):
        error = RunStoreError(f"cannot write in {run_dir}: {leaf.strerror or leaf}")
        error.__cause__ = leaf
        return error
    return leaf


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def storage_failure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS
