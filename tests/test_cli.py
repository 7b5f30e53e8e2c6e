from pathlib import Path

from typer.testing import CliRunner

from deepresearch.cli import app
from tests.agent.scripts import research_script

CORPUS = Path(__file__).parent / "data" / "corpus"
runner = CliRunner()


def test_index_search_research_runs_resume(fake_llm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    index = tmp_path / "idx.sqlite"
    added = runner.invoke(app, ["index", "add", str(CORPUS), "--index", str(index)])
    assert added.exit_code == 0 and "12 added" in added.output, added.output
    stats = runner.invoke(app, ["index", "stats", "--index", str(index)])
    assert stats.exit_code == 0 and "12 documents" in stats.output
    found = runner.invoke(app, ["search", "BM25 saturation", "--index", str(index), "-k", "3"])
    assert found.exit_code == 0 and "bm25-ranking.md" in found.output
    removed = runner.invoke(app, ["index", "remove", str(CORPUS / "zh"), "--index", str(index)])
    assert removed.exit_code == 0 and "1 document(s) removed" in removed.output
    assert "11 documents" in runner.invoke(app, ["index", "stats", "--index", str(index)]).output

    fake_llm.script = research_script
    monkeypatch.setenv("DEEPRESEARCH_INDEX", str(index))
    monkeypatch.setenv("DEEPRESEARCH_BASE_URL", fake_llm.base_url)
    result = runner.invoke(
        app, ["research", "How does BM25 rank documents?", "--model", "fake-model", "--out", "runs/one"]
    )
    assert result.exit_code == 0, result.output
    assert "report: runs/one/report.md" in result.stdout and "2 sources cited, 1 unresolved" in result.stdout
    assert "[step 1] model: 1 tool call(s)" in result.stderr and "[step 6] report written" in result.stderr
    assert (tmp_path / "runs" / "one" / "report.md").exists()

    listing = runner.invoke(app, ["runs"])
    assert listing.exit_code == 0 and "runs/one" in listing.output and "done" in listing.output

    again = runner.invoke(app, ["resume", "runs/one"])
    assert again.exit_code == 1 and "already finished" in again.stderr


def test_errors_are_one_line_and_exit_non_zero(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = runner.invoke(app, ["research", "q"])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no model endpoint configured")
    assert "Traceback" not in missing.output
    monkeypatch.setenv("DEEPRESEARCH_MAX_STEPS", "lots")
    bad = runner.invoke(app, ["research", "q"])
    assert bad.exit_code == 2 and "DEEPRESEARCH_MAX_STEPS" in bad.stderr
    monkeypatch.delenv("DEEPRESEARCH_MAX_STEPS")
    not_a_run = runner.invoke(app, ["resume", str(tmp_path)])
    assert not_a_run.exit_code == 1 and "not a run directory" in not_a_run.stderr
