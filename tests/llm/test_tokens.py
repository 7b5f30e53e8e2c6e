import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from deepresearch.llm.tokens import (
    EXACT_COUNT_CHARS,
    MAX_PIECE_CHARS,
    O200K_SPLIT,
    RANK_FILE,
    O200kCounter,
    _rank_file,
    count_tokens,
    estimate_tokens,
    load_ranks,
)

CORPUS = Path(__file__).parents[1] / "data" / "corpus"
PROMPTS = Path(__file__).parents[2] / "src" / "deepresearch" / "agent" / "prompts"


@pytest.fixture(scope="module")
def reference():
    """bpe-openai's Rust encoder: the parity reference, installed by the ``test`` extra only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bpe_openai = pytest.importorskip(
            "bpe_openai",
            reason="the parity tests compare with bpe-openai's encoder: pip install -e '.[test]'",
        )
        return bpe_openai.get_encoding("o200k_base")


def samples() -> list[str]:
    texts = [p.read_text() for p in sorted(CORPUS.rglob("*")) if p.is_file()]
    texts += [p.read_text() for p in sorted(PROMPTS.rglob("*")) if p.is_file()]
    rng = random.Random(7)
    alphabet = "abcXYZ019 \n\t.,;:'\"!?-_/\\()[]{}<>@#$%^&*=+~`|éüñ中文日本語한국어🙂🚀\u200b"
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 400))) for _ in range(300)]
    texts += [
        "I'm sure they'll say we've done it, DON'T you THINK'S fine?",
        "<|endoftext|> special text is ordinary here <|endofprompt|>",
        "x" * 5000,
        "abcdefghij" * 300,
        "数据" * 2000,
        "  \n\n\n   trailing   ",
        "https://example.com/a/b?c=1&d=2#frag 12345678901234 3.14159",
    ]
    return texts


@pytest.fixture(scope="module")
def counter() -> O200kCounter:
    return O200kCounter(load_ranks(_rank_file()))


def cuts(text: str) -> int:
    """Where the counter splits pre-tokens longer than ``MAX_PIECE_CHARS``."""
    import regex

    return sum((len(piece) - 1) // MAX_PIECE_CHARS for piece in regex.findall(O200K_SPLIT, text))


def test_counts_equal_the_reference_encoder(reference, counter):
    long_pieces = 0
    for text in samples():
        exact = len(reference.encode_ordinary(text))
        if cuts(text) == 0:
            assert counter(text) == exact, text[:80]
        else:  # a pre-token no word reaches, counted in pieces: off by about a token per cut
            long_pieces += 1
            assert exact - cuts(text) <= counter(text) <= exact + 2 * cuts(text), text[:80]
    assert long_pieces == 3  # "x" * 5000, "abcdefghij" * 300, "数据" * 2000


def test_beyond_the_exact_prefix_the_rest_is_counted_from_samples(reference, counter):
    text = "\n\n".join(p.read_text() for p in sorted(CORPUS.rglob("*.md")))
    for size in (EXACT_COUNT_CHARS + 5_000, 4 * EXACT_COUNT_CHARS, 7 * EXACT_COUNT_CHARS):
        long = (text * (size // len(text) + 1))[:size]
        exact = len(reference.encode_ordinary(long))
        assert abs(counter(long) - exact) <= exact // 20, size  # within 5 %


def test_estimates_of_huge_texts_come_from_samples():
    assert estimate_tokens("数" * 3_000_000) == 3_000_000
    assert abs(estimate_tokens("ab" * 3_000_000) - 2_000_000) <= 100
    mixed = ("数据" + "abcdef") * 500_000
    assert abs(estimate_tokens(mixed) - (1_000_000 + 1_000_000)) <= 1_000


def test_count_tokens_uses_the_exact_counter():
    assert count_tokens("") == 0
    assert count_tokens("Hello world") == 2


def test_a_tampered_rank_file_is_refused(tmp_path):
    import gzip

    bad = tmp_path / "o200k_base.tiktoken.gz"
    bad.write_bytes(gzip.compress(b"IQ== 0\n"))
    with pytest.raises(ValueError, match="not the published"):
        load_ranks(bad)


def test_estimate_leans_high_for_cjk_and_latin():
    assert estimate_tokens("数据" * 10) == 20
    assert estimate_tokens("abcdef") == 2


def test_the_rank_file_is_package_data_and_needs_no_bpe_openai():
    """Counting is exact with bpe-openai unimportable: the ranks come from our own package data."""
    import deepresearch

    shipped = Path(str(_rank_file()))
    assert shipped == Path(deepresearch.__file__).parent / "llm" / "data" / RANK_FILE
    assert (shipped.parent / "o200k_base.LICENSE").read_text().count("MIT License") == 2
    script = (
        "import sys; sys.modules['bpe_openai'] = None\n"  # any import of bpe_openai now fails
        "from deepresearch.llm.tokens import O200kCounter, _counter, count_tokens\n"
        "assert isinstance(_counter(), O200kCounter), _counter()\n"
        "print(count_tokens('Hello world'), count_tokens('I\\'m sure they\\'ll say we\\'ve done it'))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "7"]  # what bpe-openai's encoder gives
    assert "estimating" not in done.stderr


def same_ranks(table, shipped) -> bool:
    """Every shipped token has its rank in ``table``, and nothing else is there."""
    return len(table) == len(shipped) and all(table.get(token) == rank for token, rank in shipped.items())


def test_the_rank_copy_is_written_reused_and_a_damaged_one_replaced(tmp_path: Path) -> None:
    from deepresearch.llm.tokens import RANK_CACHE_PREFIX, RankTable, _rank_file, cached_ranks, load_ranks

    shipped = load_ranks(_rank_file())
    built = cached_ranks(tmp_path)  # decoded from the shipped file, copy written
    assert isinstance(built, RankTable) and same_ranks(built, shipped)
    assert built.get(b"\xff\xfe not a token") == -1 and b"hello" in built and "hello" not in built
    [copy] = tmp_path.glob(f"{RANK_CACHE_PREFIX}*.bin")
    assert same_ranks(cached_ranks(tmp_path), shipped)  # read back from the copy
    assert list(tmp_path.glob(f"{RANK_CACHE_PREFIX}*.bin")) == [copy]

    damaged = bytearray(copy.read_bytes())
    damaged[-1] ^= 0xFF  # one flipped bit: the name's hash no longer matches
    copy.write_bytes(bytes(damaged))
    forged = tmp_path / f"{RANK_CACHE_PREFIX}{'0' * 64}.bin"
    forged.write_bytes(b"\x01\x00a")
    assert same_ranks(cached_ranks(tmp_path), shipped)
    assert not forged.exists()
    [fresh] = tmp_path.glob(f"{RANK_CACHE_PREFIX}*.bin")
    assert fresh.read_bytes() != bytes(damaged)


def test_a_copy_that_hashes_right_but_does_not_hold_together_is_refused() -> None:
    from deepresearch.llm.tokens import RankTable

    assert RankTable.from_bytes(b"") is None
    assert RankTable.from_bytes(b"\x00" * 64) is None  # no ranks
    small = RankTable.build({b"a": 0, b"b": 1, b"ab": 2})
    assert small is not None and small.get(b"ab") == 2 and small.get(b"ba") == -1
    assert RankTable.build({b"a": 0, b"b": 5}) is None  # ranks with gaps: not the layout


def test_counts_from_the_table_equal_counts_from_the_dict() -> None:
    from deepresearch.llm.tokens import O200kCounter, RankTable, _rank_file, load_ranks

    shipped = load_ranks(_rank_file())
    table = RankTable.build(shipped)
    assert table is not None
    text = "Retrieval ranks passages 研究数据 😀 Ünïcödé supercalifragilistic 1234567 \t\n" * 20
    assert O200kCounter(table)(text) == O200kCounter(shipped)(text)


def test_an_unwritable_cache_folder_still_counts(tmp_path: Path) -> None:
    from deepresearch.llm.tokens import _rank_file, cached_ranks, load_ranks

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert same_ranks(cached_ranks(blocker / "sub"), load_ranks(_rank_file()))


def test_the_rank_copy_is_mapped_not_read_and_an_empty_or_short_one_is_replaced(tmp_path: Path) -> None:
    import hashlib
    import mmap

    from deepresearch.llm.tokens import RANK_CACHE_PREFIX, _rank_file, cached_ranks, load_ranks

    cached_ranks(tmp_path)
    mapped = cached_ranks(tmp_path)
    assert isinstance(mapped._data, mmap.mmap)  # pages come in as lookups need them
    shipped = load_ranks(_rank_file())
    assert same_ranks(mapped, shipped)

    for bad in (b"", b"\x00" * 9):  # mmap refuses an empty file; a short one does not describe a table
        for old in tmp_path.glob("*.bin"):
            old.unlink()
        (tmp_path / f"{RANK_CACHE_PREFIX}{hashlib.sha256(bad).hexdigest()}.bin").write_bytes(bad)
        assert same_ranks(cached_ranks(tmp_path), shipped)
        [copy] = tmp_path.glob("*.bin")
        assert copy.stat().st_size > 1_000_000
