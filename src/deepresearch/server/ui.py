"""The web page of ``deepresearch serve``: one HTML file, one script, one stylesheet, no build step and
nothing loaded from elsewhere.

The page only talks to the JSON API (``/v1/research…``) like any other client, so it needs no server
state of its own. It is served without the API token (the page asks for it and keeps it in
``sessionStorage``), which is why it must hold nothing secret and why everything it shows is treated as
hostile: the report is model output, and source titles, URLs and snippets come from web pages.

How the page stays safe with hostile content:

- **Script never builds markup from strings.** ``app.js`` creates elements and sets ``textContent``;
  URLs become links only when they parse as ``http``/``https``. The page's Content-Security-Policy
  enforces this with Trusted Types (``require-trusted-types-for 'script'``): a string assigned to
  ``innerHTML`` or any other HTML sink throws. The one exception is the policy below.
- **The report is shown in a sandboxed iframe** (``sandbox="allow-same-origin"`` without
  ``allow-scripts``; ``srcdoc`` is the report's HTML, passed through the single Trusted Types policy
  ``deepresearch-report``). We keep the report's own HTML rather than rebuilding it from Markdown in
  the browser because it is the exact page ``report.html`` downloads, already rendered server-side
  with raw HTML disabled. The sandbox makes it inert by construction, whatever slipped through: no
  script in it runs, inline handlers included, it cannot navigate the page or open pop-ups, and the
  srcdoc document inherits this page's policy (plus its own ``default-src 'none'``), so it loads
  nothing — no tracking pixel tells a third party the report was read. ``allow-same-origin`` is what
  lets the page's own script reach into that document to make ``[n]`` citations open the source
  panel and to send outbound links to a new tab with ``noopener,noreferrer``; it is harmless only
  because ``allow-scripts`` is absent, and the two must never be combined.
- **Styles**: the page's come from ``style.css``; the report's one inline ``<style>`` is allowed by
  its SHA-256 hash (computed from ``report.render_html``), not by ``'unsafe-inline'``. A report
  written by an older version with a different stylesheet is shown unstyled, never with styles from
  anywhere else.

Only the files in ``STATIC_FILES`` are served, from package data, with their content types.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Response

STATIC_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""Every file the UI serves, with its content type; anything else under ``/static/`` is a 404."""

TRUSTED_TYPES_POLICY = "deepresearch-report"
"""The one Trusted Types policy ``app.js`` may create: it passes the report's HTML to the iframe."""

_STYLE_BLOCK = re.compile(r"<style>(.*?)</style>", re.S)


@cache
def _static(name: str) -> bytes:
    return files("deepresearch.server").joinpath("static", name).read_bytes()


@cache
def page_policy() -> str:
    """The page's Content-Security-Policy (cached: it depends only on the installed code)."""
    from deepresearch.report import CitedText, render_html

    sample = render_html(CitedText(text=""), title="")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
        for block in _STYLE_BLOCK.findall(sample)
    )
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src 'self' {hashes}".rstrip(),
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-src 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
            f"trusted-types {TRUSTED_TYPES_POLICY}",
        ]
    )


def _file_response(name: str, *, page: bool = False) -> Response:
    headers = {"Cache-Control": "no-cache"}
    if page:
        headers["Content-Security-Policy"] = page_policy()
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return Response(_static(name), media_type=STATIC_FILES[name], headers=headers)


def ui_router() -> APIRouter:
    """``/`` (the page), ``/favicon.ico`` and ``/static/<file>``; the app leaves all three open."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def index() -> Response:
        return _file_response("index.html", page=True)

    @router.get("/favicon.ico")
    def favicon() -> Response:
        return _file_response("favicon.svg")

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES or name == "index.html":
            raise HTTPException(404, "no such file")
        return _file_response(name)

    return router
