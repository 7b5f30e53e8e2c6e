"""``apply_patch``: exact, whitespace-insensitive and fuzzy matching, and the feedback on failure."""

import random

import pytest

from deepresearch.errors import ToolError
from deepresearch.tools.patch import FUZZY_THRESHOLD, apply_patch

REPORT = """# Solid-state batteries

## Market

The market for solid-state batteries grew 40% in 2024, driven by demand from electric vehicles. \
Analysts expect the growth to continue as production costs fall and energy density improves.

## Technology

- Sulfide electrolytes offer high ionic conductivity.
    - They are sensitive to moisture.
- Oxide electrolytes are stable but brittle.

## Outlook

Mass production is expected before 2030.
"""


def test_exact_unique_match_replaces_only_that_place():
    out = apply_patch(
        REPORT, "Mass production is expected before 2030.", "Mass production is expected by 2028."
    )
    assert out.matched_by == "exact" and out.similarity == 1.0
    assert "expected by 2028." in out.text and "before 2030" not in out.text
    assert (
        out.start_line
        == out.end_line
        == REPORT.split("\n").index("Mass production is expected before 2030.") + 1
    )
    assert out.text.replace("by 2028", "before 2030") == REPORT


def test_exact_match_reports_line_ranges_before_and_after():
    text = "a\nb\nc\nd\n"
    out = apply_patch(text, "b\nc", "B\nX\nC")
    assert out.text == "a\nB\nX\nC\nd\n"
    assert (out.start_line, out.end_line) == (2, 3)
    assert (out.new_start_line, out.new_end_line) == (2, 4)
    assert out.replaced == "b\nc"


def test_duplicate_fragment_is_refused_with_its_line_numbers():
    text = "intro\nsee the table\nmiddle\nsee the table\nend\n"
    with pytest.raises(ToolError) as err:
        apply_patch(text, "see the table", "see Table 2")
    message = str(err.value)
    assert "2 times" in message and "lines 2, 4" in message and "context" in message
    out = apply_patch(text, "middle\nsee the table", "middle\nsee Table 2")  # context disambiguates
    assert out.text == "intro\nsee the table\nmiddle\nsee Table 2\nend\n"


def test_empty_old_is_refused():
    for old in ("", "  \n "):
        with pytest.raises(ToolError, match="write or append"):
            apply_patch(REPORT, old, "x")


def test_whitespace_differences_match_and_keep_the_files_indentation():
    old = "- Sulfide   electrolytes offer high ionic conductivity.\n  - They are sensitive to moisture.  "
    new = "- Sulfide electrolytes offer the highest ionic conductivity.\n  - They degrade in humid air."
    out = apply_patch(REPORT, old, new)
    assert out.matched_by == "whitespace" and out.similarity == 1.0
    assert (
        "- Sulfide electrolytes offer the highest ionic conductivity.\n    - They degrade in humid air.\n"
        in out.text
    )
    assert "sensitive to moisture" not in out.text
    assert out.text.count("\n") == REPORT.count("\n")


def test_whitespace_match_across_reflowed_lines():
    old = "Analysts expect the growth\nto continue as production\ncosts fall"
    out = apply_patch(REPORT, old, "Analysts expect growth to slow")
    assert out.matched_by == "whitespace"
    assert "Analysts expect growth to slow and energy density improves." in out.text


def test_whitespace_duplicates_are_refused():
    text = "alpha  beta\ngamma\nalpha\tbeta\n"
    with pytest.raises(ToolError, match=r"ignoring whitespace.*lines 1, 3"):
        apply_patch(text, "alpha beta", "x")


def test_crlf_file_keeps_crlf_line_endings():
    text = "first line\r\nsecond line\r\nthird line\r\n"
    out = apply_patch(text, "second line\nthird line\n", "2nd line\nadded line\n3rd line\n")
    assert out.matched_by == "whitespace"
    assert out.text == "first line\r\n2nd line\r\nadded line\r\n3rd line\r\n"
    out = apply_patch(text, "second line", "2nd\nline")  # single-line old: exact, new adopts CRLF
    assert out.matched_by == "exact" and out.text == "first line\r\n2nd\r\nline\r\nthird line\r\n"


def test_deleting_whole_lines_takes_their_line_break():
    text = "keep\n  drop me\nkeep too\n"
    assert apply_patch(text, "drop me\n", "").text == "keep\nkeep too\n"
    assert apply_patch(text, "drop  me", "").text == "keep\nkeep too\n"
    assert apply_patch(text, "drop", "").text == "keep\n   me\nkeep too\n"


def test_fuzzy_match_tolerates_typos_inside_a_long_paragraph():
    old = "The market for solid-sate batteries grew 40% in 2024, drivn by demand"
    out = apply_patch(REPORT, old, "The market for solid-state batteries grew 45% in 2024, driven by demand")
    assert out.matched_by == "fuzzy" and FUZZY_THRESHOLD <= out.similarity < 1
    assert "grew 45% in 2024, driven by demand from electric vehicles. Analysts expect" in out.text
    assert out.replaced == "The market for solid-state batteries grew 40% in 2024, driven by demand"
    assert out.text.count("\n") == REPORT.count("\n")


def test_fuzzy_match_over_several_lines():
    old = "## Technologgy\n\n- Sulfide electrolytes ofer high ionic conductivity.\n"
    out = apply_patch(REPORT, old, "## Chemistry\n\n- Sulfide electrolytes offer high ionic conductivity.\n")
    assert out.matched_by == "fuzzy"
    assert "## Chemistry\n\n- Sulfide electrolytes offer high ionic conductivity.\n    - They are" in out.text
    assert (out.start_line, out.end_line) == (7, 9)


def test_fuzzy_match_in_cjk_text():
    text = (
        "# 报告\n\n固态电池市场在2024年增长了百分之四十，主要受电动汽车需求推动。分析人士预计增长将持续。\n"
    )
    out = apply_patch(text, "固态电池市场在2024年增涨了百分之四十", "固态电池市场在2024年增长了百分之四十五")
    assert out.matched_by == "fuzzy"
    assert "增长了百分之四十五，主要受" in out.text


def test_fuzzy_ambiguity_shows_both_candidates():
    para = "Costs fell sharply in 2023 because cathode materials became cheaper across the industry."
    text = f"# A\n\n{para}\n\n# B\n\n{para.replace('sharply', 'slowly')}\n"
    with pytest.raises(ToolError) as err:
        apply_patch(text, para.replace("cathode", "cathod"), "x")
    message = str(err.value)
    assert "about equally well" in message and "line 3" in message and "line 7" in message
    assert "similarity" in message and "context" in message


def test_no_match_shows_the_closest_region_and_its_similarity():
    with pytest.raises(ToolError) as err:
        apply_patch(REPORT, "Mass manufacturing might begin around 2035 in Europe.", "x")
    message = str(err.value)
    assert "not found" in message and "similarity" in message and "line 15" in message
    assert "Mass production is expected before 2030." in message


def test_nothing_resembling_old():
    with pytest.raises(ToolError, match="not found"):
        apply_patch("", "something", "x")


def _long_report(lines: int) -> list[str]:
    rng = random.Random(7)
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    out = []
    for i in range(lines):
        if i % 4 == 3:
            out.append("")
        else:
            out.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(4, 12))))
    return out


def test_patch_finds_a_fuzzy_passage_in_a_20000_line_file():
    """Correctness at size; how long it takes is ``benchmarks/patch_speed.py``'s business."""
    lines = _long_report(20_000)
    text = "\n".join(lines) + "\n"
    target = lines[14_000] + "\n" + lines[14_001]
    old = target[:5] + "#" + target[6:30] + target[31:]  # two typos
    out = apply_patch(text, old, "REPLACED")
    assert out.matched_by == "fuzzy" and (out.start_line, out.end_line) == (14_001, 14_002)
    with pytest.raises(ToolError, match="not found"):
        apply_patch(text, "no such passage anywhere in this text at all", "x")


def test_fuzzy_phrase_repeated_within_one_paragraph_is_ambiguous():
    phrase = "prices of lithium carbonate fell by half"
    text = f"In 2023 {phrase} while demand grew, and in 2024 {phrase} again as new mines opened in Africa.\n"
    with pytest.raises(ToolError, match="about equally well"):
        apply_patch(text, phrase.replace("carbonate", "carbonat"), "x")
