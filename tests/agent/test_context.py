from deepresearch.agent.context import ContextPolicy, replay
from deepresearch.agent.history import History


def tokens(text: str) -> int:
    return len(text.split())


def words(n: int, tag: str = "w") -> str:
    return " ".join([tag] * n)


def add_cycle(
    history: History,
    i: int,
    *,
    result: str,
    compact: str | None,
    name: str = "batch_web_surfer",
    said: str = "",
) -> None:
    call = {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}
    history.append({"role": "assistant", "content": said, "tool_calls": [call]})
    history.append({"role": "tool", "tool_call_id": f"c{i}", "content": result}, compact=compact)


def build(cycles: int, *, search_words: int = 100, compact_words: int = 10) -> History:
    history = History(tokens)
    history.append({"role": "system", "content": words(50, "sys")})
    history.append({"role": "user", "content": words(10, "q")})
    for i in range(cycles):
        add_cycle(history, i, result=words(search_words, f"s{i}"), compact=words(compact_words, f"k{i}"))
    return history


def test_under_the_limit_nothing_happens():
    history = build(3)
    assert ContextPolicy(upper=10_000, lower=5_000).fit(history, protected_from=len(history)) is None


def test_compress_oldest_first_until_under_lower():
    history = build(10)
    before = history.view_tokens
    policy = ContextPolicy(upper=900, lower=700)
    last = len(history) - 2
    outcome = policy.fit(history, protected_from=last)
    assert outcome is not None and outcome.tokens_before == before > 900
    assert outcome.tokens_after <= 700 and history.view_tokens == outcome.tokens_after
    assert outcome.compressed == sorted(outcome.compressed) and outcome.compressed[0] == 3
    assert not outcome.dropped and not outcome.force_final
    assert last + 1 not in outcome.compressed  # the newest cycle is protected
    view = "".join(history.view())
    assert "k0" in view and "s0" not in view and "s9" in view


def test_drop_search_cycles_then_force():
    history = build(10, compact_words=60)
    policy = ContextPolicy(upper=700, lower=400)
    outcome = policy.fit(history, protected_from=len(history) - 2)
    assert outcome.dropped and outcome.dropped[:2] == [2, 3]  # assistant + its result, oldest first
    assert history.view_tokens <= 400 and not outcome.force_final
    view = history.view()
    assert view[0].startswith('{"role":"system"') and '"q q' in view[1]  # system + question kept
    roles = [e.message["role"] for e in history.entries if not e.dropped]
    for i, role in enumerate(roles):  # every tool message still follows its assistant message
        if role == "tool":
            assert roles[i - 1] in ("assistant", "tool")


def test_force_final_when_non_evidence_dominates():
    history = History(tokens)
    history.append({"role": "system", "content": words(50)})
    history.append({"role": "user", "content": words(10)})
    for i in range(6):
        add_cycle(history, i, result=words(200), compact=None, name="shell", said=words(50))
    outcome = ContextPolicy(upper=1000, lower=800).fit(history, protected_from=len(history) - 2)
    assert outcome.force_final
    assert history.view_tokens <= 1000  # hard cap: older cycles of any kind hidden
    assert outcome.dropped and outcome.dropped[0] == 2


def test_decisions_are_sticky_and_replayable():
    history = build(10)
    policy = ContextPolicy(upper=900, lower=700)
    outcome = policy.fit(history, protected_from=len(history) - 2)
    # more growth: compaction resumes where it stopped, never un-compresses
    for i in range(10, 13):
        add_cycle(history, i, result=words(100, f"s{i}"), compact=words(10))
    second = policy.fit(history, protected_from=len(history) - 2)
    assert second is not None and set(second.compressed).isdisjoint(outcome.compressed)
    fresh = build(10)
    for i in range(10, 13):
        add_cycle(fresh, i, result=words(100, f"s{i}"), compact=words(10))
    replay(fresh, outcome.compressed + second.compressed, outcome.dropped + second.dropped)
    assert fresh.view() == history.view() and fresh.view_tokens == history.view_tokens


def test_history_records_keep_everything_and_reasoning_is_not_replayed():
    history = History(tokens)
    history.append({"role": "assistant", "content": "x", "reasoning_content": "secret plan"})
    assert "secret plan" in history.records()[0] and "secret plan" not in history.view()[0]
    replaying = History(tokens, replay_reasoning=True)
    replaying.append({"role": "assistant", "content": "x", "reasoning_content": "secret plan"})
    assert "secret plan" in replaying.view()[0]


def test_oversized_arguments_recorded_by_an_old_run_are_not_sent_or_counted_again():
    from deepresearch.tools.execute import KEPT_ARGUMENT_CHARS

    giant = '{"content": "' + "x " * KEPT_ARGUMENT_CHARS + '"}'
    counted: list[int] = []

    def count(text: str) -> int:
        counted.append(len(text))
        return tokens(text)

    history = History(count)
    small = {"id": "c1", "type": "function", "function": {"name": "todo", "arguments": '{"updates": {}}'}}
    big = {"id": "c2", "type": "function", "function": {"name": "file", "arguments": giant}}
    history.append({"role": "assistant", "content": "", "tool_calls": [small, big]})
    assert len(history.records()[0]) > len(giant)  # messages.json keeps what the run recorded
    sent = history.view()[0]
    assert len(sent) < 1000
    assert '{\\"updates\\": {}}' in sent and "arguments_omitted" in sent
    assert history.view_tokens < 100 and max(counted) < 1000  # counted when read, and only what is sent


def test_nothing_is_counted_while_the_bound_is_under_the_limit_and_the_count_is_exact_after():
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return tokens(text)

    history = History(count)
    history.append({"role": "system", "content": "You are careful. " * 20})
    history.append({"role": "user", "content": "Which passages rank first, and why? 研究"})
    policy = ContextPolicy(upper=10_000, lower=5_000, fixed_text='[{"name": "search"}]', count=count)
    assert policy.fit(history, protected_from=len(history)) is None
    assert counted == []  # the first request can go out before any tokenizer is loaded
    assert (
        history.view_bound()
        >= history.view_tokens
        == sum(tokens(m) + 4 for m in ("You are careful. " * 20, "Which passages rank first, and why? 研究"))
    )
    assert len(counted) == 2  # counted once, when read
    history.view_tokens  # noqa: B018 - reading again counts nothing new
    assert len(counted) == 2

    # where the bound passes the limit, the decision is taken on exact counts, as before
    exact = history.view_tokens
    fresh = History(count)
    fresh.append({"role": "system", "content": "You are careful. " * 20})
    fresh.append({"role": "user", "content": "Which passages rank first, and why? 研究"})
    tight = ContextPolicy(upper=exact + 1, lower=10, fixed_text="[]", count=count)
    assert fresh.view_bound() > tight.upper
    assert tight.fit(fresh, protected_from=len(fresh)) is None  # the exact count is under the limit
    assert len(counted) == 5 and tight.fixed == tokens("[]") == 1
    over = ContextPolicy(upper=exact, lower=10, fixed_text="[]", count=count)
    assert over.fit(fresh, protected_from=len(fresh)) is not None


def test_a_compact_form_is_counted_by_scaling_the_full_result_not_tokenised_again():
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return tokens(text)

    history = History(count)
    full = words(400, "full")
    history.append({"role": "tool", "tool_call_id": "c1", "content": full}, compact=words(100, "head"))
    assert history.view_tokens == 404
    before = list(counted)
    history.compress(0)
    assert counted == before  # nothing tokenised at compaction
    compact_chars, full_chars = len(words(100, "head")), len(full)
    assert history.view_tokens == -(-400 * compact_chars // full_chars) + 4
    assert history.entries[0].compact_tokens <= history.entries[0].tokens


def test_a_message_that_is_sent_as_recorded_is_held_once():
    history = History(tokens)
    history.append({"role": "tool", "tool_call_id": "c1", "content": "evidence " * 500})
    [entry] = history.entries
    assert entry.wire is entry.record  # the same string object, not an equal copy
