"""``max_connections``: how many connections a client opens at once, over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from raw_server import RawServer

MESSAGES = [{"role": "user", "content": "hi"}]
_EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
_DONE = b"data: [DONE]\n\n"


def _frame(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


class _HeldStreams:
    """A raw server whose every stream sends one event, then waits for ``release`` before
    it ends (one stream per connection): ``most`` is the most streams it held at once."""

    def __init__(self):
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.server = RawServer(self.handle)

    def handle(self, conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     + _frame(_EVENT))
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        self.release.wait(20)
        with self.lock:
            self.now -= 1
        conn.sendall(_frame(_DONE) + b"0\r\n\r\n")


def _in_threads(count, work):
    results = []
    threads = [threading.Thread(target=lambda: results.append(work()), daemon=True)
               for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def _wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_max_connections_keeps_concurrent_streams_to_that_many_connections(sdk):
    held = _HeldStreams()
    with held.server, sdk.WayGPTClient(api_url=held.server.url, project_key="sk_live_x",
                                       max_connections=2) as client:
        threads, results = _in_threads(5, lambda: client.chat_completions_stream(
            messages=MESSAGES).collect().text)
        try:
            _wait_until(lambda: held.now == 2)
            time.sleep(0.5)  # time for a third stream to get through, were it to
            assert len(held.server.requests) == 2  # the other three wait in the client
        finally:
            held.release.set()
            for thread in threads:
                thread.join(30)
        assert results == ["Hi"] * 5  # each waiting stream got a connection in turn
        assert held.most == 2


def test_without_max_connections_many_threads_keep_their_connections_for_reuse(sdk, server):
    threads_at_once = 40  # more than the sync client's pool kept before (32)
    barrier = threading.Barrier(threads_at_once, timeout=30)

    def stream_with_the_others():
        with client.chat_completions_stream(messages=MESSAGES) as stream:
            next(stream)
            barrier.wait()  # every thread's stream is under way at once
            return len(list(stream)) + 1

    with sdk.WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        for _ in range(2):
            threads, results = _in_threads(threads_at_once, stream_with_the_others)
            for thread in threads:
                thread.join(60)
            assert len(results) == threads_at_once
    # The second round reused the first round's connections: none was dropped for want of
    # room in the pool (the async client's aiohttp may share one whose body has arrived).
    assert server.connections_opened <= threads_at_once


@pytest.mark.parametrize("value", [0, -1, True, False, 2.0, "2", [2]], ids=repr)
def test_a_max_connections_that_is_not_a_positive_int_is_refused(sdk, value):
    with pytest.raises(sdk.ConfigurationError, match="max_connections"):
        sdk.WayGPTClient(max_connections=value)


def test_max_connections_with_a_callers_session_is_refused(sdk, caller_session):
    with pytest.raises(sdk.ConfigurationError, match="session"):
        sdk.WayGPTClient(session=caller_session, max_connections=4)


def test_waiting_for_a_free_connection_ends_at_total_timeout(sdk):
    held = _HeldStreams()
    with held.server, sdk.WayGPTClient(api_url=held.server.url, project_key="sk_live_x",
                                       max_connections=1, total_timeout=0.5) as client:
        threads, results = _in_threads(1, lambda: client.chat_completions_stream(
            messages=MESSAGES).collect().text)
        try:
            _wait_until(lambda: held.now == 1)
            started = time.monotonic()
            with pytest.raises(sdk.APITimeoutError):
                client.get_models()
            assert time.monotonic() - started < 5
        finally:
            held.release.set()
            for thread in threads:
                thread.join(30)
        assert results == ["Hi"]
        assert len(held.server.requests) == 1
