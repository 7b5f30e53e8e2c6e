import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_docs_are_current():
    done = subprocess.run(
        [sys.executable, "docs/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_public_api_is_sorted_and_complete():
    import deepresearch

    assert deepresearch.__all__ == sorted(deepresearch.__all__)
    for name in deepresearch.__all__:
        assert getattr(deepresearch, name) is not None


def test_judge_api_is_sorted_and_importable():
    import deepresearch.judge as judge

    assert judge.__all__ == sorted(judge.__all__)
    for name in judge.__all__:
        assert getattr(judge, name) is not None
