"""A small fake website on 127.0.0.1: the test double for everything that fetches web pages.

It behaves like a real site over a real socket (uvicorn in a daemon thread, port 0): an article page
with navigation and footer boilerplate, a PDF (and the same PDF behind an extension-less download
URL labelled ``application/octet-stream``), Latin-1 text, JSON, gzip- and deflate-encoded pages,
redirect chains and a redirect loop, a slow page and a page that drips bytes, pages too large
(declared and undeclared), a gzip bomb, error statuses, a page that fails once with 503, and a page
that records how many requests it serves at once. It also serves pages in legacy charsets (declared
and not), bodies behind lying content types, a dated article, a CSV table, a Word document, a page
with no readable text, and a redirect to any URL. Slow handlers stop as soon as the client hangs up, so
timeouts in tests do not leave work running in the server.

``make_pdf`` and ``make_docx`` build small valid documents with real text, for tests that need one
without a server.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import zipfile
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from tests.fakes.serve import ThreadedServer

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ARTICLE_TITLE = "Bloom filters explained | Data Structure Notes"
ARTICLE_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Bloom filters explained | Data Structure Notes</title>
  <script>var tracking = {enabled: true};</script>
  <style>.menu { display: flex; }</style>
</head>
<body>
  <header><div class="brand">Data Structure Notes</div>
    <nav class="menu"><a href="/">Home</a> <a href="/topics">All topics</a> <a href="/login">Sign in</a></nav>
  </header>
  <main><article>
    <h1>Bloom filters explained</h1>
    <p>A Bloom filter answers the question "have I seen this item before?" using a fixed array of bits
    and a handful of hash functions. It never forgets an item that was added, but it can occasionally
    claim to have seen an item that was never added. That trade is worth making when memory is scarce
    and a false positive only costs an extra lookup.</p>
    <h2>How insertion works</h2>
    <p>To add an item, the filter hashes it with each of its k hash functions and sets the bits at the
    resulting positions. To test an item, it computes the same positions and reports a match only if
    every one of those bits is set. Because bits are shared between items, a test can succeed for an
    item whose positions were all set by other items.</p>
    <h2>Choosing the size</h2>
    <p>The false positive rate depends on the number of bits per item and on k. About ten bits per item
    with seven hash functions gives a false positive rate close to one percent, which is why web
    crawlers use Bloom filters to remember billions of visited URLs in a few gigabytes.</p>
    <table>
      <tr><th>Bits per item</th><th>False positive rate</th></tr>
      <tr><td>8</td><td>2.2%</td></tr>
      <tr><td>10</td><td>0.8%</td></tr>
    </table>
  </article></main>
  <footer><p>Copyright 2024 Data Structure Notes. Terms of use. Privacy. Newsletter signup.</p></footer>
</body>
</html>
"""
PDF_TITLE = "Notes on consistent hashing"
PDF_PAGES = [
    [
        "Consistent hashing maps keys and servers onto the same ring.",
        "A key belongs to the first server found clockwise from its position.",
    ],
    [
        "Adding a server moves only the keys between it and its predecessor.",
        "Virtual nodes spread the load more evenly across servers.",
    ],
]
LATIN1_TEXT = "Crème brûlée à la française\n\nLe café était très chaud, déjà servi à 8 h.\n"
JSON_BODY = {"status": "ok", "services": [{"name": "search", "latency_ms": 12}], "note": "données"}
PLAIN_TEXT = "Plain text answer\n\nThe deflate-encoded page decodes to this text. " * 3
SJIS_TEXT = "東京の天気予報。明日は晴れのち曇り、最高気温は二十三度の見込みです。"
GBK_TEXT = "北京的天气预报。明天晴转多云，最高气温二十三度，适合外出散步。"
CP1252_TEXT = "The café’s “special” menu — crème brûlée and a naïve pâté, served at 8 €."
DATED_HTML = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>Release notes</title>
<meta property="article:published_time" content="2023-04-05T10:00:00+00:00"></head>
<body><article><h1>Release notes</h1><p>Version 2 replaces the cache with a smaller, faster one that
keeps every entry for a week and checks its own integrity when it starts.</p></article></body></html>
"""
CSV_BODY = 'city,country,population\nTokyo,Japan,37400068\n"Paris, centre",France,2165423\n'
DOCX_BLOCKS: list[tuple[str, object]] = [
    ("Title", "Annual report"),
    ("Heading1", "Summary"),
    ("p", "Revenue grew by twelve percent while costs stayed flat."),
    ("li", "Opened two offices"),
    ("li", "Hired forty engineers"),
    ("Heading2", "Figures"),
    ("table", [["Year", "Revenue"], ["2023", "10.2"], ["2024", "11.4"]]),
]
HUGE_BYTES = 3_000_000
BOMB_BYTES = 200_000_000
SLOW_DELAY_S = 5.0


def make_pdf(title: str, pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: Helvetica text, one content stream per page, ``/Title`` unless ``title=""``."""

    def literal(text: str) -> str:
        return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"

    objects: list[str] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append("<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{' '.join(f'{i} 0 R' for i in page_ids)}] /Count {len(pages)} >>")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for number, lines in zip(page_ids, pages, strict=True):
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {number + 1} 0 R >>"
        )
        text = " T* ".join(f"{literal(line)} Tj" for line in lines)
        stream = f"BT /F1 12 Tf 16 TL 72 720 Td {text} ET"
        objects.append(f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream")
    title_entry = f"/Title {literal(title)} " if title else ""
    objects.append(f"<< {title_entry}/Producer (deepresearch tests) >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    trailer = f"<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>"
    out += f"trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_docx(blocks: list[tuple[str, object]], *, title: str = "", extra_xml: str = "") -> bytes:
    """A minimal valid DOCX: ``("Title" | "Heading1".."Heading6" | "p", text)``, ``("li", text)``,
    ``("li2", text)`` (second level) and ``("table", rows)``; ``extra_xml`` is appended to the body.

    The heading styles get localised ids (``Berschrift1``…) named ``heading 1``… in ``styles.xml``, as
    a German Word writes them, so a reader must resolve styles by name, not by id.
    """
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

    def run(text: str) -> str:
        return f'<w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r>'

    def paragraph(text: str, properties: str = "") -> str:
        return f"<w:p><w:pPr>{properties}</w:pPr>{run(text)}</w:p>"

    body: list[str] = []
    for kind, content in blocks:
        if kind == "table":
            rows = "".join(
                "<w:tr>" + "".join(f"<w:tc>{paragraph(str(cell))}</w:tc>" for cell in row) + "</w:tr>"
                for row in content  # type: ignore[attr-defined]
            )
            body.append(f"<w:tbl><w:tblPr/>{rows}</w:tbl>")
        elif kind in ("li", "li2"):
            level = 1 if kind == "li2" else 0
            numbering = f'<w:numPr><w:ilvl w:val="{level}"/><w:numId w:val="1"/></w:numPr>'
            body.append(paragraph(str(content), numbering))
        elif kind == "p":
            body.append(paragraph(str(content)))
        else:
            style = "Title" if kind == "Title" else "Berschrift" + kind.removeprefix("Heading")
            body.append(paragraph(str(content), f'<w:pStyle w:val="{style}"/>'))
    document = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w="{w}" '
        'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006">'
        f"<w:body>{''.join(body)}{extra_xml}<w:sectPr/></w:body></w:document>"
    )
    styles = "".join(
        f'<w:style w:type="paragraph" w:styleId="Berschrift{n}"><w:name w:val="heading {n}"/></w:style>'
        for n in range(1, 7)
    )
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType='
            '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
            '<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.wordprocessingml.styles+xml"/><Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
        ),
        "word/document.xml": document,
        "word/styles.xml": f'<?xml version="1.0"?><w:styles xmlns:w="{w}">{styles}</w:styles>',
        "docProps/core.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats'
            '.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<dc:title>{escape(title)}</dc:title></cp:coreProperties>"
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return out.getvalue()


@functools.cache
def gzip_bomb(size: int = BOMB_BYTES) -> bytes:
    """``size`` zero bytes, gzip-compressed (about a thousandth of the size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


def _html(title: str, text: str, meta: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head>"
        f"<body><article><h1>{title}</h1><p>{text}</p><p>{text}</p></article></body></html>"
    )


@functools.cache
def legacy_pages() -> dict[str, tuple[bytes, str]]:
    """Pages in legacy charsets, and bodies whose content type lies: path → (body, content type)."""
    return {
        "/legacy/sjis-declared.html": (
            _html("天気", SJIS_TEXT).encode("shift_jis"),
            "text/html; charset=Shift_JIS",
        ),
        "/legacy/sjis-undeclared.html": (_html("天気", SJIS_TEXT).encode("shift_jis"), "text/html"),
        "/legacy/gbk-meta.html": (
            _html(
                "天气", GBK_TEXT, '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">'
            ).encode("gbk"),
            "text/html",
        ),
        "/legacy/gbk-undeclared.txt": (((GBK_TEXT + "\n") * 3).encode("gbk"), "text/plain"),
        "/legacy/cp1252-declared.html": (
            _html("Menu", CP1252_TEXT).encode("cp1252"),
            "text/html; charset=iso-8859-1",
        ),
        "/legacy/cp1252-undeclared.html": (_html("Menu", CP1252_TEXT).encode("cp1252"), "text/html"),
        "/lies/html-as-octet": (ARTICLE_HTML.encode(), "application/octet-stream"),
        "/lies/pdf-as-html": (make_pdf(PDF_TITLE, PDF_PAGES), "text/html; charset=utf-8"),
        "/lies/png-as-html": (b"\x89PNG\r\n\x1a\n" + bytes(64), "text/html"),
        "/lies/json-as-html": (json.dumps(JSON_BODY).encode(), "text/html"),
    }


class FakeWebSite:
    """The site's state and its ASGI app; start it with ``start_fake_web_server()``."""

    def __init__(self) -> None:
        self.base_url = ""
        self.hits: Counter[str] = Counter()
        """Requests served, by path."""
        self.headers: list[dict[str, str]] = []
        """Request headers, in order."""
        self.in_flight = 0
        self.max_in_flight = 0
        """Most requests to ``/slots`` served at the same time."""
        self._serving: ThreadedServer | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def reset(self) -> None:
        self.hits.clear()
        self.headers.clear()
        self.in_flight = self.max_in_flight = 0

    # --- lifecycle

    def start(self, port: int = 0) -> None:
        """Serve on 127.0.0.1:``port`` (0 = any free port) in a daemon thread; sets ``base_url``."""
        self._serving = ThreadedServer(self, "fake-web-server")
        port = self._serving.start(port)
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._serving is not None:
            self._serving.stop()
        self._serving = None

    # --- the ASGI app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query = {key: values[-1] for key, values in parse_qs(scope["query_string"].decode()).items()}
        self.hits[path] += 1
        self.headers.append({k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        responder = _Responder(send, receive)
        if path.startswith("/redirect/"):
            await self._redirect(responder, int(path.rsplit("/", 1)[1]))
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            await responder.send(
                code, f"<html><body><h1>Error {code}</h1></body></html>".encode(), "text/html"
            )
        elif path.startswith("/flaky/"):
            if self.hits[path] == 1:
                await responder.send(503, b"busy, try again", "text/plain")
            else:
                await responder.send(200, b"Recovered\n\nThe second attempt worked.", "text/plain")
        elif path == "/busy":  # 429 for the first ``times`` hits, with ``Retry-After`` when given
            if self.hits[path] <= int(query.get("times", "1")):
                headers = [("retry-after", query["retry_after"])] if "retry_after" in query else []
                await responder.send(429, b"slow down", "text/plain", headers)
            else:
                await responder.send(200, b"Served\n\nThe host answered at last.", "text/plain")
        elif path == "/slots":
            await self._slots(responder, float(query.get("hold", "0.1")))
        else:
            await self._static(responder, path, query)

    async def _static(self, responder: _Responder, path: str, query: dict[str, str]) -> None:
        match path:
            case "/" | "/articles/bloom-filters.html":
                await responder.send(200, ARTICLE_HTML.encode(), "text/html; charset=utf-8")
            case "/papers/consistent-hashing.pdf":
                await responder.send(200, make_pdf(PDF_TITLE, PDF_PAGES), "application/pdf")
            case "/download":
                await responder.send(
                    200,
                    make_pdf(PDF_TITLE, PDF_PAGES),
                    "application/octet-stream",
                    [("content-disposition", f'attachment; filename="paper-{query.get("id", "1")}"')],
                )
            case "/notes/latin1.txt":
                await responder.send(200, LATIN1_TEXT.encode("latin-1"), "text/plain; charset=iso-8859-1")
            case "/api/status.json":
                await responder.send(200, json.dumps(JSON_BODY).encode(), "application/json")
            case "/compressed/gzip.html":
                body = zlib.compress(ARTICLE_HTML.encode(), wbits=16 + zlib.MAX_WBITS)
                await responder.send(200, body, "text/html", [("content-encoding", "gzip")])
            case "/compressed/deflate.txt":
                await responder.send(
                    200, zlib.compress(PLAIN_TEXT.encode()), "text/plain", [("content-encoding", "deflate")]
                )
            case "/compressed/bomb.html":
                await responder.send(200, gzip_bomb(), "text/html", [("content-encoding", "gzip")])
            case "/loop":
                await responder.send(302, b"", "text/plain", [("location", "/loop")])
            case "/slow":
                if await responder.wait(float(query.get("delay", SLOW_DELAY_S))):
                    await responder.send(200, b"<html><body><p>Finally.</p></body></html>", "text/html")
            case "/drip":
                await responder.drip(b"<p>one more byte of patience</p>\n", interval=0.2, count=200)
            case "/huge":
                await responder.stream(HUGE_BYTES, "text/plain", declare_length=False)
            case "/huge-declared":
                await responder.stream(HUGE_BYTES * 10, "text/plain", declare_length=True)
            case "/image.png":
                await responder.send(200, b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")
            case "/redirect-to":
                await responder.send(302, b"", "text/plain", [("location", query.get("url", "/"))])
            case "/counter":
                await responder.send(
                    200, f"Counter page\n\nServed {self.hits[path]} time(s).".encode(), "text/plain"
                )
            case "/dated.html":
                await responder.send(200, DATED_HTML.encode(), "text/html; charset=utf-8")
            case "/empty.html":
                await responder.send(200, b"<html><body><script>render()</script></body></html>", "text/html")
            case "/data/cities.csv":
                await responder.send(200, CSV_BODY.encode(), "text/csv; charset=utf-8")
            case "/files/report.docx":
                await responder.send(200, make_docx(DOCX_BLOCKS), "application/octet-stream")
            case _ if path in legacy_pages():
                body, content_type = legacy_pages()[path]
                await responder.send(200, body, content_type)
            case _:
                await responder.send(404, b"<html><body><h1>Not found</h1></body></html>", "text/html")

    async def _redirect(self, responder: _Responder, remaining: int) -> None:
        """``/redirect/N`` → ``/redirect/N-1`` → … → the article, cycling through every redirect status."""
        status = (301, 302, 303, 307, 308)[remaining % 5]
        target = f"/redirect/{remaining - 1}" if remaining > 0 else "/articles/bloom-filters.html"
        await responder.send(status, b"", "text/plain", [("location", target)])

    async def _slots(self, responder: _Responder, hold: float) -> None:
        """Holds each request ``hold`` seconds, counting how many are held at once."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(hold)
        finally:
            self.in_flight -= 1
        await responder.send(200, b"slot used", "text/plain")


class _Responder:
    """Sends one HTTP response, and notices when the client goes away."""

    def __init__(self, send: Send, receive: Receive) -> None:
        self._send = send
        self._receive = receive
        self._disconnected = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._disconnected.set()

    def _watching(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())

    async def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; ``False`` if the client disconnected first."""
        self._watching()
        try:
            await asyncio.wait_for(self._disconnected.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def start(
        self, status: int, content_type: str, headers: list[tuple[str, str]], length: int | None
    ) -> None:
        raw = [(b"content-type", content_type.encode())] + [(k.encode(), v.encode()) for k, v in headers]
        if length is not None:
            raw.append((b"content-length", str(length).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def send(
        self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        await self.start(status, content_type, headers or [], len(body))
        await self._send({"type": "http.response.body", "body": body})
        self._stop_watching()

    async def stream(self, total: int, content_type: str, *, declare_length: bool) -> None:
        """``total`` bytes of text in 64 KiB chunks, stopping early if the client hangs up."""
        self._watching()
        await self.start(200, content_type, [], total if declare_length else None)
        chunk = (b"All work and no play makes a very large page. " * 1500)[: 1 << 16]
        sent = 0
        while sent < total and not self._disconnected.is_set():
            piece = chunk[: total - sent]
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
            await asyncio.sleep(0)
        await self._send({"type": "http.response.body", "body": b""})
        self._stop_watching()

    async def drip(self, piece: bytes, *, interval: float, count: int) -> None:
        """A small chunk every ``interval`` seconds: each read is quick, the whole body is not."""
        self._watching()
        await self.start(200, "text/html", [], None)
        for _ in range(count):
            if not await self.wait(interval):
                break
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})
        await self._send({"type": "http.response.body", "body": b""})
        self._stop_watching()

    def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


def start_fake_web_server(port: int = 0) -> FakeWebSite:
    """A running ``FakeWebSite``; call ``.stop()`` when done."""
    site = FakeWebSite()
    site.start(port)
    return site
