"""Pairwise statistics against numbers worked out by hand (the arithmetic is in each test)."""

from __future__ import annotations

import math

import pytest

from deepresearch.bench.stats import (
    WTL,
    Game,
    Interval,
    Result,
    bootstrap,
    bootstrap_elo,
    bootstrap_win_score,
    bradley_terry,
    combine_orders,
    elo,
    elo_ratings,
    expected_score,
    flip,
    percentile,
    preference_result,
    result_of,
    win_matrix,
    win_tie_loss,
    win_tie_loss_by,
)


def games(a: str, b: str, wins: int, ties: int = 0, losses: int = 0, prefix: str = "") -> list[Game]:
    """``wins``/``ties``/``losses`` of ``a`` against ``b``, one task each."""
    results: list[Result] = ["win"] * wins + ["tie"] * ties + ["loss"] * losses
    return [Game(f"{prefix}{a}{b}{i}", a, b, result) for i, result in enumerate(results)]


# --- labels


def test_outcomes_map_to_results_by_side() -> None:
    assert result_of("left_better", a_on_left=True) == "win"
    assert result_of("left_better", a_on_left=False) == "loss"
    assert result_of("right_better", a_on_left=True) == "loss"
    assert result_of("right_better", a_on_left=False) == "win"
    for both in ("both_good", "both_fair", "both_poor"):
        assert result_of(both, a_on_left=True) == result_of(both, a_on_left=False) == "tie"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown outcome"):
        result_of("tie", a_on_left=True)  # type: ignore[arg-type]
    assert preference_result("left", a_on_left=False) == "loss"
    assert preference_result("right", a_on_left=False) == "win"
    assert preference_result("tie", a_on_left=True) == "tie"
    assert [flip(r) for r in ("win", "tie", "loss")] == ["loss", "tie", "win"]


def test_orders_that_disagree_combine_to_a_tie() -> None:
    assert combine_orders(["win", "win"]) == "win"
    assert combine_orders(["loss", "loss"]) == "loss"
    assert combine_orders(["win", "loss"]) == "tie"
    assert combine_orders(["win", "tie"]) == "tie"
    assert combine_orders(["tie"]) == "tie"
    with pytest.raises(ValueError):
        combine_orders([])


# --- win / tie / loss


def test_win_tie_loss_counts_failures_apart() -> None:
    counts = win_tie_loss(["win", "win", "tie", "loss", None])
    assert counts == WTL(wins=2, ties=1, losses=1, failed=1)
    assert counts.n == 4
    assert counts.win_score == pytest.approx((2 + 0.5) / 4)  # 0.625: the failure is not in N
    assert win_tie_loss([None, None]).win_score is None
    with pytest.raises(ValueError, match="unknown result"):
        win_tie_loss(["draw"])  # type: ignore[list-item]


def test_win_score_reproduces_the_papers_numbers() -> None:
    # ADR-Bench, Step-DR vs Qwen DeepResearch: 59 W, 6 T, 5 L of 70.
    counts = win_tie_loss(["win"] * 59 + ["tie"] * 6 + ["loss"] * 5)
    assert counts.win_score == pytest.approx(62 / 70)
    opponent = win_tie_loss(["loss"] * 59 + ["tie"] * 6 + ["win"] * 5)
    assert round(100 * (opponent.win_score or 0), 1) == 11.4  # the paper's "opp. win score"


def test_win_tie_loss_by_dimension() -> None:
    rows: list[dict[str, Result | None]] = [
        {"overall": "win", "readability": "loss"},
        {"overall": "tie", "readability": None},
        {"overall": "win"},
    ]
    by = win_tie_loss_by(rows)
    assert by["overall"] == WTL(2, 1, 0, 0)
    assert by["readability"] == WTL(0, 0, 1, 2)  # one None, one missing


# --- Bradley–Terry and Elo


def test_win_matrix_counts_ties_as_half_wins() -> None:
    systems, wins = win_matrix(games("A", "B", 2, 1, 1))
    assert systems == ["A", "B"]
    assert wins == {("A", "B"): 2.5, ("B", "A"): 1.5}
    with pytest.raises(ValueError, match="itself"):
        win_matrix([Game("t", "A", "A", "win")])


def test_bradley_terry_recovers_strengths_the_data_were_drawn_from() -> None:
    # Strengths 4 : 2 : 1 make P(A>B) = 4/6, P(A>C) = 4/5, P(B>C) = 2/3. With exactly those shares of
    # wins (4 of 6, 4 of 5, 2 of 3) the score equations hold at p = (4, 2, 1), so that is the MLE.
    data = games("A", "B", 4, 0, 2) + games("A", "C", 4, 0, 1) + games("B", "C", 2, 0, 1)
    strengths = bradley_terry(data, prior=0)
    # normalised to geometric mean 1: (4·2·1)^(1/3) = 2
    assert strengths["A"] == pytest.approx(2.0)
    assert strengths["B"] == pytest.approx(1.0)
    assert strengths["C"] == pytest.approx(0.5)
    # Elo: 400·log10(p) = 120.41, 0, −120.41; their mean is 0, so mean-anchored ratings are 1000 ± 120.41
    ratings = elo(data, prior=0)
    assert ratings["A"] == pytest.approx(1120.412, abs=1e-3)
    assert ratings["B"] == pytest.approx(1000.0, abs=1e-6)
    assert ratings["C"] == pytest.approx(879.588, abs=1e-3)
    anchored = elo(data, prior=0, anchor="C")  # C at 1000: A = 1000 + 400·log10(4) = 1240.82
    assert anchored["C"] == pytest.approx(1000.0)
    assert anchored["A"] == pytest.approx(1240.824, abs=1e-3)
    assert anchored["B"] == pytest.approx(1120.412, abs=1e-3)


def test_two_systems_have_a_closed_form_with_ties_as_half_wins() -> None:
    # 3 W, 1 T, 1 L: A scores 3.5, B 1.5, so p_A / p_B = 7/3 and the gap is 400·log10(7/3) = 147.19
    ratings = elo(games("A", "B", 3, 1, 1), prior=0)
    assert ratings["A"] - ratings["B"] == pytest.approx(147.19, abs=0.01)
    assert (ratings["A"] + ratings["B"]) / 2 == pytest.approx(1000.0)
    assert expected_score(ratings["A"], ratings["B"]) == pytest.approx(3.5 / 5)


def test_bradley_terry_solves_the_score_equations() -> None:
    # An uneven schedule with no closed form: check the MLE's defining equations instead,
    # Σ_j w_ij = Σ_j n_ij · p_i / (p_i + p_j) for every system i.
    data = (
        games("A", "B", 5, 2, 3)
        + games("B", "C", 1, 0, 4)
        + games("C", "D", 2, 3, 2)
        + games("D", "A", 3, 1, 1)
        + games("A", "C", 1, 1, 0)
    )
    p = bradley_terry(data, prior=0)
    systems, wins = win_matrix(data)
    played: dict[tuple[str, str], float] = {}
    for (i, j), value in wins.items():
        played[i, j] = played.get((i, j), 0.0) + value
        played[j, i] = played.get((j, i), 0.0) + value
    for i in systems:
        observed = sum(value for (winner, _), value in wins.items() if winner == i)
        expected = sum(n * p[i] / (p[i] + p[j]) for (a, j), n in played.items() if a == i)
        assert observed == pytest.approx(expected, rel=1e-8)
    assert math.prod(p.values()) == pytest.approx(1.0)


def test_the_prior_keeps_an_unbeaten_system_finite() -> None:
    sweep = games("A", "B", 10)
    with pytest.raises(ValueError, match="no finite"):
        bradley_terry(sweep, prior=0)
    # prior 0.1 adds 0.05 wins each way: p_A / p_B = 10.05 / 0.05 = 201, a gap of 400·log10(201) = 921.28
    ratings = elo(sweep, prior=0.1)
    assert ratings["A"] - ratings["B"] == pytest.approx(921.28, abs=0.01)
    # systems that never met are linked by the prior alone: rated equal
    apart = games("A", "B", 2, 0, 2) + games("C", "D", 1, 0, 1)
    linked = elo(apart, prior=0.1)
    assert linked == pytest.approx(dict.fromkeys("ABCD", 1000.0))
    with pytest.raises(ValueError, match="no finite"):
        bradley_terry(apart, prior=0)


def test_elo_ratings_refuse_an_unknown_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        elo_ratings({"A": 1.0, "B": 2.0}, anchor="Z")
    assert elo_ratings({"A": 10.0, "B": 1.0}, anchor="B", base=1500) == pytest.approx(
        {"A": 1900.0, "B": 1500.0}
    )


def test_a_system_without_games_is_rated_from_the_prior() -> None:
    ratings = elo(games("A", "B", 1, 0, 1), systems=["A", "B", "C"])
    assert ratings == pytest.approx(dict.fromkeys("ABC", 1000.0))
    with pytest.raises(ValueError, match="outside"):
        bradley_terry(games("A", "B", 1), systems=["A", "C"])


# --- bootstrap


def test_percentile_interpolates_linearly() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.25) == pytest.approx(1.75)
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0], 1.0) == 2.0


def test_bootstrap_is_reproducible_and_brackets_the_estimate() -> None:
    results: list[Result | None] = ["win"] * 30 + ["tie"] * 12 + ["loss"] * 18 + [None] * 3
    first = bootstrap_win_score(results, seed=7)
    again = bootstrap_win_score(results, seed=7)
    assert first == again
    assert first.estimate == pytest.approx((30 + 6) / 60)
    assert first.low < first.estimate < first.high
    assert first.level == 0.95
    # a binomial-ish standard error of ~0.06 makes a 95% interval roughly ±0.12
    assert 0.15 < first.high - first.low < 0.35


def test_bootstrap_of_a_unanimous_record_is_a_point() -> None:
    assert bootstrap_win_score(["win"] * 5, resamples=50) == Interval(1.0, 1.0, 1.0, 0.95)
    with pytest.raises(ValueError):
        bootstrap_win_score([None])


def test_bootstrap_resamples_items_as_a_whole() -> None:
    def mean_and_size(sample: list[list[int]]) -> dict[str, float]:
        flat = [x for group in sample for x in group]
        return {"mean": sum(flat) / len(flat), "groups": float(len(sample))}

    found = bootstrap([[1, 1], [3, 3]], mean_and_size, resamples=200, seed=1)
    assert found["groups"] == Interval(2.0, 2.0, 2.0, 0.95)
    assert found["mean"].low == 1.0
    assert found["mean"].high == 3.0


def test_the_seed_picks_the_resamples() -> None:
    values = [0.1 * i**1.5 for i in range(40)]

    def mean(sample: list[float]) -> dict[str, float]:
        return {"mean": sum(sample) / len(sample)}

    assert bootstrap(values, mean, seed=1) == bootstrap(values, mean, seed=1)
    assert bootstrap(values, mean, seed=1) != bootstrap(values, mean, seed=2)


def test_bootstrap_elo_over_tasks() -> None:
    data = games("A", "B", 6, 2, 2) + games("B", "C", 5, 3, 2) + games("A", "C", 7, 2, 1)
    first = bootstrap_elo(data, resamples=200, seed=3)
    assert first == bootstrap_elo(data, resamples=200, seed=3)
    point = elo(data)
    for system, interval in first.items():
        assert interval.estimate == pytest.approx(point[system])
        assert interval.low <= interval.estimate <= interval.high
    assert first["A"].estimate > first["B"].estimate > first["C"].estimate
    anchored = bootstrap_elo(data, anchor="B", resamples=50)
    assert (anchored["B"].low, anchored["B"].high) == pytest.approx((1000.0, 1000.0))
    with pytest.raises(ValueError, match="prior"):
        bootstrap_elo(data, prior=0)
