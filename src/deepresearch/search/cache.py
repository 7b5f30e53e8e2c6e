"""``search_cache``: a file that remembers every result list, so an identical query is answered from it.

Why: RL rollouts and benchmark reruns send the same queries again and again; a paid provider would
bill each one, a live one would drift between the rollouts being compared, and a slow one would set
the pace of training. The cache wraps the backend *below* the authority re-ranking, so a cached list is
re-ranked like a fresh one; the key is the backend's name, the query as sent and the limit. Errors are
never cached (the next call tries again). The file is SQLite in WAL mode, so the concurrent rollouts of
one trainer, each with its own connection, share it; a corrupt file is an error that names it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

from deepresearch.errors import ConfigError
from deepresearch.search import SearchBackend, SearchHit
from deepresearch.search.wrapped import WrappedBackend

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    backend TEXT NOT NULL,
    query TEXT NOT NULL,
    max_hits INTEGER NOT NULL,
    hits TEXT NOT NULL,
    PRIMARY KEY (backend, query, max_hits)
)
"""


class CachedSearch(WrappedBackend):
    """``backend`` with its result lists remembered in the SQLite file ``path``."""

    def __init__(self, backend: SearchBackend, path: Path) -> None:
        super().__init__(backend)
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"search cache {self.path}: cannot open it ({exc})") from exc

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        key = (self.name, query, limit)
        row = self._db.execute(
            "SELECT hits FROM results WHERE backend = ? AND query = ? AND max_hits = ?", key
        ).fetchone()
        if row is not None:
            try:
                found = [SearchHit(**item) for item in json.loads(row[0])]
            except (ValueError, TypeError):  # a row another version wrote, or damaged: ask again
                found = None
            if found is not None:
                self.hits += 1
                return found
        self.misses += 1
        fresh = await self.backend.search(query, limit=limit)
        payload = json.dumps([dataclasses.asdict(hit) for hit in fresh], ensure_ascii=False)
        self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)", (*key, payload))
        return fresh

    async def aclose(self) -> None:
        self._db.close()
        await super().aclose()

    def close(self) -> None:
        self._db.close()
        super().close()
