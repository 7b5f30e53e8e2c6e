"""The OpenAI-compatible endpoint, driven by the official ``openai`` SDK against a real server: a whole
completion, a stream (progress as reasoning, the report as content, usage, [DONE]), a failing run, a
wrong model, the token, the shared rate limit, and a disconnect that leaves the job running."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from pydantic import SecretStr

from tests.agent.scripts import question, turn
from tests.bench.scripts import FAIL, agent_script
from tests.fakes.openai_server import Reply
from tests.server.test_api import wait_status

TOKEN = "openai-face-token-0123456789"
QUESTION = "How does BM25 rank documents?"


def sdk(server: Any, api_key: str = "unused") -> OpenAI:
    """The official client, without its own retries (a retried POST would be a second job)."""
    return OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=60)


def test_a_completion_is_the_report_of_one_job(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server()
    client = sdk(server)
    assert [m.id for m in client.models.list()] == ["deepresearch"]
    raw = client.chat.completions.with_raw_response.create(
        model="deepresearch",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "An earlier question"},
            {"role": "assistant", "content": "An earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        ],
        max_tokens=50,  # accepted and ignored: the run has its own budgets
        extra_body={"research": {"max_steps": 5, "language": "en"}},
    )
    job_id = raw.headers["x-deepresearch-job"]
    completion = raw.parse()
    assert completion.id == f"chatcmpl-{job_id}" and completion.model == "deepresearch"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert "BM25 ranks documents [1]" in choice.message.content
    assert "## References" in choice.message.content
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    with server.client() as http:
        job = http.get(f"/v1/research/{job_id}").json()
    assert job["status"] == "done" and job["question"] == QUESTION
    assert job["options"] == {"max_steps": 5, "language": "en"}
    assert job["report"]["markdown"] == choice.message.content
    assert job["usage"]["total_tokens"] == usage.total_tokens
    assert {question(r) for r in fake_llm.requests} == {QUESTION}  # only the last user message was asked


def test_a_stream_shows_progress_then_the_report_then_usage(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server()
    stream = sdk(server).chat.completions.create(
        model="deepresearch",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    job_id = chunks[0].id.removeprefix("chatcmpl-")
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    lines = reasoning.splitlines()
    assert lines[0] == f"research job {job_id} queued"
    assert "started the research" in lines
    assert "step 1: searching: BM25 ranking" in lines
    assert any(line.startswith("found ") and "result(s)" in line for line in lines)
    assert "step 2: writing the report" in lines
    assert any(line.startswith("report written (") for line in lines)
    content = "".join(d.content or "" for d in deltas)
    # every progress line comes before the first piece of the report
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert not any((d.model_extra or {}).get("reasoning_content") for d in deltas[first_content:])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0

    with server.client() as http:
        job = http.get(f"/v1/research/{job_id}").json()
    assert content == job["report"]["markdown"] and "BM25 ranks documents" in content
    assert chunks[-1].usage.total_tokens == job["usage"]["total_tokens"]


def test_a_failed_run_is_an_openai_error_with_or_without_a_stream(make_server, fake_llm):
    fake_llm.script = agent_script  # a question tagged FAIL gets 500 from the model every time
    server = make_server()
    client = sdk(server)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model="deepresearch", messages=[{"role": "user", "content": FAIL + " q"}]
        )
    assert failed.value.status_code == 502
    assert failed.value.code == "research_failed" and failed.value.type == "server_error"
    job_id = failed.value.response.headers["x-deepresearch-job"]
    assert f"research job {job_id} failed" in failed.value.message

    stream = client.chat.completions.create(
        model="deepresearch", messages=[{"role": "user", "content": FAIL + " again"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="failed") as broken:
        for chunk in stream:
            seen.append(chunk)
    assert broken.value.code == "research_failed"
    assert seen and not any(c.choices and c.choices[0].delta.content for c in seen)  # no report text
    with server.client() as http:  # on the wire: the error event, then [DONE]
        body = {"model": "deepresearch", "stream": True, "messages": [{"role": "user", "content": FAIL}]}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[-2].removeprefix("data: "))["error"]["code"] == "research_failed"
        jobs = http.get("/v1/research").json()["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "failed", "failed"]


def test_wrong_model_and_bad_bodies_get_openai_errors(make_server, fake_llm):
    server = make_server()
    client = sdk(server)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    assert missing.value.code == "model_not_found" and "gpt-4o" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert client.models.retrieve("deepresearch").id == "deepresearch"
    with pytest.raises(openai.BadRequestError, match="last user message"):
        client.chat.completions.create(model="deepresearch", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(
        openai.BadRequestError, match=r"research\.base_url"
    ):  # options cannot reach the machine
        client.chat.completions.create(
            model="deepresearch",
            messages=[{"role": "user", "content": "q"}],
            extra_body={"research": {"base_url": "http://evil.example"}},
        )
    with server.client() as http:
        assert http.get("/v1/research").json()["jobs"] == []  # none of these started a job
    assert fake_llm.requests == []


def test_the_token_guards_the_endpoint(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(token=SecretStr(TOKEN))
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "wrong-token").chat.completions.create(
            model="deepresearch", messages=[{"role": "user", "content": QUESTION}]
        )
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "wrong-token").models.list()
    completion = sdk(server, TOKEN).chat.completions.create(
        model="deepresearch", messages=[{"role": "user", "content": QUESTION}]
    )
    assert "BM25 ranks documents" in completion.choices[0].message.content
    assert len(fake_llm.requests) == 2  # the refused request never reached the model


def test_chat_and_the_research_api_share_one_rate_limit(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(rate_per_minute=2)
    client = sdk(server)
    submitted = httpx.post(  # with the key the SDK sends, so that both count for one client
        server.url + "/v1/research", json={"question": "first"}, headers={"Authorization": "Bearer unused"}
    )
    assert submitted.status_code == 202
    client.chat.completions.create(model="deepresearch", messages=[{"role": "user", "content": "second"}])
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="deepresearch", messages=[{"role": "user", "content": "third"}])
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_disconnected_stream_leaves_the_job_running(make_server, fake_llm):
    def slow_answer(request: dict[str, Any]) -> Reply:
        reply = agent_script(request)
        if turn(request) == 1:
            reply.delay = 1.5
        return reply

    fake_llm.script = slow_answer
    server = make_server()
    stream = sdk(server).chat.completions.create(
        model="deepresearch", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    for chunk in stream:
        reasoning = (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        if "searching" in reasoning:
            break
    stream.close()
    job_id = chunk.id.removeprefix("chatcmpl-")
    with server.client() as http:
        assert http.get(f"/v1/research/{job_id}").json()["status"] == "running"
        job = wait_status(http, job_id, {"done", "failed", "cancelled"})
    assert job["status"] == "done" and "BM25 ranks documents" in job["report"]["markdown"]
    assert httpx.get(server.url + "/healthz").status_code == 200
