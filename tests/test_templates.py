"""The one Jinja home: prompts render raw, pages escape everything not marked safe by Python, and a
missing variable is an error in both — checked on a real package written to disk."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from markupsafe import Markup

from deepresearch.templates import environment, render_page, render_prompt

HOSTILE = "<script>alert('x')</script> & \"quoted\""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package with one prompt and one page, importable for this test only."""
    name = f"tplpkg_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    (root / "prompts").mkdir(parents=True)
    (root / "pages").mkdir()
    (root / "__init__.py").write_text("")
    (root / "prompts" / "hello.j2").write_text(
        "\n{% if loud %}\nHELLO\n{% endif %}\nHi {{ who }}, called {{ name }}.\n\n"
    )
    (root / "pages" / "page.html").write_text(
        '<p title="{{ who }}">{{ who }}</p>\n{% if frag %}\n{{ frag }}\n{% endif %}\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_prompt_is_raw_stripped_and_takes_any_variable_name(package: str) -> None:
    text = render_prompt(package, "hello.j2", {"loud": False, "who": HOSTILE, "name": "shell"})
    assert text == f"Hi {HOSTILE}, called shell."  # a prompt is for a model: nothing escaped
    trimmed = render_prompt(package, "hello.j2", {"loud": True, "who": "x", "name": "y"}, trim_blocks=True)
    assert trimmed == "HELLO\nHi x, called y."  # block lines leave no blank line behind
    untrimmed = render_prompt(package, "hello.j2", {"loud": True, "who": "x", "name": "y"})
    assert untrimmed == "HELLO\n\nHi x, called y."


def test_a_page_escapes_text_and_keeps_markup_from_python(package: str) -> None:
    page = render_page(package, "page.html", {"who": HOSTILE, "frag": Markup("<em>built by us</em>")})
    assert "<script>" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert 'title="&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;"' in page
    assert page.endswith("<em>built by us</em>\n")  # Markup passes through, the final newline stays
    plain = render_page(package, "page.html", {"who": "w", "frag": "<em>from a model</em>"})
    assert "&lt;em&gt;from a model&lt;/em&gt;" in plain and "<em>" not in plain


def test_a_missing_variable_raises_and_environments_are_shared(package: str) -> None:
    with pytest.raises(jinja2.UndefinedError, match="who"):
        render_prompt(package, "hello.j2", {"loud": False, "name": "n"})
    with pytest.raises(jinja2.UndefinedError, match="frag"):
        render_page(package, "page.html", {"who": "w"})
    assert environment(package, "pages", trim_blocks=True, html=True) is environment(
        package, "pages", trim_blocks=True, html=True
    )
    assert environment(package, "prompts").autoescape is False
