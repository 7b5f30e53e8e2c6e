"""Cutting documents into passages: heading paths, merging and splitting, and the CJK and snippet helpers."""

from __future__ import annotations

import pytest

from deepresearch.search.passages import (
    cjk_grams,
    count_words,
    document_title,
    make_snippet,
    split_passages,
    split_sentences,
)


def words(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


def sentence_paragraph(sentences: int, words_each: int = 20) -> str:
    return " ".join(f"Sentence {i} " + words(words_each - 3, "filler") + " end." for i in range(sentences))


def test_markdown_heading_paths() -> None:
    text = f"""# Guide

{words(60, "intro")}

## Install

{words(60, "install")}

### From source

{words(60, "source")}

## Usage

{words(60, "usage")}
"""
    passages = split_passages(text, title="Guide")
    assert [p.heading for p in passages] == [
        "Guide",
        "Guide > Install",
        "Guide > Install > From source",
        "Guide > Usage",
    ]
    assert [p.ordinal for p in passages] == [0, 1, 2, 3]
    assert passages[2].text == words(60, "source")


def test_title_is_kept_once_and_a_site_suffix_is_tolerated() -> None:
    text = f"# Polite crawling\n\n{words(60)}\n\n## Rate limits\n\n{words(60)}"
    assert [p.heading for p in split_passages(text, title="Polite crawling | Field Notes")] == [
        "Polite crawling | Field Notes",
        "Polite crawling | Field Notes > Rate limits",
    ]
    # A first heading that is not the title stays in the path.
    assert split_passages(f"# Chapter one\n\n{words(60)}", title="Book")[0].heading == "Book > Chapter one"


def test_setext_headings_code_fences_and_rules() -> None:
    text = f"""Overview
========

{words(30, "alpha")}

```python
# not a heading
x = 1

y = 2
```

---

Details
-------

{words(60, "beta")}
"""
    passages = split_passages(text, title="Doc")
    assert [p.heading for p in passages] == [
        "Doc > Overview",
        "Doc > Overview > Details",
    ]  # === is h1, --- h2
    assert "# not a heading\nx = 1\n\ny = 2\n```" in passages[0].text
    assert "---" not in passages[0].text


def test_front_matter_is_skipped_and_names_the_title() -> None:
    text = '---\ntitle: "Field guide"\ntags: [a]\n---\n\n# Something else\n\nBody.'
    assert document_title(text, markup="markdown", fallback="x") == "Field guide"
    passages = split_passages(text, title="Field guide")
    assert passages[0].text == "Body."
    assert "tags" not in passages[0].text


def test_rst_headings_levels_by_first_appearance() -> None:
    text = f"""=========
Top title
=========

{words(60)}

Section A
=========

{words(60)}

Sub A.1
-------

{words(60)}

Section B
=========

{words(60)}
"""
    assert document_title(text, markup="rst", fallback="x") == "Top title"
    assert [p.heading for p in split_passages(text, title="Top title", markup="rst")] == [
        "Top title",
        "Top title > Section A",
        "Top title > Section A > Sub A.1",
        "Top title > Section B",
    ]


def test_plain_text_has_no_headings() -> None:
    text = f"# not special here\n\n{words(60)}"
    passages = split_passages(text, title="Notes", markup="text")
    assert {p.heading for p in passages} == {"Notes"}
    assert passages[0].text.startswith("# not special here")
    assert document_title("\n\nFirst line\nsecond", markup="text", fallback="f") == "First line"
    assert document_title("x" * 200, markup="text", fallback="f") == "f"


def test_tiny_paragraphs_merge_within_a_section_only() -> None:
    text = f"## A\n\n{words(10, 'a1')}\n\n{words(10, 'a2')}\n\n{words(10, 'a3')}\n\n## B\n\n{words(10, 'b1')}"
    passages = split_passages(text, title="T")
    assert [p.heading for p in passages] == ["T > A", "T > B"]
    assert passages[0].text == "\n\n".join([words(10, "a1"), words(10, "a2"), words(10, "a3")])
    assert passages[1].text == words(10, "b1")


def test_paragraphs_of_normal_size_stay_separate() -> None:
    paragraphs = [words(80, f"p{i}") for i in range(3)]
    passages = split_passages("\n\n".join(paragraphs), title="T")
    assert [p.text for p in passages] == paragraphs


def test_huge_paragraph_is_split_at_sentence_boundaries() -> None:
    paragraph = sentence_paragraph(40)  # 800 words
    passages = split_passages(paragraph, title="T", max_words=300)
    assert len(passages) == 3
    assert all(count_words(p.text) <= 300 for p in passages)
    assert all(p.text.endswith("end.") and p.text.startswith("Sentence") for p in passages)
    assert " ".join(p.text for p in passages) == paragraph
    # Roughly equal pieces, not 300 + 300 + 200.
    sizes = [count_words(p.text) for p in passages]
    assert max(sizes) - min(sizes) <= 40


def test_a_sentence_longer_than_the_limit_is_cut_between_words() -> None:
    passages = split_passages(words(700, "x"), title="T", max_words=300)
    assert [count_words(p.text) for p in passages] == [300, 300, 100]


def test_long_chinese_paragraph_is_split_at_full_stops() -> None:
    sentence = "二元切分不需要词典，把相邻的两个汉字组成一个词元。"  # 24 characters
    paragraph = sentence * 30
    passages = split_passages(paragraph, title="中文", max_words=300)
    assert len(passages) == 3
    assert all(p.text.endswith("。") and count_words(p.text) <= 300 for p in passages)
    assert "".join(p.text for p in passages) == paragraph


def test_count_words_and_sentences() -> None:
    assert count_words("BM25 ranks passages") == 3
    assert count_words("中文分词 works") == 5
    assert split_sentences("One. Two! Three? 四。五！") == ["One.", "Two!", "Three?", "四。", "五！"]


def test_empty_and_whitespace_documents() -> None:
    assert split_passages("", title="T") == []
    assert split_passages("\n\n   \n", title="T") == []
    assert split_passages("# Only a heading\n", title="T") == []


def test_cjk_grams() -> None:
    assert cjk_grams("全文检索 and 分词") == ["全文", "文检", "检索", "分词"]
    assert cjk_grams("字") == ["字"]
    assert cjk_grams("no CJK here") == []
    assert cjk_grams("カタカナ") == ["カタ", "タカ", "カナ"]


@pytest.mark.parametrize("width", [120, 300])
def test_snippet_is_centred_on_the_densest_matches(width: int) -> None:
    text = words(100, "lorem") + " the saturation of term frequency in BM25 " + words(100, "ipsum")
    snippet = make_snippet(text, ["saturation", "frequency", "bm25"], width=width)
    assert "saturation of term frequency in BM25" in snippet
    assert snippet.startswith("… ") and snippet.endswith(" …")
    assert len(snippet) <= width + 4
    assert "lore " not in snippet  # cut between words


def test_snippet_edges() -> None:
    assert make_snippet("Short  text\nhere.", ["x"]) == "Short text here."
    long_text = words(200, "alpha")
    assert make_snippet(long_text, ["missing"], width=50).startswith("alpha alpha")
    assert make_snippet(long_text + " omega", ["omega"], width=50).endswith("omega")
    # The index stems words; the snippet finds "indexes" for the query word "indexing".
    assert "indexes" in make_snippet(words(100, "x") + " indexes " + words(100, "y"), ["indexing"], width=60)
    assert "检索" in make_snippet(
        "无关内容。" * 100 + "全文检索很重要。" + "无关内容。" * 100, ["检索"], width=40
    )
