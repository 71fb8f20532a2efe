"""A caller's ``requests.Session`` is used as requests uses it, the SDK's own headers winning."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, List

import pytest
import requests
import urllib3
from requests.auth import HTTPBasicAuth

import waygpt
from raw_server import RawServer
from waygpt.testing import WayGPTTestServer


def make(server: WayGPTTestServer, session: requests.Session) -> waygpt.WayGPTClient:
    return waygpt.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, session=session
    )


def test_the_sessions_headers_cookies_and_hooks_apply(server: WayGPTTestServer) -> None:
    seen: List[int] = []
    with requests.Session() as session:
        session.headers["X-Shop"] = "demo"
        session.cookies.set("shop_session", "abc")
        session.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
        with make(server, session) as client:
            assert client.get_models()

    request = server.last_request
    assert request is not None
    assert request.headers["x-shop"] == "demo"
    assert "shop_session=abc" in request.headers["cookie"]
    assert seen == [200]


def test_the_sdks_headers_win_over_the_sessions(server: WayGPTTestServer) -> None:
    with requests.Session() as session:
        session.headers["User-Agent"] = "shop/1.0"
        session.headers["Accept-Encoding"] = "br"
        with make(server, session) as client:
            client.get_models()

    request = server.last_request
    assert request is not None
    assert request.headers["user-agent"].startswith("waygpt-python/")
    assert request.headers["accept-encoding"] == "gzip, deflate"


def test_session_auth_applies_but_never_replaces_the_client_api_token(
    server: WayGPTTestServer,
) -> None:
    with requests.Session() as session:
        session.auth = HTTPBasicAuth("gateway", "gateway-password")
        with make(server, session) as client:
            client.get_models()
            assert server.last_request.headers["authorization"].startswith("Basic ")
            login = client.client_login(server.user_email, server.user_password)
            assert client.client_list_projects()  # a 401 if Basic had replaced Bearer
            assert server.last_request.headers["authorization"] == f"Bearer {login['token']}"


def test_hmac_signatures_verify_through_a_callers_session() -> None:
    with WayGPTTestServer(require_hmac=True) as server, requests.Session() as session:
        session.headers["X-Shop"] = "demo"
        client = waygpt.WayGPTClient(
            api_url=server.url,
            project_key=server.project_key,
            project_id=server.project_id,
            hmac_secret=server.hmac_secret,
            use_hmac=True,
            session=session,
        )
        reply: Any = client.chat_completions(messages=[{"role": "user", "content": "Привет"}])
        assert reply["choices"][0]["message"]["content"] == "Echo: Привет"
        assert client.get_use_cases(detailed=True)


def test_the_sessions_proxies_are_used(server: WayGPTTestServer) -> None:
    with requests.Session() as session:
        session.proxies = {"http": "http://127.0.0.1:9"}  # nothing listens: a proxy refusal
        session.trust_env = False
        with make(server, session) as client:
            try:
                client.get_models()
            except waygpt.APIConnectionError:
                pass
            else:
                raise AssertionError("the session's proxy was not used")
    assert server.requests == []


def test_a_body_dribbled_through_a_callers_session_ends_at_total_timeout() -> None:
    # The session's pools are its own: the deadline reaches the socket through the answer.
    body = b'["gpt-4o", "gpt-4o-mini", "yandexgpt-pro"]'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head % len(body))
        for index in range(len(body)):  # a byte every 0.3 s: each read well within its timeout
            if server.stopping():
                return
            conn.sendall(body[index : index + 1])
            time.sleep(0.3)

    server = RawServer(handler)
    with server, requests.Session() as session:
        client = waygpt.WayGPTClient(api_url=server.url, project_key="sk_live_x", timeout=2,
                                     total_timeout=1.0, max_retries=0, session=session)
        started = time.monotonic()
        with pytest.raises(waygpt.APITimeoutError, match="total_timeout"):
            client.get_models()
        assert time.monotonic() - started < 4.0  # the whole body would take 13 s


@pytest.mark.skipif(not hasattr(urllib3.HTTPResponse, "shutdown"),
                    reason="urllib3 2.3+: before, the answer's socket is out of public reach")
def test_close_from_another_thread_wakes_a_stream_read_through_a_callers_session(
    server: WayGPTTestServer,
) -> None:
    # A close-delimited stream: the answer, not its connection, holds the socket.
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n'
    server.script(method="POST", path="/api/v1/waygpt/chat/completions", framing="close",
                  content_type="text/event-stream", chunks=[event, event], chunk_delay=3.0)
    received: List[Any] = []
    with requests.Session() as session:
        stream = make(server, session).chat_completions_stream(
            messages=[{"role": "user", "content": "hi"}])
        reader = threading.Thread(target=lambda: received.extend(stream))
        reader.start()
        time.sleep(0.3)  # the reader is blocked, waiting for the second event
        started = time.monotonic()
        stream.close()
        reader.join(5)

    assert not reader.is_alive()
    assert time.monotonic() - started < 2  # the second event would come 3 s after the first
    assert len(received) == 1
