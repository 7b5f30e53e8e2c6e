"""The CLI's index and search commands work without loading the agent (the composition root,
``services.py``, builds what they need; ``research.py`` and ``agent/`` stay unimported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_index_stats_and_search_do_not_import_the_agent(corpus_index: Path) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from deepresearch.cli import app\n"
        "runner = CliRunner()\n"
        f"assert runner.invoke(app, ['index', 'stats', '--index', {str(corpus_index)!r}]).exit_code == 0\n"
        f"assert runner.invoke(app, ['search', 'BM25', '--index', {str(corpus_index)!r}]).exit_code == 0\n"
        "agent = ('deepresearch.agent', 'deepresearch.research')\n"
        "print(sorted(m for m in sys.modules if m.startswith(agent)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
