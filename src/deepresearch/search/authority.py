"""Authority-aware re-ranking: among results about equally relevant, prefer accountable publishers.

The report behind this project (section 2.3.1) boosts "authoritative" sites — governments,
international organisations, standards bodies, journals — "when semantic relevance scores are
comparable", without giving a formula. This module is our reading of it, in two parts:

* ``AuthorityList``: domain patterns with a weight in [-1, 1], from the shipped list
  (``data/authority.yaml``) with the user's file (``Settings.authority_file``) merged on top. Positive
  weights boost, negative ones demote content farms and mirrors; the most specific matching pattern
  decides (see the YAML file's header for the pattern syntax).
* ``rerank``: a pure function that orders hits by ``relevance + margin · weight / 2``.

Why an additive term and not relevance bands: bands that chain (each hit within ``margin`` of the
next) can stretch until their first and last hits differ by far more than ``margin``, and bands with
fixed edges split near-ties that happen to straddle an edge. The additive form has neither problem
and gives a guarantee that is easy to state: because weights lie in [-1, 1], hit B is placed above a
hit A that was more relevant only if ``rel(A) − rel(B) < margin · (w(B) − w(A)) / 2`` — never when
A leads by ``margin`` or more. Authority decides near-ties; it never overturns a clear difference.

Relevance is read from what the backend gives (documented in ``relevance``): normalised scores when
every hit has one (the local index's BM25, providers that report a score), else the hit's position
under the DCG discount ``1 / log2(position + 1)`` — so a provider's first results, which differ most,
stay put, while its tail, where neighbours are nearly interchangeable, is open to reordering.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from deepresearch.errors import ConfigError
from deepresearch.search import SearchBackend, SearchHit
from deepresearch.search.wrapped import WrappedBackend

logger = logging.getLogger(__name__)

DEFAULT_MARGIN = 0.2
"""Largest relevance lead (relevance is in [0, 1], the best hit at 1) that authority can overturn:
an authoritative hit (weight 1) passes a neutral one within 0.1 of it, and a content farm
(weight −1) falls below an authoritative hit up to 0.2 less relevant."""
DEMOTE_WEIGHT = -1.0
"""Weight of every pattern in a file's ``demote`` list."""
GENERIC_COUNTRY_CODES = frozenset(
    {"ai", "am", "cc", "co", "fm", "gg", "io", "la", "ly", "me", "nu", "sh", "tk", "to", "tv", "ws"}
)
"""Country-code TLDs sold worldwide as generic names: a trailing ``*`` does not match them, because
``gov.io`` is anybody's domain, not a government's."""

RuleKind = Literal["exact", "domain", "country"]
_KIND_ORDER: dict[RuleKind, int] = {"country": 0, "domain": 1, "exact": 2}
_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$")
_COUNTRY_RE = re.compile(r"^[a-z]{2}$")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML was built with it
_TOP_KEYS = frozenset({"categories", "demote"})
_CATEGORY_KEYS = frozenset({"weight", "domains"})


@dataclass(frozen=True, slots=True)
class AuthorityRule:
    """One pattern of the list, parsed."""

    pattern: str
    """As written in the file (lower-cased)."""
    category: str
    """Category name, or ``demote``."""
    weight: float
    source: str
    """The file it came from."""
    kind: RuleKind
    labels: tuple[str, ...]
    """Literal host labels, e.g. ``("gov", )`` for ``*.gov.*``."""
    path: str = ""
    """Path prefix (``/docs``) the URL must be at or under; empty for any path."""
    order: int = 0
    """Position in reading order; a later rule wins a tie in specificity."""

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """Sort key: literal labels, path segments, exact > domain > country, then reading order."""
        segments = self.path.count("/")
        return (len(self.labels), segments, _KIND_ORDER[self.kind], self.order)

    def matches_path(self, path: str) -> bool:
        return not self.path or path == self.path or path.startswith(self.path + "/")


class AuthorityList:
    """Domain patterns and their weights; ``weight(url)`` is what ``rerank`` needs."""

    def __init__(self, rules: Iterable[AuthorityRule] = ()) -> None:
        self.rules: list[AuthorityRule] = list(rules)
        self._by_suffix: dict[tuple[str, ...], list[AuthorityRule]] = {}
        self._by_country_suffix: dict[tuple[str, ...], list[AuthorityRule]] = {}
        for rule in self.rules:
            table = self._by_country_suffix if rule.kind == "country" else self._by_suffix
            table.setdefault(rule.labels, []).append(rule)

    @classmethod
    def load(cls, extra: Path | None = None) -> AuthorityList:
        """The shipped list, with ``extra`` (a user file in the same format) merged on top.

        The user file adds patterns (a pattern it shares with the shipped list takes the user's
        category), and a weight it gives a shipped category applies to that whole category.
        """
        rules = list(_shipped_rules())
        if extra is None:
            return cls(rules)
        try:
            text = extra.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"authority list {extra}: cannot read it ({exc.strerror or exc})") from exc
        shipped_weights = {rule.category: rule.weight for rule in rules}
        weights, added = _parse(text, str(extra), inherited=shipped_weights, first_order=len(rules))
        rules = [
            dataclasses.replace(rule, weight=weights[rule.category]) if rule.category in weights else rule
            for rule in rules
        ]
        logger.debug("authority list: %d shipped rules, %d from %s", len(rules), len(added), extra)
        return cls([*rules, *added])

    def match(self, url: str) -> AuthorityRule | None:
        """The most specific rule that matches ``url``'s host (and path), or ``None``."""
        host, path = _host_and_path(url)
        if not host:
            return None
        labels = tuple(host.split("."))
        candidates: list[AuthorityRule] = []
        for i in range(len(labels)):
            for rule in self._by_suffix.get(labels[i:], ()):
                if (rule.kind == "domain" or i == 0) and rule.matches_path(path):
                    candidates.append(rule)
        country = labels[-1]
        if len(labels) > 1 and _COUNTRY_RE.match(country) and country not in GENERIC_COUNTRY_CODES:
            for i in range(len(labels) - 1):
                for rule in self._by_country_suffix.get(labels[i:-1], ()):
                    if rule.matches_path(path):
                        candidates.append(rule)
        return max(candidates, key=lambda rule: rule.specificity, default=None)

    def weight(self, url: str) -> float:
        """Boost (> 0) for authoritative sites, penalty (< 0) for demoted ones, 0 for the rest."""
        rule = self.match(url)
        return rule.weight if rule is not None else 0.0


# --- re-ranking ---------------------------------------------------------------------------------


def relevance(hits: Sequence[SearchHit]) -> list[float]:
    """Each hit's relevance in [0, 1], the best at 1; the rule ``rerank`` builds on.

    When every hit has a finite ``score`` (higher = better): ``(score − floor) / (top − floor)`` with
    ``top`` the highest score and ``floor`` = min(0, lowest score) — for the usual non-negative
    scores simply ``score / top``, so "within 0.1" means "within 10 % of the best hit's score",
    whatever the backend's scale. All-equal scores give 1 to every hit.

    Otherwise (web providers often report only an order): ``1 / log2(position + 1)``, the DCG
    discount, from the hit's 1-based position in the list (the backend's rank): 1, 0.63, 0.5, 0.43 …
    0.29 at 10, 0.18 at 50.
    """
    scores = [hit.score for hit in hits]
    if hits and all(s is not None and math.isfinite(s) for s in scores):
        values = [float(s) for s in scores if s is not None]
        top, floor = max(values), min(0.0, min(values))
        if top == floor:
            return [1.0] * len(values)
        return [(value - floor) / (top - floor) for value in values]
    return [1.0 / math.log2(position + 1) for position in range(1, len(hits) + 1)]


def rerank(
    hits: Sequence[SearchHit], authority: AuthorityList, *, margin: float = DEFAULT_MARGIN
) -> list[SearchHit]:
    """New hits ordered by ``relevance + margin · weight / 2`` (ties keep the input order), ``rank`` 1…n.

    A hit rises above a more relevant one only if their relevance differs by less than
    ``margin · (its weight − the other's) / 2``, which is below ``margin`` (module docstring).
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    keys = [
        rel + margin * authority.weight(hit.url) / 2 for rel, hit in zip(relevance(hits), hits, strict=True)
    ]
    order = sorted(range(len(hits)), key=lambda i: (-keys[i], i))
    return [dataclasses.replace(hits[i], rank=position) for position, i in enumerate(order, start=1)]


class AuthorityRanked(WrappedBackend):
    """A ``SearchBackend`` that re-ranks every result list of ``backend`` with ``rerank``.

    It asks the backend for ``limit`` hits, no more: a paid provider is not queried deeper for the
    sake of a tie-break. ``get_document`` and closing go to the wrapped backend.
    """

    def __init__(
        self, backend: SearchBackend, authority: AuthorityList, *, margin: float = DEFAULT_MARGIN
    ) -> None:
        super().__init__(backend)
        self.authority = authority
        self.margin = margin

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        hits = await self.backend.search(query, limit=limit)
        ranked = rerank(hits, self.authority, margin=self.margin)
        moved = sum(1 for before, after in zip(hits, ranked, strict=True) if before.url != after.url)
        logger.debug("authority re-rank %r: %d of %d hits moved", query, moved, len(hits))
        return ranked


# --- parsing ------------------------------------------------------------------------------------


@cache
def _shipped_rules() -> tuple[AuthorityRule, ...]:
    source = resources.files("deepresearch.search").joinpath("data", "authority.yaml")
    _, rules = _parse(source.read_text(encoding="utf-8"), "deepresearch/search/data/authority.yaml")
    return tuple(rules)


def parse_authority_yaml(text: str, source: str) -> list[AuthorityRule]:
    """The rules in one authority file; ``ConfigError`` naming ``source`` and the problem otherwise."""
    return _parse(text, source)[1]


def _parse(
    text: str, source: str, *, inherited: Mapping[str, float] | None = None, first_order: int = 0
) -> tuple[dict[str, float], list[AuthorityRule]]:
    """The weights a file gives explicitly, and its rules.

    ``inherited`` holds the weights of categories defined earlier (the shipped list), so a user file
    may add domains to one without repeating its weight.
    """
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"authority list {source}: not valid YAML ({_yaml_problem(exc)})") from exc
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        raise ConfigError(f"authority list {source}: expected a mapping with 'categories' and/or 'demote'")
    unknown = sorted(str(key) for key in data if key not in _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"authority list {source}: unknown key(s) {', '.join(unknown)} (expected categories, demote)"
        )
    weights: dict[str, float] = {}
    entries: list[tuple[str, float, Any]] = []
    categories = data.get("categories") or {}
    if not isinstance(categories, dict):
        raise ConfigError(f"authority list {source}: 'categories' must map names to {{weight, domains}}")
    for name, body in categories.items():
        where = f"authority list {source}: category {name!r}"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a mapping with 'weight' and 'domains'")
        if name == "demote":
            raise ConfigError(f"{where}: the name is reserved for the top-level 'demote' list")
        unknown = sorted(str(key) for key in body if key not in _CATEGORY_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (expected weight, domains)")
        if "weight" in body:
            weights[str(name)] = _check_weight(body["weight"], where)
        elif str(name) not in (inherited or {}):
            raise ConfigError(f"{where}: a new category needs a 'weight' between -1 and 1")
        weight = weights.get(str(name), (inherited or {}).get(str(name), 0.0))
        entries.append((str(name), weight, body.get("domains")))
    entries.append(("demote", DEMOTE_WEIGHT, data.get("demote")))

    rules: list[AuthorityRule] = []
    seen: dict[tuple[RuleKind, tuple[str, ...], str], str] = {}
    for category, weight, domains in entries:
        where = f"authority list {source}: {'demote' if category == 'demote' else f'category {category!r}'}"
        if domains is None:
            continue
        if not isinstance(domains, list):
            raise ConfigError(f"{where}: expected a list of domain patterns")
        for raw in domains:
            if not isinstance(raw, str):
                raise ConfigError(
                    f"{where}: {raw!r} is not a domain pattern (quote patterns that start with *)"
                )
            kind, labels, path = parse_pattern(raw, where)
            key = (kind, labels, path)
            if key in seen:
                raise ConfigError(f"{where}: {raw!r} is already listed under {seen[key]}")
            seen[key] = category
            rules.append(
                AuthorityRule(
                    pattern=raw.strip().lower(),
                    category=category,
                    weight=weight,
                    source=source,
                    kind=kind,
                    labels=labels,
                    path=path,
                    order=first_order + len(rules),
                )
            )
    return weights, rules


def parse_pattern(raw: str, where: str = "authority list") -> tuple[RuleKind, tuple[str, ...], str]:
    """``(kind, literal labels, path prefix)`` of one pattern; ``ConfigError`` prefixed by ``where``."""
    pattern = raw.strip().lower()
    host, slash, path = pattern.partition("/")
    path = ("/" + path).rstrip("/") if slash else ""
    kind: RuleKind = "domain"
    if host.startswith("="):
        kind, host = "exact", host[1:]
    elif host.startswith("*."):
        host = host[2:]
    if host.endswith(".*") and kind == "domain":
        kind, host = "country", host[:-2]
    labels = tuple(host.split("."))
    bad = [label for label in labels if not _LABEL_RE.match(label)]
    if bad:
        problem = (
            "'*' may only stand first ('*.gov') or last ('*.gov.*')"
            if any("*" in label for label in bad)
            else f"{bad[0]!r} is not a valid host label"
        )
        raise ConfigError(f"{where}: bad pattern {raw!r}: {problem}")
    return kind, labels, path


def _check_weight(weight: Any, where: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not -1.0 <= weight <= 1.0:
        raise ConfigError(f"{where}: weight must be a number between -1 and 1, got {weight!r}")
    return float(weight)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or exc}"
    return str(exc)


def _host_and_path(url: str) -> tuple[str, str]:
    """Lower-case host without port or trailing dot, and the path; ``("", "")`` when there is no host."""
    try:
        parts = urlsplit(url if "//" in url else "//" + url)
        host = parts.hostname or ""
    except ValueError:
        return "", ""
    return host.rstrip("."), parts.path
