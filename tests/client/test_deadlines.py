"""``total_timeout``: one non-streamed call ends within it, however slowly the server talks.

A socket timeout bounds each read, so a server dribbling a byte just before every timeout
could otherwise hold a call for hours. Bounds here are loose on purpose (the machine is
shared): a call that ignored ``total_timeout`` would run for many times longer.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Iterator

import pytest

from raw_server import RawServer
from waygpt.testing import WayGPTTestServer, sse_event

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]
READ_TIMEOUT = 0.6
TOTAL = 1.5
# The longest a call may take when total_timeout is TOTAL (a call ignoring it takes 10 s+).
BOUND = TOTAL + 2.5


def dribble(data: bytes, every: float, server: RawServer) -> Callable[[socket.socket, bytes], None]:
    """A handler that writes ``data`` one byte at a time, ``every`` seconds apart."""

    def handler(conn: socket.socket, request: bytes) -> None:
        for index in range(len(data)):
            if server.stopping():
                return
            conn.sendall(data[index : index + 1])
            time.sleep(every)

    return handler


def dribbling_server(data: bytes) -> RawServer:
    holder: Any = {}
    server = RawServer(lambda conn, request: holder["handler"](conn, request))
    holder["handler"] = dribble(data, READ_TIMEOUT * 0.6, server)
    return server


def slow_client(sdk: Any, url: str, **options: Any) -> Any:
    options.setdefault("max_retries", 0)
    options.setdefault("total_timeout", TOTAL)
    return sdk.WayGPTClient(api_url=url, project_key="sk_live_x", timeout=READ_TIMEOUT, **options)


def timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    started = time.monotonic()
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - the test inspects it
        return error, time.monotonic() - started
    raise AssertionError("the call returned instead of timing out")


BODY = b'["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "yandexgpt-pro", "gigachat-pro"]'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def test_a_body_dribbled_byte_by_byte_ends_at_total_timeout(sdk):
    head = HEAD % len(BODY)

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head)
        dribble(BODY, READ_TIMEOUT * 0.6, server)(conn, request)

    server = RawServer(handler)
    with server, slow_client(sdk, server.url) as client:
        error, elapsed = timed(client.get_models)

    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert "total_timeout" in error.message
    assert elapsed < BOUND, f"the body held the call for {elapsed:.1f} s"


def test_a_close_delimited_body_dribbled_byte_by_byte_ends_at_total_timeout(sdk):
    # No Content-Length: the body ends when the connection does, and the answer, not its
    # connection, holds the socket while it is read.
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head)
        dribble(BODY, READ_TIMEOUT * 0.6, server)(conn, request)

    server = RawServer(handler)
    with server, slow_client(sdk, server.url) as client:
        error, elapsed = timed(client.get_models)

    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert elapsed < BOUND, f"the body held the call for {elapsed:.1f} s"


def test_a_status_line_and_headers_dribbled_byte_by_byte_end_at_total_timeout(sdk):
    server = dribbling_server(HEAD % len(BODY) + BODY)
    with server, slow_client(sdk, server.url) as client:
        error, elapsed = timed(client.get_models)

    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert "total_timeout" in error.message
    assert elapsed < BOUND, f"the head held the call for {elapsed:.1f} s"


def test_an_error_body_dribbled_slowly_still_ends_at_total_timeout(sdk):
    body = b'{"detail": "' + b"x" * 200 + b'"}'
    head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n" % len(body)

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head)
        dribble(body, READ_TIMEOUT * 0.6, server)(conn, request)

    server = RawServer(handler)
    with server, slow_client(sdk, server.url, max_retries=3) as client:
        error, elapsed = timed(client.get_models)

    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert elapsed < BOUND


def test_a_retry_whose_wait_would_cross_the_deadline_is_not_attempted(
    sdk, server: WayGPTTestServer, sleeps
):
    server.script(status=503, headers={"Retry-After": "60"}, path=MODELS, times=None)
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, total_timeout=30
    ) as client:
        with pytest.raises(sdk.InternalServerError) as caught:
            client.get_models()

    assert caught.value.status_code == 503  # the last answer, at once
    assert sleeps == []
    assert len(server.requests) == 1


def test_retries_that_fit_the_deadline_are_still_made(sdk, server: WayGPTTestServer, sleeps):
    server.script(status=429, headers={"Retry-After": "2"}, path=MODELS, times=2)
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, total_timeout=30
    ) as client:
        assert client.get_models()

    assert sleeps == [2.0, 2.0]


def test_total_timeout_covers_the_sleeps_between_retries(sdk, server: WayGPTTestServer):
    server.script(status=503, headers={"Retry-After": "0.4"}, path=MODELS, times=None)
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=100, total_timeout=1.5
    ) as client:
        error, elapsed = timed(client.get_models)

    assert isinstance(error, sdk.InternalServerError), repr(error)  # the last answer
    assert elapsed < BOUND
    assert 2 <= len(server.requests) <= 5


def test_a_request_hook_that_outlasts_total_timeout_leaves_nothing_sent(
    sdk, server: WayGPTTestServer
):
    def slow_hook(view: Any) -> None:
        time.sleep(1.5)  # a hook that calls out over the network, slowly

    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, total_timeout=1,
        event_hooks={"request": [slow_hook]},
    ) as client:
        with pytest.raises(sdk.APITimeoutError) as caught:
            client.video_generations(prompt="a cat on a sofa")

    assert server.requests == []  # no video job whose id the caller would never learn
    assert server.jobs == {}
    assert caught.value.attempts == 0


def test_the_default_total_timeout_is_ten_minutes(sdk):
    with sdk.WayGPTClient() as client:
        assert client.total_timeout == 600.0


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), "10", True, None])
def test_a_bad_total_timeout_is_refused(sdk, value):
    with pytest.raises(sdk.ConfigurationError, match="total_timeout"):
        sdk.WayGPTClient(total_timeout=value)


def test_with_options_sets_total_timeout_on_the_copy_only(sdk, server: WayGPTTestServer):
    with sdk.WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        quick = client.with_options(total_timeout=5)
        assert (quick.total_timeout, client.total_timeout) == (5.0, 600.0)
        with pytest.raises(sdk.ConfigurationError):
            client.with_options(total_timeout=0)


@pytest.fixture
def stream_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer() as running:
        yield running


def test_a_stream_may_last_longer_than_total_timeout(sdk, stream_server):
    chunk = {"choices": [{"index": 0, "delta": {"content": "x"}}]}
    # Ten events 0.25 s apart: the stream lasts 2.5 s, beyond total_timeout, but no gap
    # between events reaches the read timeout.
    stream_server.script(
        method="POST",
        path=CHAT,
        chunks=[sse_event(chunk)] * 10 + [b"data: [DONE]\n\n"],
        chunk_delay=0.25,
        content_type="text/event-stream",
    )
    with sdk.WayGPTClient(
        api_url=stream_server.url,
        project_key=stream_server.project_key,
        timeout=(5, 2),
        total_timeout=1,
        max_retries=0,
    ) as client:
        chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert len(chunks) == 10


def test_total_timeout_bounds_the_wait_for_a_streams_headers(sdk, stream_server):
    stream_server.script(method="POST", path=CHAT, delay=5, content_type="text/event-stream",
                         chunks=[b"data: [DONE]\n\n"])
    with sdk.WayGPTClient(
        api_url=stream_server.url,
        project_key=stream_server.project_key,
        timeout=30,
        total_timeout=1,
        max_retries=0,
    ) as client:
        error, elapsed = timed(lambda: client.chat_completions_stream(messages=MESSAGES))

    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert elapsed < 4


# -- an answer cut off in its headers --------------------------------------------------------


def cut_in_headers(head: bytes) -> Callable[[socket.socket, bytes], None]:
    """A handler that sends part of an answer's head, then closes the connection."""

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head)
        conn.shutdown(socket.SHUT_RDWR)

    return handler


CUT_HEADS = {
    "after-a-header-line": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n",
    "inside-a-header-line": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Req",
    "after-the-status-line": b"HTTP/1.1 200 OK\r\n",
}


@pytest.mark.parametrize("where", sorted(CUT_HEADS))
def test_an_answer_cut_in_its_headers_is_a_connection_error(sdk, where):
    with RawServer(cut_in_headers(CUT_HEADS[where])) as raw, slow_client(sdk, raw.url) as client:
        with pytest.raises(sdk.APIConnectionError) as caught:
            client.client_delete_project("p-1", jwt_token="jwt-1")

    assert not isinstance(caught.value, sdk.APITimeoutError)


@pytest.mark.parametrize("where", sorted(CUT_HEADS))
def test_a_stream_cut_in_its_headers_is_a_connection_error(sdk, where):
    with RawServer(cut_in_headers(CUT_HEADS[where])) as raw, slow_client(sdk, raw.url) as client:
        with pytest.raises(sdk.APIConnectionError):
            for _ in client.chat_completions_stream(messages=MESSAGES):
                pass


def test_headers_cut_by_the_deadline_are_a_timeout_not_an_answer(sdk):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Slow: "
    server = dribbling_server(head + b"a" * 100)
    with server, slow_client(sdk, server.url) as client:
        error, elapsed = timed(lambda: client.client_delete_project("p-1", jwt_token="jwt-1"))

    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert elapsed < BOUND


# -- a stream's body before its events: bounded by total_timeout -----------------------------


STREAM_PREAMBLES = {
    "500": (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300\r\n\r\n"),
    "401-chunked": (b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n100\r\n"),
    "200-json": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 300\r\n\r\n"),
}


@pytest.mark.parametrize("answer", sorted(STREAM_PREAMBLES))
def test_a_stream_refused_with_a_dribbled_body_ends_at_total_timeout(sdk, answer):
    head = STREAM_PREAMBLES[answer]

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head)
        dribble(b'{"detail": "' + b"x" * 280, READ_TIMEOUT * 0.6, server)(conn, request)

    server = RawServer(handler)
    with server, slow_client(sdk, server.url) as client:
        error, elapsed = timed(lambda: client.chat_completions_stream(messages=MESSAGES))

    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert "total_timeout" in error.message
    assert elapsed < BOUND, f"the body held the stream call for {elapsed:.1f} s"


# -- a stream's read timeout bounds the wait for a line, not for a byte ----------------------


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)
FIRST_EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'


def trickling_stream(after_event: bytes) -> RawServer:
    """One event, then ``after_event`` a byte every half read timeout, for at most 12 s."""

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + FIRST_EVENT)
        deadline = time.monotonic() + 12
        for index in range(len(after_event)):
            if server.stopping() or time.monotonic() > deadline:
                return
            conn.sendall(after_event[index : index + 1])
            time.sleep(READ_TIMEOUT * 0.5)

    server = RawServer(handler)
    return server


@pytest.mark.parametrize(
    "trickle", [b"data: " + b"x" * 10_000, b"x" * 10_000], ids=["data-line", "unknown-field"]
)
def test_a_line_that_never_ends_times_out_whatever_bytes_trickle_in(sdk, trickle):
    server = trickling_stream(trickle)
    received = []
    with server, slow_client(sdk, server.url, total_timeout=60) as client:
        stream = client.chat_completions_stream(messages=MESSAGES)
        error, elapsed = timed(lambda: received.extend(stream))

    assert len(received) == 1  # the first event arrived, then the trickle
    assert isinstance(error, sdk.APITimeoutError), repr(error)
    assert "complete line" in error.message
    assert elapsed < READ_TIMEOUT * 6, f"the trickle held the stream for {elapsed:.1f} s"


def test_keep_alive_comments_keep_a_quiet_stream_open(sdk):
    ping, done = b": ping\n", b"data: [DONE]\n\n"

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + FIRST_EVENT)
        for _ in range(8):  # 8 pings half a read timeout apart: 4 read timeouts without events
            time.sleep(READ_TIMEOUT * 0.5)
            conn.sendall(ping)
        conn.sendall(FIRST_EVENT + done)

    with RawServer(handler) as raw, slow_client(sdk, raw.url) as client:
        chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert len(chunks) == 2


def test_a_slow_reader_does_not_make_its_stream_time_out(sdk):
    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + FIRST_EVENT * 3 + b"data: [DONE]\n\n")

    with RawServer(handler) as raw, slow_client(sdk, raw.url) as client:
        chunks = []
        for item in client.chat_completions_stream(messages=MESSAGES):
            chunks.append(item)
            time.sleep(READ_TIMEOUT * 1.5)  # the caller's own work between two chunks

    assert len(chunks) == 3
