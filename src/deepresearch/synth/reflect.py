"""Pipeline 5, reflection (``synth reflect``): trajectories in which the agent finds and corrects its
own mistake, the reflection capability of the Step-DeepResearch report.

Input: JSONL questions with ground truth (as for ``synth difficulty``). For each, our agent runs
(``ctx.run_agent``); its report is judged against the answer (``synth.answers``). Right at once: the
trajectory is kept as it is. Wrong: a feedback turn of ours (``reflect_feedback_<lang>.j2``: the
answer is not right, reflect on what went wrong and try again; never the answer) is added to the
finished run with ``ctx.follow_up``, which keeps the whole history and goes on; up to
``max_reflections`` times. Each turn gets ``max_steps`` more steps (the step count goes on across
turns, so attempt ``n`` runs under ``n × max_steps``; a rerun resumes an interrupted turn under the
same budget, counting the turns from the run's ``follow_up`` events).

A trajectory corrected after feedback is cleaned before it is kept, so that it reads as the agent's
own reflection:

- **The feedback becomes the model's own self-check.** The wrong final answer and the feedback user
  message after it are folded into the assistant turn that follows: its content starts with the
  earlier answer as a tentative one (``<answer>`` tags dropped) and a self-check in the model's voice
  (``reflect_selfcheck_<lang>.j2``), then goes on with what the model did next (its tool calls kept,
  its reasoning joined after the earlier turn's). We fold rather than leave a separate tool-free
  assistant turn because our loop never accepts one: a reply with neither a tool call nor an answer
  gets a nudge, so a standalone self-check turn, or an ``<answer>`` followed by more work, would teach
  turns the agent cannot take. The list stays valid OpenAI chat: every tool message still answers a
  call of the assistant message before its group (``chat_problems`` checks it).
- **Phrases that reveal outside help go** from assistant contents and reasoning (``HINT_PHRASES``:
  removed, the sentence kept; ``HINT_SENTENCES``: the whole sentence removed), in English and Chinese.
  A trajectory in which one still matches afterwards is dropped (``help_revealed``).

Records: ``{"task_id", "question", "answer", "messages", "attempts", "corrected", "run_dir"}``.
Drops: ``never_correct`` (wrong after every reflection), ``run_failed`` (the agent failed for a reason
other than the endpoint), ``judge_unusable``, ``invalid_messages``, ``help_revealed``,
``missing_question_or_answer``. An endpoint failure (``LLMError``) leaves the item for a rerun.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from deepresearch.config import Settings
from deepresearch.errors import ConfigError, DeepResearchError, LLMError, RunStoreError
from deepresearch.events import FollowUp
from deepresearch.llm.messages import chat_problems
from deepresearch.runs import RunDir
from deepresearch.synth.answers import (
    Match,
    answers_match,
    expected_of,
    judge_models,
    question_of,
    report_of,
)
from deepresearch.synth.context import SynthContext, open_context
from deepresearch.synth.engine import Outcome, Summary, Tally, load_items, run_items
from deepresearch.synth.model import BadReply, Language, Model, language_of, prompt

logger = logging.getLogger(__name__)

MAX_REFLECTIONS = 3

HINT_PHRASES: tuple[re.Pattern[str], ...] = (
    # en: "According to the hint, …", "Based on your feedback: …", "Given the user's correction, …"
    re.compile(
        r"\b(?:according to|based on|going by|following|guided by|thanks to|given|per)\s+"
        r"(?:the user's|the|your|this|that)\s+(?:hints?|feedback|corrections?|clues?|tips?|reminders?)\b"
        r"\s*[,:]?\s*",
        re.I,
    ),
    # en: "As the user pointed out, …", "as you said …"
    re.compile(
        r"\bas (?:the user|you|the feedback|the hint|the reviewer|the grader)\s+"
        r"(?:pointed out|noted|said|suggested|mentioned|indicated|hinted|told me|corrected me)\s*[,:]?\s*",
        re.I,
    ),
    # en: "Thanks for the hint."
    re.compile(
        r"\b(?:thanks|thank you) for (?:the|your) (?:hint|feedback|correction|reminder)\s*[.!,]?\s*", re.I
    ),
    # zh: 根据提示，… / 根据用户的提示，… / 结合您的反馈：…
    re.compile(
        r"(?:根据|按照|依据|基于|结合|参考|鉴于)(?:用户|您|你)?的?(?:提示|反馈|纠正|指正|提醒|更正)[，,：:]?"
    ),
    # zh: 正如用户指出的那样，… / 如您所说，…
    re.compile(r"(?:正如|如同|如)(?:用户|您|你)所?(?:指出|说|提示|提醒|提到|纠正)的?(?:那样)?[，,]?"),
    # zh: 感谢您的提示。
    re.compile(r"(?:感谢|谢谢)(?:用户|您|你)?的?(?:提示|反馈|指正|纠正|提醒)[。！!，,]?"),
)
"""Phrases that credit outside help inside a sentence that stands without them: removed."""

HINT_SENTENCES: tuple[re.Pattern[str], ...] = (
    # en: "The user says my answer is wrong.", "The feedback indicates …"
    re.compile(
        r"\b(?:the|your|this|that) (?:user|feedback|hint|reviewer|grader|correction)\b[^.!?\n]{0,60}?"
        r"\b(?:says?|said|told|tells|points? out|pointed out|indicates?|indicated|notes?|noted|mentions?|"
        r"mentioned|suggests?|suggested|states?|stated|claims?|claimed|is right|was right)\b",
        re.I,
    ),
    # en: "I was told my answer is wrong."
    re.compile(r"\b(?:i was|i've been|i have been|i am|i'm|we were|we've been) told\b", re.I),
    # en: any other mention of "the hint" or "the feedback"
    re.compile(r"\b(?:the|a|this|that|your|user's) (?:hint|feedback)\b", re.I),
    # en: "My previous answer was marked wrong."
    re.compile(
        r"\b(?:my|the) (?:previous|earlier|last|first) answer"
        r" (?:was|is|has been) (?:marked|judged|flagged)\b",
        re.I,
    ),
    # zh: 用户指出… / 您说… / 你告诉我…
    re.compile(r"(?:用户|您|你)(?:刚才|已经)?(?:说|指出|表示|提示|提醒|告诉我|认为|反馈|纠正|指正)"),
    # zh: 提示中说… / 反馈表明…
    re.compile(r"(?:提示|反馈)(?:中|里)?(?:说|指出|表明|显示|提到|称)"),
    # zh: 我被告知… / 答案被判定为错误
    re.compile(r"(?:被|已被)(?:告知|指出|判定|判为)"),
)
"""Sentences that only make sense with outside help (who said what): removed whole."""

_TERMINATOR = re.compile(r"[.!?]+[\"'”’)]*(?:[ \t]+|(?=\n)|$)|[。！？]+[”’」』）)]*[ \t]*|\n+")
"""Where a sentence ends: Western punctuation before a space or a line end (so ``3.14`` goes on), CJK
punctuation anywhere, a line break."""
_SENTENCE_END = re.compile(r"(?:[.!?。！？\n][\"'”’」』）)]*\s*|^\s*)$")
_ANSWER_TAGS = re.compile(r"</?answer>", re.I)
_REASONING_KEYS = ("reasoning_content", "reasoning")


async def synth_reflect(
    settings: Settings,
    *,
    questions: Path,
    out: Path,
    max_reflections: int = MAX_REFLECTIONS,
    concurrency: int = 2,
    progress: bool = True,
) -> Summary:
    """Run the agent on every question in ``questions``, reflecting on wrong answers, and write the
    trajectories that end right to ``out``."""
    if max_reflections < 0:
        raise ConfigError(f"max_reflections must be 0 or more, not {max_reflections}")
    items, problems = load_items(questions, id_field="task_id")
    for problem in problems:
        logger.warning("synth reflect: skipping %s", problem)
    async with open_context(settings, out) as ctx, judge_models(ctx) as judge:

        async def step(item: dict[str, Any], tally: Tally) -> Outcome:
            return await reflect_on(ctx, judge, item, tally, max_reflections=max_reflections)

        return await run_items(
            items, step, out, concurrency=concurrency, label="reflect", progress=progress, total=len(items)
        )


async def reflect_on(
    ctx: SynthContext,
    judge: Callable[[Tally], Model],
    item: dict[str, Any],
    tally: Tally,
    *,
    max_reflections: int = MAX_REFLECTIONS,
) -> Outcome:
    """One question: run, judge, and while wrong (and turns are left) reflect and retry."""
    question, expected = question_of(item), expected_of(item)
    if not question or not expected:
        return Outcome.drop("missing_question_or_answer")
    language, name = language_of(question), str(item["id"])
    done = len(feedbacks_of(ctx.run_dir(name)))  # turns a killed earlier pass already added
    try:
        run = await ctx.run_agent(name, question, tally, settings=turn_settings(ctx.settings, done + 1))
    except (LLMError, ConfigError):
        raise  # the endpoint or the setup failed, not the agent: undecided, a rerun tries again
    except DeepResearchError as exc:
        return Outcome.drop("run_failed", attempt=done + 1, error=_one_line(exc))
    attempts = done + 1
    while True:
        report = report_of(run)
        try:
            match = await _judge(judge(tally), question, expected, report, language)
        except BadReply as exc:
            return Outcome.drop("judge_unusable", problem=str(exc), attempts=attempts, run_dir=str(run.path))
        if match.equivalent:
            return keep_trajectory(item, run, attempts, language, match)
        if attempts > max_reflections:
            return Outcome.drop(
                "never_correct", attempts=attempts, run_dir=str(run.path), verdict=match.to_dict()
            )
        feedback = prompt("reflect_feedback", language, answered=report is not None)
        try:
            run = await ctx.follow_up(
                run, feedback, tally, settings=turn_settings(ctx.settings, attempts + 1)
            )
        except (LLMError, ConfigError):
            raise
        except DeepResearchError as exc:
            return Outcome.drop("run_failed", attempt=attempts + 1, error=_one_line(exc))
        attempts += 1


def turn_settings(settings: Settings, attempt: int) -> Settings:
    """The settings for attempt ``attempt`` (1 = the first run): the step count goes on across
    follow-up turns, so each turn gets ``max_steps`` more."""
    return settings.model_copy(update={"max_steps": settings.max_steps * attempt})


def feedbacks_of(path: Path) -> list[str]:
    """The feedback turns added to the run at ``path`` so far (none when there is no run yet)."""
    try:
        run = RunDir.open(path)
    except RunStoreError:  # nothing there yet, or a folder a kill left before the run began
        return []
    if not run.started:
        return []
    return [str(e.message.get("content") or "") for e in run.events() if isinstance(e, FollowUp)]


def keep_trajectory(
    item: dict[str, Any], run: RunDir, attempts: int, language: Language, match: Match
) -> Outcome:
    """The record for a run that ended right: as it is, or cleaned when feedback corrected it."""
    messages = run.messages()
    corrected = attempts > 1
    if corrected:
        messages, reflected_from = clean_trajectory(messages, feedbacks_of(run.path), language)
        leaks = [text for text in _assistant_texts(messages[reflected_from:]) if reveals_help(text)]
        if leaks:
            return Outcome.drop("help_revealed", attempts=attempts, example=leaks[0][:300])
    problems = chat_problems(messages)
    if problems:
        return Outcome.drop("invalid_messages", problems=problems[:5], run_dir=str(run.path))
    record = {
        "task_id": str(item.get("task_id") or item["id"]),
        "question": question_of(item),
        "answer": expected_of(item),
        "messages": messages,
        "attempts": attempts,
        "corrected": corrected,
        "run_dir": str(run.path),
    }
    return Outcome.keep(record, attempts=attempts, corrected=corrected, verdict=match.to_dict())


async def _judge(model: Model, question: str, expected: str, report: str | None, language: Language) -> Match:
    if report is None:
        return Match(False, "the run gave no report", "empty")
    return await answers_match(model, question, expected, report, language)


# --- cleaning


class Cleaned(NamedTuple):
    messages: list[dict[str, Any]]
    reflected_from: int
    """The index of the first self-check turn: the messages before it were written before any feedback
    existed, so they are left as they are (a question about, say, user feedback keeps its sentences)."""


def clean_trajectory(messages: list[dict[str, Any]], feedbacks: Iterable[str], language: Language) -> Cleaned:
    """``messages`` with each feedback turn folded into the model's own self-check and, from the first
    one on, the phrases that reveal outside help removed (see the module docstring)."""
    injected = {text.strip() for text in feedbacks}
    cleaned: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    first: int | None = None
    for message in messages:
        role = message.get("role")
        if role == "user" and str(message.get("content") or "").strip() in injected:
            draft = cleaned.pop() if cleaned and _is_final_answer(cleaned[-1]) else None
            pending = _self_check(draft, language, pending)
            first = len(cleaned) if first is None else first
            continue
        if pending is not None and role == "assistant":
            message, pending = _fold(pending, message), None
        cleaned.append(message)
    if pending is not None:
        cleaned.append(pending)
    first = len(cleaned) if first is None else first
    scrubbed = [_scrub_message(m) if m.get("role") == "assistant" else m for m in cleaned[first:]]
    return Cleaned(cleaned[:first] + scrubbed, first)


def scrub(text: str) -> str:
    """``text`` without the phrases and sentences of ``HINT_PHRASES`` and ``HINT_SENTENCES``."""
    for _ in range(3):  # a removal can (rarely) bring two halves of a new match together
        before = text
        for pattern in HINT_PHRASES:
            text = _remove_phrase(pattern, text)
        text = "".join(s for s in _sentences(text) if not any(p.search(s) for p in HINT_SENTENCES))
        text = re.sub(r"[ \t]{2,}", " ", text)
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        if text == before:
            break
    return text


def reveals_help(text: str) -> bool:
    """Whether ``text`` still credits outside help."""
    return any(p.search(text) for p in HINT_PHRASES + HINT_SENTENCES)


def _is_final_answer(message: dict[str, Any]) -> bool:
    return message.get("role") == "assistant" and not message.get("tool_calls")


def _self_check(
    draft: dict[str, Any] | None, language: Language, earlier: dict[str, Any] | None
) -> dict[str, Any]:
    """The assistant turn that stands for a feedback message: the earlier answer, as a tentative one,
    and the model's own decision to check it."""
    text = _ANSWER_TAGS.sub("", str((draft or {}).get("content") or "")).strip()
    message: dict[str, Any] = {
        "role": "assistant",
        "content": prompt("reflect_selfcheck", language, draft=text),
    }
    reasoning = [_reasoning(m) for m in (earlier, draft) if m is not None]
    joined = "\n\n".join(r for r in reasoning if r)
    if joined:
        message[_reasoning_key(draft or earlier or {})] = joined
    return message


def _fold(lead: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """``message`` (the next assistant turn) opened by ``lead`` (the self-check): one turn."""
    folded = {**message}
    content = str(message.get("content") or "").strip()
    folded["content"] = f"{lead['content']}\n\n{content}".strip()
    reasoning = "\n\n".join(r for r in (_reasoning(lead), _reasoning(message)) if r)
    for key in _REASONING_KEYS:
        folded.pop(key, None)
    if reasoning:
        folded[_reasoning_key(message if _reasoning(message) else lead)] = reasoning
    return folded


def _reasoning(message: dict[str, Any]) -> str:
    return next((str(message[k]).strip() for k in _REASONING_KEYS if message.get(k)), "")


def _reasoning_key(message: dict[str, Any]) -> str:
    return next((k for k in _REASONING_KEYS if message.get(k)), _REASONING_KEYS[0])


def _scrub_message(message: dict[str, Any]) -> dict[str, Any]:
    scrubbed = {**message}
    for key in ("content", *_REASONING_KEYS):
        if isinstance(scrubbed.get(key), str) and scrubbed[key]:
            scrubbed[key] = scrub(scrubbed[key])
    return scrubbed


def _sentences(text: str) -> list[str]:
    """``text`` cut after each sentence's end; joined again they give ``text`` back."""
    parts, start = [], 0
    for match in _TERMINATOR.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    return [*parts, text[start:]] if start < len(text) else parts


def _remove_phrase(pattern: re.Pattern[str], text: str) -> str:
    """``text`` without ``pattern``'s matches; what follows a match at a sentence start is capitalised."""
    parts: list[str] = []
    position, capitalise = 0, False
    for match in pattern.finditer(text):
        before = text[position : match.start()]
        if capitalise:
            before = before[:1].upper() + before[1:]
        parts.append(before)
        capitalise = bool(_SENTENCE_END.search("".join(parts)))
        position = match.end()
    rest = text[position:]
    parts.append(rest[:1].upper() + rest[1:] if capitalise else rest)
    return "".join(parts)


def _assistant_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [
        str(m[key])
        for m in messages
        if m.get("role") == "assistant"
        for key in ("content", *_REASONING_KEYS)
        if isinstance(m.get(key), str)
    ]


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())
