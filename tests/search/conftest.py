"""Fixtures for the search tests: the sample corpus, a writable copy of it, and an index built from it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepresearch.search.local import LocalIndex

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


@pytest.fixture(scope="session")
def corpus_root() -> Path:
    """``tests/data/corpus``, the checked-in sample corpus (read only)."""
    return CORPUS


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of ``tests/data/corpus`` that a test may edit."""
    return Path(shutil.copytree(CORPUS, tmp_path / "corpus"))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LocalIndex]:
    """An index file that does not exist yet."""
    with LocalIndex(tmp_path / "index" / "index.sqlite") as local_index:
        yield local_index


@pytest.fixture
def corpus_index(index: LocalIndex, corpus: Path) -> LocalIndex:
    """``index`` with the whole (copied) corpus added, for tests that change the files or the index."""
    report = index.add_paths([corpus])
    assert report.errors == []
    return index


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    """One index of ``CORPUS`` itself, built once per module, for tests that only search and read."""
    with LocalIndex(tmp_path_factory.mktemp("shared") / "index.sqlite") as local_index:
        report = local_index.add_paths([CORPUS])
        assert report.errors == []
        yield local_index
