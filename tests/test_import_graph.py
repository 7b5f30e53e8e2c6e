"""The parts of ``deepresearch`` depend on each other one way: no cycle between them.

A part is a subpackage (``agent``, ``llm``, ``tools``, ``search``, ``fetch``, ``judge``, ``bench``,
``server``, ``cli``, ``guided`` …) or a top-level module (``config``, ``runs``, ``display`` …). Every
module is parsed with ``ast`` and every import counts, wherever it is: at the top, inside a function
(a lazy import is still a dependency), under ``TYPE_CHECKING``; so does a string that names a module
of the package (``import_module("deepresearch.x")``, package data read with
``resources.files("deepresearch.x")``, a dotted path in a name → class map). A cycle between parts
fails, printed with the import lines that make it.

The imports that must stay for now are in ``ALLOWED``, each with the reason; an entry that matches no
import any more fails too, so the list can only shrink.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "deepresearch"

ALLOWED: dict[tuple[str, str], str] = {}
"""(importing module, imported module) → why the import stays for now."""

_MODULE_PATH = re.compile(r"deepresearch(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_.]*)?")


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module, ``deepresearch.llm.jsonmode``."""
    path: str
    """Its file, ``deepresearch/llm/jsonmode.py``."""
    line: int
    target: str
    """The imported module, ``deepresearch.agent.prompts``."""

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (a module, or a module's attribute) starts with."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """What ``module`` imports, one entry per (line, imported module)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    shown = f"{module.replace('.', '/')}{'/__init__' if is_package else ''}.py"
    found: dict[tuple[int, str], Import] = {}

    def add(name: str, line: int) -> None:
        target = resolve(name, known)
        if target is not None and target != module:
            found.setdefault((line, target), Import(module, shown, line, target))

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            for alias in node.names:  # `from pkg import submodule` names the submodule
                add(f"{origin}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = node.value.partition(":")[0]  # a module itself, not a file name like deepresearch.toml
            if _MODULE_PATH.fullmatch(node.value) and named in known and named != "deepresearch":
                add(named, node.lineno)
    return list(found.values())


def part(module: str) -> str:
    """``agent`` for ``deepresearch.agent.loop``, ``config`` for ``deepresearch.config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def all_imports() -> list[Import]:
    known = modules()
    return [found for module, path in known.items() for found in imports_of(module, path, known)]


def cycles(edges: dict[tuple[str, str], list[Import]]) -> list[tuple[list[str], set[str]]]:
    """Each strongly connected component of parts, with its shortest cycle through its first part
    (a list of parts, the first repeated at the end)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graph has a few dozen nodes, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [(_cycle_within(component, graph), component) for component in components]


def _cycle_within(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first: the shortest way back to the start
        node = queue.pop(0)
        for successor in sorted(graph[node] & component):
            if successor == start:
                return [*paths[node], start]
            if successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    raise AssertionError(f"no cycle in component {component}")


def part_edges(found: list[Import]) -> dict[tuple[str, str], list[Import]]:
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for item in found:
        if (item.module, item.target) in ALLOWED:
            continue
        source, target = part(item.module), part(item.target)
        if source != target:
            edges[(source, target)].append(item)
    return edges


def test_no_import_cycle_between_the_parts_of_the_package():
    edges = part_edges(all_imports())
    found = cycles(edges)
    report = []
    for cycle, component in found:
        report.append(" → ".join(cycle) + f"  (parts caught in this knot: {', '.join(sorted(component))})")
        for source, target in itertools.pairwise(cycle):
            report.extend(f"    {item}" for item in edges[(source, target)])
    assert not found, "import cycles between parts of deepresearch:\n" + "\n".join(report)


def test_every_allowed_import_still_exists():
    present = {(item.module, item.target) for item in all_imports()}
    stale = [pair for pair in ALLOWED if pair not in present]
    assert not stale, f"remove from ALLOWED (the import is gone): {stale}"


def test_the_checker_sees_lazy_and_typing_imports_and_reports_the_cycle(tmp_path):
    """The walk itself: a cycle made of a function-level import and a TYPE_CHECKING one is found."""
    (tmp_path / "deepresearch" / "a").mkdir(parents=True)
    (tmp_path / "deepresearch" / "b").mkdir()
    for name in ("deepresearch/__init__.py", "deepresearch/a/__init__.py", "deepresearch/b/__init__.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "deepresearch" / "a" / "x.py").write_text("def f():\n    from deepresearch.b.y import g\n")
    (tmp_path / "deepresearch" / "b" / "y.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n"
    )
    (tmp_path / "deepresearch" / "c.py").write_text('PAGES = "deepresearch.b:thing"\n')
    known = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
        for p in tmp_path.rglob("*.py")
    }
    found = [item for module, path in known.items() for item in imports_of(module, path, known)]
    assert {(i.module, i.target, i.line) for i in found} == {
        ("deepresearch.a.x", "deepresearch.b.y", 2),
        ("deepresearch.b.y", "deepresearch.a.x", 3),
        ("deepresearch.c", "deepresearch.b", 1),
    }
    edges = part_edges(found)
    assert cycles(edges) == [(["a", "b", "a"], {"a", "b"})]
    assert str(edges[("a", "b")][0]) == "deepresearch/a/x.py:2 imports deepresearch.b.y"
