"""Output injection: what the model or a hostile page writes must stay text wherever it is shown — in
``report.html`` (no script, no event handler, no ``javascript:`` link, nothing loaded from outside), in
``report.md`` (a reference stays one line), and on the user's terminal (no escape sequence reaches it:
OSC 52 writes the clipboard, OSC 0 retitles the window, CSI 2J clears the screen)."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.display import LineView, LiveView, Progress
from deepresearch.events import ErrorEvent, ToolCallEvent, ToolResultEvent
from deepresearch.report import render_html, render_markdown, resolve_citations
from deepresearch.sources import SourceRegistry
from deepresearch.terminal import printable

TERMINAL_ATTACKS = [
    "\x1b]52;c;cHduZWQ=\x07",  # OSC 52: set the clipboard
    "\x1b]0;owned\x07",  # OSC 0: window title
    "\x1b[2J\x1b[H",  # clear the screen, cursor home
    "\x9b31m",  # 8-bit CSI
    "line\rover",  # carriage return hides what came before
    "\u202eevil\u202c",  # right-to-left override
]

HTML_ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    "<iframe src=https://evil.example/></iframe>",
    '<svg onload="alert(1)">',
    "<style>body{display:none}</style>",
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    "<!-- --><script>alert(1)</script>",
    "![beacon](https://evil.example/track.png)",
]

SAFE_SCHEMES = ("http://", "https://", "file://", "#")
CSP = "default-src 'none'; style-src 'unsafe-inline'"
"""The report page's policy: inline style only, so even an ``<img>`` the Markdown allows loads nothing."""


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def elements(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(page)
    return parser.found


@pytest.mark.parametrize("attack", HTML_ATTACKS)
def test_report_html_keeps_injected_markup_as_text(attack: str):
    registry = SourceRegistry()
    source = registry.add("https://ok.example/a", title=attack)
    hostile = registry.add("javascript:alert(document.cookie)", title=attack)
    answer = f"# Findings\n\n{attack}\n\nA claim \\cite{{{source.key}}} and \\cite{{{hostile.key}}}.\n"
    page = render_html(resolve_citations(answer, registry), title=attack)
    head, body = page.split("<body>", 1)
    policies = [attrs for tag, attrs in elements(head) if tag == "meta" and "http-equiv" in attrs]
    assert policies == [{"http-equiv": "Content-Security-Policy", "content": CSP}]  # loads nothing
    found = elements(body)
    tags = {tag for tag, _ in found}
    assert not tags & {"script", "iframe", "svg", "meta", "object", "embed", "style", "form", "base"}, tags
    for tag, attrs in found:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("href", "src", "action", "formaction"):
            value = attrs.get(name)
            assert value is None or value.startswith(SAFE_SCHEMES), (tag, name, value)


def test_report_markdown_keeps_each_reference_on_one_line():
    registry = SourceRegistry()
    source = registry.add("https://ok.example/a", title="Real title\n\n## Injected heading\n[9] Fake — x")
    cited = resolve_citations(f"Claim \\cite{{{source.key}}}.", registry)
    md = render_markdown(cited)
    references = md.split("## References\n\n", 1)[1]
    assert references.strip().splitlines() == [
        "[1] Real title ## Injected heading [9] Fake — x — https://ok.example/a"
    ]
    assert [line for line in md.splitlines() if line.startswith("#")] == ["## References"]


def test_invented_and_spoofed_citation_keys_never_become_links():
    registry = SourceRegistry()
    real = registry.add("https://ok.example/a", title="Real")
    answer = (
        f"Real \\cite{{{real.key}}}. Invented \\cite{{web_deadbeef}}. "
        "Spoofed <cite_index>web_00000000</cite_index> and \\cite{javascript:alert(1)}."
    )
    cited = resolve_citations(answer, registry)
    page = render_html(cited, title="q")
    hrefs = [attrs.get("href") for tag, attrs in elements(page) if tag == "a"]
    assert [h for h in hrefs if h and not h.startswith("#")] == ["https://ok.example/a"]
    assert set(cited.unresolved) >= {"web_deadbeef"}


@pytest.mark.parametrize("attack", TERMINAL_ATTACKS)
def test_line_view_never_prints_a_control_sequence(attack: str):
    stream = io.StringIO()
    view = LineView(Progress(5), stream)
    view(ToolCallEvent(step=1, call_id="c", name="shell", arguments=json.dumps({"cmd": f"ls {attack}"})))
    view(
        ToolCallEvent(
            step=1, call_id="d", name="file", arguments=json.dumps({"action": "read", "path": attack})
        )
    )
    view(ToolResultEvent(step=1, call_id="c", name=attack, content="x", is_error=True, error_type=attack))
    view(ErrorEvent(step=1, error_type="LLMBadResponse", message=f"the server said {attack}"))
    out = stream.getvalue()
    assert out.count("\n") == 4
    assert not any(ch in out for ch in "\x1b\x9b\r\x07\u202e"), repr(out)


@pytest.mark.parametrize("attack", TERMINAL_ATTACKS)
def test_live_panel_never_draws_a_control_sequence(attack: str):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system="standard")
    view = LiveView(Progress(5), console)
    view.progress.update(
        ToolCallEvent(step=1, call_id="c", name="shell", arguments=json.dumps({"cmd": f"echo {attack}"}))
    )
    console.print(view)
    drawn = buffer.getvalue()
    assert attack not in drawn
    assert not any(seq in drawn for seq in ("\x1b]", "\x1b[2J", "\x9b", "\u202e")), repr(drawn)


def test_printable_keeps_text_and_layout():
    assert printable("naïve 研究\tcol\nnext") == "naïve 研究\tcol\nnext"
    assert printable("a\x1b[31mb") == "a\\x1b[31mb"


# -- the CLI: what it lists and finds comes from others (a submitted question, an indexed page) --------


def test_runs_listing_shows_a_hostile_question_as_text(tmp_path: Path):
    from deepresearch.runs import RunInfo, RunStore

    hostile = "[/red][link=https://evil.example]click[/link] \x1b]52;c;cHduZWQ=\x07 [bold]q"
    store = RunStore.create(tmp_path / "runs" / "r1")
    store.write_info(RunInfo(id="r1", question=hostile, status="done"))
    store.close()
    listed = CliRunner().invoke(app, ["runs", "--dir", str(tmp_path / "runs")])
    assert listed.exit_code == 0, listed.output
    assert all(part in listed.output for part in ("[/red]", "[link=", "[bold]q"))  # shown, not obeyed
    assert "\x1b]52" not in listed.output and "\\x1b]52" in listed.output


def test_search_hits_from_a_hostile_document_are_printed_escaped(tmp_path: Path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# Owned \x1b]0;retitled\x07 title\n\nThe fjord measurement \x1b[2J was taken.\n")
    index = tmp_path / "index.sqlite"
    added = CliRunner().invoke(app, ["index", "add", str(page.parent), "--index", str(index)])
    assert added.exit_code == 0, added.output
    found = CliRunner().invoke(app, ["search", "fjord measurement", "--index", str(index)])
    assert found.exit_code == 0, found.output
    assert "fjord" in found.output
    assert "\x1b" not in found.output and "\\x1b" in found.output


def test_error_lines_quote_a_hostile_message_escaped(capsys: pytest.CaptureFixture[str]):
    from deepresearch.cli.common import say

    say("error: the endpoint said \x1b]0;owned\x07\u202egnp.exe")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\u202e" not in err and "\\x1b]0;owned" in err


# -- secrets: a key pasted into a URL setting is never written or shown -------------------------------


def test_credentials_in_url_settings_never_reach_the_run_directory(
    fake_llm, corpus_index: Path, tmp_path: Path
):
    import asyncio

    from deepresearch.config import load_settings
    from deepresearch.research import research
    from tests.agent.scripts import research_script

    fake_llm.script = research_script
    secret = "sk-pasted-into-the-url-1234"
    base = fake_llm.base_url.replace("http://", f"http://user:{secret}@", 1)
    settings = load_settings(
        {
            "base_url": base,
            "search_endpoint": f"http://127.0.0.1:9/search?api_key={secret}&region=eu",
            "judge_base_url": f"https://judge:{secret}@judge.example/v1",
            "searxng_url": f"http://admin:{secret}@127.0.0.1:9/",
            "model": "fake-model",
            "index": corpus_index,
            "out": tmp_path / "run",
            "max_retries": 1,
            "retry_base_delay": 0.001,
        },
        env={},
    )
    seen: list[str] = []
    result = asyncio.run(
        research(
            "How does BM25 rank documents?", settings, on_event=lambda e: seen.append(e.model_dump_json())
        )
    )
    assert result.status == "done"
    recorded = "".join(p.read_text(errors="replace") for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert secret not in recorded and secret not in "".join(seen)
    public = settings.public()
    assert public["base_url"] == fake_llm.base_url and public["judge_base_url"] == "https://judge.example/v1"
    assert public["search_endpoint"] == "http://127.0.0.1:9/search?api_key=***&region=eu"
