"""The web page in a real browser (Debian's chromium driven by playwright) against a real server and the
scripted model: ask, watch the live timeline, read the report, open a citation, download the files — and
hostile report, page-title and search text that must stay inert text.

The browser may only reach the test server: every other request is aborted before it leaves, so a link
the page opens (or a bug that loads something) never touches the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deepresearch.search.local import LocalIndex
from deepresearch.server.ui import TRUSTED_TYPES_POLICY
from tests.agent.scripts import cited_keys, turn
from tests.bench.scripts import agent_script
from tests.fakes.openai_server import Reply
from tests.server.conftest import agent_settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STATIC = Path(__file__).resolve().parents[2] / "src" / "deepresearch" / "server" / "static"
TOKEN = "ui-test-token-0123456789abcdef"
PWNED = "window.__pwned=1"
EVIL_TITLE = f'<script>{PWNED}</script><img src=x onerror="{PWNED}"> Evil page'

try:
    from playwright import sync_api
except ImportError:  # the browser extra brings it; without it only the browser tests are skipped
    sync_api = None

needs_browser = pytest.mark.skipif(
    sync_api is None or not CHROMIUM.is_file(),
    reason=f"the web page tests need playwright (pip install -e '.[browser]') and Debian's chromium at "
    f"{CHROMIUM} (apt-get install chromium)",
)

CORPUS = [
    {
        "id": "bloom",
        "title": "Bloom filters in practice",
        "url": "https://notes.example.org/bloom-filters",
        "text": "A Bloom filter trades memory for a small false positive rate: about ten bits per item "
        "give roughly one false positive in a hundred lookups, and an added item is never forgotten.",
    },
    {
        "id": "rrf",
        "title": "Reciprocal rank fusion",
        "url": "https://notes.example.org/rank-fusion",
        "text": "Reciprocal rank fusion merges ranked result lists by summing one over sixty plus the rank "
        "of each document, so lists with incomparable scores can still be combined.",
    },
    {
        "id": "evil",
        "title": EVIL_TITLE,
        "url": "https://evil.example.com/page?q=%3Cscript%3E",
        "text": f'Malicious markup <img src=x onerror="{PWNED}"> and <script>{PWNED}</script> inside a '
        "page about zebra crossings, to see whether the snippet stays text.",
    },
]


def ui_script(request: dict[str, Any]) -> Reply:
    """plan → search (two queries) → open the Bloom page → tick the plan → answer citing two sources."""
    n = turn(request)
    if n == 0:
        plan = {
            "1": {"task": "Find how Bloom filters trade memory for errors", "priority": "high"},
            "2": {"task": "Read a primary source"},
            "3": {"task": "Write the report"},
        }
        return Reply(content="Planning.", tool_calls=[("todo", {"updates": plan})], delay=0.2)
    if n == 1:
        queries = ["bloom filter false positive rate", "reciprocal rank fusion"]
        return Reply(
            content="Searching.",
            tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": queries, "topk": 3})],
            delay=0.2,
        )
    keys = cited_keys(request)
    if n == 2:
        urls = [url for url in keys if "bloom" in url]
        return Reply(
            content="Reading.", tool_calls=[("batch_web_surfer", {"action": "batch_open", "urls": urls})]
        )
    if n == 3:
        done = {"1": {"status": "completed"}, "2": {"status": "completed"}, "3": {"status": "in_progress"}}
        return Reply(content="Writing.", tool_calls=[("todo", {"updates": done})])
    bloom = next(k for url, k in keys.items() if "bloom" in url)
    fusion = next(k for url, k in keys.items() if "rank-fusion" in url)
    body = (
        "# Bloom filters\n\nA Bloom filter trades memory for a small false positive rate "
        f"\\cite{{{bloom}}}. Rank fusion merges result lists \\cite{{{fusion}}}."
    )
    return Reply(content=f"<answer>\n{body}\n</answer>")


def hostile_script(request: dict[str, Any]) -> Reply:
    """A search whose query is markup, then an answer full of script that cites the evil page."""
    if turn(request) == 0:
        queries = [f'zebra crossings <img src=x onerror="{PWNED}">']
        return Reply(
            content=f"<script>{PWNED}</script>",
            tool_calls=[("batch_web_surfer", {"action": "batch_search", "queries": queries, "topk": 3})],
        )
    evil = next(k for url, k in cited_keys(request).items() if "evil" in url)
    body = (
        f"# Findings <script>{PWNED}</script>\n\n"
        f'Zebra crossings are safe \\cite{{{evil}}}. <img src=x onerror="{PWNED}">\n\n'
        f"[x](javascript:{PWNED}) and [a real link](https://example.org/ok)."
    )
    return Reply(content=f"<answer>\n{body}\n</answer>")


@pytest.fixture
def ui_index(tmp_path: Path) -> Path:
    corpus = tmp_path / "ui-corpus" / "notes.jsonl"
    corpus.parent.mkdir()
    corpus.write_text("\n".join(json.dumps(doc) for doc in CORPUS) + "\n", encoding="utf-8")
    path = tmp_path / "ui-index.sqlite"
    with LocalIndex(path) as index:
        assert index.add_paths([corpus.parent]).errors == []
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium, headless (never a browser downloaded by ``playwright install``)."""
    assert sync_api is not None
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


class PageLog:
    """What the page said behind our back: console errors, uncaught exceptions, dialogs, outside requests."""

    def __init__(self, page: Any, origin: str) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.blocked: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("dialog", self._dialog)
        self.origin = origin

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def route(self, route: Any) -> None:
        if route.request.url.startswith(self.origin):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()


def open_page(browser: Any, url: str) -> tuple[Any, Any, PageLog]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    log = PageLog(page, url)
    context.route("**/*", log.route)
    response = page.goto(url + "/")
    assert response is not None and response.ok
    return context, page, log


@pytest.mark.browser
@needs_browser
def test_ask_follow_the_timeline_and_read_the_cited_report(browser, make_server, fake_llm, ui_index):
    fake_llm.script = ui_script
    settings = agent_settings(fake_llm, ui_index, prices={"fake-model": {"input": 3.0, "output": 15.0}})
    server = make_server(settings)
    context, page, log = open_page(browser, server.url)
    expect = sync_api.expect

    page.fill("#question", "How do Bloom filters trade memory for accuracy?")
    page.fill("#max-steps", "10")
    page.select_option("#language", "en")
    page.click("#submit")

    timeline = page.locator("#timeline")
    expect(timeline.locator("li[data-kind=end][data-status=done]")).to_have_count(1, timeout=20_000)
    search = timeline.locator("li[data-kind=search]")
    expect(search).to_contain_text("bloom filter false positive rate")
    expect(search).to_contain_text("reciprocal rank fusion")
    expect(search.locator(".count")).to_have_text(["1 result", "1 result"])
    opened = timeline.locator("li[data-kind=open] a.url")
    expect(opened).to_have_attribute("href", "https://notes.example.org/bloom-filters")
    expect(opened).to_have_attribute("rel", "noopener noreferrer")
    expect(timeline.locator("li[data-kind=open] .count")).to_contain_text("chars")
    expect(timeline.locator("li[data-kind=plan]")).to_have_count(2)
    expect(timeline.locator("li[data-kind=finished]")).to_contain_text("Run finished: done")
    expect(page.locator("#job-status")).to_have_text("done")
    expect(page.locator("#cancel")).to_be_hidden()

    plan = page.locator("#plan li")
    expect(plan).to_have_count(3)
    expect(plan.nth(0)).to_have_class("plan-step status-completed")
    expect(plan.nth(2)).to_contain_text("Write the report")
    expect(page.locator("#stat-steps")).to_have_text("5")
    tokens = int(page.inner_text("#stat-tokens").replace(",", ""))
    assert tokens > 1000
    assert page.inner_text("#stat-cost").startswith("$") and float(page.inner_text("#stat-cost")[1:]) > 0

    # the report, in the sandboxed iframe; a citation opens the source panel
    assert page.get_attribute("#report", "sandbox") == "allow-same-origin"
    report = page.frame_locator("#report")
    expect(report.locator("h1")).to_have_text("Bloom filters")
    citations = report.locator("a.cite")
    expect(citations).to_have_count(2)
    citations.first.click()
    panel = page.locator("#source-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("#source-n")).to_have_text("[1]")
    expect(panel.locator("#source-title")).to_have_text("Bloom filters in practice")
    link = panel.locator("#source-link")
    expect(link).to_have_attribute("href", "https://notes.example.org/bloom-filters")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(panel.locator("#source-snippet")).to_contain_text("ten bits per item")
    expect(panel.locator("#source-meta")).to_contain_text("Opened and read in full")
    citations.nth(1).click()
    expect(panel.locator("#source-title")).to_have_text("Reciprocal rank fusion")
    expect(panel.locator("#source-meta")).to_contain_text("Seen in search results")

    # the jobs list and the downloads
    job_id = page.evaluate("location.hash").removeprefix("#job=")
    entry = page.locator(f"#jobs button[data-id='{job_id}']")
    expect(entry).to_contain_text("How do Bloom filters trade memory")
    expect(entry.locator(".status")).to_have_text("done")
    assert page.get_attribute("#download-md", "href") == f"/v1/research/{job_id}/report.md"
    assert page.get_attribute("#download-html", "href") == f"/v1/research/{job_id}/report.html"
    with page.expect_download() as download_info:
        page.click("#download-md")
    download = download_info.value
    assert download.suggested_filename == f"deepresearch-{job_id}.md"
    markdown = Path(download.path()).read_text(encoding="utf-8")
    assert markdown.startswith("# Bloom filters") and "https://notes.example.org/bloom-filters" in markdown

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "ui.png"
    shot.unlink(missing_ok=True)
    search.scroll_into_view_if_needed()  # the timeline scrolls on its own; show the search in the shot
    citations.first.click()
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000

    assert log.errors == [] and log.dialogs == [] and log.blocked == []
    context.close()


@pytest.mark.browser
@needs_browser
def test_hostile_report_titles_and_queries_stay_text(browser, make_server, fake_llm, ui_index):
    fake_llm.script = hostile_script
    server = make_server(agent_settings(fake_llm, ui_index), token=SecretStr(TOKEN))
    context, page, log = open_page(browser, server.url)
    expect = sync_api.expect

    # /v1 needs the token: the page says so and opens the token form
    expect(page.locator("#jobs-error")).to_contain_text("API token")
    expect(page.locator("#token-box")).to_have_attribute("open", "")
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#jobs-error")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('deepresearch.token')") == TOKEN

    page.fill("#question", f"Are zebra crossings safe? <script>{PWNED}</script>")
    page.click("#submit")
    timeline = page.locator("#timeline")
    expect(timeline.locator("li[data-kind=end][data-status=done]")).to_have_count(1, timeout=20_000)
    expect(timeline.locator("li[data-kind=search] .query")).to_have_text(
        f'zebra crossings <img src=x onerror="{PWNED}">'
    )
    expect(timeline.locator("li[data-kind=model] .said").first).to_have_text(f"<script>{PWNED}</script>")
    expect(page.locator("#job-question")).to_contain_text("<script>")

    report = page.frame_locator("#report")
    expect(report.locator("a.cite")).to_have_count(1)
    assert report.locator("script, img, iframe, object, embed").count() == 0
    assert report.locator("a[href^='javascript:']").count() == 0
    expect(report.locator("body")).to_contain_text(f"[x](javascript:{PWNED})")  # shown, not linked
    expect(report.locator("h1")).to_have_text(f"Findings <script>{PWNED}</script>")

    report.locator("a.cite").click()
    panel = page.locator("#source-panel")
    expect(panel.locator("#source-title")).to_have_text(EVIL_TITLE)
    expect(panel.locator("#source-snippet")).to_contain_text("<img src=x")
    assert panel.locator("#source-title *, #source-snippet *").count() == 0
    expect(panel.locator("#source-link")).to_have_attribute(
        "href", "https://evil.example.com/page?q=%3Cscript%3E"
    )

    # an outbound link in the report opens a new tab with no way back to this page
    with page.expect_popup() as popup_info:
        report.locator("a", has_text="a real link").click()
    popup = popup_info.value
    popup.wait_for_load_state()
    assert log.blocked == ["https://example.org/ok"]  # it went for the link (and the route stopped it)
    assert popup.evaluate("window.opener === null")
    popup.close()

    for where in ("window", "document.getElementById('report').contentWindow"):
        assert page.evaluate(f"typeof {where}.__pwned") == "undefined", where
    assert page.locator("#timeline img, #jobs img, #job-question *, #source-panel img").count() == 0
    assert log.dialogs == []
    assert not [e for e in log.errors if "Content Security Policy" in e or "uncaught" in e]
    # Trusted Types: the page cannot assign markup strings at all
    blocked = page.evaluate(
        "() => { try { document.body.innerHTML = '<b>x</b>'; return 'ran' } catch (e) { return e.name } }"
    )
    assert blocked == "TypeError"

    # with a token, the downloads go through fetch and a blob
    job_id = page.evaluate("location.hash").removeprefix("#job=")
    with page.expect_download() as download_info:
        page.click("#download-html")
    download = download_info.value
    assert download.suggested_filename == f"deepresearch-{job_id}.html"
    saved = Path(download.path()).read_text(encoding="utf-8")
    assert "&lt;script&gt;" in saved and f"<script>{PWNED}" not in saved
    context.close()


SSE_SAMPLE = (
    "id: 1\r\nevent: a\r\ndata: x\r\ndata: y\r\n\r\n"  # CRLF, two data lines
    ": comment\n\n"  # a comment block dispatches nothing
    'id: 2\revent: b\rdata: {"k": 1}\r\r'  # CR alone
    "data:bare\n\n"  # no space after the colon; the last id carries over
)
PARSE_WHOLE_AND_BY_CHARACTER = """(text) => {
  const whole = [], single = [];
  sseParser((e) => whole.push(e))(text);
  const feed = sseParser((e) => single.push(e));
  for (const c of text) feed(c);
  return [whole, single];
}"""


@pytest.mark.browser
@needs_browser
def test_a_dropped_event_stream_resumes_after_the_last_event_id(browser, make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server()
    context, page, log = open_page(browser, server.url)
    expect = sync_api.expect

    # the parser: CRLF/CR/LF line ends, comments, multi-line data, any chunking
    whole, single = page.evaluate(PARSE_WHOLE_AND_BY_CHARACTER, SSE_SAMPLE)
    expected = [
        {"id": "1", "type": "a", "data": "x\ny"},
        {"id": "2", "type": "b", "data": '{"k": 1}'},
        {"id": "2", "type": "message", "data": "bare"},
    ]
    assert whole == expected and single == expected

    # the first stream breaks after event 4: the page must ask for the rest, and show nothing twice
    asked: list[str | None] = []

    def drop_first_stream(route: Any) -> None:
        asked.append(route.request.headers.get("last-event-id"))
        if len(asked) > 1:
            route.continue_()
            return
        response = route.fetch()
        blocks = response.text().split("\n\n")
        cut = next(i for i, block in enumerate(blocks) if block.startswith("id: 4\n"))
        route.fulfill(response=response, body="\n\n".join(blocks[: cut + 1]) + "\n\n")

    context.route("**/events", drop_first_stream)
    page.fill("#question", "How does BM25 rank documents?")
    page.click("#submit")
    timeline = page.locator("#timeline")
    expect(timeline.locator("li[data-kind=end][data-status=done]")).to_have_count(1, timeout=20_000)
    assert asked == [None, "4"]
    for kind, count in [("start", 1), ("model", 2), ("search", 1), ("report", 1), ("finished", 1)]:
        expect(timeline.locator(f"li[data-kind={kind}]")).to_have_count(count)
    expect(page.locator("#stat-steps")).to_have_text("2")
    expect(page.frame_locator("#report").locator("a.cite")).to_have_count(1)
    expect(page.locator("#connection")).to_be_hidden()
    expect(page.locator("#job-error")).to_be_hidden()
    assert log.errors == [] and log.blocked == []
    context.close()


def test_the_page_and_its_files_are_open_and_locked_down(make_server):
    server = make_server(token=SecretStr(TOKEN))
    with httpx.Client(base_url=server.url) as client:  # no token: the page must load without one
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        policy = dict(
            part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
        assert policy["style-src"].startswith("'self' 'sha256-") and "unsafe" not in policy["style-src"]
        assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
        assert policy["require-trusted-types-for"] == "'script'"
        assert policy["trusted-types"] == TRUSTED_TYPES_POLICY
        assert (
            page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        )
        html = page.text
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts == ['<script src="/static/app.js" defer>']  # no inline script, no CDN
        assert not re.search(r"\s(on[a-z]+|style)=", html) and "http" not in html.replace("http-equiv", "")
        frames = re.findall(r"<iframe\b[^>]*>", html)
        assert len(frames) == 1 and re.search(r'\ssandbox="allow-same-origin"\s', frames[0])

        for path, kind in [
            ("/static/app.js", "text/javascript; charset=utf-8"),
            ("/static/style.css", "text/css; charset=utf-8"),
            ("/favicon.ico", "image/svg+xml"),
        ]:
            response = client.get(path)
            assert response.status_code == 200 and response.headers["content-type"] == kind, path
            assert (
                response.content
                == (STATIC / Path(path).name.replace("favicon.ico", "favicon.svg")).read_bytes()
            )
        for path in ["/static/index.html", "/static/nope.js", "/static/..%2Fui.py", "/static/"]:
            assert client.get(path).status_code == 404, path
        assert client.get("/v1/research").status_code == 401  # the page is open; the API is not
        assert "/static/{name}" not in client.get("/openapi.json", headers=auth()).text


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
