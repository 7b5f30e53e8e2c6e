"""Statistics of pairwise comparisons: win/tie/loss, Bradley–Terry strengths on the Elo scale, and
bootstrap confidence intervals over tasks.

ADR-Bench compares two reports at a time (Step-DeepResearch §5.3): a reviewer, human or model, picks
one of five overall outcomes — left better, right better, both good, both fair, both poor — and a
preference on each of four dimensions. For system A against system B the three "both" outcomes are
ties. The numbers the paper reports are win/tie/loss counts and the win score ``(W + T/2) / N``; its
Elo leaderboard is what Bradley–Terry strengths become on the Elo scale. Everything here is a pure
function of plain data (labels, ``Game`` tuples), so human and LLM verdicts go through the same code
and the tests can check it against numbers worked out by hand.

Conventions:
- A failed comparison (``None``) is counted in ``WTL.failed`` and nowhere else: never a silent tie.
- Bradley–Terry: P(i beats j) = pᵢ / (pᵢ + pⱼ); a tie is half a win for each side. The maximum-likelihood
  strengths are found by Newman's fixed-point iteration (a faster relative of Zermelo's / Hunter's MM
  update, with the same fixed point). ``prior`` adds that many virtual games, all ties, between every
  pair of systems: a tiny shrinkage toward equality that keeps a system that never lost (or never won)
  finite, and links systems that never met. With ``prior=0`` the plain MLE is returned, which exists
  only when the "has beaten" graph is strongly connected (otherwise ``ValueError``).
- Elo = ``base + 400·log10(p)``, shifted so that the ratings' mean is ``base`` (default), or so that
  the ``anchor`` system is exactly ``base``. A 400-point gap means 10:1 odds.
- Bootstrap: resample *tasks* with replacement (all games of a drawn task come along), recompute the
  statistic, take the percentile interval; ``seed`` makes it reproducible. Percentiles interpolate
  linearly between order statistics (NumPy's default).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

T = TypeVar("T")

PairOutcome = Literal["left_better", "right_better", "both_good", "both_fair", "both_poor"]
"""The five overall judgments of an ADR-Bench side-by-side comparison."""
OUTCOMES: tuple[PairOutcome, ...] = get_args(PairOutcome)
Preference = Literal["left", "right", "tie"]
"""A preference on one dimension, by position."""
PREFERENCES: tuple[Preference, ...] = get_args(Preference)
Result = Literal["win", "tie", "loss"]
"""The outcome for system A against system B."""
RESULTS: tuple[Result, ...] = get_args(Result)
Dimension = Literal["information_completeness", "content_depth", "requirement_fitness", "readability"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
DIMENSION_TITLES: dict[str, str] = {
    "overall": "Overall",
    "information_completeness": "Information completeness",
    "content_depth": "Content depth",
    "requirement_fitness": "Requirement fitness",
    "readability": "Readability",
}

DEFAULT_PRIOR = 0.1
"""Virtual tied games per pair of systems in ``bradley_terry``."""
DEFAULT_BASE = 1000.0
ELO_SCALE = 400.0
DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95

_FLIP: dict[Result, Result] = {"win": "loss", "tie": "tie", "loss": "win"}


# --- labels to results


def result_of(outcome: PairOutcome, *, a_on_left: bool) -> Result:
    """A's result from an overall outcome, given on which side A was shown; "both …" is a tie."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
    if outcome == "left_better":
        return "win" if a_on_left else "loss"
    if outcome == "right_better":
        return "loss" if a_on_left else "win"
    return "tie"


def preference_result(preference: Preference, *, a_on_left: bool) -> Result:
    """A's result from a positional preference on one dimension."""
    if preference not in PREFERENCES:
        raise ValueError(f"unknown preference {preference!r}; use one of {', '.join(PREFERENCES)}")
    if preference == "tie":
        return "tie"
    return "win" if (preference == "left") == a_on_left else "loss"


def flip(result: Result) -> Result:
    """B's result for A's result."""
    return _FLIP[result]


def combine_orders(results: Sequence[Result]) -> Result:
    """One result from readings of the same pair shown in different orders: the common result when
    they all agree, else a tie (position bias must not decide a comparison)."""
    if not results:
        raise ValueError("no results to combine")
    return results[0] if all(r == results[0] for r in results) else "tie"


# --- win / tie / loss


@dataclass(frozen=True)
class WTL:
    """Win/tie/loss counts of A against B; failed comparisons are kept apart."""

    wins: int
    ties: int
    losses: int
    failed: int = 0

    @property
    def n(self) -> int:
        """Comparisons that produced a result (the denominator of the win score)."""
        return self.wins + self.ties + self.losses

    @property
    def win_score(self) -> float | None:
        """(W + T/2) / N; None when nothing was compared."""
        return (self.wins + self.ties / 2) / self.n if self.n else None


def win_tie_loss(results: Iterable[Result | None]) -> WTL:
    """Count A's results; ``None`` marks a comparison that failed."""
    counts = dict.fromkeys(RESULTS, 0)
    failed = 0
    for result in results:
        if result is None:
            failed += 1
        elif result in counts:
            counts[result] += 1
        else:
            raise ValueError(f"unknown result {result!r}; use one of {', '.join(RESULTS)}")
    return WTL(wins=counts["win"], ties=counts["tie"], losses=counts["loss"], failed=failed)


def win_tie_loss_by(rows: Iterable[Mapping[str, Result | None]]) -> dict[str, WTL]:
    """``win_tie_loss`` per key (``overall`` and each dimension) over rows of results; a key missing
    from a row counts as failed there."""
    materialised = list(rows)
    keys = list(dict.fromkeys(key for row in materialised for key in row))
    return {key: win_tie_loss(row.get(key) for row in materialised) for key in keys}


# --- Bradley–Terry and Elo


@dataclass(frozen=True)
class Game:
    """One comparison between two systems on one task: ``result`` is ``a``'s."""

    task_id: str
    a: str
    b: str
    result: Result


def win_matrix(games: Iterable[Game]) -> tuple[list[str], dict[tuple[str, str], float]]:
    """The systems (in order of appearance) and ``wins[(i, j)]``: i's wins over j, ties counting ½."""
    systems: dict[str, None] = {}
    wins: dict[tuple[str, str], float] = defaultdict(float)
    for game in games:
        if game.a == game.b:
            raise ValueError(f"task {game.task_id!r}: a system cannot play itself ({game.a!r})")
        systems.setdefault(game.a)
        systems.setdefault(game.b)
        if game.result == "win":
            wins[game.a, game.b] += 1.0
        elif game.result == "loss":
            wins[game.b, game.a] += 1.0
        elif game.result == "tie":
            wins[game.a, game.b] += 0.5
            wins[game.b, game.a] += 0.5
        else:
            raise ValueError(f"unknown result {game.result!r}; use one of {', '.join(RESULTS)}")
    return list(systems), dict(wins)


def bradley_terry(
    games: Iterable[Game],
    *,
    prior: float = DEFAULT_PRIOR,
    systems: Sequence[str] | None = None,
    tol: float = 1e-10,
    max_iter: int = 10_000,
) -> dict[str, float]:
    """Bradley–Terry strengths (geometric mean 1) by maximum likelihood; see the module docstring.

    ``systems`` fixes the set and order of systems (a system without games is then rated from the
    prior alone); by default it is every system in ``games``. Iteration stops when no log-strength
    moves by more than ``tol`` in a sweep, or after ``max_iter`` sweeps.
    """
    if prior < 0:
        raise ValueError("prior must be at least 0")
    found, wins = win_matrix(games)
    names = list(systems) if systems is not None else found
    strangers = sorted(set(found) - set(names))
    if strangers:
        raise ValueError(f"games of systems outside the given list: {', '.join(strangers)}")
    if len(names) < 2:
        raise ValueError("Bradley–Terry needs at least two systems")
    index = {name: i for i, name in enumerate(names)}
    k = len(names)
    w = [[0.0] * k for _ in range(k)]
    for (winner, loser), value in wins.items():
        w[index[winner]][index[loser]] += value
    if prior > 0:
        for i in range(k):
            for j in range(k):
                if i != j:
                    w[i][j] += prior / 2
    elif not _strongly_connected(w):
        raise ValueError(
            "no finite Bradley–Terry solution: some systems never beat (or never lost to) the rest; "
            "use a prior > 0"
        )
    p = [1.0] * k
    for _ in range(max_iter):
        before = p[:]
        for i in range(k):  # in place (Gauss–Seidel): simultaneous updates can oscillate
            gained = sum(w[i][j] * p[j] / (p[i] + p[j]) for j in range(k) if j != i)
            conceded = sum(w[j][i] / (p[i] + p[j]) for j in range(k) if j != i)
            p[i] = gained / conceded
        centre = math.exp(sum(math.log(x) for x in p) / k)
        p = [x / centre for x in p]
        if max(abs(math.log(a / b)) for a, b in zip(p, before, strict=True)) < tol:
            break
    return {name: p[index[name]] for name in names}


def elo_ratings(
    strengths: Mapping[str, float], *, anchor: str | None = None, base: float = DEFAULT_BASE
) -> dict[str, float]:
    """Strengths on the Elo scale: mean ``base``, or ``anchor`` exactly at ``base``."""
    if not strengths:
        raise ValueError("no strengths to rate")
    raw = {name: ELO_SCALE * math.log10(value) for name, value in strengths.items()}
    if anchor is None:
        shift = base - sum(raw.values()) / len(raw)
    elif anchor in raw:
        shift = base - raw[anchor]
    else:
        raise ValueError(f"anchor {anchor!r} is not among the rated systems ({', '.join(raw)})")
    return {name: value + shift for name, value in raw.items()}


def elo(
    games: Iterable[Game],
    *,
    anchor: str | None = None,
    prior: float = DEFAULT_PRIOR,
    base: float = DEFAULT_BASE,
    systems: Sequence[str] | None = None,
) -> dict[str, float]:
    """Bradley–Terry Elo ratings of the systems in ``games``."""
    return elo_ratings(bradley_terry(games, prior=prior, systems=systems), anchor=anchor, base=base)


def expected_score(rating_a: float, rating_b: float) -> float:
    """A's expected score against B under the Elo model (ties counting ½)."""
    return 1.0 / (1.0 + 10 ** ((rating_b - rating_a) / ELO_SCALE))


def _strongly_connected(w: list[list[float]]) -> bool:
    """Whether every system can reach every other along "has beaten" edges (Ford's condition)."""
    k = len(w)

    def reach(forward: bool) -> set[int]:
        seen, stack = {0}, [0]
        while stack:
            i = stack.pop()
            for j in range(k):
                edge = w[i][j] if forward else w[j][i]
                if j not in seen and edge > 0:
                    seen.add(j)
                    stack.append(j)
        return seen

    return len(reach(True)) == k and len(reach(False)) == k


# --- bootstrap


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values``, interpolating linearly between order statistics."""
    if not values:
        raise ValueError("no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be within 0 and 1")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def bootstrap(
    items: Sequence[T],
    statistic: Callable[[list[T]], Mapping[str, float]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Interval]:
    """Percentile intervals of each value ``statistic`` returns, resampling ``items`` with replacement."""
    if not items:
        raise ValueError("no items to resample")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1")
    pool = list(items)
    estimate = statistic(pool)
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {key: [] for key in estimate}
    for _ in range(resamples):
        values = statistic(rng.choices(pool, k=len(pool)))
        for key in draws:
            draws[key].append(values[key])
    tail = (1.0 - level) / 2
    return {
        key: Interval(
            estimate=estimate[key],
            low=percentile(draws[key], tail),
            high=percentile(draws[key], 1.0 - tail),
            level=level,
        )
        for key in estimate
    }


def bootstrap_win_score(
    results: Iterable[Result | None],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """The win score with a bootstrap interval over tasks (one result per task; failures left out)."""
    done = [result for result in results if result is not None]
    if not done:
        raise ValueError("no comparison produced a result")

    def score(sample: list[Result]) -> dict[str, float]:
        return {"win_score": win_tie_loss(sample).win_score or 0.0}

    return bootstrap(done, score, resamples=resamples, seed=seed, level=level)["win_score"]


def bootstrap_elo(
    games: Iterable[Game],
    *,
    anchor: str | None = None,
    prior: float = DEFAULT_PRIOR,
    base: float = DEFAULT_BASE,
    resamples: int = 1000,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Interval]:
    """Elo ratings with bootstrap intervals, resampling tasks (each with all its games).

    Needs ``prior > 0``: a resample may leave a system unbeaten. With an ``anchor`` its interval is
    the single point ``base``; the others are relative to it.
    """
    if prior <= 0:
        raise ValueError("bootstrap_elo needs prior > 0 so that every resample has finite ratings")
    by_task: dict[str, list[Game]] = defaultdict(list)
    for game in games:
        by_task[game.task_id].append(game)
    systems, _ = win_matrix(game for group in by_task.values() for game in group)

    def ratings(sample: list[list[Game]]) -> dict[str, float]:
        flat = [game for group in sample for game in group]
        return elo(flat, anchor=anchor, prior=prior, base=base, systems=systems)

    return bootstrap(list(by_task.values()), ratings, resamples=resamples, seed=seed, level=level)
