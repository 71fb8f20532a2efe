"""The sync client's connections know which call sent on them last: a call's deadline (or a
stream's close from another thread) shuts that call's socket, never one that went back to
the pool and that another call has taken.

The watchdog fires on its own thread, at any moment: here the first call's "late deadline"
is fired by hand, at the moments that matter (``_CallWatch.shut`` is what the watchdog
calls), while the second call runs on the same kept-alive connection.
"""

from __future__ import annotations

import socket
import time
from typing import Any, List

import pytest

import waygpt
from raw_server import RawServer, read_request
from waygpt import _requests_transport as transport

BODY = b'{"id": "chat-1", "object": "chat.completion", "choices": []}'
MESSAGES = [{"role": "user", "content": "hello"}]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def slow_bodies(delay: float) -> RawServer:
    """Answers every request of a kept-alive connection: the head at once, the body later
    (so that a socket shut down after the head leaves the body unread)."""

    def handler(conn: socket.socket, request: bytes) -> None:
        while request:
            conn.sendall(HEAD % len(BODY))
            time.sleep(delay)
            conn.sendall(BODY)
            request = read_request(conn)

    return RawServer(handler)


def client_recording_watches(url: str, on_response: Any = None) -> Any:
    watches: List[Any] = []

    def hook(view: Any) -> None:
        watches.append(transport._current.watch)  # the call under way in this thread
        if on_response is not None:
            on_response(watches)

    client = waygpt.WayGPTClient(
        api_url=url, project_key="sk_live_x", max_retries=0, timeout=5,
        event_hooks={"response": [hook]},
    )
    return client, watches


def chat(client: Any) -> Any:
    return client.chat_completions(messages=MESSAGES)


def test_a_late_deadline_never_shuts_the_connection_another_call_has_taken():
    def second_call_waits_for_its_body(watches: List[Any]) -> None:
        if len(watches) == 2:
            watches[0].shut()  # the first call's deadline, passing now

    with slow_bodies(0.2) as server:
        client, _ = client_recording_watches(server.url, second_call_waits_for_its_body)
        with client:
            assert chat(client)["id"] == "chat-1"
            assert chat(client)["id"] == "chat-1"  # its body came after the shutdown
        assert server.connections == 1


def test_a_connection_shut_between_its_checkout_and_its_request_is_connected_again(
    monkeypatch: pytest.MonkeyPatch,
):
    first: List[Any] = []
    send = transport._Claimed.request

    def first_calls_deadline_then_send(self: Any, *args: Any, **kwargs: Any) -> None:
        if first:  # the pool has handed the first call's connection to the second one
            first.pop().shut()
        send(self, *args, **kwargs)

    monkeypatch.setattr(transport._Claimed, "request", first_calls_deadline_then_send)
    with slow_bodies(0.0) as server:
        client, watches = client_recording_watches(server.url)
        with client:
            assert chat(client)["id"] == "chat-1"
            first.append(watches[0])
            # (A POST: had it been written to the shut socket, nothing would replay it.)
            assert chat(client)["id"] == "chat-1"
        assert server.connections == 2  # the shut one was replaced, not written to
