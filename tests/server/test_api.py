"""The HTTP API end to end: create → stream events → report; reconnect with Last-Event-ID; cancel;
50 concurrent submissions on 4 workers; and the guards (token, body size, rate limit, CORS, secrets)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deepresearch.errors import ConfigError
from deepresearch.server.app import ServerConfig
from tests.agent.scripts import question, turn
from tests.bench.scripts import agent_script
from tests.fakes.openai_server import Reply
from tests.server.conftest import API_KEY


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    """Parse an SSE stream into ``{id, event, data}`` dicts (comments skipped)."""
    events, current = [], {}
    for line in response.iter_lines():
        if not line:
            if current:
                events.append(current)
            current = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        current[name] = value
    return events


def wait_status(client: httpx.Client, job_id: str, wanted: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/research/{job_id}").json()
        if job["status"] in wanted:
            return job
        assert time.monotonic() < deadline, f"job stayed {job['status']}"
        time.sleep(0.05)


def test_create_stream_and_read_the_report(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server()
    with server.client() as client:
        created = client.post("/v1/research", json={"question": "How does BM25 rank documents?"})
        assert created.status_code == 202
        job = created.json()
        assert job["status"] == "queued" and job["links"]["events"].endswith("/events")
        with client.stream("GET", job["links"]["events"]) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
        types = [e["event"] for e in events]
        assert types[0] == "run_started" and types[-2] == "run_finished" and types[-1] == "end"
        assert json.loads(events[-1]["data"]) == {"status": "done"}
        ids = [int(e["id"]) for e in events if "id" in e]
        assert ids == list(range(1, len(ids) + 1))
        detail = client.get(job["links"]["self"]).json()
        assert detail["status"] == "done" and detail["steps"] == 2
        assert "BM25 ranks documents" in detail["report"]["markdown"]
        assert "<html" in detail["report"]["html"]
        assert any(s["n"] == 1 for s in detail["sources"])
        assert detail["usage"]["prompt_tokens"] > 0
        md = client.get(job["links"]["report_markdown"])
        assert md.status_code == 200 and "attachment" in md.headers["content-disposition"]

        # reconnect after the third event: the rest, and nothing twice
        with client.stream("GET", job["links"]["events"], headers={"Last-Event-ID": "3"}) as response:
            again = sse_events(response)
        assert [int(e["id"]) for e in again if "id" in e] == ids[3:]

        listed = client.get("/v1/research").json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
        assert client.get("/openapi.json").json()["paths"]["/v1/research"]["post"]


def test_cancel_a_running_job_and_a_queued_one(make_server, fake_llm):
    def slow(request: dict[str, Any]) -> Reply:
        reply = agent_script(request)
        if turn(request) == 1:
            reply.delay = 30
        return reply

    fake_llm.script = slow
    server = make_server(workers=1)
    with server.client() as client:
        running = client.post("/v1/research", json={"question": "first"}).json()
        queued = client.post("/v1/research", json={"question": "second"}).json()
        deadline = time.monotonic() + 30
        while not any(turn(r) == 1 for r in list(fake_llm.requests)):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.post(queued["links"]["cancel"]).json()["status"] == "cancelled"
        assert client.post(running["links"]["cancel"]).json()["status"] == "cancelled"
        with client.stream("GET", running["links"]["events"]) as response:
            events = sse_events(response)
        assert json.loads(events[-1]["data"]) == {"status": "cancelled"}
        finished = [json.loads(e["data"]) for e in events if e["event"] == "run_finished"]
        assert finished and finished[-1]["status"] == "cancelled"
        assert all(question(r) != "second" for r in fake_llm.requests)  # never started


def test_fifty_submissions_on_four_workers_run_four_at_a_time(make_server, fake_llm):
    """The first four jobs' answers are held by the model until the test has seen the queue: then exactly
    four run and the rest wait, whatever the machine's speed. Those four are cancelled (which hangs up on
    the held answers) and the other 46 go through without a hold."""
    held = {"on": True}

    def holding(request: dict[str, Any]) -> Reply:
        reply = agent_script(request)
        if turn(request) == 1 and held["on"]:
            reply.delay = 120
        return reply

    fake_llm.script = holding
    server = make_server(workers=4, rate_per_minute=100)
    with server.client() as client:
        ids = [
            client.post("/v1/research", json={"question": f"Question {i}?"}).json()["id"] for i in range(50)
        ]
        assert len(set(ids)) == 50
        deadline = time.monotonic() + 60
        while sum(turn(r) == 1 for r in list(fake_llm.requests)) < 4:
            assert time.monotonic() < deadline, "four jobs never reached their held answer"
            time.sleep(0.02)
        jobs = client.get("/v1/research", params={"limit": 500}).json()["jobs"]
        running = {j["id"] for j in jobs if j["status"] == "running"}
        assert len(running) == 4 and sum(j["status"] == "queued" for j in jobs) == 46
        asked = {question(r) for r in fake_llm.requests}
        assert asked == {j["question"] for j in jobs if j["id"] in running}  # no fifth job started

        held["on"] = False
        for job_id in running:
            assert client.post(f"/v1/research/{job_id}/cancel").json()["status"] == "cancelled"
        most = 0
        deadline = time.monotonic() + 120
        while True:
            jobs = client.get("/v1/research", params={"limit": 500}).json()["jobs"]
            statuses = [j["status"] for j in jobs]
            most = max(most, statuses.count("running"))
            if all(s in ("done", "failed", "cancelled") for s in statuses):
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.02)
    assert sorted(j["id"] for j in jobs) == sorted(ids)
    assert sorted(j["id"] for j in jobs if j["status"] == "cancelled") == sorted(running)
    assert [j["status"] for j in jobs if j["id"] not in running] == ["done"] * 46
    assert most <= 4


def test_the_token_guards_every_route_but_the_health_check(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(token=SecretStr("a-long-enough-token-123"))
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        refused = anonymous.post("/v1/research", json={"question": "q"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.get("/v1/research", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    with server.client() as client:
        assert client.get("/v1/research").status_code == 200


def test_a_public_bind_needs_a_token():
    with pytest.raises(ConfigError, match="token"):
        ServerConfig(host="0.0.0.0").check()
    with pytest.raises(ConfigError, match="16 characters"):
        ServerConfig(host="0.0.0.0", token=SecretStr("short")).check()
    ServerConfig(host="0.0.0.0", token=SecretStr("x" * 16)).check()
    ServerConfig(host="::1").check()


def test_limits_on_bodies_options_and_submission_rate(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(max_body_bytes=2000, rate_per_minute=3)
    with server.client() as client:
        big = client.post("/v1/research", json={"question": "x" * 5000})
        assert big.status_code == 413
        sneaky = client.post(
            "/v1/research", json={"question": "q", "options": {"base_url": "http://evil.example"}}
        )
        assert sneaky.status_code == 422  # only budgets and language may be set per request
        codes = [client.post("/v1/research", json={"question": f"q{i}"}).status_code for i in range(4)]
        assert codes == [202, 202, 202, 429]
        limited = client.post("/v1/research", json={"question": "again"})
        assert int(limited.headers["retry-after"]) >= 1


def test_cors_is_closed_unless_origins_are_listed(make_server, fake_llm):
    closed = make_server()
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with closed.client() as client:
        response = client.options("/v1/research", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    opened = make_server(
        cors_origins=["https://example.org"], data_dir=closed.config.data_dir.parent / "other"
    )
    with opened.client() as client:
        response = client.options("/v1/research", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://example.org"


def test_no_secret_in_any_response_or_event(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server()
    seen = []
    with server.client() as client:
        job = client.post("/v1/research", json={"question": "How does BM25 rank documents?"}).json()
        with client.stream("GET", job["links"]["events"]) as response:
            seen.append("".join(response.iter_text()))
        for path in (job["links"]["self"], "/v1/research", job["links"]["report_html"], "/openapi.json"):
            seen.append(client.get(path).text)
    assert fake_llm.request_headers[-1]["authorization"] == f"Bearer {API_KEY}"  # the key was used
    assert all(API_KEY not in text for text in seen)
