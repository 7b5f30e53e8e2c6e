"""How many CPU threads the embedded model server uses: the candidates to measure, and the cache of
what was measured.

On a busy machine llama.cpp's default (one thread per physical core) can be ten times slower than a
single thread: its threads wait for each other at every layer, and one of them is always descheduled.
So the server measures the candidates once per model file and machine, and this cache keeps the
winner (``local-threads.json`` in the user cache dir) so later starts load the model once.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MAX_MEASURED = 16
"""Most threads tried when measuring; beyond that a CPU run is bound by memory bandwidth."""
CACHE_FILE = "local-threads.json"
CACHE_ENTRIES = 32


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity outside Linux
        return os.cpu_count() or 1


def candidates(cpus: int) -> list[int]:
    """Thread counts to measure, most first: all CPUs (capped), half of them from four up, and one."""
    most = max(1, min(cpus, MAX_MEASURED))
    candidates = [most, most // 2 if most >= 4 else most, 1]
    return sorted(set(candidates), reverse=True)


def cache_key(model: Path, cpus: int) -> str:
    """The model file (path, size, modification time: a re-downloaded file is measured again) and CPUs."""
    try:
        stat = model.stat()
    except OSError:
        return f"{model}|?|cpus={cpus}"
    return f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|cpus={cpus}"


def read_cache(path: Path) -> dict[str, Any]:
    """The cached choices; an unreadable or foreign file is an empty cache (it only saves a measurement)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.info("ignoring the thread-count cache %s (%s)", path, exc)
        return {}
    choices = data.get("choices") if isinstance(data, dict) else None
    return choices if isinstance(choices, dict) else {}


def write_cache(path: Path, key: str, threads: int | None, timings: dict[int, float | None]) -> None:
    """Add one choice (the newest last, at most ``CACHE_ENTRIES``), written whole and renamed."""
    choices = read_cache(path)
    choices.pop(key, None)
    choices[key] = {
        "threads": threads,
        "timings_ms": {str(n): ms for n, ms in timings.items()},
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    kept = dict(list(choices.items())[-CACHE_ENTRIES:])
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"format": 1, "choices": kept}, indent=1), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("could not cache the thread count in %s: %s", path, exc)
        temporary.unlink(missing_ok=True)
