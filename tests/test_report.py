from html.parser import HTMLParser

from deepresearch.report import (
    extract_answer,
    fallback_report,
    render_html,
    render_markdown,
    resolve_citations,
)
from deepresearch.sources import SourceRegistry


def registry_with(*items):
    registry = SourceRegistry()
    sources = [registry.add(url, title=title) for url, title in items]
    return registry, sources


def test_extract_answer_variants():
    assert (
        extract_answer("<think>plan</think>intro <answer>\nReport body\n</answer> trailing") == "Report body"
    )
    assert extract_answer("<ANSWER>cut off report") == "cut off report"
    assert extract_answer("<think>hidden</think>Plain reply") == "Plain reply"
    assert extract_answer("<think>never closed") == ""


def test_citations_numbered_by_first_use_and_merged():
    registry, (a, b, c) = registry_with(
        ("https://a.example/x", "Alpha"), ("https://b.example/y", "Beta"), ("https://c.example/z", "Gamma")
    )
    answer = (
        f"First claim \\cite{{{b.key}}}. Second \\cite{{{a.key}, {b.key}}}. "
        f"Third [{c.key}] and again \\citep{{{a.key}}}; grouped [{a.key}, {c.key}]."
    )
    cited = resolve_citations(answer, registry)
    md = render_markdown(cited)
    assert md.startswith("First claim [1]. Second [2, 1]. Third [3] and again [2]; grouped [2, 3].")
    assert "## References" in md
    assert f"[1] Beta — {b.url}" in md and f"[2] Alpha — {a.url}" in md and f"[3] Gamma — {c.url}" in md
    assert cited.stats == {"cited": 3, "resolved": 3, "unresolved": 0}


def test_hallucinated_keys_removed_and_counted():
    registry, (a,) = registry_with(("https://a.example/x", "Alpha"))
    answer = (
        f"Real \\cite{{{a.key}}}. Invented \\cite{{web_deadbeef}}. Mixed \\cite{{web_cafebabe,{a.key}}}. "
        "Bare [web_0badf00d] end. Not a key \\cite{smith2020}."
    )
    cited = resolve_citations(answer, registry)
    md = render_markdown(cited)
    assert "Real [1]. Invented. Mixed [1]. Bare end. Not a key." in md
    assert "deadbeef" not in md and "cafebabe" not in md and "0badf00d" not in md and "smith2020" not in md
    assert cited.stats == {"cited": 5, "resolved": 1, "unresolved": 4}
    assert sorted(cited.unresolved) == sorted(["web_deadbeef", "web_cafebabe", "web_0badf00d", "smith2020"])


def test_duplicate_urls_share_one_number():
    registry = SourceRegistry()
    one = registry.add("https://example.com/report?utm_source=a", title="Report")
    two = registry.add("https://example.com/report/", title="Report")
    assert one is two
    cited = resolve_citations(f"A \\cite{{{one.key}}} B \\cite{{{two.key}}}", registry)
    assert render_markdown(cited).startswith("A [1] B [1]")
    assert len(cited.order) == 1


def test_model_written_reference_list_is_replaced():
    registry, (a,) = registry_with(("https://a.example/x", "Alpha"))
    answer = f"Body \\cite{{{a.key}}}.\n\n## References\n\n1. made-up link https://fake.example\n"
    md = render_markdown(resolve_citations(answer, registry))
    assert "fake.example" not in md
    assert md.count("## References") == 1


def test_chinese_heading():
    registry, (a,) = registry_with(("https://a.example/x", "甲"))
    md = render_markdown(resolve_citations(f"结论\\cite{{{a.key}}}。", registry), "zh")
    assert "结论 [1]。" in md or "结论[1]。" in md
    assert "## 参考文献" in md


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_html_is_self_contained_linked_and_escaped():
    registry, (a, bad) = registry_with(
        ("https://a.example/x?q=1&r=2", "Alpha <b>"), ("javascript:alert(1)", "Bad")
    )
    answer = (
        f"Claim \\cite{{{a.key}}} and \\cite{{{bad.key}}}.\n\n<script>alert('x')</script>\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n`arr[1]`"
    )
    page = render_html(resolve_citations(answer, registry), title="Q <i>")
    parser = _Collector()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "&lt;script&gt;" in page
    assert "table" in tags
    hrefs = [attrs.get("href") for t, attrs in parser.tags if t == "a"]
    assert "#ref-1" in hrefs and "#ref-2" in hrefs
    assert "https://a.example/x?q=1&r=2" in hrefs
    assert not any(h and h.startswith("javascript:") for h in hrefs)
    assert '<li id="ref-1"' in page and "Alpha &lt;b&gt;" in page
    assert "<code>arr[1]</code>" in page
    assert "<title>Q &lt;i&gt;</title>" in page
    assert "http://" not in page.split("<body>")[0]  # nothing loaded from outside


def test_fallback_report_lists_evidence_with_citations():
    registry = SourceRegistry()
    s = registry.add("https://a.example/x", title="Alpha", snippet="alpha snippet", fetched=True)
    text = fallback_report("What is alpha?", registry, "max_steps")
    assert "What is alpha?" in text and "alpha snippet" in text and f"\\cite{{{s.key}}}" in text
    md = render_markdown(resolve_citations(text, registry))
    assert "[1] Alpha — https://a.example/x" in md


def test_strip_references_and_cited_keys() -> None:
    from deepresearch.report import cited_keys, strip_references

    body = "# R\n\nA \\cite{web_aaaaaaaa, web_bbbbbbbb}. B [web_cccccccc] and 【web_aaaaaaaa】."
    text = body + "\n\n## References\n[1] x"
    assert strip_references(text) == body + "\n"
    assert strip_references("## 参考文献\n- a") == "" and strip_references("no refs") == "no refs"
    assert cited_keys(text) == ["web_aaaaaaaa", "web_bbbbbbbb", "web_cccccccc"]
