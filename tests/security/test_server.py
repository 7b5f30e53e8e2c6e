"""Attacks on ``deepresearch serve`` over a real socket, each kept as a test (issue 11), and the guards
that already held: the token, the body limit, closed CORS and error bodies that echo nothing.

- DNS rebinding: a page that points its own name at 127.0.0.1 reaches a loopback server with a foreign
  ``Host``; every route must refuse it (421), and loopback names with any port must still be answered.
- Cross-site requests: a foreign or ``null`` ``Origin`` on a state-changing route is refused (403); the
  bodies a page can post without a CORS preflight (text/plain, form, multipart, untyped) get 415 and
  start no job.
- Non-finite numbers (``NaN``, ``Infinity``: Python's JSON reads them) and lone surrogates are 4xx with a
  message, never a 500, and the server keeps serving.
- The rate limit keys on the peer: neither a fresh ``X-Forwarded-For`` nor a fresh ``Authorization`` per
  request buys a fresh bucket, unless forwarding is trusted by configuration.

The servers come from ``tests/server/conftest.py`` (uvicorn in a thread, the scripted model); nothing
here leaves 127.0.0.1, whatever the ``Host`` header says.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deepresearch.errors import ConfigError
from deepresearch.server.app import ServerConfig
from tests.bench.scripts import agent_script
from tests.server import conftest as server_conftest

make_server = server_conftest.make_server  # the server tests' fixture, shared rather than copied

FOREIGN_HOST = "rebind.evil.example"
TOKEN = "security-test-token-0123456789"
CHAT = {"model": "deepresearch", "messages": [{"role": "user", "content": "How does BM25 rank documents?"}]}
RESEARCH = {"question": "How does BM25 rank documents?"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def port_of(server: Any) -> int:
    return int(server.url.rsplit(":", 1)[1])


def job_ids(server: Any) -> list[str]:
    """The jobs the server knows, asked the proper way."""
    with server.client() as client:
        listed = client.get("/v1/research", params={"limit": 500})
        assert listed.status_code == 200
        return [job["id"] for job in listed.json()["jobs"]]


def assert_nothing_started(server: Any, fake_llm: Any) -> None:
    assert job_ids(server) == []
    runs = server.config.data_dir / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    assert fake_llm.requests == []


def assert_still_serving(server: Any) -> None:
    assert httpx.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}


def strict_json(text: str) -> Any:
    """JSON as the standard allows it: no NaN or Infinity tokens."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in a response body")

    return json.loads(text, parse_constant=refuse)


# --- 2. Host and Origin (DNS rebinding, cross-site requests)

ROUTES = [
    ("POST", "/v1/research", RESEARCH),
    ("POST", "/v1/chat/completions", CHAT),
    ("GET", "/v1/research", None),
    ("POST", "/mcp", PING),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@pytest.mark.parametrize("with_port", [False, True], ids=["no-port", "port"])
def test_a_foreign_host_is_refused_on_a_loopback_bind(make_server, fake_llm, method, path, body, with_port):
    fake_llm.script = agent_script  # on a server that lets the request in, the job ends quickly
    server = make_server()
    host = f"{FOREIGN_HOST}:{port_of(server)}" if with_port else FOREIGN_HOST
    response = httpx.request(method, server.url + path, json=body, headers={"Host": host}, timeout=30)
    assert response.status_code == 421, response.text
    assert response.json() == {"detail": "this server does not answer to that Host"}
    assert_nothing_started(server, fake_llm)


def test_the_page_and_health_check_refuse_a_foreign_host_too(make_server):
    server = make_server()
    for path in ("/", "/healthz", "/static/app.js", "/openapi.json"):
        assert httpx.get(server.url + path, headers={"Host": FOREIGN_HOST}).status_code == 421, path


def test_loopback_hosts_with_any_port_are_answered(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server()
    port = port_of(server)
    hosts = ["127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", "[::1]", f"[::1]:{port}"]
    hosts.append("127.0.0.1:1")  # another port still names this machine: rebinding cannot forge it
    for host in hosts:
        response = httpx.get(server.url + "/v1/research", headers={"Host": host})
        assert response.status_code == 200, host
    created = httpx.post(server.url + "/v1/research", json=RESEARCH, headers={"Host": f"[::1]:{port}"})
    assert created.status_code == 202


def test_a_listed_host_is_answered_and_star_answers_any(make_server, fake_llm):
    server = make_server(allowed_hosts=["research.example.com", "other.example:8443"])
    for host, status in [
        ("research.example.com", 200),
        ("Research.Example.com:443", 200),
        ("other.example:8443", 200),
        ("other.example:9000", 421),
        (FOREIGN_HOST, 421),
        (f"127.0.0.1:{port_of(server)}", 200),
    ]:
        assert httpx.get(server.url + "/v1/research", headers={"Host": host}).status_code == status, host
    anything = make_server(allowed_hosts=["*"], data_dir=server.config.data_dir.parent / "star")
    assert httpx.get(anything.url + "/v1/research", headers={"Host": FOREIGN_HOST}).status_code == 200


def test_the_host_check_on_a_public_bind_is_on_only_when_hosts_are_listed():
    from deepresearch.server.guards import HostPolicy  # imported here: the old code has none

    public = HostPolicy.of("0.0.0.0", [], [])
    assert public.allows_host(FOREIGN_HOST) and public.allows_host("203.0.113.7:8000")
    listed = HostPolicy.of("0.0.0.0", ["research.example.com"], [])
    assert listed.allows_host("research.example.com:443") and listed.allows_host("localhost:8000")
    assert not listed.allows_host(FOREIGN_HOST) and not listed.allows_host("0.0.0.0:8000")
    assert not listed.allows_host(None) and not listed.allows_host("a b") and not listed.allows_host("[::1")
    with pytest.raises(ConfigError, match="allowed-host"):
        ServerConfig(allowed_hosts=["http://research.example.com/"]).check()


ORIGIN_ROUTES = [
    ("POST", "/v1/research", RESEARCH),
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/research/20250101-000000-000000000000/cancel", None),
    ("POST", "/mcp", PING),
    ("DELETE", "/mcp", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), ORIGIN_ROUTES, ids=[f"{m} {p.split('/')[-1]}" for m, p, _ in ORIGIN_ROUTES]
)
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1"])
def test_a_foreign_origin_is_refused_on_state_changing_routes(
    make_server, fake_llm, method, path, body, origin
):
    fake_llm.script = agent_script
    server = make_server()
    response = httpx.request(method, server.url + path, json=body, headers={"Origin": origin}, timeout=30)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "cross-origin request refused"}
    assert_nothing_started(server, fake_llm)


def test_own_listed_and_absent_origins_may_post(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(cors_origins=["https://app.example.org"], allowed_hosts=["research.example.com"])
    port = port_of(server)
    accepted = [
        {},  # no Origin: not a browser
        {"Origin": f"http://127.0.0.1:{port}"},  # the page this server serves
        {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"},
        {"Origin": "https://app.example.org"},  # a listed CORS origin
        {"Origin": "https://research.example.com"},  # a listed host, behind a proxy that rewrites Host
    ]
    for headers in accepted:
        response = httpx.post(server.url + "/v1/research", json=RESEARCH, headers=headers)
        assert response.status_code == 202, headers
    # the page's cancel button: its own origin, no body and no type; it passes the guard (no such job)
    cancel = "/v1/research/20250101-000000-000000000000/cancel"
    assert httpx.post(server.url + cancel, headers={"Origin": f"http://127.0.0.1:{port}"}).status_code == 404
    # reading needs no Origin check: a foreign page cannot read the answer without CORS
    assert (
        httpx.get(server.url + "/v1/research", headers={"Origin": "https://evil.example"}).status_code == 200
    )


# --- 3. cross-site bodies (CSRF)

FORM_BODIES = {
    "text/plain": {"content": json.dumps(CHAT), "headers": {"Content-Type": "text/plain;charset=UTF-8"}},
    "form": {"data": {"model": "deepresearch", "messages": "x"}},
    "multipart": {"files": {"body": ("body.json", json.dumps(CHAT), "application/json")}},
    "untyped": {"content": json.dumps(CHAT).encode()},
}


@pytest.mark.parametrize("kind", list(FORM_BODIES))
def test_chat_completions_refuses_bodies_a_page_can_send_cross_site(make_server, fake_llm, kind):
    fake_llm.script = agent_script
    server = make_server()
    request = httpx.Request("POST", server.url + "/v1/chat/completions", **FORM_BODIES[kind])
    assert request.headers.get("content-type", "").partition(";")[0] != "application/json"
    with httpx.Client(timeout=30) as client:
        response = client.send(request)
    assert response.status_code == 415, response.text
    assert response.json() == {"detail": "the request body must be application/json"}
    assert_nothing_started(server, fake_llm)


def test_json_with_a_charset_passes_the_type_check(make_server, fake_llm):
    server = make_server()
    body = json.dumps({**CHAT, "model": "not-this-one"})
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=body,
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("kind", list(FORM_BODIES))
def test_the_research_api_cancel_and_mcp_refuse_them_too(make_server, fake_llm, kind):
    server = make_server()
    research = {**FORM_BODIES[kind]}
    if "content" in research:
        research["content"] = json.dumps(RESEARCH)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/v1/research", **research).status_code == 415
        assert client.post("/mcp", **FORM_BODIES[kind]).status_code == 415
        cancel = "/v1/research/20250101-000000-000000000000/cancel"
        assert client.post(cancel, **FORM_BODIES[kind]).status_code == 415
        # a form with no fields is an empty body with a form type: refused as well
        empty_form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert client.post(cancel, content=b"", headers=empty_form).status_code == 415
        # a body-less POST needs no type (the page's own cancel button sends none); Origin guards it
        assert client.post(cancel).status_code == 404
    assert_nothing_started(server, fake_llm)


# --- 11. non-finite numbers and lone surrogates


@pytest.mark.parametrize("option", ["max_cost", "max_time", "max_steps", "max_tokens"])
def test_non_finite_and_negative_budgets_are_422_with_a_message(make_server, fake_llm, option):
    server = make_server(rate_per_minute=100)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for value in (float("nan"), float("inf"), float("-inf"), -1):
            body = json.dumps({"question": "q", "options": {option: value}})  # NaN, Infinity, -Infinity
            response = client.post("/v1/research", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, (value, response.text)
            (error,) = strict_json(response.text)["detail"]
            assert error["loc"] == ["body", "options", option] and error["msg"], error
            assert "input" not in error
    assert_still_serving(server)
    assert_nothing_started(server, fake_llm)


@pytest.mark.parametrize("option", ["max_cost", "max_time", "max_steps", "max_tokens"])
def test_the_chat_endpoint_refuses_them_in_research_options(make_server, fake_llm, option):
    server = make_server(rate_per_minute=100)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for value in (float("nan"), float("inf"), float("-inf"), -1):
            body = json.dumps({**CHAT, "research": {option: value}})
            response = client.post(
                "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, (value, response.text)
            error = strict_json(response.text)["error"]
            assert f"research.{option}" in error["message"] and error["code"] == "invalid_request"
    assert_still_serving(server)
    assert_nothing_started(server, fake_llm)


def test_a_lone_surrogate_is_refused_not_a_500(make_server, fake_llm):
    server = make_server(rate_per_minute=100)
    json_type = {"Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for body in (
            '{"question": "\\ud800"}',
            '{"question": "why \\udfff?"}',
            '{"question": "q", "options": {"\\ud800": 1}}',
        ):
            response = client.post("/v1/research", content=body, headers=json_type)
            assert response.status_code == 422, (body, response.text)
            (error,) = strict_json(response.text)["detail"]
            assert error["msg"], error
        # the same code point as raw bytes (CESU-8), which Python's JSON reader lets through
        raw = client.post("/v1/research", content=b'{"question": "\xed\xa0\x80"}', headers=json_type)
        assert 400 <= raw.status_code < 500, raw.text
        chat = {**CHAT, "messages": [{"role": "user", "content": "PLACEHOLDER"}]}
        text = json.dumps(chat).replace("PLACEHOLDER", "\\ud800")
        response = client.post("/v1/chat/completions", content=text, headers=json_type)
        assert response.status_code == 400 and strict_json(response.text)["error"]["message"]
    assert_still_serving(server)
    assert_nothing_started(server, fake_llm)


# --- 12. the rate limit's key


def submission_codes(server: Any, headers: list[dict[str, str]]) -> list[int]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [client.post("/v1/research", json=RESEARCH, headers=h).status_code for h in headers]


def test_rotating_x_forwarded_for_does_not_reset_the_rate_limit(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(rate_per_minute=3)
    rotating = [{"X-Forwarded-For": f"198.51.100.{i}"} for i in range(5)]
    assert submission_codes(server, rotating) == [202, 202, 202, 429, 429]


def test_random_authorization_headers_do_not_reset_the_rate_limit(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(rate_per_minute=3)
    rotating = [{"Authorization": f"Bearer {uuid.uuid4().hex}"} for _ in range(5)]
    assert submission_codes(server, rotating) == [202, 202, 202, 429, 429]


def test_a_valid_token_does_not_reset_the_rate_limit_either(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(rate_per_minute=2, token=SecretStr(TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rotating = [auth, {**auth, "X-Forwarded-For": "198.51.100.1"}, auth]
    assert submission_codes(server, rotating) == [202, 202, 429]


def test_forwarded_for_names_the_client_only_when_trusted(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(rate_per_minute=1, trust_forwarded_for=True)
    proxied = [{"X-Forwarded-For": address} for address in ("198.51.100.1", "198.51.100.2", "198.51.100.1")]
    assert submission_codes(server, proxied) == [202, 202, 429]


# --- what already held: the token, the body limit, closed CORS, quiet errors


def test_a_public_bind_needs_a_long_token():
    with pytest.raises(ConfigError, match="token"):
        ServerConfig(host="0.0.0.0").check()
    with pytest.raises(ConfigError, match="token"):
        ServerConfig(host="0.0.0.0", token=SecretStr("")).check()
    with pytest.raises(ConfigError, match="16 characters"):
        ServerConfig(host="0.0.0.0", token=SecretStr("short")).check()
    ServerConfig(host="0.0.0.0", token=SecretStr(TOKEN)).check()


def test_the_token_is_required_and_checked(make_server, fake_llm):
    server = make_server(token=SecretStr(TOKEN))
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN}):
            for method, path, body in ROUTES:
                response = anonymous.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (headers, path)
                assert response.headers["www-authenticate"] == "Bearer"
                assert TOKEN not in response.text and "wrong-token" not in response.text
        prefix = {"Authorization": f"Bearer {TOKEN[:-1]}"}  # all but the last character
        assert anonymous.get("/v1/research", headers=prefix).status_code == 401
    with server.client() as client:
        assert client.get("/v1/research").status_code == 200
    assert_nothing_started(server, fake_llm)


def test_bodies_over_the_limit_are_refused(make_server, fake_llm):
    server = make_server(max_body_bytes=2000)
    big = json.dumps({"question": "x" * 5000})

    def chunks():  # no Content-Length: the limit must hold as the body streams in
        for start in range(0, len(big), 500):
            yield big[start : start + 500].encode()

    with server.client() as client:
        json_type = {"Content-Type": "application/json"}
        assert client.post("/v1/research", content=big, headers=json_type).status_code == 413
        assert client.post("/v1/research", content=chunks(), headers=json_type).status_code == 413
        assert client.post("/v1/chat/completions", content=big, headers=json_type).status_code == 413
    assert_still_serving(server)
    assert_nothing_started(server, fake_llm)


def test_cors_is_closed_by_default(make_server):
    server = make_server()
    evil = "https://evil.example"
    with server.client() as client:
        preflight = client.options(
            "/v1/research",
            headers={
                "Origin": evil,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers
        read = client.get("/v1/research", headers={"Origin": evil})
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_error_bodies_echo_no_secret_and_no_input(make_server, fake_llm):
    server = make_server(token=SecretStr(TOKEN), rate_per_minute=1, max_body_bytes=4000)
    secret = "sk-live-0123456789abcdef-never-echo"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    fake_llm.script = agent_script
    bodies = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sent = [
            ("GET", "/v1/research", None, {"Authorization": f"Bearer {secret}"}),  # 401
            ("POST", "/v1/research", {"question": "q", "options": {"max_cost": secret}}, auth),  # 422
            ("POST", "/v1/research", {"question": "q", "options": {"api_key": secret}}, auth),  # 422
            ("POST", "/v1/research", {"question": secret * 200}, auth),  # 413
            ("GET", "/v1/research", None, {**auth, "Host": secret + ".example"}),  # 421
            ("POST", "/v1/research", RESEARCH, {**auth, "Origin": f"https://{secret}.example"}),  # 403
            ("POST", "/v1/research", RESEARCH, auth),  # 202
            ("POST", "/v1/research", RESEARCH, {**auth, "X-Forwarded-For": secret}),  # 429
        ]
        for method, path, body, headers in sent:
            response = client.request(method, path, json=body, headers=headers)
            bodies.append((response.status_code, response.text))
    assert [status for status, _ in bodies] == [401, 422, 422, 413, 421, 403, 202, 429]
    for status, text in bodies:
        assert secret not in text and TOKEN not in text and server_conftest.API_KEY not in text, status
