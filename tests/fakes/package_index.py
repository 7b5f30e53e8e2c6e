"""A fake Python package index on 127.0.0.1: the test double of PyPI for ``deepresearch models pull``.

It speaks the simple repository API the way PyPI does: ``GET /simple/<project>/`` answers PEP 691 JSON
when the ``Accept`` header asks for ``application/vnd.pypi.simple.v1+json`` and PEP 503 HTML otherwise
(``html_only`` forces HTML, as old mirrors do), and ``GET /files/<filename>`` serves the file with a
``Content-Length``. HTML pages use relative links with a ``#sha256=`` fragment; JSON pages use absolute
URLs, so both URL forms are exercised.

Knobs: ``publish(project, filename, data)`` adds a file, ``advertise_sha256`` makes the index claim
another hash (a corrupted mirror), ``cut_after`` closes the connection after that many bytes of a
download (a dropped link). Every request is recorded as ``(path, accept header)``.

``make_wheel`` builds a small wheel in memory with ``zipfile``, for tests that need one without a server.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from tests.fakes.serve import ThreadedServer

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def make_wheel(members: dict[str, bytes]) -> bytes:
    """A zip archive (what a wheel is) holding ``members``, path → content."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, content in members.items():
            archive.writestr(path, content)
    return buffer.getvalue()


@dataclass
class Published:
    project: str
    filename: str
    data: bytes
    advertise_sha256: str | None = None
    """The hash the index claims; ``None`` means the true one. ``""`` leaves the hash out."""


@dataclass
class FakePackageIndex:
    """The fake's state and its ASGI app; start it with ``start_fake_package_index()``."""

    base_url: str = ""
    files: dict[str, Published] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    html_only: bool = False
    cut_after: int | None = None
    _serving: ThreadedServer | None = None

    @property
    def index_url(self) -> str:
        """What to pass as ``index_url`` (like ``https://pypi.org/simple``)."""
        return f"{self.base_url}/simple"

    def publish(
        self, project: str, filename: str, data: bytes, *, advertise_sha256: str | None = None
    ) -> None:
        self.files[filename] = Published(project, filename, data, advertise_sha256)

    def reset(self) -> None:
        self.files.clear()
        self.requests.clear()
        self.html_only = False
        self.cut_after = None

    def start(self, port: int = 0) -> None:
        self._serving = ThreadedServer(self, "fake-package-index")
        self.base_url = f"http://127.0.0.1:{self._serving.start(port)}"

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        path = scope["path"]
        self.requests.append((path, headers.get("accept", "")))
        parts = [part for part in path.split("/") if part]
        if len(parts) == 2 and parts[0] == "simple":
            await self._project_page(parts[1], headers.get("accept", ""), send)
        elif len(parts) == 2 and parts[0] == "files" and parts[1] in self.files:
            await self._file(self.files[parts[1]].data, send)
        else:
            await _respond(send, 404, "text/plain", b"not found")

    async def _project_page(self, project: str, accept: str, send: Send) -> None:
        published = [item for item in self.files.values() if item.project == project]
        if not published:
            await _respond(send, 404, "text/plain", b"no such project")
            return
        if SIMPLE_JSON in accept and not self.html_only:
            rows = []
            for item in published:
                row: dict[str, Any] = {
                    "filename": item.filename,
                    "url": f"{self.base_url}/files/{item.filename}",
                    "hashes": _hashes(item),
                    "size": len(item.data),
                    "yanked": False,
                }
                rows.append(row)
            body = {"meta": {"api-version": "1.1"}, "name": project, "files": rows}
            await _respond(send, 200, SIMPLE_JSON, json.dumps(body).encode())
            return
        links = []
        for item in published:
            sha256 = _hashes(item).get("sha256")
            href = f"../../files/{item.filename}" + (f"#sha256={sha256}" if sha256 else "")
            links.append(f'<a href="{escape(href)}">{escape(item.filename)}</a><br/>')
        page = (
            f"<!DOCTYPE html><html><body><h1>Links for {escape(project)}</h1>{''.join(links)}</body></html>"
        )
        await _respond(send, 200, "text/html; charset=utf-8", page.encode())

    async def _file(self, data: bytes, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        if self.cut_after is not None:
            # the declared length is never reached: the client sees the connection drop mid-body
            await send({"type": "http.response.body", "body": data[: self.cut_after], "more_body": True})
            raise ConnectionAbortedError("fake package index: download cut on purpose")
        step = 64 * 1024
        for start in range(0, len(data), step):
            more = start + step < len(data)
            await send({"type": "http.response.body", "body": data[start : start + step], "more_body": more})
        if not data:
            await send({"type": "http.response.body", "body": b""})


def _hashes(item: Published) -> dict[str, str]:
    if item.advertise_sha256 == "":
        return {}
    return {"sha256": item.advertise_sha256 or hashlib.sha256(item.data).hexdigest()}


async def _respond(send: Send, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def start_fake_package_index(port: int = 0) -> FakePackageIndex:
    """A running ``FakePackageIndex``; call ``.stop()`` when done."""
    index = FakePackageIndex()
    index.start(port)
    return index
