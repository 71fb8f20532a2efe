"""Bounded memory and honest framing, whatever the server sends.

A compressed success body is decoded in bounded steps and refused past 64 MiB; an SSE line or
event past 16 MiB is refused; a body shorter than its Content-Length, a corrupt gzip body, a
stream that is not an event stream and an informational (1xx) answer each raise a typed
error instead of being taken as an answer.
"""

from __future__ import annotations

import gc
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from typing import Any, Iterator

import pytest

from raw_server import RawServer
from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]
MB = 1024 * 1024


def gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"0" * MB
    parts = [compressor.compress(block) for _ in range(size // MB)]
    return b"".join(parts) + compressor.flush()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """256 MiB of "0" characters in about 256 KB of gzip."""
    return gzip_of_zeros(256 * MB)


def peak_memory(call: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        try:
            call()
        except Exception as error:  # noqa: BLE001 - returned for the test to inspect
            outcome: Any = error
        else:
            outcome = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak


def test_a_gzip_bomb_success_body_is_refused_in_bounded_memory(sdk, no_retry_client, server, bomb):
    server.script(
        path=MODELS, body=bomb, headers={"Content-Encoding": "gzip"},
        content_type="application/json",
    )

    error, peak = peak_memory(no_retry_client.get_models)

    assert isinstance(error, sdk.APIResponseValidationError), repr(error)
    assert "64 MiB" in error.message
    assert peak < 200 * MB, f"peak {peak / MB:.0f} MB"


def test_a_gzip_success_body_is_decoded(sdk, no_retry_client, server):
    server.script(
        path=MODELS, body=gzip.compress(b'["gpt-4o"]'), headers={"Content-Encoding": "gzip"},
        content_type="application/json",
    )

    assert no_retry_client.get_models() == ["gpt-4o"]


def test_a_deflate_success_body_is_decoded_with_or_without_its_zlib_wrapper(
    sdk, no_retry_client, server
):
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = raw.compress(b'["raw"]') + raw.flush()
    for body, expected in ((zlib.compress(b'["zlib"]'), ["zlib"]), (raw_deflate, ["raw"])):
        server.script(
            path=MODELS, body=body, headers={"Content-Encoding": "deflate"},
            content_type="application/json",
        )
        assert no_retry_client.get_models() == expected


def test_an_identity_content_encoding_is_read_as_is(sdk, no_retry_client, server):
    server.script(
        path=MODELS, body=b'["gpt-4o"]', headers={"Content-Encoding": "identity"},
        content_type="application/json",
    )

    assert no_retry_client.get_models() == ["gpt-4o"]


def test_a_corrupt_gzip_body_says_it_could_not_be_decoded(sdk, no_retry_client, server):
    corrupt = gzip.compress(b'["gpt-4o", "gpt-4o-mini"]')[:12] + b"\x00garbage\xff" * 4
    server.script(
        path=MODELS, body=corrupt, headers={"Content-Encoding": "gzip"},
        content_type="application/json",
    )

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        no_retry_client.get_models()

    assert "could not be decoded" in caught.value.message


def test_a_truncated_gzip_body_says_it_could_not_be_decoded(sdk, no_retry_client, server):
    whole = gzip.compress(b'["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"]')
    server.script(
        path=MODELS, body=whole[: len(whole) - 10], headers={"Content-Encoding": "gzip"},
        content_type="application/json",
    )

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        no_retry_client.get_models()

    assert "could not be decoded" in caught.value.message


def test_an_unknown_content_encoding_is_refused(sdk, no_retry_client, server):
    server.script(
        path=MODELS, body=b"\x1b\x00", headers={"Content-Encoding": "br"},
        content_type="application/json",
    )

    with pytest.raises(sdk.APIResponseValidationError, match="could not be decoded"):
        no_retry_client.get_models()


def test_the_client_asks_only_for_encodings_it_decodes(client, server):
    client.get_models()
    assert server.last_request.headers["accept-encoding"] == "gzip, deflate"


def test_a_success_body_shorter_than_its_content_length_raises(sdk, no_retry_client, server):
    server.script(path=MODELS, body=b'["gpt-4o", "gpt-4o-mi', content_length=40,
                  content_type="application/json")

    with pytest.raises(sdk.APIConnectionError):
        no_retry_client.get_models()


# -- streams --------------------------------------------------------------------------------


def stream_client(sdk: Any, server: WayGPTTestServer) -> Any:
    return sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=(5, 10)
    )


@pytest.fixture
def big_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer() as running:
        yield running


@pytest.mark.parametrize(
    "shape",
    ["one endless data line", "data lines without a blank line"],
)
def test_an_oversized_sse_line_or_event_is_refused_in_bounded_memory(sdk, big_server, shape):
    piece = b"x" * MB
    if shape == "one endless data line":
        chunks = [b"data: "] + [piece] * 24  # 24 MiB on one line
    else:
        chunks = [b"data: " + piece + b"\n" for _ in range(24)]  # one 24 MiB event
    big_server.script(method="POST", path=CHAT, chunks=chunks, content_type="text/event-stream")

    with stream_client(sdk, big_server) as client:
        error, peak = peak_memory(lambda: list(client.chat_completions_stream(messages=MESSAGES)))

    assert isinstance(error, sdk.APIResponseValidationError), repr(error)
    assert "16 MiB" in error.message
    assert peak < 100 * MB, f"peak {peak / MB:.0f} MB"


def test_a_gzip_bomb_stream_is_refused_in_bounded_memory(sdk, big_server, bomb):
    # 256 MiB of "0" with no line end, compressed: one line past the cap once decoded.
    big_server.script(
        method="POST", path=CHAT, chunks=[bomb],
        headers={"Content-Encoding": "gzip"}, content_type="text/event-stream",
    )

    with stream_client(sdk, big_server) as client:
        error, peak = peak_memory(lambda: list(client.chat_completions_stream(messages=MESSAGES)))

    assert isinstance(error, sdk.APIResponseValidationError), repr(error)
    assert peak < 100 * MB, f"peak {peak / MB:.0f} MB"


@pytest.mark.parametrize(
    "line", [b"data\n", b"data:\n", b": ping\n"], ids=["data", "data:", "comment"]
)
def test_an_event_of_endless_empty_lines_is_refused_in_bounded_memory(sdk, big_server, line):
    piece = line * (MB // len(line))
    big_server.script(
        method="POST", path=CHAT, chunks=[piece] * 128, content_type="text/event-stream"
    )  # 128 MiB of lines and no blank line: one event that never ends

    with stream_client(sdk, big_server) as client:
        error, peak = peak_memory(lambda: list(client.chat_completions_stream(messages=MESSAGES)))

    assert isinstance(error, sdk.APIResponseValidationError), repr(error)
    assert "16 MiB" in error.message
    assert peak < 40 * MB, f"peak {peak / MB:.0f} MB"


def test_a_gzip_stream_of_tiny_events_is_read_in_flat_memory(sdk, big_server):
    events = 4 * MB // len(b"data:{}\n\n")
    body = gzip.compress(b"data:{}\n\n" * events + b"data: [DONE]\n\n", 9)  # about 8 KB
    big_server.script(
        method="POST", path=CHAT, chunks=[body],
        headers={"Content-Encoding": "gzip"}, content_type="text/event-stream",
    )
    results = []

    def read_all() -> None:
        with stream_client(sdk, big_server) as client:
            results.append(client.chat_completions_stream(messages=MESSAGES).collect())

    error, peak = peak_memory(read_all)

    assert error is None, repr(error)
    assert results[0].chunks == events
    assert peak < 12 * MB, f"peak {peak / MB:.0f} MB for a {len(body) // 1024} KB body"


def test_a_stream_waiting_for_its_next_event_holds_none_of_the_chunks_it_handed_out(sdk):
    # Thousands of streams at once wait most of their time: a batch of parsed chunks kept
    # by each while it waits would outweigh the rest of it.
    marker = "chatcmpl-held-4f1c"
    event = (b'data: {"id": "%s", "held": 1, "choices": [{"index": 0, "delta": {"content": '
             b'"Hi"}}]}\n\n' % marker.encode())
    release = threading.Event()

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Connection: close\r\n\r\n" + event * 3)
        release.wait(20)
        conn.sendall(b"data: [DONE]\n\n")

    def held() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is dict and o.get("held") == 1)

    with RawServer(handler) as raw, sdk.WayGPTClient(api_url=raw.url, project_key="sk_live_x",
                                                    max_retries=0) as client:
        stream = client.chat_completions_stream(messages=MESSAGES)
        assert [next(stream)["id"] for _ in range(3)] == [marker] * 3
        rest = []
        reader = threading.Thread(target=lambda: rest.extend(stream), daemon=True)
        reader.start()  # waits for the next event
        try:
            time.sleep(0.3)
            assert held() == 0
        finally:
            release.set()
            reader.join(10)
        assert rest == []


@pytest.mark.parametrize(
    "content_type",
    ["text/html; charset=utf-8", "text/plain", None],
    ids=["html-login-page", "plain-text", "no-content-type"],
)
def test_a_stream_answered_with_something_else_than_an_event_stream_raises(
    sdk, no_retry_client, server, content_type
):
    page = "<html><body><form action='/login'>Corporate proxy: please log in</form></body></html>"
    server.script(method="POST", path=CHAT, body=page, content_type=content_type)

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        stream = no_retry_client.chat_completions_stream(messages=MESSAGES)
        list(stream)

    assert "event stream" in caught.value.message
    assert caught.value.status_code == 200


# -- informational answers ------------------------------------------------------------------


def test_an_informational_answer_is_never_taken_as_the_answer(sdk):
    body = b'["gpt-4o"]'
    wire = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(body), body)
    )

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(wire)

    with RawServer(handler) as raw, sdk.WayGPTClient(
        api_url=raw.url, project_key="sk_live_x", max_retries=0, timeout=5
    ) as client:
        assert client.get_models() == ["gpt-4o"]  # not the 103's empty body
