"""Ready-made document collections for the local index, so the first offline run has something to search.

``deepresearch index add PATH`` indexes one's own documents; a *corpus* is a collection we know how
to fetch and cut into sections with their real upstream URLs, so a cited hit links to the public
page (``https://www.postgresql.org/docs/15/sql-createindex.html#…``), not to a file on this machine.
Each corpus is one module with a ``build`` function; ``CORPORA`` maps its name to that function's
dotted path and ``fetch_corpus`` imports it only when asked (nothing is imported here up front).

A builder writes its sections as JSONL files (``{id, title, url, text}`` per line) into its work
directory and adds them with ``LocalIndex.add_paths``, so the index's content hashing makes a rerun
over unchanged sources add nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from deepresearch.errors import ConfigError
from deepresearch.search.local import AddReport, LocalIndex

CORPORA: dict[str, str] = {
    "debian-docs": "deepresearch.search.corpora.debian_docs:build",
}
"""Corpus name → ``module:function`` of its builder."""

Progress = Callable[[str], None]
"""Receives one short line per step (downloading, unpacking, splitting, indexing)."""


@dataclass(slots=True)
class CorpusPart:
    """One source of a corpus (for ``debian-docs``, one Debian package) and what became of it."""

    name: str
    source: Path
    """Where it came from on disk (the ``.deb`` file)."""
    records: Path
    """The JSONL file of its sections that was added to the index."""
    pages: int
    sections: int
    reused: bool
    """The JSONL file was already up to date: nothing was downloaded, unpacked or split."""
    added: AddReport
    seconds: float


@dataclass(slots=True)
class CorpusReport:
    """What ``fetch_corpus`` did, part by part."""

    name: str
    parts: list[CorpusPart] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sections(self) -> int:
        return sum(part.sections for part in self.parts)

    @property
    def added(self) -> AddReport:
        """The index reports of all parts, summed."""
        total = AddReport()
        for part in self.parts:
            total.added += part.added.added
            total.replaced += part.added.replaced
            total.skipped += part.added.skipped
            total.removed += part.added.removed
            total.passages += part.added.passages
            total.errors.extend(part.added.errors)
        return total


class CorpusBuilder(Protocol):
    """The function a corpus module exposes as ``build``."""

    def __call__(
        self,
        *,
        index: LocalIndex,
        packages: list[str] | None,
        work_dir: Path,
        progress: Progress | None,
    ) -> CorpusReport: ...


def corpus_names() -> list[str]:
    return sorted(CORPORA)


def fetch_corpus(
    name: str,
    *,
    index: LocalIndex,
    packages: list[str] | None,
    work_dir: Path,
    progress: Progress | None = None,
) -> CorpusReport:
    """Fetch corpus ``name`` into ``work_dir`` and add it to ``index``; ``packages`` narrows its parts.

    Raises ``ConfigError`` for an unknown corpus or part and when the tools it needs are missing.
    """
    target = CORPORA.get(name)
    if target is None:
        raise ConfigError(f"unknown corpus {name!r}; available: {', '.join(corpus_names())}")
    module_name, _, function = target.partition(":")
    builder: CorpusBuilder = getattr(importlib.import_module(module_name), function)
    return builder(index=index, packages=packages, work_dir=work_dir, progress=progress)
