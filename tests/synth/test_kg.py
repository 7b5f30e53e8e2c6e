"""``synth kg`` end to end: small graphs written in the test, edges verified by searching a local index
of Markdown pages built in the test, a scripted model on the fake OpenAI server; each drop reason, the
Chinese prompt, Wikidata5m-style ids with alias files, and a rerun after a failed first run that does
only the seeds left undecided. The pure parts (generic labels, seeds, breadth-first subgraph, support
by a hit) are tested directly."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import Settings, load_settings
from deepresearch.errors import ConfigError
from deepresearch.search import SearchHit
from deepresearch.search.local import LocalIndex
from deepresearch.synth.engine import ledger_path
from deepresearch.synth.kg import expand, is_generic, normalise, seed_nodes, support, synth_kg
from deepresearch.synth.triples import read_graph
from tests.fakes.openai_server import FakeOpenAI, Reply

PAGES = {
    "orion.md": (
        "Orion gateway",
        [
            "The Orion gateway routes requests to the Vega cache before anything else happens.",
            "The Orion gateway authenticates with the Lyra vault for every new session.",
            "The Orion gateway writes logs to the Draco journal, one line per request.",
        ],
    ),
    "vega.md": ("Vega cache", ["The Vega cache stores entries in the Altair disk, in 4 KiB blocks."]),
    "lyra.md": ("Lyra vault", ["The Lyra vault is backed up by the Rigel archiver every night."]),
    "draco.md": ("Draco journal", ["The Draco journal is rotated by the Castor rotator each week."]),
    "hydra.md": (
        "Hydra broker",
        [
            "The Hydra broker forwards messages to the Lynx queue as they arrive.",
            "The Hydra broker reads settings from the Corvus registry at start-up.",
            "The Hydra broker reports metrics to the Ara dashboard every minute.",
        ],
    ),
    "lynx.md": ("Lynx queue", ["The Lynx queue persists messages to the Crux ledger before acknowledging."]),
    "corvus.md": ("Corvus registry", ["The Corvus registry replicates to the Mensa mirror hourly."]),
    "tianshu.md": (
        "天枢网关",
        [
            "天枢网关把所有请求转发到天璇缓存。",
            "天枢网关通过天玑密库认证每个会话。",
            "天枢网关把日志写入天权日志。",
        ],
    ),
    "tianxuan.md": ("天璇缓存", ["天璇缓存把条目存储在玉衡磁盘上。"]),
    "tianji.md": ("天玑密库", ["天玑密库每晚由开阳归档备份。"]),
}
ORION = [
    ("Orion gateway", "routes requests to", "Vega cache"),
    ("Orion gateway", "authenticates with", "Lyra vault"),
    ("Orion gateway", "writes logs to", "Draco journal"),
    ("Vega cache", "stores entries in", "Altair disk"),
    ("Lyra vault", "is backed up by", "Rigel archiver"),
    ("Draco journal", "is rotated by", "Castor rotator"),
    ("Altair disk", "is monitored by", "Pollux probe"),  # in no page: never verified
    ("Rigel archiver", "runs on", "Sirius host"),  # in no page: never verified
]
HYDRA = [
    ("Hydra broker", "forwards messages to", "Lynx queue"),
    ("Hydra broker", "reads settings from", "Corvus registry"),
    ("Hydra broker", "reports metrics to", "Ara dashboard"),
    ("Lynx queue", "persists messages to", "Crux ledger"),
    ("Corvus registry", "replicates to", "Mensa mirror"),
]
HYDRA_STAR = [
    *HYDRA[:3],
    ("Lynx queue", "is watched by", "Pollux probe"),  # the second hop is in no page
    ("Corvus registry", "is mirrored by", "Sirius host"),
]
TIANSHU = [
    ("天枢网关", "转发请求到", "天璇缓存"),
    ("天枢网关", "认证依赖", "天玑密库"),
    ("天枢网关", "写日志到", "天权日志"),
    ("天璇缓存", "存储在", "玉衡磁盘"),
    ("天玑密库", "备份到", "开阳归档"),
]
NOWHERE = [
    ("Zeta hub", "feeds", "Eta sink"),
    ("Zeta hub", "pulls from", "Theta source"),
    ("Zeta hub", "pings", "Iota beacon"),
    ("Eta sink", "drains to", "Kappa drain"),
    ("Theta source", "copies from", "Lambda origin"),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pages = tmp_path_factory.mktemp("pages")
    for name, (title, paragraphs) in PAGES.items():
        (pages / name).write_text(f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    path = tmp_path_factory.mktemp("index") / "index.sqlite"
    with LocalIndex(path) as local:
        report = local.add_paths([pages])
    assert report.errors == [] and report.added == len(PAGES)
    return path


def settings_for(fake_llm: FakeOpenAI, index: Path, **extra: Any) -> Settings:
    return load_settings({"base_url": fake_llm.base_url, "model": "m", "index": str(index), **extra}, env={})


def write_triples(path: Path, *groups: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join("\t".join(t) + "\n" for group in groups for t in group), encoding="utf-8")
    return path


def target_of(request: dict[str, Any]) -> str:
    prompt = request["messages"][-1]["content"] if request["messages"][0]["role"] == "user" else ""
    match = re.search(r'leads from "[^"]+" to "([^"]+)"', prompt) or re.search(r"通向“([^”]+)”", prompt)
    assert match, prompt
    return match.group(1)


def first_prompt(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def answer_the_target(request: dict[str, Any]) -> Reply:
    """A well-behaved model: the suggested target as the answer, never named in the question."""
    question = (
        "从该网关出发，沿着它的第一个依赖再走一步，会到达哪个组件？"
        if "通向" in first_prompt(request)
        else "Which component is one step beyond the first dependency of that gateway?"
    )
    return Reply(content=json.dumps({"question": question, "answer": target_of(request)}, ensure_ascii=False))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run(settings: Settings, triples: Path, out: Path, **options: Any) -> Any:
    options = {"min_nodes": 5, "progress": False, **options}
    return asyncio.run(synth_kg(settings, triples=triples, out=out, **options))


# --- end to end ----------------------------------------------------------------------------------


def test_a_verified_subgraph_becomes_a_multi_hop_question(
    fake_llm: FakeOpenAI, index: Path, tmp_path: Path
) -> None:
    triples = write_triples(tmp_path / "orion.tsv", ORION)
    out = tmp_path / "kg.jsonl"
    fake_llm.script = answer_the_target
    summary = run(settings_for(fake_llm, index), triples, out)
    assert (summary.kept, summary.failed, dict(summary.dropped)) == (1, 0, {})
    assert len(fake_llm.requests) == 1  # one question; the searches cost no model call
    [record] = read_jsonl(out)
    assert record["task_id"] == "kg-Orion gateway" and record["source_id"] == "kg-Orion gateway"
    assert record["seed"] == "Orion gateway" and record["language"] == "en"
    assert record["answer"] == "Altair disk" and record["hops"] == 2
    assert "Altair" not in record["question"]
    verified = {(e["subject"], e["relation"], e["object"]) for e in record["edges"]}
    assert verified == set(ORION[:6])  # the two edges no page mentions were not kept
    for edge in record["edges"]:
        [evidence, *_] = edge["evidence"]
        assert evidence["url"].startswith("file://") and evidence["title"]
        text = normalise(evidence["text"])
        assert normalise(edge["subject"]) in text or normalise(edge["subject"]) in normalise(
            evidence["title"]
        )
        assert normalise(edge["object"]) in text
    rotated = next(e for e in record["edges"] if e["object"] == "Castor rotator")
    assert rotated["evidence"][0]["url"].endswith("draco.md")
    prompt = first_prompt(fake_llm.requests[0])
    assert "Orion gateway — routes requests to — Vega cache" in prompt
    assert "Pollux probe" not in prompt  # unverified facts never reach the model
    sources = [line for line in prompt.splitlines() if "Source text:" in line]
    assert len(sources) == 6 and all(len(line) < 300 for line in sources)
    assert "Altair disk; Castor rotator; Rigel archiver" in prompt  # the candidates, farthest first
    schema = json.dumps(fake_llm.requests[0]["response_format"])
    assert '"enum": ["Altair disk", "Castor rotator", "Rigel archiver"]' in schema  # held to the candidates
    [line] = read_jsonl(ledger_path(out))
    assert line["verdict"] == "kept" and line["detail"] == {"nodes": 9, "edges": 8, "verified": 6, "hops": 2}


def test_chinese_labels_get_the_chinese_prompt(fake_llm: FakeOpenAI, index: Path, tmp_path: Path) -> None:
    triples = write_triples(tmp_path / "tianshu.tsv", TIANSHU)
    out = tmp_path / "kg.jsonl"
    fake_llm.script = answer_the_target
    summary = run(settings_for(fake_llm, index), triples, out)
    assert summary.kept == 1, summary.describe()
    [record] = read_jsonl(out)
    assert record["language"] == "zh" and record["seed"] == "天枢网关"
    assert record["answer"] in {"玉衡磁盘", "开阳归档"} and record["hops"] == 2
    assert len(record["edges"]) == 5
    prompt = first_prompt(fake_llm.requests[0])
    assert prompt.startswith("搜索引擎已逐条证实") and "天枢网关 — 转发请求到 — 天璇缓存" in prompt


def test_language_can_be_forced(fake_llm: FakeOpenAI, index: Path, tmp_path: Path) -> None:
    triples = write_triples(tmp_path / "orion.tsv", ORION)
    fake_llm.script = answer_the_target
    summary = run(settings_for(fake_llm, index), triples, tmp_path / "kg.jsonl", language="zh")
    assert summary.kept == 1
    assert first_prompt(fake_llm.requests[0]).startswith("搜索引擎已逐条证实")
    assert read_jsonl(tmp_path / "kg.jsonl")[0]["language"] == "zh"


def test_wikidata5m_ids_with_alias_files(fake_llm: FakeOpenAI, index: Path, tmp_path: Path) -> None:
    entity_ids = {
        label: f"Q{n}" for n, label in enumerate(sorted({t[0] for t in HYDRA} | {t[2] for t in HYDRA}))
    }
    relation_ids = {relation: f"P{n}" for n, (_, relation, _) in enumerate(HYDRA)}
    triples = tmp_path / "wikidata5m_transductive_train.txt"
    rows = [f"{entity_ids[s]}\t{relation_ids[r]}\t{entity_ids[o]}" for s, r, o in HYDRA]
    rows += ["Q900\tP0\tQ901", "Q900\tP0\tQ902", "Q900\tP0\tQ903"]  # an unlabelled seed candidate
    triples.write_text("\n".join(rows) + "\n", encoding="utf-8")
    entities = tmp_path / "wikidata5m_entity.txt"
    entities.write_text(
        "".join(f"{q}\t{label}\t{label.lower()} (alias)\n" for label, q in entity_ids.items()),
        encoding="utf-8",
    )
    relations = tmp_path / "wikidata5m_relation.txt"
    relations.write_text("".join(f"{p}\t{r}\n" for r, p in relation_ids.items()), encoding="utf-8")
    out = tmp_path / "kg.jsonl"
    fake_llm.script = answer_the_target
    summary = run(
        settings_for(fake_llm, index),
        triples,
        out,
        entity_labels=entities,
        relation_labels=relations,
    )
    assert (summary.kept, sum(summary.dropped.values())) == (1, 0)  # Q900 has no label: not a seed
    [record] = read_jsonl(out)
    assert record["task_id"] == f"kg-{entity_ids['Hydra broker']}" and record["seed"] == "Hydra broker"
    assert record["answer"] in {"Crux ledger", "Mensa mirror"} and record["hops"] == 2
    assert {(e["subject"], e["relation"], e["object"]) for e in record["edges"]} == set(HYDRA)


# --- drops ---------------------------------------------------------------------------------------


def test_too_few_nodes_is_dropped_before_any_search(
    fake_llm: FakeOpenAI, index: Path, tmp_path: Path
) -> None:
    triples = write_triples(tmp_path / "g.tsv", ORION, HYDRA)
    out = tmp_path / "kg.jsonl"
    summary = run(settings_for(fake_llm, index), triples, out, min_nodes=12, max_nodes=40)
    assert dict(summary.dropped) == {"too_small": 2} and fake_llm.requests == []
    details = {line["id"]: line["detail"] for line in read_jsonl(ledger_path(out))}
    assert details == {
        "kg-Orion gateway": {"nodes": 9, "min_nodes": 12},
        "kg-Hydra broker": {"nodes": 6, "min_nodes": 12},
    }
    assert not out.exists()


def test_edges_no_page_supports_are_unverified(fake_llm: FakeOpenAI, index: Path, tmp_path: Path) -> None:
    triples = write_triples(tmp_path / "g.tsv", NOWHERE)
    out = tmp_path / "kg.jsonl"
    summary = run(settings_for(fake_llm, index), triples, out)
    assert dict(summary.dropped) == {"unverified": 1} and fake_llm.requests == []
    [line] = read_jsonl(ledger_path(out))
    assert line["id"] == "kg-Zeta hub" and line["detail"] == {"nodes": 6, "edges": 5, "verified": 0}


def test_verified_edges_one_hop_deep_are_too_small(fake_llm: FakeOpenAI, index: Path, tmp_path: Path) -> None:
    triples = write_triples(tmp_path / "g.tsv", HYDRA_STAR)
    out = tmp_path / "kg.jsonl"
    summary = run(settings_for(fake_llm, index), triples, out)
    assert dict(summary.dropped) == {"too_small": 1} and fake_llm.requests == []
    [line] = read_jsonl(ledger_path(out))
    assert line["detail"] == {"nodes": 6, "edges": 5, "verified": 3, "hops": 1}


def test_a_question_that_names_its_answer_is_dropped(
    fake_llm: FakeOpenAI, index: Path, tmp_path: Path
) -> None:
    triples = write_triples(tmp_path / "g.tsv", ORION)
    out = tmp_path / "kg.jsonl"

    def leaky(request: dict[str, Any]) -> Reply:
        target = target_of(request) if len(request["messages"]) == 1 else "Altair disk"
        question = f"Which part stores the cache entries — is it the {target.upper()}?"
        return Reply(content=json.dumps({"question": question, "answer": target}))

    fake_llm.script = leaky
    summary = run(settings_for(fake_llm, index), triples, out)
    assert dict(summary.dropped) == {"answer_leaked": 1}
    assert len(fake_llm.requests) == 2  # one retry that lists the problem
    assert "word for word" in fake_llm.requests[1]["messages"][-1]["content"]
    [line] = read_jsonl(ledger_path(out))
    assert line["reason"] == "answer_leaked" and line["calls"] == 2


def test_an_answer_outside_the_subgraph_is_a_bad_reply(
    fake_llm: FakeOpenAI, index: Path, tmp_path: Path
) -> None:
    triples = write_triples(tmp_path / "g.tsv", ORION)
    out = tmp_path / "kg.jsonl"
    replies = iter(
        [
            Reply(content=json.dumps({"question": "Which gateway is it?", "answer": "Vega cache"})),  # 1 hop
            Reply(content="I would rather not."),
        ]
    )
    fake_llm.script = lambda request: next(replies)
    summary = run(settings_for(fake_llm, index), triples, out)
    assert dict(summary.dropped) == {"bad_reply": 1}
    retry = fake_llm.requests[1]["messages"][-1]["content"]
    assert "exactly one of these entities: Altair disk; Castor rotator; Rigel archiver" in retry
    [line] = read_jsonl(ledger_path(out))
    assert line["detail"]["error"] == "the reply is not one JSON object"


def test_a_statement_is_not_a_question(fake_llm: FakeOpenAI, index: Path, tmp_path: Path) -> None:
    triples = write_triples(tmp_path / "g.tsv", ORION)
    out = tmp_path / "kg.jsonl"
    statement = Reply(
        content=json.dumps({"question": "A chain of facts leads from", "answer": "Altair disk"})
    )
    fake_llm.script = lambda request: statement
    summary = run(settings_for(fake_llm, index), triples, out)
    assert dict(summary.dropped) == {"bad_reply": 1} and len(fake_llm.requests) == 2
    assert "ends with a question mark" in fake_llm.requests[1]["messages"][-1]["content"]


# --- resume --------------------------------------------------------------------------------------


def test_a_rerun_finishes_the_failed_seeds_and_repeats_nothing(
    fake_llm: FakeOpenAI, index: Path, tmp_path: Path
) -> None:
    triples = write_triples(tmp_path / "g.tsv", ORION, HYDRA, NOWHERE)
    out = tmp_path / "kg.jsonl"
    settings = settings_for(fake_llm, index, max_retries=0)

    def hydra_down(request: dict[str, Any]) -> Reply:
        if 'around "Hydra broker"' in first_prompt(request):
            return Reply(status=500, body='{"error": {"message": "down"}}')
        return answer_the_target(request)

    fake_llm.script = hydra_down
    first = run(settings, triples, out)
    assert (first.kept, first.failed, dict(first.dropped)) == (1, 1, {"unverified": 1})
    assert [r["seed"] for r in read_jsonl(out)] == ["Orion gateway"]
    assert "kg-Hydra broker" not in {line["id"] for line in read_jsonl(ledger_path(out))}

    fake_llm.reset()
    fake_llm.script = answer_the_target
    second = run(settings, triples, out)
    assert (second.kept, second.failed, second.skipped, second.total_kept) == (1, 0, 2, 2)
    assert len(fake_llm.requests) == 1 and 'around "Hydra broker"' in first_prompt(fake_llm.requests[0])
    assert sorted(r["seed"] for r in read_jsonl(out)) == ["Hydra broker", "Orion gateway"]
    assert len(read_jsonl(ledger_path(out))) == 3


def test_options_and_graphs_without_seeds_are_refused(
    fake_llm: FakeOpenAI, index: Path, tmp_path: Path
) -> None:
    settings = settings_for(fake_llm, index)
    triples = write_triples(tmp_path / "g.tsv", ORION)
    with pytest.raises(ConfigError, match="language"):
        run(settings, triples, tmp_path / "o.jsonl", language="fr")
    with pytest.raises(ConfigError, match="min_nodes"):
        run(settings, triples, tmp_path / "o.jsonl", min_nodes=30, max_nodes=20)
    with pytest.raises(ConfigError, match="limit"):
        run(settings, triples, tmp_path / "o.jsonl", limit=0)
    chain = write_triples(
        tmp_path / "chain.tsv", [("Alpha node", "links", "Beta node"), ("Beta node", "links", "Gamma node")]
    )
    with pytest.raises(ConfigError, match="no seed"):
        run(settings, chain, tmp_path / "o.jsonl")
    assert fake_llm.requests == []


# --- the pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "generic"),
    [
        ("dpkg", False),
        ("sources.list", False),
        ("Windows 2000", False),
        ("北京", False),
        ("ls", True),
        ("1999", True),
        ("2001-03-12", True),
        ("12 March 2001", True),
        ("March 2001", True),
        ("2001年3月", True),
        ("Human", True),
        ("country", True),
        ("人类", True),
        ("人", True),
    ],
)
def test_generic_labels(label: str, generic: bool) -> None:
    assert is_generic(label) is generic


def test_seeds_are_labelled_specific_and_of_middle_degree(tmp_path: Path) -> None:
    rows = [("human", "has", f"person {n}") for n in range(4)]  # generic, although of degree 4
    rows += [("Hub city", "has", f"street {n}") for n in range(11)]  # degree 11: too many
    rows += [(f"Tool {n}", "reads", f"file {n}.conf") for n in range(6)]
    rows += [(f"Tool {n}", "writes", f"log {n}") for n in range(6)]
    rows += [(f"Tool {n}", "runs on", "Hub city") for n in range(6)]
    graph = read_graph(write_triples(tmp_path / "g.tsv", rows))
    seeds = seed_nodes(graph, limit=10, seed=7)
    assert sorted(graph.label(s) for s in seeds) == [f"Tool {n}" for n in range(6)]
    assert seed_nodes(graph, limit=10, seed=7) == seeds  # the same seed, the same order
    assert len(seed_nodes(graph, limit=4, seed=7)) == 4
    orders = {tuple(seed_nodes(graph, limit=6, seed=s)) for s in range(5)}
    assert len(orders) > 1


def test_expand_stops_at_max_nodes_and_does_not_walk_through_hubs(tmp_path: Path) -> None:
    rows = [("Seed", "uses", "Hub"), ("Seed", "uses", "Plain"), ("Plain", "uses", "Far")]
    rows += [("Hub", "has", f"Spoke {n}") for n in range(12)]
    rows += [("Seed", "knows", "Far")]  # a cross edge among the chosen nodes
    graph = read_graph(write_triples(tmp_path / "g.tsv", rows))
    seed = graph.node_ids.index("Seed")
    nodes, edges = expand(graph, seed, max_nodes=40, max_degree=10)
    assert [graph.label(n) for n in nodes] == ["Seed", "Hub", "Plain", "Far"]  # the hub is a leaf
    labelled = [(graph.label(e.subject), graph.label(e.object)) for e in edges]
    assert labelled == [("Seed", "Hub"), ("Seed", "Plain"), ("Seed", "Far"), ("Plain", "Far")]
    nodes, _ = expand(graph, seed, max_nodes=40, max_degree=1000)
    assert len(nodes) == 16
    nodes, edges = expand(graph, seed, max_nodes=3, max_degree=1000)
    assert [graph.label(n) for n in nodes] == ["Seed", "Hub", "Plain"] and len(edges) == 2


def test_support_needs_both_ends_in_one_hit() -> None:
    hit = SearchHit(
        title="Debian Handbook > 6.1. Filling in the sources.list File",
        url="https://debian-handbook.info/browse/en-US/stable/apt.html#sect.apt-sources.list",
        content="Each active line of the `/etc/apt/sources.list` file is a source; APT reads them all.",
    )
    found = support(hit, "APT", "sources.list")
    assert found is not None and found["url"] == hit.url and found["title"] == hit.title
    assert "`/etc/apt/sources.list` file" in found["text"] and "APT reads" in found["text"]
    assert support(hit, "apt", "Sources.List") is not None  # case and punctuation do not matter
    assert support(hit, "APT", "dpkg") is None
    assert support(hit, "apt-get", "sources.list") is None  # whole words: "apt" is not "apt-get"
    packages = SearchHit(title="Packages", url="u", content="dpkg installs Debian packages one by one.")
    assert support(packages, "dpkg", "Debian package") is not None  # a plural still names it
    titled = SearchHit(title="The Lynx queue", url="u", snippet="It persists messages to the Crux ledger.")
    found = support(titled, "Lynx queue", "Crux ledger")
    assert found is not None and found["text"].startswith("The Lynx queue")
    far_apart = SearchHit(title="t", url="u", content="Orion starts. " + "Filler words. " * 60 + "Vega ends.")
    text = support(far_apart, "Orion", "Vega")
    assert text is not None and " … " in text["text"] and len(text["text"]) < 500
