"""Tests of waygpt.testing.WayGPTTestServer, driven over real HTTP with plain requests."""

import base64
import email.utils
import hashlib
import hmac
import http.client
import json
import re
import secrets
import socket
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from waygpt import WayGPTClient
from waygpt.testing import (
    RecordedRequest,
    ScriptedResponse,
    StreamFault,
    WayGPTTestServer,
    sse_event,
    usage_chunk,
)

TIMEOUT = 5
CHAT = "/api/v1/waygpt/chat/completions"
MODELS = "/api/v1/waygpt/models"
VIDEOS = "/api/v1/waygpt/videos/generations"
JOBS = "/api/v1/waygpt/media/jobs"
LOGIN = "/api/v1/auth/login/access-token"
PROJECTS = "/api/v1/client/projects"


@pytest.fixture
def server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer() as srv:
        yield srv


@pytest.fixture
def hmac_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer(require_hmac=True) as srv:
        yield srv


def key_headers(server: WayGPTTestServer) -> Dict[str, str]:
    return {"x-project-key": server.project_key}


def jwt_headers(server: WayGPTTestServer) -> Dict[str, str]:
    return {"Authorization": "Bearer " + server.issue_token()}


def signed(
    server: WayGPTTestServer,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    timestamp: Optional[int] = None,
    nonce: Optional[str] = None,
    secret: Optional[str] = None,
) -> Dict[str, str]:
    """Headers signed independently of the server's own code, per PROTOCOL.md."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    canonical = "\n".join(
        [
            method,
            target,
            "sha256(body)=" + hashlib.sha256(body).hexdigest(),
            "timestamp=" + ts,
            "nonce=" + nonce,
            "project=" + server.project_id,
        ]
    )
    key = (secret or server.hmac_secret).encode("utf-8")
    signature = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "x-project-key": server.project_key,
        "Content-Type": "application/json",
        "X-MB-Timestamp": ts,
        "X-MB-Nonce": nonce,
        "X-MB-Signature": signature,
    }


def chat_body(text: str = "hello there") -> Dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


def raw_exchange(server: WayGPTTestServer, request: bytes) -> socket.socket:
    host, port = server.url[len("http://") :].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    sock.sendall(request)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


# -- authentication ---------------------------------------------------------


def test_valid_project_key_gets_models(server: WayGPTTestServer) -> None:
    r = requests.get(server.url + MODELS, headers=key_headers(server), timeout=TIMEOUT)
    assert r.status_code == 200
    assert "gpt-4o-mini" in r.json()
    assert r.headers["x-request-id"]


@pytest.mark.parametrize("headers", [{}, {"x-project-key": "sk_live_wrong"}])
def test_bad_project_key_is_401(server: WayGPTTestServer, headers: Dict[str, str]) -> None:
    r = requests.get(server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 401
    assert r.json() == {"detail": "Invalid project key"}
    assert r.headers["x-request-id"]


@pytest.mark.parametrize("auth", [None, "Bearer not-a-token", "Basic abc", "Bearer "])
def test_bad_jwt_is_401(server: WayGPTTestServer, auth: Optional[str]) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    # A valid project key does not open the Client API.
    headers.update(key_headers(server))
    r = requests.get(server.url + PROJECTS, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 401
    assert r.json() == {"detail": "Could not validate credentials"}


def test_login_then_client_api(server: WayGPTTestServer) -> None:
    bad = requests.post(
        server.url + LOGIN,
        data={"username": server.user_email, "password": "wrong"},
        timeout=TIMEOUT,
    )
    assert bad.status_code == 400
    assert bad.json() == {"detail": "Incorrect email or password"}
    r = requests.post(
        server.url + LOGIN,
        data={"username": server.user_email, "password": server.user_password},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    answer = r.json()
    assert answer["token_type"] == "bearer"
    assert "expires_in" not in answer
    assert server.last_request is not None
    assert server.last_request.headers["content-type"] == "application/x-www-form-urlencoded"
    projects = requests.get(
        server.url + PROJECTS,
        headers={"Authorization": "Bearer " + answer["access_token"]},
        timeout=TIMEOUT,
    )
    assert projects.status_code == 200
    assert [p["id"] for p in projects.json()] == [server.project_id]
    assert projects.json()[0]["api_key"] == server.project_key


@pytest.mark.parametrize(("expires_in", "status"), [(3600, 200), (0, 401)])
def test_login_reports_expires_in_and_tokens_expire(expires_in: int, status: int) -> None:
    with WayGPTTestServer(token_expires_in=expires_in) as srv:
        r = requests.post(
            srv.url + LOGIN,
            data={"username": srv.user_email, "password": srv.user_password},
            timeout=TIMEOUT,
        )
        assert r.json()["expires_in"] == expires_in
        headers = {"Authorization": "Bearer " + r.json()["access_token"]}
        assert requests.get(srv.url + PROJECTS, headers=headers).status_code == status


def test_login_missing_field_is_422(server: WayGPTTestServer) -> None:
    r = requests.post(server.url + LOGIN, data={"username": "x"}, timeout=TIMEOUT)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "password"]


# -- HMAC -------------------------------------------------------------------


def test_hmac_required_rejects_unsigned(hmac_server: WayGPTTestServer) -> None:
    r = requests.get(hmac_server.url + MODELS, headers=key_headers(hmac_server), timeout=TIMEOUT)
    assert r.status_code == 403
    assert "Missing HMAC headers" in r.json()["detail"]


def test_hmac_valid_signature_is_accepted(hmac_server: WayGPTTestServer) -> None:
    body = json.dumps(chat_body(), separators=(",", ":")).encode()
    headers = signed(hmac_server, "POST", CHAT, body)
    r = requests.post(hmac_server.url + CHAT, data=body, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: hello there"


def test_hmac_bad_signature_is_403(hmac_server: WayGPTTestServer) -> None:
    body = json.dumps(chat_body()).encode()
    headers = signed(hmac_server, "POST", CHAT, body, secret="some-other-secret")
    r = requests.post(hmac_server.url + CHAT, data=body, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 403
    assert r.json() == {"detail": "Invalid HMAC signature"}
    # Signed over a different body than the one sent.
    headers = signed(hmac_server, "POST", CHAT, body)
    r = requests.post(hmac_server.url + CHAT, data=body + b" ", headers=headers, timeout=TIMEOUT)
    assert r.json() == {"detail": "Invalid HMAC signature"}


def test_hmac_nonce_reuse_is_403(hmac_server: WayGPTTestServer) -> None:
    headers = signed(hmac_server, "GET", MODELS)
    first = requests.get(hmac_server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert first.status_code == 200
    again = requests.get(hmac_server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert again.status_code == 403
    assert again.json() == {"detail": "HMAC nonce already used"}


def test_hmac_bad_signature_does_not_burn_the_nonce(hmac_server: WayGPTTestServer) -> None:
    nonce = secrets.token_hex(16)
    forged = signed(hmac_server, "GET", MODELS, nonce=nonce, secret="wrong")
    url = hmac_server.url + MODELS
    assert requests.get(url, headers=forged, timeout=TIMEOUT).status_code == 403
    good = signed(hmac_server, "GET", MODELS, nonce=nonce)
    assert requests.get(url, headers=good, timeout=TIMEOUT).status_code == 200


@pytest.mark.parametrize("skew", [-301, 400])
def test_hmac_stale_timestamp_is_403(hmac_server: WayGPTTestServer, skew: int) -> None:
    headers = signed(hmac_server, "GET", MODELS, timestamp=int(time.time()) + skew)
    r = requests.get(hmac_server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 403
    assert r.json() == {"detail": "HMAC timestamp outside the allowed window"}


def test_hmac_timestamp_inside_window_is_accepted(hmac_server: WayGPTTestServer) -> None:
    headers = signed(hmac_server, "GET", MODELS, timestamp=int(time.time()) - 250)
    assert requests.get(hmac_server.url + MODELS, headers=headers, timeout=TIMEOUT).ok


@pytest.mark.parametrize(
    ("nonce", "detail"),
    [("ABCDEF" + "0" * 26, "Invalid HMAC nonce"), ("abc", "Invalid HMAC nonce")],
)
def test_hmac_malformed_nonce_is_403(
    hmac_server: WayGPTTestServer, nonce: str, detail: str
) -> None:
    headers = signed(hmac_server, "GET", MODELS, nonce=nonce)
    r = requests.get(hmac_server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 403
    assert r.json() == {"detail": detail}


def test_hmac_over_cyrillic_body(hmac_server: WayGPTTestServer) -> None:
    payload = chat_body("Привет, как дела?")
    exact = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    r = requests.post(
        hmac_server.url + CHAT,
        data=exact,
        headers=signed(hmac_server, "POST", CHAT, exact),
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: Привет, как дела?"
    assert hmac_server.last_request is not None
    assert hmac_server.last_request.body == exact
    # The reference client's defect: sign the unescaped text, send the escaped one.
    escaped = json.dumps(payload).encode("ascii")
    r = requests.post(
        hmac_server.url + CHAT,
        data=escaped,
        headers=signed(hmac_server, "POST", CHAT, exact),
        timeout=TIMEOUT,
    )
    assert r.status_code == 403
    assert r.json() == {"detail": "Invalid HMAC signature"}


def test_hmac_over_path_with_query(hmac_server: WayGPTTestServer) -> None:
    target = "/api/v1/waygpt/use-cases?detailed=true"
    r = requests.get(
        hmac_server.url + target, headers=signed(hmac_server, "GET", target), timeout=TIMEOUT
    )
    assert r.status_code == 200, r.text
    assert "config" in r.json()[0]
    # Signing the path without its query must fail.
    r = requests.get(
        hmac_server.url + target,
        headers=signed(hmac_server, "GET", "/api/v1/waygpt/use-cases"),
        timeout=TIMEOUT,
    )
    assert r.status_code == 403


def test_optional_hmac_is_checked_when_headers_present(server: WayGPTTestServer) -> None:
    assert requests.get(server.url + MODELS, headers=key_headers(server), timeout=TIMEOUT).ok
    bad = signed(server, "GET", MODELS, secret="wrong")
    r = requests.get(server.url + MODELS, headers=bad, timeout=TIMEOUT)
    assert r.status_code == 403
    partial = {"x-project-key": server.project_key, "X-MB-Nonce": secrets.token_hex(16)}
    r = requests.get(server.url + MODELS, headers=partial, timeout=TIMEOUT)
    assert r.status_code == 403
    assert "Missing HMAC headers" in r.json()["detail"]


def test_scripted_failure_still_consumes_the_nonce(hmac_server: WayGPTTestServer) -> None:
    hmac_server.script(status=503, body={"detail": "busy"}, path=MODELS)
    headers = signed(hmac_server, "GET", MODELS)
    first = requests.get(hmac_server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert first.status_code == 503
    replay = requests.get(hmac_server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert replay.json() == {"detail": "HMAC nonce already used"}


def test_scripts_do_not_bypass_authentication(server: WayGPTTestServer) -> None:
    server.script(status=200, body={"ok": True})
    r = requests.get(server.url + MODELS, headers={"x-project-key": "nope"}, timeout=TIMEOUT)
    assert r.status_code == 401
    assert len(server.pending_scripts) == 1


# -- chat, images, use cases, widget -----------------------------------------


def test_chat_completion_shape(server: WayGPTTestServer) -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Скажи привет"},
        ],
        "temperature": 0.2,
    }
    r = requests.post(server.url + CHAT, json=body, headers=key_headers(server), timeout=TIMEOUT)
    data = r.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    models = requests.get(server.url + MODELS, headers=key_headers(server), timeout=TIMEOUT)
    assert data["model"] in models.json()
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Echo: Скажи привет"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


def test_chat_stream(server: WayGPTTestServer) -> None:
    body = {**chat_body("раз два три"), "stream": True}
    r = requests.post(
        server.url + CHAT, json=body, headers=key_headers(server), stream=True, timeout=TIMEOUT
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["transfer-encoding"] == "chunked"
    text = r.content.decode("utf-8")
    events = [block[len("data: ") :] for block in text.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert "".join(deltas) == "Echo: раз два три"
    assert len([d for d in deltas if d]) == 4
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


INCLUDE_USAGE = {"stream_options": {"include_usage": True}}


def streamed_chunks(server: WayGPTTestServer, **extra: Any) -> List[Any]:
    """The data of every event of one streamed chat completion, ``[DONE]`` included."""
    body = {**chat_body("раз два три"), "stream": True, **extra}
    r = requests.post(server.url + CHAT, json=body, headers=key_headers(server), timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    events = [block[len("data: ") :] for block in r.content.decode("utf-8").split("\n\n")]
    return [event if event == "[DONE]" else json.loads(event) for event in events if event]


def test_a_stream_asked_for_usage_ends_with_a_usage_only_chunk(server: WayGPTTestServer) -> None:
    *chunks, usage_only, done = streamed_chunks(server, **INCLUDE_USAGE)

    assert done == "[DONE]"
    assert usage_only == {
        "id": chunks[0]["id"],
        "object": "chat.completion.chunk",
        "created": chunks[0]["created"],
        "model": chunks[0]["model"],
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    # As OpenAI documents it: every other chunk carries "usage": null.
    assert all("usage" in chunk and chunk["usage"] is None for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == (
        "Echo: раз два три"
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("extra", [{}, {"stream_options": {"include_usage": False}}])
def test_a_stream_not_asked_for_usage_carries_it_on_its_final_chunk(
    server: WayGPTTestServer, extra: Dict[str, Any]
) -> None:
    *chunks, done = streamed_chunks(server, **extra)

    assert done == "[DONE]"
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks[:-1])
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_always_include_usage_ends_every_stream_with_a_usage_only_chunk() -> None:
    with WayGPTTestServer(always_include_usage=True) as server:
        assert server.always_include_usage
        *_, usage_only, done = streamed_chunks(server)
        plain = requests.post(
            server.url + CHAT, json=chat_body(), headers=key_headers(server), timeout=TIMEOUT
        ).json()

    assert (usage_only["choices"], done) == ([], "[DONE]")
    assert usage_only["usage"]["total_tokens"] == 7
    assert plain["choices"][0]["message"]["content"] == "Echo: hello there"


def test_a_fault_after_every_event_of_a_stream_with_usage_comes_after_the_usage_chunk(
    server: WayGPTTestServer,
) -> None:
    server.script_stream_fault(after_events=1000, cut="close")
    request = stream_request(server, **INCLUDE_USAGE)
    with raw_exchange(server, request) as sock:
        received, _ = read_until_closed(sock)
    data, terminated = dechunk(received.partition(b"\r\n\r\n")[2])
    events = events_of(data)

    assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] == 7
    assert "[DONE]" not in events and not terminated


def test_usage_chunk_ends_a_scripted_stream(server: WayGPTTestServer) -> None:
    content = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]}
    server.script(
        path=CHAT,
        content_type="text/event-stream",
        chunks=[sse_event(content), sse_event(usage_chunk(3, 2)), sse_event("[DONE]")],
    )

    with WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        result = client.chat_completions_stream(messages=[{"role": "user", "content": "x"}])
        gathered = result.collect()

    assert (gathered.text, gathered.chunks) == ("Hi", 2)
    assert gathered.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize(
    ("args", "error"),
    [((-1, 0), ValueError), ((0, 1.5), TypeError), ((True, 0), TypeError)],
)
def test_usage_chunk_refuses_counts_that_are_not_token_counts(args: Any, error: Any) -> None:
    with pytest.raises(error):
        usage_chunk(*args)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"model": "auto"}, ["body", "messages"]),
        ({"messages": []}, ["body", "messages"]),
        ({"messages": "hi"}, ["body", "messages"]),
        ({"messages": [{"content": "x"}]}, ["body", "messages", 0, "role"]),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, ["body", "stream"]),
        (
            {"messages": [{"role": "user", "content": "x"}], "stream_options": "yes"},
            ["body", "stream_options"],
        ),
        (
            {"messages": [{"role": "user", "content": "x"}],
             "stream_options": {"include_usage": "yes"}},
            ["body", "stream_options", "include_usage"],
        ),
    ],
)
def test_chat_validation_is_422(server: WayGPTTestServer, body: Dict[str, Any], loc: Any) -> None:
    r = requests.post(server.url + CHAT, json=body, headers=key_headers(server), timeout=TIMEOUT)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc
    assert {"msg", "type"} <= set(detail[0])


def test_invalid_json_is_400(server: WayGPTTestServer) -> None:
    headers = {**key_headers(server), "Content-Type": "application/json"}
    r = requests.post(server.url + CHAT, data=b"{nope", headers=headers, timeout=TIMEOUT)
    assert r.status_code == 400


def test_chat_use_case(server: WayGPTTestServer) -> None:
    ok = requests.post(
        server.url + CHAT,
        json={**chat_body(), "use_case": "support"},
        headers=key_headers(server),
        timeout=TIMEOUT,
    )
    assert ok.status_code == 200
    for key in ("nope", "legacy"):  # legacy exists but is inactive
        r = requests.post(
            server.url + CHAT,
            json={**chat_body(), "use_case": key},
            headers=key_headers(server),
            timeout=TIMEOUT,
        )
        assert r.status_code == 404, key


def test_use_cases_list_carries_config(server: WayGPTTestServer) -> None:
    plain = requests.get(
        server.url + "/api/v1/waygpt/use-cases", headers=key_headers(server), timeout=TIMEOUT
    ).json()
    assert [uc["key"] for uc in plain] == ["support", "catalog"]  # legacy is inactive
    assert all(set(uc) == {"key", "name", "kind", "config"} for uc in plain)
    support = plain[0]
    assert (support["name"], support["kind"]) == ("Поддержка клиентов", "chat")
    assert support["config"]["models"][0] == {"model_id": "yandexgpt-pro", "priority": 1}
    assert plain[1]["config"]["response_format"] == "json"
    detailed = requests.get(
        server.url + "/api/v1/waygpt/use-cases",
        params={"detailed": "true"},
        headers=key_headers(server),
        timeout=TIMEOUT,
    ).json()
    assert all(set(uc) == {"key", "name", "kind", "config", "is_active", "id"} for uc in detailed)
    assert [uc["config"] for uc in detailed] == [uc["config"] for uc in plain]


def test_use_case_config_reaches_the_sdk(server: WayGPTTestServer) -> None:
    with WayGPTClient(api_url=server.url, project_key=server.project_key, timeout=TIMEOUT) as c:
        token = server.issue_token()
        created = c.client_create_use_case(
            server.project_id, token, key="faq", name="FAQ", config={"temperature": 0.1}
        )
        assert c.get_use_cases()[0]["config"]["system_prompt"].startswith("Ты")
        assert c.get_use_cases()[-1]["config"] == {"temperature": 0.1}
        c.client_update_use_case(server.project_id, created["id"], token, config={"max_tokens": 5})
        assert c.get_use_cases()[-1]["config"] == {"max_tokens": 5}


def test_models_full_matches_models(server: WayGPTTestServer) -> None:
    ids = requests.get(server.url + MODELS, headers=key_headers(server), timeout=TIMEOUT).json()
    full = requests.get(
        server.url + MODELS + "/full", headers=key_headers(server), timeout=TIMEOUT
    ).json()
    assert [m["id"] for m in full] == ids
    assert {"chat", "image", "video"} <= {m["type"] for m in full}
    assert all({"id", "name", "provider"} <= set(m) for m in full)


def test_images(server: WayGPTTestServer) -> None:
    r = requests.post(
        server.url + "/api/v1/waygpt/images/generations",
        json={"prompt": "кот", "size": "512x512", "n": 2},
        headers=key_headers(server),
        timeout=TIMEOUT,
    )
    data = r.json()["data"]
    assert len(data) == 2
    assert data[0]["url"].startswith(server.url + "/media/images/")
    png = requests.get(data[0]["url"], timeout=TIMEOUT)
    assert png.content.startswith(b"\x89PNG")
    for bad in ({"prompt": ""}, {"prompt": "x", "n": 11}, {"prompt": "x", "size": "big"}):
        r = requests.post(
            server.url + "/api/v1/waygpt/images/generations",
            json=bad,
            headers=key_headers(server),
            timeout=TIMEOUT,
        )
        assert r.status_code == 422, bad


@pytest.mark.parametrize(("ttl", "status"), [(59, 422), (60, 200), (86400, 200), (86401, 422)])
def test_widget_token_ttl(server: WayGPTTestServer, ttl: int, status: int) -> None:
    r = requests.post(
        server.url + "/api/v1/widget/token",
        json={"ttl_seconds": ttl, "site_domain": "shop.example"},
        headers=key_headers(server),
        timeout=TIMEOUT,
    )
    assert r.status_code == status
    if status == 200:
        assert r.json()["expires_in"] == ttl
        assert r.json()["site_domain"] == "shop.example"
        assert r.json()["token"]


# -- media jobs ---------------------------------------------------------------


def create_job(server: WayGPTTestServer) -> str:
    r = requests.post(
        server.url + VIDEOS, json={"prompt": "sunset"}, headers=key_headers(server), timeout=TIMEOUT
    )
    assert r.json()["status"] == "pending"
    job_id: str = r.json()["job_id"]
    return job_id


def poll(server: WayGPTTestServer, job_id: str) -> Dict[str, Any]:
    r = requests.get(f"{server.url}{JOBS}/{job_id}", headers=key_headers(server), timeout=TIMEOUT)
    assert r.status_code == 200
    data: Dict[str, Any] = r.json()
    return data


def test_job_progression(server: WayGPTTestServer) -> None:
    job_id = create_job(server)
    assert server.jobs[job_id]["status"] == "pending"
    seen = [poll(server, job_id) for _ in range(4)]
    assert [j["status"] for j in seen] == ["processing", "processing", "completed", "completed"]
    assert [j["progress"] for j in seen] == [33, 66, 100, 100]
    assert seen[0]["type"] == "video"
    assert seen[0]["prompt"] == "sunset"
    assert "result" not in seen[0]
    assert seen[2]["result"]["url"].startswith(server.url)
    cancel = requests.post(
        f"{server.url}{JOBS}/{job_id}/cancel", headers=key_headers(server), timeout=TIMEOUT
    )
    assert cancel.status_code == 409


def test_job_cancel(server: WayGPTTestServer) -> None:
    job_id = create_job(server)
    poll(server, job_id)
    url = f"{server.url}{JOBS}/{job_id}/cancel"
    r = requests.post(url, headers=key_headers(server), timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert poll(server, job_id)["status"] == "cancelled"
    assert requests.post(url, headers=key_headers(server), timeout=TIMEOUT).status_code == 409


def test_job_fail_and_unknown(server: WayGPTTestServer) -> None:
    job_id = create_job(server)
    server.fail_job(job_id, error="GPU on fire")
    job = poll(server, job_id)
    assert job["status"] == "failed"
    assert job["error"] == "GPU on fire"
    for missing in ("nope", "..%2Fmodels", "%3Fx%3D1"):
        r = requests.get(
            f"{server.url}{JOBS}/{missing}", headers=key_headers(server), timeout=TIMEOUT
        )
        assert r.status_code == 404
        assert r.json() == {"detail": "Not Found"}
    with pytest.raises(KeyError):
        server.fail_job("nope")


def test_job_steps_one_completes_on_first_poll() -> None:
    with WayGPTTestServer(job_steps=1) as srv:
        assert poll(srv, create_job(srv))["status"] == "completed"


# -- Client API -------------------------------------------------------------


def test_client_api_projects(server: WayGPTTestServer) -> None:
    headers = jwt_headers(server)
    created = requests.post(
        server.url + PROJECTS, json={"name": "Shop"}, headers=headers, timeout=TIMEOUT
    ).json()
    assert created["api_key"].startswith("sk_live_")
    assert created["hmac_required"] is False
    project_url = f"{server.url}{PROJECTS}/{created['id']}"
    # The new project's key works on the project-key API.
    r = requests.get(server.url + MODELS, headers={"x-project-key": created["api_key"]})
    assert r.status_code == 200
    updated = requests.put(
        project_url, json={"hmac_required": True, "rate_limit_rpm": 5}, headers=headers
    ).json()
    assert updated["hmac_required"] is True
    assert updated["rate_limit_rpm"] == 5
    assert updated["name"] == "Shop"
    # Now its HMAC requirement is enforced with its own secret.
    r = requests.get(server.url + MODELS, headers={"x-project-key": created["api_key"]})
    assert r.status_code == 403
    settings = requests.get(project_url + "/settings", headers=headers).json()
    assert settings["rate_limit_rpm"] == 5
    bad = requests.put(project_url, json={"colour": "red"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "colour"]
    assert requests.put(project_url, json={"is_active": "no"}, headers=headers).status_code == 422
    assert requests.delete(project_url, headers=headers).status_code == 200
    assert requests.get(project_url + "/settings", headers=headers).status_code == 404
    r = requests.get(server.url + MODELS, headers={"x-project-key": created["api_key"]})
    assert r.status_code == 401


def test_client_api_other_users_cannot_see_projects(server: WayGPTTestServer) -> None:
    server.add_user("eve@example.com", "pw")
    token = requests.post(
        server.url + LOGIN, data={"username": "eve@example.com", "password": "pw"}
    ).json()["access_token"]
    eve = {"Authorization": "Bearer " + token}
    assert requests.get(server.url + PROJECTS, headers=eve).json() == []
    r = requests.get(f"{server.url}{PROJECTS}/{server.project_id}/settings", headers=eve)
    assert r.status_code == 404


def test_client_api_use_cases(server: WayGPTTestServer) -> None:
    headers = jwt_headers(server)
    base = f"{server.url}{PROJECTS}/{server.project_id}/use-cases"
    assert "support" in [uc["key"] for uc in requests.get(base, headers=headers).json()]
    new = {"key": "faq", "name": "FAQ", "kind": "multi", "is_active": True}
    created = requests.post(base, json=new, headers=headers)
    assert created.status_code == 200
    use_case = created.json()
    assert use_case["config"] == {}
    assert requests.post(base, json=new, headers=headers).status_code == 409
    wrong_kind = requests.post(base, json={**new, "key": "x", "kind": "poetry"}, headers=headers)
    assert wrong_kind.status_code == 422
    item = f"{base}/{use_case['id']}"
    r = requests.put(item, json={"config": {"system_prompt": "Кратко"}}, headers=headers)
    assert r.json()["config"] == {"system_prompt": "Кратко"}
    assert r.json()["key"] == "faq"
    assert requests.put(item, json={"key": "support"}, headers=headers).status_code == 409
    keys = [
        uc["key"]
        for uc in requests.get(
            server.url + "/api/v1/waygpt/use-cases", headers=key_headers(server)
        ).json()
    ]
    assert "faq" in keys
    assert requests.delete(item, headers=headers).status_code == 200
    assert requests.delete(item, headers=headers).status_code == 404
    assert requests.put(f"{base}/..%2F..", json={}, headers=headers).status_code == 404


def test_unknown_path_and_wrong_method(server: WayGPTTestServer) -> None:
    r = requests.get(server.url + "/nothing/here", timeout=TIMEOUT)
    assert r.status_code == 404
    r = requests.delete(server.url + MODELS, headers=key_headers(server), timeout=TIMEOUT)
    assert r.status_code == 405
    r = requests.get(server.url + PROJECTS + "/x", headers=jwt_headers(server), timeout=TIMEOUT)
    assert r.status_code == 405


# -- scripting ----------------------------------------------------------------


def test_script_status_with_retry_after_times(server: WayGPTTestServer) -> None:
    script = server.script(
        status=429, body={"detail": "slow down"}, headers={"Retry-After": "0"}, times=2
    )
    assert isinstance(script, ScriptedResponse)
    url = server.url + MODELS
    got = [requests.get(url, headers=key_headers(server), timeout=TIMEOUT) for _ in range(3)]
    assert [r.status_code for r in got] == [429, 429, 200]
    assert got[0].headers["Retry-After"] == "0"
    assert got[0].json() == {"detail": "slow down"}
    assert server.pending_scripts == []


def test_script_filters_and_fifo(server: WayGPTTestServer) -> None:
    server.script(status=502, body="<html>bad gateway</html>", path=CHAT)
    server.script(status=500, path="/api/v1/waygpt/models*", method="GET")
    server.script(status=418, times=None, method="DELETE")
    r = requests.get(server.url + MODELS + "?x=1", headers=key_headers(server), timeout=TIMEOUT)
    assert r.status_code == 500  # prefix match, query ignored
    r = requests.post(server.url + CHAT, json=chat_body(), headers=key_headers(server))
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    assert r.text == "<html>bad gateway</html>"
    assert requests.post(server.url + CHAT, json=chat_body(), headers=key_headers(server)).ok
    for _ in range(3):  # times=None answers forever
        assert requests.delete(server.url + "/anything", timeout=TIMEOUT).status_code == 418
    server.clear_scripts()
    assert requests.delete(server.url + "/anything", timeout=TIMEOUT).status_code == 404


def test_script_object_and_kwargs_are_exclusive(server: WayGPTTestServer) -> None:
    with pytest.raises(TypeError):
        server.script(ScriptedResponse(status=500), status=400)
    with pytest.raises(ValueError):
        ScriptedResponse(framing="sideways")  # type: ignore[arg-type]


def test_script_delay_causes_read_timeout_and_stop_does_not_hang() -> None:
    srv = WayGPTTestServer().start()
    try:
        srv.script(delay=3.0, body={"late": True})
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(srv.url + "/x", timeout=(1, 0.1))
    finally:
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 1.0


def test_script_reset(server: WayGPTTestServer) -> None:
    server.script(reset=True)
    sock = raw_exchange(server, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    with sock, pytest.raises(ConnectionResetError):
        read_all(sock)
    with pytest.raises(requests.exceptions.ConnectionError):
        server.script(reset=True)
        requests.get(server.url + "/x", timeout=TIMEOUT)


def test_script_chunked_stream_is_flushed_piece_by_piece(server: WayGPTTestServer) -> None:
    events = [sse_event({"n": 1}), sse_event({"n": "два"}, event="x", id="7")]
    delay = 1.0
    server.script(chunks=events, chunk_delay=delay, content_type="text/event-stream")
    r = requests.get(server.url + "/stream", stream=True, timeout=TIMEOUT)
    assert r.headers["transfer-encoding"] == "chunked"
    pieces = r.iter_content(chunk_size=None)
    first = next(pieces)
    first_at = time.monotonic()
    rest = b"".join(pieces)
    rest_at = time.monotonic()
    # The first event arrived on its own, well before the second: a server that held it back
    # until the end would deliver both together. The bound is half the scripted gap, so a
    # loaded machine does not make the test fail, while buffering (gap ~0) still does.
    assert first == events[0]
    assert rest_at - first_at >= delay / 2
    assert first + rest == b"".join(events)
    assert events[1] == 'event: x\nid: 7\ndata: {"n":"два"}\n\n'.encode()


def test_script_close_delimited_stream(server: WayGPTTestServer) -> None:
    events = [sse_event({"n": 1}), sse_event("[DONE]")]
    server.script(chunks=events, framing="close", content_type="text/event-stream")
    with requests.Session() as session:
        r = session.get(server.url + "/stream", timeout=TIMEOUT)
        assert "content-length" not in r.headers
        assert "transfer-encoding" not in r.headers
        assert r.content == b"".join(events)
        # The server closed that connection, so the next request opens a new one.
        assert session.get(server.url + MODELS, headers=key_headers(server)).ok
    assert server.connections_opened == 2


def test_script_content_length_lie(server: WayGPTTestServer) -> None:
    server.script(body=b'{"half":', content_length=100, content_type="application/json")
    host, port = server.url[len("http://") :].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("GET", "/x")
        response = conn.getresponse()
        assert response.getheader("Content-Length") == "100"
        with pytest.raises(http.client.IncompleteRead) as info:
            response.read()
        assert info.value.partial == b'{"half":'
    finally:
        conn.close()


def test_script_close_connection_silently(server: WayGPTTestServer) -> None:
    server.script(body={"ok": True}, close_connection=True)
    sock = raw_exchange(server, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    with sock:
        data = read_all(sock)  # returns only because the server closed the socket
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" not in head.lower()
    assert b"Content-Length: 11" in head
    assert body == b'{"ok":true}'


# -- recording and connections ------------------------------------------------


def test_request_recording(server: WayGPTTestServer) -> None:
    assert server.last_request is None
    requests.post(
        server.url + CHAT + "?trace=on&x=%D1%8F",
        json=chat_body("запись"),
        headers={**key_headers(server), "X-Custom": "Yes"},
        timeout=TIMEOUT,
    )
    requests.get(server.url + "/missing", timeout=TIMEOUT)
    recorded = server.requests
    assert [r.method for r in recorded] == ["POST", "GET"]
    first = recorded[0]
    assert isinstance(first, RecordedRequest)
    assert first.path == CHAT + "?trace=on&x=%D1%8F"
    assert first.query == {"trace": "on", "x": "я"}
    assert first.headers["x-custom"] == "Yes"
    assert first.headers["x-project-key"] == server.project_key
    assert first.json()["messages"][0]["content"] == "запись"
    assert json.loads(first.body) == first.json()
    assert server.last_request == recorded[1]
    with pytest.raises(Exception):
        first.method = "PUT"  # type: ignore[misc]
    server.clear_requests()
    assert server.requests == []


def test_chunked_request_body_is_read(server: WayGPTTestServer) -> None:
    body = json.dumps(chat_body("по кусочкам"), ensure_ascii=False).encode()

    def pieces() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    r = requests.post(server.url + CHAT, data=pieces(), headers=key_headers(server))
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Echo: по кусочкам"
    assert server.last_request is not None
    assert server.last_request.body == body


def test_connections_opened_counts_keep_alive(server: WayGPTTestServer) -> None:
    with requests.Session() as session:
        for _ in range(50):
            assert session.get(server.url + MODELS, headers=key_headers(server)).ok
    assert server.connections_opened == 1
    with requests.Session() as session:
        session.get(server.url + MODELS, headers=key_headers(server))
    assert server.connections_opened == 2


def test_many_requests_on_one_connection(server: WayGPTTestServer) -> None:
    host, port = server.url[len("http://") :].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        for _ in range(1000):
            conn.request("GET", MODELS, headers=key_headers(server))
            assert conn.getresponse().read().startswith(b"[")
    finally:
        conn.close()
    assert server.connections_opened == 1


def test_concurrent_clients(server: WayGPTTestServer) -> None:
    errors = []

    def worker() -> None:
        with requests.Session() as session:
            for i in range(10):
                r = session.post(
                    server.url + CHAT, json=chat_body(f"n{i}"), headers=key_headers(server)
                )
                if r.json()["choices"][0]["message"]["content"] != f"Echo: n{i}":
                    errors.append(r.text)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert errors == []
    assert len(server.requests) == 160
    assert server.connections_opened == 16


def test_stop_with_open_keep_alive_connections() -> None:
    srv = WayGPTTestServer().start()
    sessions = [requests.Session() for _ in range(4)]
    for session in sessions:
        assert session.get(srv.url + MODELS, headers=key_headers(srv)).ok
    idle = raw_exchange(srv, b"")  # connected, never sends a request
    deadline = time.monotonic() + TIMEOUT
    while srv.connections_opened < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    before = threading.active_count()
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.0
    assert threading.active_count() <= before - 6  # 5 connection threads + the serve loop
    with idle:
        assert read_all(idle) == b""
    for session in sessions:
        session.close()
    srv.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_defaults_are_exposed() -> None:
    srv = WayGPTTestServer(project_key="sk_live_mine", user_email="me@example.com")
    assert srv.project_key == "sk_live_mine"
    assert srv.user_email == "me@example.com"
    assert srv.project_id.count("-") == 4
    with srv:
        assert srv.url.startswith("http://127.0.0.1:")


def test_the_default_account_is_the_one_the_docs_log_in_with(server: WayGPTTestServer) -> None:
    # README.md and docs/ log in as you@example.com / password against a plain server.
    answer = requests.post(
        server.url + LOGIN,
        data={"username": "you@example.com", "password": "password"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    projects = requests.get(
        server.url + PROJECTS,
        headers={"Authorization": "Bearer " + answer.json()["access_token"]},
        timeout=TIMEOUT,
    )
    assert [project["id"] for project in projects.json()] == [server.project_id]


# -- the server's clock ----------------------------------------------------------------------

IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT"
)


def date_of(headers: Any) -> float:
    """The Date header, which must be an RFC 7231 IMF-fixdate, as a Unix time."""
    value = headers["Date"]
    assert IMF_FIXDATE.fullmatch(value), value
    return email.utils.parsedate_to_datetime(value).timestamp()


def answers_of_every_kind(server: WayGPTTestServer) -> Dict[str, Any]:
    """The headers of an answer of each kind the server gives, by kind."""
    got: Dict[str, Any] = {}
    keyed = key_headers(server)
    got["json"] = requests.get(server.url + MODELS, headers=keyed, timeout=TIMEOUT).headers
    got["401"] = requests.get(server.url + MODELS, timeout=TIMEOUT).headers
    got["404"] = requests.get(server.url + "/nowhere", headers=keyed, timeout=TIMEOUT).headers
    stream = requests.post(
        server.url + CHAT, json={**chat_body(), "stream": True}, headers=key_headers(server),
        timeout=TIMEOUT,
    )
    assert b"[DONE]" in stream.content
    got["stream"] = stream.headers
    server.script(status=503, body={"detail": "busy"}, path=MODELS)
    got["scripted"] = requests.get(server.url + MODELS, headers=keyed, timeout=TIMEOUT).headers
    server.script(path=CHAT, chunks=[sse_event("[DONE]")], content_type="text/event-stream")
    got["scripted stream"] = requests.post(
        server.url + CHAT, json=chat_body(), headers=key_headers(server), timeout=TIMEOUT
    ).headers
    # The stdlib's own error page: a header line over its 64 KiB limit.
    raw = raw_exchange(server, b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
    head = read_all(raw).split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    got["malformed"] = dict(line.split(": ", 1) for line in head)
    return got


@pytest.mark.parametrize("offset", [0, 3600, -86400.5])
def test_every_answer_carries_a_date_told_by_the_server_clock(offset: float) -> None:
    with WayGPTTestServer(clock_offset=offset) as srv:
        for kind, headers in answers_of_every_kind(srv).items():
            told = date_of(headers) - time.time()
            assert abs(told - offset) < 5, (kind, headers["Date"])


def test_a_scripted_date_header_replaces_the_server_one(server: WayGPTTestServer) -> None:
    server.script(headers={"Date": "Sun, 06 Nov 1994 08:49:37 GMT"}, path=MODELS)
    answer = requests.get(server.url + MODELS, headers=key_headers(server), timeout=TIMEOUT)
    assert answer.raw.headers.getlist("Date") == ["Sun, 06 Nov 1994 08:49:37 GMT"]


@pytest.mark.parametrize("offset", [1000, -1000])
def test_clock_offset_moves_the_hmac_timestamp_window(offset: int) -> None:
    with WayGPTTestServer(require_hmac=True, clock_offset=offset) as srv:

        def status(timestamp: float) -> int:
            headers = signed(srv, "GET", MODELS, timestamp=int(timestamp))
            return requests.get(srv.url + MODELS, headers=headers, timeout=TIMEOUT).status_code

        now = time.time()
        assert status(now) == 403  # the machine's time is 1000 s off the server's
        refused = requests.get(
            srv.url + MODELS, headers=signed(srv, "GET", MODELS, timestamp=int(now)), timeout=5
        )
        assert refused.json() == {"detail": "HMAC timestamp outside the allowed window"}
        assert status(now + offset) == 200
        assert status(now + offset - 250) == 200  # the 300 s window is around the server's now
        assert status(now + offset + (-350 if offset > 0 else 350)) == 403

        srv.clock_offset = 0  # the running server's clock set right
        assert srv.clock_offset == 0.0
        assert status(time.time()) == 200
        assert status(time.time() + offset) == 403
        assert abs(date_of(requests.get(srv.url + MODELS, timeout=5).headers) - time.time()) < 5


def test_clock_offset_moves_token_and_created_times() -> None:
    with WayGPTTestServer(clock_offset=7200, token_expires_in=60) as srv:
        claims = json.loads(base64.urlsafe_b64decode(srv.issue_token().split(".")[1] + "=="))
        assert abs(claims["iat"] - (time.time() + 7200)) < 5
        assert requests.get(srv.url + PROJECTS, headers=jwt_headers(srv), timeout=5).ok
        answer = requests.post(
            srv.url + CHAT, json=chat_body(), headers=key_headers(srv), timeout=TIMEOUT
        )
        assert abs(answer.json()["created"] - (time.time() + 7200)) < 5


@pytest.mark.parametrize(
    ("value", "error"),
    [("5", TypeError), (True, TypeError), (None, TypeError), (float("nan"), ValueError),
     (float("inf"), ValueError)],
)
def test_a_clock_offset_must_be_a_finite_number(value: Any, error: type) -> None:
    with pytest.raises(error):
        WayGPTTestServer(clock_offset=value)
    server = WayGPTTestServer()
    with pytest.raises(error):
        server.clock_offset = value
    assert server.clock_offset == 0.0


# -- stream faults ---------------------------------------------------------------------------

THREE_WORDS = "раз два три"  # "Echo: раз два три": four content chunks, then the final one


def stream_request(server: WayGPTTestServer, text: str = THREE_WORDS, **extra: Any) -> bytes:
    body = json.dumps(
        {"messages": [{"role": "user", "content": text}], "stream": True, **extra}
    ).encode()
    return (
        f"POST {CHAT} HTTP/1.1\r\nHost: test\r\nx-project-key: {server.project_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_until_closed(sock: socket.socket) -> Tuple[bytes, Optional[BaseException]]:
    """Everything received until the server closed (None) or reset (the error)."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError as reset:
            return data, reset
        if not piece:
            return data, None
        data += piece


def dechunk(body: bytes) -> Tuple[bytes, bool]:
    """The chunked body's data and whether it ended with the terminating chunk."""
    data = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return data, True
        data += rest[:size]
        body = rest[size + 2 :]
    return data, False


def events_of(data: bytes) -> List[Any]:
    out: List[Any] = []
    for event in data.decode("utf-8").split("\n\n"):
        if event.startswith("data: "):
            text = event[len("data: ") :]
            out.append(text if text == "[DONE]" else json.loads(text))
    return out


def contents(events: List[Any]) -> List[Optional[str]]:
    return [e["choices"][0]["delta"].get("content") for e in events if isinstance(e, dict)]


def stream_exchange(
    server: WayGPTTestServer, keep_alive: bool = True
) -> Tuple[str, List[Any], bool, Optional[BaseException]]:
    """One streamed chat completion over a raw socket, read until the server closes it:
    the head, the events, whether the body was terminated, and the reset, if any."""
    request = stream_request(server)
    if not keep_alive:
        request = request.replace(b"Host: test", b"Host: test\r\nConnection: close")
    with raw_exchange(server, request) as sock:
        received, reset = read_until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    data, terminated = dechunk(body)
    return head.decode("latin-1"), events_of(data), terminated, reset


def faulty_exchange(
    server: WayGPTTestServer, **fault: Any
) -> Tuple[str, List[Any], bool, Optional[BaseException]]:
    server.script_stream_fault(**fault)
    # A cut ends even a kept-alive connection; an error event ends only the stream.
    return stream_exchange(server, keep_alive="cut" in fault)


@pytest.mark.parametrize("after", [0, 1, 3])
def test_a_stream_cut_with_close_ends_abruptly_after_k_events(
    server: WayGPTTestServer, after: int
) -> None:
    head, events, terminated, reset = faulty_exchange(server, after_events=after, cut="close")
    assert head.startswith("HTTP/1.1 200 ") and "Transfer-Encoding: chunked" in head
    assert "text/event-stream" in head and re.search(r"\r\nDate: ", head)
    assert contents(events) == ["Echo:", " раз", " два", " три"][:after]
    assert not terminated  # no "0\r\n\r\n": the body is cut, not ended
    assert reset is None  # a plain close (FIN)


@pytest.mark.parametrize("after", [0, 2])
def test_a_stream_cut_with_reset_resets_after_k_events(
    server: WayGPTTestServer, after: int
) -> None:
    head, events, terminated, reset = faulty_exchange(server, after_events=after, cut="reset")
    assert head.startswith("HTTP/1.1 200 ")  # k=0: right after the headers
    assert contents(events) == ["Echo:", " раз"][:after]
    assert not terminated
    assert isinstance(reset, ConnectionResetError)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (429, None, "Upstream rate limit exceeded, retry later"),
        (503, None, "Upstream provider is overloaded, retry later"),
        (400, "Context length exceeded", "Context length exceeded"),
        ("rate_limit_exceeded", None, "Upstream error rate_limit_exceeded"),
    ],
)
def test_an_in_stream_error_event_ends_the_stream(
    server: WayGPTTestServer, code: Any, message: Optional[str], expected: str
) -> None:
    head, events, terminated, reset = faulty_exchange(
        server, after_events=2, error_code=code, error_message=message
    )
    assert head.startswith("HTTP/1.1 200 ")
    assert contents(events[:-1]) == ["Echo:", " раз"]
    assert events[-1] == {"error": {"message": expected, "code": code}}
    assert "[DONE]" not in events
    assert terminated and reset is None  # the stream ends properly, after the error


def test_an_in_stream_error_keeps_the_connection(server: WayGPTTestServer) -> None:
    server.script_stream_fault(after_events=0, error_code=503)
    with requests.Session() as session:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        first = session.post(server.url + CHAT, json=body, headers=key_headers(server), timeout=5)
        assert events_of(first.content) == [
            {"error": {"message": "Upstream provider is overloaded, retry later", "code": 503}}
        ]
        second = session.post(server.url + CHAT, json=body, headers=key_headers(server), timeout=5)
        assert events_of(second.content)[-1] == "[DONE]"
    assert server.connections_opened == 1


def test_the_events_before_a_fault_are_the_normal_chunks(server: WayGPTTestServer) -> None:
    with raw_exchange(server, stream_request(server)) as sock:
        normal = events_of(dechunk(read_all_http(sock))[0])
    _, faulted, _, _ = faulty_exchange(server, after_events=3, cut="close")

    def without_ids(events: List[Any]) -> List[Any]:
        return [{k: v for k, v in e.items() if k not in ("id", "created")} for e in events]

    assert without_ids(faulted) == without_ids(normal[:3])


def read_all_http(sock: socket.socket) -> bytes:
    """The body of one chunked answer on a kept-alive connection."""
    data = b""
    # (The head alone may end in "0\r\n\r\n" too: a last header whose value ends in 0.)
    while not data.partition(b"\r\n\r\n")[2].endswith(b"0\r\n\r\n"):
        data += sock.recv(65536)
    return data.partition(b"\r\n\r\n")[2]


def test_a_fault_after_more_events_than_the_stream_has_comes_before_done(
    server: WayGPTTestServer,
) -> None:
    _, events, terminated, _ = faulty_exchange(server, after_events=1000, cut="close")
    assert contents(events) == ["Echo:", " раз", " два", " три", None]  # and the final chunk
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert "[DONE]" not in events and not terminated


def test_stream_faults_apply_to_the_next_n_streams_only(server: WayGPTTestServer) -> None:
    fault = server.script_stream_fault(after_events=1, cut="close", times=2)
    assert server.pending_stream_faults == [fault]
    headers = key_headers(server)
    messages = [{"role": "user", "content": "hi"}]

    def stream(**extra: Any) -> requests.Response:
        body = {"messages": messages, "stream": True, **extra}
        return requests.post(server.url + CHAT, json=body, headers=headers, timeout=TIMEOUT)

    # Neither a call without a stream nor a refused stream uses the fault up.
    plain = requests.post(server.url + CHAT, json={"messages": messages}, headers=headers,
                          timeout=TIMEOUT)
    assert plain.json()["choices"][0]["message"]["content"] == "Echo: hi"
    assert stream(temperature=5).status_code == 422
    assert stream(model="no-such-model").status_code == 404
    server.script(status=503, path=CHAT)
    assert stream().status_code == 503
    assert server.pending_stream_faults == [fault]
    for _ in range(2):
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            stream().content  # noqa: B018 - reading the body is the point
    assert server.pending_stream_faults == []
    assert events_of(stream().content)[-1] == "[DONE]"
    recorded = [r for r in server.requests if r.path == CHAT]
    assert len(recorded) == 7 and all(r.method == "POST" for r in recorded)


def test_a_stream_fault_forever_and_clear_scripts(server: WayGPTTestServer) -> None:
    server.script_stream_fault(StreamFault(after_events=0, error_code=429, times=None))
    for _ in range(3):
        _, events, _, _ = stream_exchange(server, keep_alive=False)
        assert events[0]["error"]["code"] == 429
    server.clear_scripts()
    assert server.pending_stream_faults == []
    _, events, _, _ = stream_exchange(server, keep_alive=False)
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, ValueError),  # neither cut nor error_code
        ({"cut": "close", "error_code": 503}, ValueError),
        ({"cut": "explode"}, ValueError),
        ({"cut": "close", "after_events": -1}, ValueError),
        ({"cut": "close", "after_events": 1.5}, TypeError),
        ({"cut": "close", "times": 0}, ValueError),
        ({"cut": "close", "error_message": "x"}, ValueError),
        ({"error_code": True}, TypeError),
        ({"error_code": 503, "error_message": 5}, TypeError),
    ],
)
def test_a_stream_fault_is_checked_when_made(
    server: WayGPTTestServer, fields: Dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        server.script_stream_fault(**fields)
    assert server.pending_stream_faults == []


def test_a_stream_fault_is_given_one_way(server: WayGPTTestServer) -> None:
    with pytest.raises(TypeError):
        server.script_stream_fault(StreamFault(cut="close"), times=2)


def test_a_scripted_stream_can_be_cut_too(server: WayGPTTestServer) -> None:
    server.script(
        path=CHAT,
        content_type="text/event-stream",
        chunks=[sse_event({"choices": [{"index": 0, "delta": {"content": "Hel"}}]})],
        cut="close",
    )
    with raw_exchange(server, stream_request(server)) as sock:
        received, reset = read_until_closed(sock)
    data, terminated = dechunk(received.partition(b"\r\n\r\n")[2])
    assert contents(events_of(data)) == ["Hel"]
    assert not terminated and reset is None
    with pytest.raises(ValueError):
        ScriptedResponse(body="whole", cut="close")  # a Content-Length body cannot be cut
    with pytest.raises(ValueError):
        ScriptedResponse(chunks=[b"x"], cut="sever")  # type: ignore[arg-type]
