"""The HTTP fetcher against a real local website, plus MockTransport tests where no socket can help.

The fake site lives on 127.0.0.1, so these tests allow private addresses; the SSRF checks on redirect
hops run with the guard on, against an httpx ``MockTransport`` and public IP literals (no DNS). The
politeness gaps and the retry's pause run in virtual time (``VirtualTime``): exact, and instant.
"""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from deepresearch.errors import ContentTooLarge, FetchError, FetchTimeout, URLBlocked
from deepresearch.fetch import Fetcher, Page
from deepresearch.fetch.http import DEFAULT_BACKOFF_S, FetchConfig, HttpFetcher
from tests.fakes.web_server import (
    ARTICLE_TITLE,
    CP1252_TEXT,
    GBK_TEXT,
    PDF_TITLE,
    SJIS_TEXT,
    FakeWebSite,
    gzip_bomb,
    start_fake_web_server,
)

PUBLIC = "http://93.184.215.14"
"""A public IP literal: the guard accepts it without DNS, and only a MockTransport ever answers it."""


class VirtualTime:
    """A clock and a sleep for the fetcher that spend no real time.

    ``sleep`` records each wait and moves the clock on by it; while ``held``, a sleeper parks until
    ``release()`` instead, so a test can look at everything else while one request waits its turn.
    """

    def __init__(self, *, held: bool = False) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.held = held
        self._parked: list[asyncio.Future[None]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.held:
            parked = asyncio.get_running_loop().create_future()
            self._parked.append(parked)
            await parked
        self.now += seconds
        await asyncio.sleep(0)

    @property
    def parked(self) -> int:
        return sum(not future.done() for future in self._parked)

    def release(self) -> None:
        self.held = False
        for future in self._parked:
            if not future.done():
                future.set_result(None)

    def fetcher(self, config: FetchConfig, transport: httpx.AsyncBaseTransport | None = None) -> HttpFetcher:
        return HttpFetcher(config, transport=transport, clock=self.clock, sleep=self.sleep)


class Stamped(httpx.AsyncBaseTransport):
    """A real HTTP transport (to the fake sites on loopback) that notes each request's URL and the
    virtual time it was sent at."""

    def __init__(self, time: VirtualTime) -> None:
        self._time = time
        self._inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, float]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((str(request.url), self._time.now))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def times(self, prefix: str) -> list[float]:
        """When the requests whose URL starts with ``prefix`` were sent, in order."""
        return [at for url, at in self.sent if url.startswith(prefix)]


def fetch(
    url: str,
    config: FetchConfig,
    transport: httpx.AsyncBaseTransport | None = None,
    time: VirtualTime | None = None,
) -> Page:
    """Fetch one URL with a fresh fetcher (each test runs its own event loop), in virtual time if given."""

    async def main() -> Page:
        fetcher = time.fetcher(config, transport) if time else HttpFetcher(config, transport=transport)
        async with fetcher:
            return await fetcher.fetch(url)

    return asyncio.run(main())


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.MockTransport, list[str]]:
    """A transport answering with ``handler``, and the list of URLs it was asked for."""
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return handler(request)

    return httpx.MockTransport(record), seen


# --- reading pages


def test_html_page_is_main_text_with_title(site: FakeWebSite, config: FetchConfig) -> None:
    page = fetch(site.url("/articles/bloom-filters.html"), config)
    assert page.title == ARTICLE_TITLE
    assert page.status == 200
    assert page.content_type.startswith("text/html")
    assert page.url == site.url("/articles/bloom-filters.html")
    assert "## How insertion works" in page.text
    assert "| Bits per item | False positive rate |" in page.text.replace(" | \n", " |\n")
    assert "remember billions of visited URLs" in page.text
    for boilerplate in ("Sign in", "All topics", "Copyright", "tracking"):
        assert boilerplate not in page.text
    headers = site.headers[-1]
    assert headers["user-agent"].startswith("Mozilla/5.0")
    assert headers["accept-encoding"] == "gzip, deflate"


def test_pdf_page(site: FakeWebSite, config: FetchConfig) -> None:
    page = fetch(site.url("/papers/consistent-hashing.pdf"), config)
    assert page.title == PDF_TITLE
    assert page.content_type == "application/pdf"
    assert "Consistent hashing maps keys and servers onto the same ring." in page.text
    assert page.text.index("onto the same ring") < page.text.index("Virtual nodes spread the load")


def test_pdf_is_recognised_without_extension_or_content_type(site: FakeWebSite, config: FetchConfig) -> None:
    page = fetch(site.url("/download?id=7"), config)
    assert page.content_type == "application/octet-stream"
    assert page.title == PDF_TITLE
    assert "Virtual nodes" in page.text


def test_text_json_and_encodings(site: FakeWebSite, config: FetchConfig) -> None:
    latin1 = fetch(site.url("/notes/latin1.txt"), config)
    assert latin1.title == "Crème brûlée à la française"
    assert "Le café était très chaud" in latin1.text and "\ufffd" not in latin1.text
    data = fetch(site.url("/api/status.json"), config)
    assert '\n  "status": "ok",' in data.text and '"note": "données"' in data.text
    gzipped = fetch(site.url("/compressed/gzip.html"), config)
    assert gzipped.title == ARTICLE_TITLE and "## Choosing the size" in gzipped.text
    deflated = fetch(site.url("/compressed/deflate.txt"), config)
    assert deflated.text.startswith("Plain text answer")


def test_unsupported_content_type(site: FakeWebSite, config: FetchConfig) -> None:
    with pytest.raises(
        FetchError, match=r"unsupported content type 'image/png' at http://127\.0\.0\.1:\d+/image\.png"
    ):
        fetch(site.url("/image.png"), config)


# --- redirects


def test_redirect_chain_is_followed_hop_by_hop(site: FakeWebSite, config: FetchConfig) -> None:
    page = fetch(site.url("/redirect/4"), config)
    assert page.url == site.url("/articles/bloom-filters.html")
    assert page.title == ARTICLE_TITLE
    assert [site.hits[f"/redirect/{n}"] for n in range(5)] == [1, 1, 1, 1, 1]


def test_too_many_redirects(site: FakeWebSite, config: FetchConfig) -> None:
    with pytest.raises(FetchError, match=r"too many redirects \(more than 3\)"):
        fetch(site.url("/redirect/4"), config.model_copy(update={"max_redirects": 3}))
    assert site.hits["/redirect/0"] == 0
    with pytest.raises(FetchError, match="too many redirects"):
        fetch(site.url("/loop"), config)
    assert site.hits["/loop"] == config.max_redirects + 1


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://127.0.0.1:8080/admin",
        "http://localhost/",
        "http://[::ffff:10.0.0.1]/internal",
        "file:///etc/passwd",
        "ftp://93.184.215.14/pub/file",
    ],
)
def test_redirect_to_a_refused_url_is_blocked_before_it_is_requested(target: str) -> None:
    transport, seen = mock(lambda request: httpx.Response(302, headers={"location": target}))
    with pytest.raises(URLBlocked, match="refused"):
        fetch(f"{PUBLIC}/start", FetchConfig(retry_backoff_s=0), transport)
    assert seen == [f"{PUBLIC}/start"]


def test_relative_redirect_is_resolved_against_the_current_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/a/start":
            return httpx.Response(301, headers={"location": "../b/end?x=1"})
        return httpx.Response(
            200, text="# Arrived\n\nYou made it.", headers={"content-type": "text/markdown"}
        )

    transport, seen = mock(handler)
    page = fetch(f"{PUBLIC}/a/start", FetchConfig(), transport)
    assert seen == [f"{PUBLIC}/a/start", f"{PUBLIC}/b/end?x=1"]
    assert page.url == f"{PUBLIC}/b/end?x=1"
    assert page.title == "Arrived"


def test_private_site_is_refused_when_the_guard_is_on(site: FakeWebSite, config: FetchConfig) -> None:
    with pytest.raises(URLBlocked, match="loopback"):
        fetch(site.url("/"), config.model_copy(update={"allow_private": False}))
    assert sum(site.hits.values()) == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "FILE://localhost/etc/hosts", "ftp://93.184.215.14/x"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(URLBlocked):
        fetch(url, FetchConfig(allow_private=True))


# --- errors and retries


@pytest.mark.parametrize("status", [404, 500])
def test_error_status_is_reported_and_not_retried(
    site: FakeWebSite, config: FetchConfig, status: int
) -> None:
    url = site.url(f"/status/{status}")
    with pytest.raises(FetchError, match=rf"HTTP {status} .* for {url}$") as caught:
        fetch(url, config)
    assert type(caught.value) is FetchError
    assert site.hits[f"/status/{status}"] == 1


def test_503_is_retried_once_after_the_backoff(site: FakeWebSite, config: FetchConfig) -> None:
    patient = config.model_copy(update={"retry_backoff_s": 0.5})
    time = VirtualTime()
    page = fetch(site.url("/flaky/one"), patient, time=time)
    assert page.text.startswith("Recovered")
    assert site.hits["/flaky/one"] == 2
    # one pause, as configured, before the one retry; then the rest of the time a host that pushed
    # back without a Retry-After is left alone (DEFAULT_BACKOFF_S)
    assert time.waits == [0.5, DEFAULT_BACKOFF_S - 0.5]
    time = VirtualTime()
    with pytest.raises(FetchError, match="HTTP 503 Service Unavailable"):
        fetch(site.url("/status/503"), patient, time=time)
    assert site.hits["/status/503"] == 2
    assert time.waits == [0.5, DEFAULT_BACKOFF_S - 0.5]


def test_connection_error_is_retried_once_then_reported() -> None:
    attempts: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, text="fine", headers={"content-type": "text/plain"})

    time = VirtualTime()
    assert fetch(f"{PUBLIC}/", FetchConfig(), httpx.MockTransport(flaky), time).text == "fine"
    assert len(attempts) == 2
    assert time.waits == [FetchConfig().retry_backoff_s] == [0.5]

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    time = VirtualTime()
    with pytest.raises(FetchError, match=r"could not fetch http://93\.184\.215\.14/: connection refused"):
        fetch(f"{PUBLIC}/", FetchConfig(), httpx.MockTransport(down), time)
    assert time.waits == [0.5]


# --- limits


def test_slow_page_times_out(site: FakeWebSite, config: FetchConfig) -> None:
    url = site.url("/slow?delay=10")
    with pytest.raises(FetchTimeout, match=r"timed out after 0\.3s waiting for .*/slow\?delay=10"):
        fetch(url, config.model_copy(update={"timeout_s": 0.3}))
    assert site.hits["/slow"] == 1  # timeouts are not retried


def test_dripping_page_hits_the_overall_deadline(site: FakeWebSite, config: FetchConfig) -> None:
    with pytest.raises(FetchTimeout, match=r"no complete answer from .*/drip within 0\.5s"):
        fetch(site.url("/drip"), config.model_copy(update={"total_timeout_s": 0.5}))


def test_huge_page_stops_at_max_bytes(site: FakeWebSite, config: FetchConfig) -> None:
    with pytest.raises(ContentTooLarge, match="larger than the 1000000-byte limit"):
        fetch(site.url("/huge"), config)
    with pytest.raises(ContentTooLarge, match="declares 30000000 bytes"):
        fetch(site.url("/huge-declared"), config)
    # The same page fits under a larger cap.
    assert len(fetch(site.url("/huge"), config.model_copy(update={"max_bytes": 4_000_000})).text) > 2_900_000


def test_gzip_bomb_stops_at_the_cap_with_bounded_memory(site: FakeWebSite, config: FetchConfig) -> None:
    gzip_bomb()  # built (and cached) before measuring
    tracemalloc.start()
    try:
        with pytest.raises(ContentTooLarge, match="larger than the 1000000-byte limit"):
            fetch(site.url("/compressed/bomb.html"), config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 200 MB once inflated; reading it must cost a small multiple of the 1 MB cap, not the whole body.
    assert peak < 12_000_000


class Chunks(httpx.AsyncByteStream):
    """A response body that arrives in pieces of ``size`` bytes, as from a socket."""

    def __init__(self, body: bytes, size: int) -> None:
        self._body = body
        self._size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), self._size):
            yield self._body[start : start + self._size]


def encoded(body: bytes, encoding: str, size: int = 1000) -> httpx.MockTransport:
    headers = {"content-type": "text/plain", "content-encoding": encoding}
    return httpx.MockTransport(
        lambda request: httpx.Response(200, headers=headers, stream=Chunks(body, size))
    )


def test_compressed_bodies_decode_in_every_accepted_form() -> None:
    text = "Compressed body. " * 2000
    data = text.encode()
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    bodies = {
        "gzip": gzip.compress(data),
        "x-gzip": gzip.compress(data[:100]) + gzip.compress(data[100:]),  # two members back to back
        "deflate": zlib.compress(data),
        "identity": data,
    }
    for encoding, body in bodies.items():
        for size in (1, 7, 65536):
            assert fetch(f"{PUBLIC}/", FetchConfig(), encoded(body, encoding, size)).text == text.strip(), (
                encoding
            )
    # Some servers send "deflate" without the zlib wrapper.
    raw = raw_deflate.compress(data) + raw_deflate.flush()
    assert fetch(f"{PUBLIC}/", FetchConfig(), encoded(raw, "deflate", 1)).text == text.strip()
    with pytest.raises(FetchError, match="unsupported Content-Encoding 'br'"):
        fetch(f"{PUBLIC}/", FetchConfig(), encoded(b"x", "br"))
    with pytest.raises(FetchError, match=r"could not fetch http://93\.184\.215\.14/"):
        fetch(f"{PUBLIC}/", FetchConfig(), encoded(b"\x1f\x8bnot really gzip", "gzip"))


def test_compressed_body_over_the_cap() -> None:
    body = gzip.compress(b"a" * 3_000_000)
    with pytest.raises(ContentTooLarge, match="larger than the 1000000-byte limit"):
        fetch(f"{PUBLIC}/", FetchConfig(max_bytes=1_000_000), encoded(body, "gzip"))
    # Exactly at the cap is fine.
    page = fetch(f"{PUBLIC}/", FetchConfig(max_bytes=3_000_000), encoded(body, "gzip"))
    assert len(page.text) == 3_000_000


def test_buffered_mock_responses_are_read_too() -> None:
    transport, _ = mock(
        lambda request: httpx.Response(200, text="x" * 2000, headers={"content-type": "text/plain"})
    )
    assert fetch(f"{PUBLIC}/", FetchConfig(), transport).text == "x" * 2000
    with pytest.raises(ContentTooLarge):
        fetch(f"{PUBLIC}/", FetchConfig(max_bytes=1000), transport)


def test_concurrency_is_limited_per_host_and_overall(site: FakeWebSite, config: FetchConfig) -> None:
    async def fetch_many(limits: FetchConfig, count: int, hold: float) -> list[Page]:
        async with HttpFetcher(limits) as fetcher:
            urls = [site.url(f"/slots?n={i}&hold={hold}") for i in range(count)]
            return await asyncio.gather(*(fetcher.fetch(url) for url in urls))

    # Held long enough that two permitted requests overlap even on a loaded machine.
    pages = asyncio.run(fetch_many(config.model_copy(update={"per_host_concurrency": 2}), 6, hold=0.25))
    assert [page.text for page in pages] == ["slot used"] * 6
    assert site.max_in_flight == 2

    site.reset()
    asyncio.run(
        fetch_many(config.model_copy(update={"per_host_concurrency": 4, "max_concurrency": 1}), 4, hold=0.05)
    )
    assert site.hits["/slots"] == 4
    assert site.max_in_flight == 1


def test_fetcher_is_a_fetcher_and_closes() -> None:
    async def main() -> None:
        async with HttpFetcher() as fetcher:
            assert isinstance(fetcher, Fetcher)
            assert fetcher.config == FetchConfig()
            assert fetcher.config.max_bytes == 10_000_000 and fetcher.config.allow_private is False

    asyncio.run(main())


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FetchConfig(max_bytes=0)
    with pytest.raises(ValueError):
        FetchConfig(per_host_concurrency=0)
    with pytest.raises(ValueError):
        FetchConfig(unknown_field=1)  # type: ignore[call-arg]


# --- formats, charsets and lying servers, end to end


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/legacy/sjis-declared.html", SJIS_TEXT),
        ("/legacy/sjis-undeclared.html", SJIS_TEXT),
        ("/legacy/gbk-meta.html", GBK_TEXT),
        ("/legacy/gbk-undeclared.txt", GBK_TEXT),
        ("/legacy/cp1252-declared.html", CP1252_TEXT),
        ("/legacy/cp1252-undeclared.html", CP1252_TEXT),
    ],
)
def test_pages_in_legacy_charsets(site: FakeWebSite, config: FetchConfig, path: str, expected: str) -> None:
    page = fetch(site.url(path), config)
    assert expected in page.text
    assert "\ufffd" not in page.text and "\ufffd" not in page.title


def test_bodies_behind_lying_content_types(site: FakeWebSite, config: FetchConfig) -> None:
    html = fetch(site.url("/lies/html-as-octet"), config)
    assert html.title == ARTICLE_TITLE and "## How insertion works" in html.text
    pdf = fetch(site.url("/lies/pdf-as-html"), config)
    assert pdf.title == PDF_TITLE and pdf.content_type.startswith("text/html")
    data = fetch(site.url("/lies/json-as-html"), config)
    assert '"status": "ok"' in data.text
    docx = fetch(site.url("/files/report.docx"), config)
    assert docx.title == "Annual report" and "| 2024 | 11.4 |" in docx.text
    with pytest.raises(FetchError, match=r"/lies/png-as-html \(the body is a PNG image\)"):
        fetch(site.url("/lies/png-as-html"), config)


def test_csv_date_and_empty_pages(site: FakeWebSite, config: FetchConfig) -> None:
    table = fetch(site.url("/data/cities.csv"), config)
    assert table.title == "cities.csv" and "| Paris, centre | France | 2165423 |" in table.text
    dated = fetch(site.url("/dated.html"), config)
    assert dated.published == "2023-04-05" and dated.title == "Release notes"
    assert fetch(site.url("/articles/bloom-filters.html"), config).published == ""

    async def both() -> list[Page | BaseException]:
        async with HttpFetcher(config) as fetcher:
            urls = [site.url("/empty.html"), site.url("/dated.html")]
            return await asyncio.gather(*(fetcher.fetch(url) for url in urls), return_exceptions=True)

    empty, good = asyncio.run(both())
    # One unreadable page is an error for that URL only.
    assert isinstance(empty, FetchError) and "no readable text at " + site.url("/empty.html") in str(empty)
    assert isinstance(good, Page) and good.published == "2023-04-05"


def test_file_urls_point_to_the_local_index() -> None:
    with pytest.raises(URLBlocked, match="read through the local index"):
        fetch("file:///home/user/notes.md", FetchConfig(allow_private=True))


# --- the allowlist


def test_allowlisted_address_is_fetched_with_the_guard_on(site: FakeWebSite, config: FetchConfig) -> None:
    guarded = config.model_copy(update={"allow_private": False, "allowlist": ["127.0.0.1"]})
    assert fetch(site.url("/articles/bloom-filters.html"), guarded).title == ARTICLE_TITLE
    cidr = config.model_copy(update={"allow_private": False, "allowlist": ["127.0.0.0/8"]})
    assert fetch(site.url("/redirect/2"), cidr).title == ARTICLE_TITLE  # every hop is checked and allowed
    other = config.model_copy(update={"allow_private": False, "allowlist": ["10.0.0.0/8"]})
    with pytest.raises(URLBlocked, match="loopback"):
        fetch(site.url("/"), other)


def test_redirect_from_an_allowed_host_to_a_private_address_is_refused(
    site: FakeWebSite, config: FetchConfig
) -> None:
    guarded = config.model_copy(update={"allow_private": False, "allowlist": ["127.0.0.1"]})
    for target in ("http://10.0.0.1/secret", "http://169.254.169.254/latest/meta-data/", "http://[::1]/"):
        site.reset()
        with pytest.raises(URLBlocked, match="refused"):
            fetch(site.url(f"/redirect-to?url={target}"), guarded)
        assert site.hits["/redirect-to"] == 1


def test_config_validates_the_allowlist() -> None:
    assert FetchConfig(allowlist=[" 10.0.0.0/8 ", "", "wiki.corp"]).allowlist == ["10.0.0.0/8", "wiki.corp"]
    with pytest.raises(ValueError, match="allowlist entry 'http://wiki/'"):
        FetchConfig(allowlist=["http://wiki/"])
    with pytest.raises(ValueError):
        FetchConfig(host_delay_s=-1)


# --- politeness (in virtual time: the gaps are exact, and no test waits for them)


def test_requests_to_one_host_are_spaced_by_the_delay(site: FakeWebSite, config: FetchConfig) -> None:
    polite = config.model_copy(update={"host_delay_s": 0.25, "per_host_concurrency": 4, "host_burst": 1})
    time = VirtualTime()
    sent = Stamped(time)

    async def many() -> list[Page]:
        async with time.fetcher(polite, sent) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(site.url(f"/slots?n={i}&hold=0")) for i in range(4)))

    assert len(asyncio.run(many())) == 4
    assert site.hits["/slots"] == 4
    assert sent.times(site.url("/slots")) == [0.0, 0.25, 0.5, 0.75]
    assert time.waits == [0.25, 0.25, 0.25]  # the first request waits for nobody

    # Redirect hops are requests to the host too.
    site.reset()
    time = VirtualTime()
    sent = Stamped(time)
    assert fetch(site.url("/redirect/2"), polite, sent, time).title == ARTICLE_TITLE
    assert [url.removeprefix(site.url("")) for url, _ in sent.sent] == [
        "/redirect/2",
        "/redirect/1",
        "/redirect/0",
        "/articles/bloom-filters.html",
    ]
    assert sent.times(site.url("/")) == [0.0, 0.25, 0.5, 0.75]


def test_the_gap_counts_from_the_previous_start(site: FakeWebSite, config: FetchConfig) -> None:
    polite = config.model_copy(update={"host_delay_s": 0.25, "host_burst": 1})
    time = VirtualTime()

    async def spread() -> None:
        async with time.fetcher(polite) as fetcher:
            await fetcher.fetch(site.url("/counter?n=1"))
            time.now += 0.125  # half the gap passes by itself: only the rest is waited
            await fetcher.fetch(site.url("/counter?n=2"))
            time.now += 1.0  # long after: no wait at all
            await fetcher.fetch(site.url("/counter?n=3"))

    asyncio.run(spread())
    assert site.hits["/counter"] == 3
    assert time.waits == [0.125]


def test_a_zero_delay_never_waits(site: FakeWebSite, config: FetchConfig) -> None:
    assert config.host_delay_s == 0
    time = VirtualTime()
    sent = Stamped(time)

    async def many() -> None:
        async with time.fetcher(config, sent) as fetcher:
            await asyncio.gather(*(fetcher.fetch(site.url(f"/counter?n={i}")) for i in range(3)))

    asyncio.run(many())
    assert site.hits["/counter"] == 3 and len(sent.sent) == 3
    assert time.waits == []


def test_other_hosts_are_not_slowed_by_the_delay(site: FakeWebSite, config: FetchConfig) -> None:
    other = start_fake_web_server()
    try:
        polite = config.model_copy(update={"host_delay_s": 1.0, "host_burst": 1})
        time = VirtualTime(held=True)  # a request that must wait its turn parks until released
        sent = Stamped(time)

        async def three() -> None:
            async with asyncio.timeout(60), time.fetcher(polite, sent) as fetcher:
                same = [asyncio.create_task(fetcher.fetch(site.url(f"/counter?a={i}"))) for i in (1, 2)]
                elsewhere = asyncio.create_task(fetcher.fetch(other.url("/counter?b=1")))
                await elsewhere  # the other host's request went through at once
                done, waiting = await asyncio.wait(same, return_when=asyncio.FIRST_COMPLETED)
                assert len(done) == 1 and time.parked == 1 and time.waits == [1.0]
                assert not waiting.pop().done()  # the second request to the site is still waiting its turn
                time.release()
                await asyncio.gather(*same)

        asyncio.run(three())
        assert sent.times(site.url("/counter")) == [0.0, 1.0]
        assert sent.times(other.url("/counter")) == [0.0]
        assert site.hits["/counter"] == 2 and other.hits["/counter"] == 1
    finally:
        other.stop()
