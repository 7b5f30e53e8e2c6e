"""The one place that builds Jinja environments: the model-facing prompts and the HTML pages we write.

Every template renders with ``StrictUndefined``, so a missing variable is an error at render time, not a
silently empty date in a prompt or an empty cell on a page. The two kinds differ in escaping:

- prompts (``<package>/prompts/``) are text for a model and are never escaped;
- pages (``<package>/pages/``) are autoescaped: whatever a model, a web page or a store wrote is shown
  as text. A fragment of HTML we built ourselves (Markdown rendered with raw HTML off, a matplotlib
  SVG) is passed as ``markupsafe.Markup`` by the Python code that knows why it is safe; templates
  never use ``|safe``.

An environment is cached per (package, folder, options), so each template is parsed once per process.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2

PROMPTS, PAGES = "prompts", "pages"
"""The folder of a package that holds its prompts, and the one that holds its HTML pages."""


@cache
def environment(
    package: str, folder: str, *, trim_blocks: bool = False, html: bool = False
) -> jinja2.Environment:
    """The environment for the templates in ``folder`` of ``package`` (package data, found when installed).

    ``trim_blocks`` drops the newline after a block tag and the indentation before it, so a ``{% if %}``
    line leaves no blank line behind; ``html`` turns autoescaping on.
    """
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks,
        keep_trailing_newline=html,
        autoescape=html,
    )


def render_prompt(package: str, name: str, variables: Mapping[str, Any], *, trim_blocks: bool = False) -> str:
    """``<package>/prompts/<name>`` rendered with ``variables``, unescaped and stripped."""
    template = environment(package, PROMPTS, trim_blocks=trim_blocks).get_template(name)
    return template.render(variables).strip()


def render_page(package: str, name: str, variables: Mapping[str, Any]) -> str:
    """``<package>/pages/<name>`` rendered with ``variables``, every plain string escaped."""
    return environment(package, PAGES, trim_blocks=True, html=True).get_template(name).render(variables)
