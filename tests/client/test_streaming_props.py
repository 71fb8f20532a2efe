"""Property tests of whole streams over real HTTP: random bodies, random splits, random framing.

The SSE parser has its own property tests (``tests/sse/``); here the bytes go through
the local server, the HTTP framing (including the client's own de-chunking) and ChatStream.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waygpt.testing import WayGPTTestServer

CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]
FRAMINGS = ["chunked", "close", "length", "raw-chunked"]
PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer() as running:
        yield running


@pytest.fixture(scope="module")
def shared_client(sdk: Any, shared_server: WayGPTTestServer) -> Iterator[Any]:
    with sdk.WayGPTClient(
        api_url=shared_server.url,
        project_key=shared_server.project_key,
        max_retries=0,
        timeout=5,
    ) as created:
        yield created


def http_chunks(body: bytes, sizes: List[int]) -> bytes:
    """``body`` as HTTP chunks of the given sizes (cycled), with the last chunk."""
    out = bytearray()
    start, index = 0, 0
    while start < len(body):
        size = sizes[index % len(sizes)] if sizes else len(body)
        piece = body[start : start + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
        start += size
        index += 1
    return bytes(out + b"0\r\n\r\n")


def split(wire: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    return [wire[a:b] for a, b in zip(points, points[1:]) if b > a] or [b""]


def serve(server: WayGPTTestServer, framing: str, pieces: List[bytes], delay: float = 0.0) -> None:
    server.clear_scripts()
    fields: Dict[str, Any]
    if framing == "raw-chunked":  # the pieces are already chunked framing, written as they are
        # (Connection: close, or the client would keep the connection the server closes.)
        headers = {"Transfer-Encoding": "chunked", "Connection": "close"}
        fields = {"framing": "close", "headers": headers}
    else:
        fields = {"framing": framing}
    server.script(
        method="POST",
        path=CHAT,
        chunks=pieces,
        content_type="text/event-stream",
        chunk_delay=delay,
        **fields,
    )


SSE_TOKENS = st.sampled_from(
    [
        b"data: ",
        b"data:",
        b"data",
        b"event: error\n",
        b"event: ping\n",
        b"id: 7\n",
        b"id\n",
        b"retry: 10\n",
        b"retry: x\n",
        b": comment\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"\n\n",
        b"[DONE]",
        b"{",
        b"}",
        b"[",
        b"]",
        b'"error"',
        b'"code"',
        b'"message"',
        b'"choices"',
        b":",
        b",",
        b"429",
        b"503",
        b"null",
        b'{"error": {"message": "m", "code": 503}}',
        b'{"choices": [{"index": 0, "delta": {"content": "x"}}]}',
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xd0",
        b"\xc3\xa9",
        b"\x00",
        b"[" * 3000,
        b"0\r\n\r\n",
        b"ffffff\r\n",
    ]
)
RANDOM_BODIES = st.one_of(
    st.binary(max_size=3000),
    st.lists(SSE_TOKENS, max_size=60).map(b"".join),
    st.lists(st.one_of(SSE_TOKENS, st.binary(max_size=20)), max_size=60).map(b"".join),
)


@PROPERTY_SETTINGS
@given(
    body=RANDOM_BODIES,
    framing=st.sampled_from(FRAMINGS),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_random_bodies_raise_only_sdk_errors(
    sdk, shared_server, shared_client, body, framing, cuts
):
    serve(shared_server, framing, split(body, cuts))
    received: List[Any] = []

    try:
        for item in shared_client.chat_completions_stream(messages=MESSAGES):
            received.append(item)
    except sdk.WayGPTError:
        pass  # any of the SDK's own errors is a fine outcome for garbage
    # Anything else (a raw requests/urllib3/socket/json error) fails the test.

    assert all(isinstance(item, dict) for item in received)
    shared_server.clear_requests()


TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)),  # any character, line separators included
    max_size=12,
)


@PROPERTY_SETTINGS
@given(
    texts=st.lists(TEXT, min_size=1, max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    space=st.booleans(),
    done=st.booleans(),
    framing=st.sampled_from(FRAMINGS),
    sizes=st.lists(st.integers(min_value=1, max_value=64), max_size=5),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_any_split_and_framing_of_a_valid_stream_gives_the_same_chunks(
    shared_server, shared_client, texts, newline, space, done, framing, sizes, cuts
):
    prefix = "data: " if space else "data:"
    events = [
        json.dumps({"choices": [{"index": 0, "delta": {"content": t}}]}, ensure_ascii=False)
        for t in texts
    ]
    if done:
        events.append("[DONE]")
    body = "".join(prefix + e + newline + newline for e in events).encode()
    wire = http_chunks(body, sizes) if framing == "raw-chunked" else body
    # Small pauses between the pieces make the client see the cuts as separate reads.
    serve(shared_server, framing, split(wire, cuts), delay=0.002)

    chunks = list(shared_client.chat_completions_stream(messages=MESSAGES))

    assert [c["choices"][0]["delta"]["content"] for c in chunks] == texts
    shared_server.clear_requests()
