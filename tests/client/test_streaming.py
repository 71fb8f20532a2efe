"""Streamed chat against the local server: what is yielded, what is raised, what is released.

The SSE parser itself is tested in ``tests/sse/``; these tests drive whole streams
over real HTTP (chunked, close-delimited and length-delimited bodies) through the client.
"""

from __future__ import annotations

import json
import platform
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

from raw_server import RawServer, fixed_answer
from waygpt.retry import DEFAULT_STATUS_FORCELIST
from waygpt.testing import WayGPTTestServer, sse_event

CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello world"}]
EVENT_STREAM = "text/event-stream; charset=utf-8"
DONE = b"data: [DONE]\n\n"


def chunk(
    content: Optional[str] = None, finish: Optional[str] = None, **extra: Any
) -> Dict[str, Any]:
    delta = {} if content is None else {"content": content}
    body: Dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    body.update(extra)
    return body


def data(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def script_stream(
    server: WayGPTTestServer, pieces: List[bytes], framing: str = "chunked", **fields: Any
) -> None:
    """The next chat request is answered 200 with these body pieces, one write each."""
    server.script(
        method="POST",
        path=CHAT,
        chunks=pieces,
        framing=framing,
        content_type=EVENT_STREAM,
        **fields,
    )


def script_raw_chunked(
    server: WayGPTTestServer, wire: List[bytes], chunk_delay: float = 0.0
) -> None:
    """Hand-made ``Transfer-Encoding: chunked`` framing, written as given, then a close."""
    server.script(
        method="POST",
        path=CHAT,
        chunks=wire,
        framing="close",
        # (Connection: close, or the client would keep the connection the server closes.)
        headers={"Transfer-Encoding": "chunked", "Connection": "close"},
        content_type=EVENT_STREAM,
        chunk_delay=chunk_delay,
    )


def http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def contents(chunks: List[Dict[str, Any]]) -> List[Optional[str]]:
    return [c["choices"][0]["delta"].get("content") for c in chunks]


def pools_all_free(client: Any) -> bool:
    """Every pooled connection of the client is back in its pool (none held by a stream)."""
    if getattr(client, "is_async_facade", False):
        session = client.async_client._transport._session
        assert session is not None, "the client made no request"
        return not session.connector._acquired  # aiohttp's connections lent out
    manager = client._transport.session.adapters["http://"].poolmanager
    pools = [manager.pools[key] for key in manager.pools.keys()]
    assert pools, "the client made no request"
    return all(pool.pool.qsize() == pool.pool.maxsize for pool in pools)


@pytest.fixture
def slow_client(sdk: Any, server: WayGPTTestServer) -> Iterator[Any]:
    """No retries, and a read timeout of 0.5 s."""
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=(5, 0.5)
    ) as created:
        yield created


# -- what a stream yields ----------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "close", "length"])
def test_chunk_dicts_are_yielded_from_every_body_framing(client, server, framing):
    script_stream(
        server, [data(chunk("Hel")), data(chunk("lo")), data(chunk(finish="stop")), DONE], framing
    )

    chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert all(isinstance(c, dict) for c in chunks)
    assert contents(chunks) == ["Hel", "lo", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_default_server_stream_collects_to_the_echo(client):
    chunks = list(client.chat_completions(messages=MESSAGES, stream=True))

    assert "".join(c or "" for c in contents(chunks)) == "Echo: hello world"


HEL = json.dumps(chunk("Hel"))
LO = json.dumps(chunk("lo"))
WIRE_VARIANTS = {
    "data without space": f"data:{HEL}\n\ndata:{LO}\n\ndata:[DONE]\n\n",
    "crlf": f"data: {HEL}\r\n\r\ndata: {LO}\r\n\r\ndata: [DONE]\r\n\r\n",
    "cr": f"data: {HEL}\r\rdata: {LO}\r\rdata: [DONE]\r\r",
    "comments": (
        f": ping\n\n:keep-alive\ndata: {HEL}\n\n: ping\ndata: {LO}\n: x\n\ndata: [DONE]\n\n"
    ),
    "multi-line data": (
        'data: {"choices": [{"index": 0,\ndata:  "delta": {"content": "Hel"}}]}\n\n'
        'data: {"choices":\ndata: [{"index": 0, "delta":\ndata: {"content": "lo"}}]}\n\n'
        "data: [DONE]\n\n"
    ),
    "event id retry fields": (
        f"retry: 3000\n\nevent: message\nid: 1\ndata: {HEL}\n\n"
        f"id: 2\nretry: 10\ndata: {LO}\nevent: message\n\nid: 3\ndata: [DONE]\n\n"
    ),
    "custom event name": f"event: completion\ndata: {HEL}\n\nevent: completion\ndata: {LO}\n\n",
    "byte order mark": f"\ufeffdata: {HEL}\n\ndata: {LO}\n\ndata: [DONE]\n\n",
    "field without colon and unknown fields": (
        f"foo: bar\ndata: {HEL}\n\ndata\nx-custom: 1\ndata: {LO}\n\ndata: [DONE]\n\n"
    ),
    "no done, clean end": f"data: {HEL}\n\ndata: {LO}\n\n",
}


@pytest.mark.parametrize("framing", ["chunked", "close"])
@pytest.mark.parametrize("piece_size", [0, 1, 7])
@pytest.mark.parametrize("variant", sorted(WIRE_VARIANTS))
def test_wire_variants_give_the_same_chunks(client, server, variant, piece_size, framing):
    wire = WIRE_VARIANTS[variant].encode()
    if piece_size:  # the body in tiny writes: lines, CRLFs and fields cut anywhere
        pieces = [wire[i : i + piece_size] for i in range(0, len(wire), piece_size)]
    else:
        pieces = [wire]
    script_stream(server, pieces, framing)

    chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert contents(chunks) == ["Hel", "lo"]


def test_utf8_text_split_inside_a_character_is_decoded_whole(client, server):
    wire = data(chunk("Привет, мир ✓")) + data(chunk(" 🎉")) + DONE
    pieces = [wire[i : i + 3] for i in range(0, len(wire), 3)]
    script_stream(server, pieces, "close")

    result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == "Привет, мир ✓ 🎉"


def test_data_holding_unicode_line_separators_is_not_split(client, server):
    text = "a\u2028b\u0085c\x0bd\x0ce\x1cf"
    script_stream(server, [data(chunk(text)), DONE])

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == [text]


def test_done_ends_the_stream_and_later_events_are_ignored(client, server):
    script_stream(server, [data(chunk("a")), DONE + data(chunk("after")), data(chunk("later"))])

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a"]


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_done_ends_the_loop_without_waiting_for_the_server_to_end_the_body(client, server, framing):
    # After [DONE] the server waits 3 s before its next write and the end of the body.
    script_stream(server, [data(chunk("a")) + DONE, data(chunk("late"))], framing, chunk_delay=3)

    started = time.monotonic()
    chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert contents(chunks) == ["a"]
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("framing", ["chunked", "close", "length"])
def test_a_clean_end_without_done_simply_ends(client, server, framing):
    script_stream(server, [data(chunk("a")), data(chunk("b"))], framing)

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a", "b"]


def test_an_empty_body_is_an_empty_stream(client, server):
    script_stream(server, [], "chunked")

    assert list(client.chat_completions_stream(messages=MESSAGES)) == []


def test_chunk_extensions_and_trailers_are_accepted(client, server):
    wire = (
        b"%x;name=value\r\n" % len(data(chunk("a")))
        + data(chunk("a"))
        + b"\r\n"
        + http_chunk(DONE)
        + b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    script_raw_chunked(server, [wire])

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a"]


# -- no hold-back ------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_each_event_is_yielded_before_the_next_one_is_sent(client, server, framing):
    # Small events (far below 512 bytes) with a 1 s pause after each.
    script_stream(server, [data(chunk("a")), data(chunk("b")), DONE], framing, chunk_delay=1.0)

    arrivals = [time.monotonic() for _ in client.chat_completions_stream(messages=MESSAGES)]
    ended = time.monotonic()

    assert len(arrivals) == 2
    assert ended - arrivals[0] > 1.5  # "a" came ~2 s before the end, not with "b"
    assert ended - arrivals[1] > 0.5


def test_an_event_is_yielded_before_the_rest_of_its_http_chunk_arrives(client, server):
    # One HTTP chunk holds two events; the second half of the chunk comes 1 s later.
    first, second = data(chunk("a")), data(chunk("b"))
    payload = first + second
    head = b"%x\r\n" % len(payload)
    script_raw_chunked(
        server, [head + first, second + b"\r\n" + http_chunk(DONE) + b"0\r\n\r\n"], 1.0
    )

    stream = client.chat_completions_stream(messages=MESSAGES)
    first_chunk = next(stream)
    got_first = time.monotonic()
    rest = list(stream)

    assert contents([first_chunk, *rest]) == ["a", "b"]
    assert time.monotonic() - got_first > 0.5


# -- errors before the stream: as for a plain call, and retried -------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429, 500, 502, 503])
def test_an_error_status_before_the_stream_raises_what_a_plain_call_raises(
    sdk, client, server, status
):
    body = {"detail": f"failure {status}"}
    server.script(status=status, body=body, headers={"Retry-After": "0"}, times=None)
    with pytest.raises(sdk.WayGPTError) as plain:
        client.chat_completions(messages=MESSAGES)

    with pytest.raises(sdk.WayGPTError) as streamed:
        for _ in client.chat_completions_stream(messages=MESSAGES):
            pass

    assert type(streamed.value) is type(plain.value)
    assert isinstance(streamed.value, sdk.APIStatusError)
    assert streamed.value.status_code == status
    hint = " (check WAYGPT_PROJECT_KEY or the project_key argument)" if status == 401 else ""
    assert streamed.value.message == plain.value.message == f"failure {status}{hint}"


@pytest.mark.parametrize("status", DEFAULT_STATUS_FORCELIST)
def test_retryable_statuses_before_the_stream_are_retried(client, server, status):
    server.script(status=status, body={"detail": "busy"}, headers={"Retry-After": "0"})
    script_stream(server, [data(chunk("ok")), DONE])

    chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert contents(chunks) == ["ok"]
    assert [r.path for r in server.requests] == [CHAT, CHAT]


def test_default_stream_after_a_503_is_retried_and_complete(client, server):
    server.script(status=503, body={"detail": "warming up"}, path=CHAT)

    result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == "Echo: hello world"
    assert len(server.requests) == 2


def test_nothing_is_retried_once_the_stream_has_started(sdk, client, server):
    # The body stops half-way (Content-Length promises more), then a normal stream would follow.
    first = data(chunk("a"))
    server.script(
        method="POST",
        path=CHAT,
        chunks=[first, b'data: {"cho'],
        content_length=len(first) + 500,
        content_type=EVENT_STREAM,
    )
    received: List[Dict[str, Any]] = []

    with pytest.raises(sdk.APIConnectionError):
        for item in client.chat_completions_stream(messages=MESSAGES):
            received.append(item)

    assert contents(received) == ["a"]
    assert len(server.requests) == 1


def test_an_in_stream_rate_limit_is_not_retried(sdk, client, server):
    script_stream(server, [data(chunk("a")), data({"error": {"message": "slow", "code": 429}})])

    with pytest.raises(sdk.RateLimitError):
        list(client.chat_completions_stream(messages=MESSAGES))

    assert len(server.requests) == 1


# -- errors inside the stream ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "cls", "status"),
    [
        ({"message": "slow down", "code": 429}, "RateLimitError", 429),
        ({"message": "slow down", "code": "429", "type": "rate_limit"}, "RateLimitError", 429),
        ({"message": "slow down", "status": 429}, "RateLimitError", 429),
        ({"message": "slow down", "status_code": 503}, "InternalServerError", 503),
        ({"message": "slow down", "code": 503}, "InternalServerError", 503),
        ({"message": "slow down", "code": 500}, "InternalServerError", 500),
        ({"message": "slow down", "code": 401}, "AuthenticationError", 401),
        ({"message": "slow down"}, "WayGPTError", None),
        ({"message": "slow down", "code": "rate_limit_exceeded"}, "WayGPTError", None),
        ({"message": "slow down", "code": 200}, "WayGPTError", None),
        ({"message": "slow down", "code": 429.0}, "RateLimitError", 429),
        ({"message": "slow down", "code": True}, "WayGPTError", None),
        ("slow down", "WayGPTError", None),
    ],
)
def test_an_error_object_in_the_stream_raises_a_typed_error(
    sdk, client, server, error, cls, status
):
    payload = {"error": error}
    script_stream(server, [data(chunk("partial")), data(payload), data(chunk("never")), DONE])
    received: List[Dict[str, Any]] = []

    with pytest.raises(sdk.WayGPTError) as caught:
        for item in client.chat_completions_stream(messages=MESSAGES):
            received.append(item)

    assert type(caught.value) is getattr(sdk, cls)
    assert caught.value.message == "slow down"
    assert caught.value.status_code == status
    assert caught.value.response == payload
    assert contents(received) == ["partial"]


def test_a_status_beside_a_plain_error_string_picks_the_class(sdk, no_retry_client, server):
    script_stream(server, [data({"error": "slow down", "status": 503})])

    with pytest.raises(sdk.InternalServerError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert (caught.value.message, caught.value.status_code) == ("slow down", 503)


def test_an_error_event_type_raises_even_without_an_error_key(sdk, no_retry_client, server):
    script_stream(server, [b'event: error\ndata: {"message": "upstream failed", "code": 502}\n\n'])

    with pytest.raises(sdk.WayGPTError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.message == "upstream failed"


def test_an_error_event_with_plain_text_data_raises_with_that_text(sdk, client, server):
    script_stream(server, [b"event: error\ndata: upstream exploded\n\n"])

    with pytest.raises(sdk.WayGPTError) as caught:
        list(client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.message == "upstream exploded"


def test_a_huge_error_message_is_cut_short(sdk, no_retry_client, server):
    script_stream(server, [data({"error": {"message": "x" * 100_000, "code": 500}})])

    with pytest.raises(sdk.InternalServerError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert len(caught.value.message) <= 500


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b"42", b'"text"', b"{"])
def test_data_that_is_not_a_json_object_raises_a_validation_error(sdk, client, server, payload):
    script_stream(server, [b"data: " + payload + b"\n\n"])

    with pytest.raises(sdk.APIResponseValidationError):
        list(client.chat_completions_stream(messages=MESSAGES))


def test_other_event_types_with_text_data_are_skipped(client, server):
    script_stream(server, [b"event: ping\ndata: keep-alive\n\n", data(chunk("a")), DONE])

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a"]


def test_a_json_answer_instead_of_a_stream_is_not_silently_empty(sdk, client, server):
    server.script(method="POST", path=CHAT, body={"object": "chat.completion", "choices": []})

    with pytest.raises(sdk.APIResponseValidationError):
        list(client.chat_completions_stream(messages=MESSAGES))


def test_a_json_error_answer_instead_of_a_stream_raises_its_error(sdk, client, server):
    server.script(method="POST", path=CHAT, body={"error": {"message": "quota", "code": 429}})

    with pytest.raises(sdk.RateLimitError) as caught:
        list(client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.message == "quota"


# -- broken connections and timeouts ------------------------------------------------------------


def assert_sdk_connection_error(sdk: Any, error: BaseException, timeout: bool = False) -> None:
    assert isinstance(error, sdk.APIConnectionError)
    assert isinstance(error, sdk.APITimeoutError) is timeout
    assert error.status_code is None
    assert type(error).__module__.split(".")[0] not in ("requests", "urllib3", "http", "socket")


def read_all(stream: Any, received: List[Dict[str, Any]]) -> None:
    for item in stream:
        received.append(item)


def test_a_chunked_body_cut_between_chunks_raises_a_connection_error(sdk, client, server):
    script_raw_chunked(server, [http_chunk(data(chunk("a"))), http_chunk(data(chunk("b")))])
    received: List[Dict[str, Any]] = []

    with pytest.raises(sdk.WayGPTError) as caught:
        read_all(client.chat_completions_stream(messages=MESSAGES), received)

    assert_sdk_connection_error(sdk, caught.value)
    assert contents(received) == ["a", "b"]


def test_a_chunked_body_cut_inside_a_chunk_raises_a_connection_error(sdk, client, server):
    cut = b"%x\r\n" % 500 + data(chunk("a"))
    script_raw_chunked(server, [http_chunk(data(chunk("first"))), cut])
    received: List[Dict[str, Any]] = []

    with pytest.raises(sdk.WayGPTError) as caught:
        read_all(client.chat_completions_stream(messages=MESSAGES), received)

    assert_sdk_connection_error(sdk, caught.value)
    # The event inside the cut chunk was complete: it is delivered before the failure.
    assert contents(received) == ["first", "a"]


def test_a_malformed_chunked_body_raises_a_connection_error(sdk, no_retry_client, server):
    script_raw_chunked(server, [http_chunk(data(chunk("a"))) + b"zz\r\nhello\r\n"])

    with pytest.raises(sdk.WayGPTError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert_sdk_connection_error(sdk, caught.value)


def test_a_length_body_cut_short_raises_a_connection_error(sdk, client, server):
    first = data(chunk("a"))
    server.script(
        method="POST",
        path=CHAT,
        chunks=[first],
        content_length=len(first) + 100,
        content_type=EVENT_STREAM,
    )

    with pytest.raises(sdk.WayGPTError) as caught:
        list(client.chat_completions_stream(messages=MESSAGES))

    assert_sdk_connection_error(sdk, caught.value)


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_the_server_going_away_mid_stream_raises_a_connection_error(sdk, client, server, framing):
    pieces = [data(chunk("a")), data(chunk("b")), DONE]
    if framing == "length":
        script_stream(server, pieces, "length", chunk_delay=1.0)
    else:
        script_stream(server, pieces, "chunked", chunk_delay=1.0)
    stream = client.chat_completions_stream(messages=MESSAGES)

    first = next(stream)
    server.stop()  # cuts every live connection
    with pytest.raises(sdk.WayGPTError) as caught:
        list(stream)

    assert contents([first]) == ["a"]
    assert_sdk_connection_error(sdk, caught.value)


def test_a_reset_connection_raises_a_connection_error(sdk, server):
    server.script(method="POST", path=CHAT, reset=True)
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=5
    ) as no_retry:
        with pytest.raises(sdk.WayGPTError) as caught:
            list(no_retry.chat_completions_stream(messages=MESSAGES))

    assert_sdk_connection_error(sdk, caught.value)


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_a_read_timeout_mid_stream_raises_a_timeout_error(sdk, slow_client, server, framing):
    script_stream(server, [data(chunk("a")), data(chunk("b")), DONE], framing, chunk_delay=1.5)
    received: List[Dict[str, Any]] = []

    with pytest.raises(sdk.WayGPTError) as caught:
        read_all(slow_client.chat_completions_stream(messages=MESSAGES), received)

    assert_sdk_connection_error(sdk, caught.value, timeout=True)
    assert contents(received) == ["a"]
    assert len(server.requests) == 1


def test_the_read_timeout_applies_between_events_not_to_the_whole_stream(slow_client, server):
    # 5 events 0.3 s apart: 1.2 s in all, more than the 0.5 s read timeout.
    pieces = [data(chunk(str(i))) for i in range(5)] + [DONE]
    script_stream(server, pieces, chunk_delay=0.3)

    chunks = list(slow_client.chat_completions_stream(messages=MESSAGES))

    assert contents(chunks) == ["0", "1", "2", "3", "4"]


def test_comments_keep_a_slow_stream_alive(slow_client, server):
    # The server sends a ": ping" comment every 0.3 s while it "thinks" for 1.5 s.
    pieces = [data(chunk("a"))] + [b": ping\n\n"] * 5 + [data(chunk("b")), DONE]
    script_stream(server, pieces, chunk_delay=0.3)

    assert contents(list(slow_client.chat_completions_stream(messages=MESSAGES))) == ["a", "b"]


# -- the connection is always released ----------------------------------------------------------


def test_streams_read_to_done_in_with_blocks_reuse_one_connection(client, server):
    for _ in range(10):
        with client.chat_completions_stream(messages=MESSAGES) as stream:
            assert list(stream)
    for _ in range(10):
        script_stream(server, [data(chunk("a")), data(chunk("b")), DONE])
        with client.chat_completions_stream(messages=MESSAGES) as stream:
            assert contents(list(stream)) == ["a", "b"]

    assert client.get_models()
    assert server.connections_opened == 1
    assert pools_all_free(client)


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_stream_read_to_done_releases_its_connection_without_a_with_block(
    client, server, framing
):
    script_stream(server, [data(chunk("a")), DONE], framing)
    stream = client.chat_completions_stream(messages=MESSAGES)

    assert contents(list(stream)) == ["a"]

    assert pools_all_free(client)
    assert stream.closed
    client.get_models()
    assert server.connections_opened == 1


def test_a_stream_ended_without_done_releases_its_connection(client, server):
    script_stream(server, [data(chunk("a"))])

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a"]

    assert pools_all_free(client)
    client.get_models()
    assert server.connections_opened == 1


def test_an_in_stream_error_releases_the_connection(sdk, client, server):
    script_stream(server, [data(chunk("a")), data({"error": {"message": "x"}}), data(chunk("b"))])
    stream = client.chat_completions_stream(messages=MESSAGES)

    with pytest.raises(sdk.WayGPTError):
        list(stream)

    assert pools_all_free(client)
    assert stream.closed
    assert list(stream) == []
    assert client.get_models()


def test_a_connection_error_releases_the_connection(sdk, client, server):
    script_raw_chunked(server, [http_chunk(data(chunk("a")))])

    with pytest.raises(sdk.APIConnectionError):
        list(client.chat_completions_stream(messages=MESSAGES))

    assert pools_all_free(client)
    assert client.get_models()


def test_leaving_a_with_block_early_releases_the_connection(client, server):
    # The server would keep writing for a long time.
    script_stream(server, [data(chunk(str(i))) for i in range(50)], chunk_delay=0.2)

    started = time.monotonic()
    with client.chat_completions_stream(messages=MESSAGES) as stream:
        first = next(stream)
    elapsed = time.monotonic() - started

    assert contents([first]) == ["0"]
    assert elapsed < 2
    assert stream.closed
    assert pools_all_free(client)
    with pytest.raises(StopIteration):
        next(stream)
    assert client.get_models()


def test_an_exception_in_the_with_block_releases_the_connection(client, server):
    script_stream(server, [data(chunk(str(i))) for i in range(50)], chunk_delay=0.2)

    with pytest.raises(KeyError):
        with client.chat_completions_stream(messages=MESSAGES) as stream:
            for item in stream:
                raise KeyError(item["id"])

    assert pools_all_free(client)


@pytest.mark.skipif(
    platform.python_implementation() != "CPython", reason="relies on reference counting"
)
def test_break_out_of_a_for_loop_releases_the_connection_at_once(client, server):
    script_stream(server, [data(chunk(str(i))) for i in range(50)], chunk_delay=0.2)

    for item in client.chat_completions_stream(messages=MESSAGES):
        assert contents([item]) == ["0"]
        break

    assert pools_all_free(client)  # no gc.collect() needed
    assert client.get_models()


def test_close_is_idempotent_and_ends_iteration(client, server):
    script_stream(server, [data(chunk("a")), data(chunk("b")), DONE])
    stream = client.chat_completions_stream(messages=MESSAGES)

    assert contents([next(stream)]) == ["a"]
    stream.close()
    stream.close()

    assert stream.closed
    assert list(stream) == []
    assert pools_all_free(client)


def test_a_stream_closed_before_reading_releases_the_connection(client, server):
    stream = client.chat_completions_stream(messages=MESSAGES)
    stream.close()

    assert list(stream) == []
    assert pools_all_free(client)


def test_many_early_exits_do_not_exhaust_the_pool(sdk, server):
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=5
    ) as small:
        for _ in range(40):  # more than the pool holds
            for _item in small.chat_completions_stream(messages=MESSAGES):
                break
        assert pools_all_free(small)
        assert small.get_models()


# -- the ChatStream surface ---------------------------------------------------------------------


def test_chat_stream_surface(sdk, client, server):
    script_stream(server, [data(chunk("a")), DONE], headers={"x-request-id": "req_stream_1"})

    stream = client.chat_completions(messages=MESSAGES, stream=True)

    assert isinstance(stream, sdk.ChatStream)
    assert iter(stream) is stream
    assert stream.response is not None  # the HTTP library's response
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.request_id == "req_stream_1"
    assert not stream.closed
    with stream as entered:
        assert entered is stream
        assert contents(list(entered)) == ["a"]
    assert stream.closed


def test_collect_gives_text_finish_reason_and_usage(sdk, client, server):
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    script_stream(
        server,
        [
            data({**chunk(), "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
            data(chunk("Hel")),
            data(chunk("lo")),
            data(chunk(finish="stop")),
            data({"id": "chatcmpl-1", "model": "gpt-test", "choices": [], "usage": usage}),
            DONE,
        ],
    )
    stream = client.chat_completions_stream(messages=MESSAGES)

    result = stream.collect()

    assert isinstance(result, sdk.ChatStreamResult)
    assert (result.text, result.finish_reason, result.usage) == ("Hello", "stop", usage)
    assert (result.id, result.model, result.role, result.chunks) == (
        "chatcmpl-1",
        "gpt-test",
        "assistant",
        5,
    )
    assert stream.closed
    assert pools_all_free(client)


def test_collect_chat_stream_on_the_default_answer(sdk, client):
    result = sdk.collect_chat_stream(client.chat_completions_stream(messages=MESSAGES))

    assert result.text == "Echo: hello world"
    assert result.finish_reason == "stop"
    assert result.usage and result.usage["total_tokens"] > 0


def test_collect_chat_stream_ignores_odd_shapes(sdk):
    odd = [
        {"choices": None},
        {"choices": ["x", {"index": 1, "delta": {"content": "other choice"}}]},
        {"choices": [{"delta": None}]},
        {"choices": [{"delta": {"content": 5}}]},
        {"choices": [{"delta": {"content": "ok"}, "finish_reason": "length"}]},
    ]

    result = sdk.collect_chat_stream(odd)

    assert (result.text, result.finish_reason, result.chunks) == ("ok", "length", 5)


# Choice 0 listed after choice 1, with a null index, without one: all of it choice 0's.
CHOICE_0_ANYWHERE = [
    {"id": "c1", "model": "m", "choices": [
        {"index": 1, "delta": {"content": "B1"}},
        {"index": 0, "delta": {"role": "assistant", "content": "A1"}},
    ]},
    {"id": "c1", "model": "m", "choices": [{"index": None, "delta": {"content": "A2"}}]},
    {"id": "c1", "model": "m", "choices": [{"delta": {"content": "A3"}}]},
    {"id": "c1", "model": "m", "choices": [
        {"index": 0, "delta": {"content": "A4"}, "finish_reason": "stop"},
    ]},
]


def test_collect_gathers_choice_0_wherever_it_is_listed_and_without_an_index(client, server):
    script_stream(server, [data(c) for c in CHOICE_0_ANYWHERE] + [DONE])

    result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert (result.text, result.finish_reason, result.chunks) == ("A1A2A3A4", "stop", 4)


def test_a_partial_answer_is_what_collect_makes_of_the_chunks_handed_out(sdk, client, server):
    script_stream(server, [data(c) for c in CHOICE_0_ANYWHERE], cut="close")
    received: List[Any] = []

    with pytest.raises(sdk.StreamInterruptedError) as caught:
        for piece in client.chat_completions_stream(messages=MESSAGES):
            received.append(piece)

    assert received == CHOICE_0_ANYWHERE
    assert caught.value.partial == sdk.collect_chat_stream(received)
    assert caught.value.partial.text == "A1A2A3A4"


@pytest.mark.parametrize(
    ("first", "second", "is_stream"),
    [("application/json", EVENT_STREAM, False), (EVENT_STREAM, "application/json", True)],
)
def test_a_repeated_content_type_counts_by_its_first_value(sdk, first, second, is_stream):
    body = data(chunk("a")) + DONE
    answer = fixed_answer("200 OK", [("Content-Type", first), ("Content-Type", second)], body)

    with RawServer(answer) as raw, sdk.WayGPTClient(
        api_url=raw.url, project_key="sk_live_x", max_retries=0, timeout=5
    ) as client:
        if is_stream:
            assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a"]
        else:
            with pytest.raises(sdk.APIResponseValidationError):
                list(client.chat_completions_stream(messages=MESSAGES))


def test_collect_raises_the_in_stream_error_and_releases(sdk, client, server):
    script_stream(server, [data(chunk("a")), data({"error": {"message": "quota", "code": 429}})])

    with pytest.raises(sdk.RateLimitError):
        client.chat_completions_stream(messages=MESSAGES).collect()

    assert pools_all_free(client)


def test_helper_sse_event_streams_work(client, server):
    script_stream(server, [sse_event(chunk("a"), event="message", id="1"), sse_event("[DONE]")])

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a"]


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_a_gzip_encoded_stream_is_decoded(client, server, framing):
    import gzip

    wire = gzip.compress(data(chunk("a")) + data(chunk("b")) + DONE)
    script_stream(server, [wire[:10], wire[10:]], framing, headers={"Content-Encoding": "gzip"})

    assert contents(list(client.chat_completions_stream(messages=MESSAGES))) == ["a", "b"]


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_close_from_another_thread_ends_a_blocked_loop_quietly(client, server, framing):
    import threading

    script_stream(server, [data(chunk("a")), data(chunk("b")), DONE], framing, chunk_delay=3.0)
    stream = client.chat_completions_stream(messages=MESSAGES)
    received: List[Any] = []
    failures: List[BaseException] = []

    def consume() -> None:
        try:
            for item in stream:
                received.append(item)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            failures.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the reader is now blocked waiting for "b"
    started = time.monotonic()
    stream.close()
    reader.join(5)

    assert not reader.is_alive()
    assert time.monotonic() - started < 2
    assert failures == []
    assert contents(received) == ["a"]
    assert stream.closed


def test_an_in_stream_429_carries_its_retry_after(sdk, no_retry_client, server):
    limited = {"error": {"message": "slow down", "code": 429, "retry_after": 7}}
    script_stream(server, [data(limited)])

    with pytest.raises(sdk.RateLimitError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.retry_after == 7.0


# -- what collect() gathers: text, tool calls, every choice -----------------------------------

TOOL_CALL_DELTAS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": '{"city": "Мос'}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 1, "id": "call_2", "type": "function",
         "function": {"name": "get_time", "arguments": "{}"}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_ignored", "function": {"name": "x", "arguments": 'ква"}'}}]}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
]
GATHERED_CALLS = [
    {"id": "call_1", "type": "function",
     "function": {"name": "get_weather", "arguments": '{"city": "Москва"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]


def test_collect_gathers_tool_calls_streamed_as_deltas(client, server):
    script_stream(server, [data(c) for c in TOOL_CALL_DELTAS] + [DONE])

    result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.tool_calls == GATHERED_CALLS  # id and name once, arguments joined
    assert (result.text, result.finish_reason) == ("", "tool_calls")
    assert result.choices[0].tool_calls == GATHERED_CALLS


def test_collect_gathers_every_choice_with_choice_0_first(client, server):
    pieces = [
        {"choices": [{"index": 1, "delta": {"role": "assistant", "content": "B"}},
                     {"index": 0, "delta": {"role": "assistant", "content": "A"}}]},
        {"choices": [{"index": 1, "delta": {"content": "b"}, "finish_reason": "length"},
                     {"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]},
    ]
    script_stream(server, [data(c) for c in pieces] + [DONE])

    result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert [(c.index, c.text, c.finish_reason) for c in result.choices] == [
        (0, "Aa", "stop"), (1, "Bb", "length")
    ]
    assert (result.text, result.finish_reason) == ("Aa", "stop")


def test_a_partial_answer_gathers_tool_calls_by_the_same_rule(sdk, client, server):
    script_stream(server, [data(c) for c in TOOL_CALL_DELTAS[:4]], cut="close")
    received: List[Any] = []

    with pytest.raises(sdk.StreamInterruptedError) as caught:
        for piece in client.chat_completions_stream(messages=MESSAGES):
            received.append(piece)

    assert caught.value.partial == sdk.collect_chat_stream(received)
    assert caught.value.partial.tool_calls == GATHERED_CALLS


# -- text(), text_snapshots(), sse() --------------------------------------------------------

ROLE_ONLY = {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
USAGE_ONLY = {"id": "chatcmpl-1", "choices": [],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def test_text_yields_the_pieces_of_choice_0_and_skips_chunks_without_text(client, server):
    pieces = [ROLE_ONLY, chunk("При"), chunk(""),
              chunk("вет", finish="stop"), USAGE_ONLY]
    script_stream(server, [data(c) for c in pieces] + [DONE])

    assert list(client.chat_completions_stream(messages=MESSAGES).text()) == ["При", "вет"]


def test_leaving_a_text_loop_releases_the_connection(client, server):
    script_stream(server, [data(chunk("a")), data(chunk("b"))],
                  chunk_delay=5)
    stream = client.chat_completions_stream(messages=MESSAGES)
    for piece in stream.text():
        assert piece == "a"
        break

    assert stream.closed
    assert server.wait_for_open_connections(0) == 0


def test_text_restarts_before_content_and_keeps_the_partial_after_it(sdk, client, server):
    server.script_stream_fault(after_events=0, cut="reset")  # restarted: not seen
    server.script_stream_fault(after_events=2, cut="reset")
    got: List[str] = []

    with pytest.raises(sdk.StreamInterruptedError) as caught:
        for piece in client.chat_completions_stream(messages=MESSAGES).text():
            got.append(piece)

    assert caught.value.partial.text == "".join(got) != ""


def test_text_snapshots_show_the_answer_so_far_and_always_the_final_text(client, server):
    words = [chunk(w) for w in ("one ", "two ", "three")]
    script_stream(server, [data(c) for c in words] + [data(USAGE_ONLY), DONE])

    snapshots = list(
        client.chat_completions_stream(messages=MESSAGES).text_snapshots(min_interval=3600)
    )

    assert snapshots == ["one ", "one two three"]  # the first at once, the final at the end


def test_text_snapshots_without_throttling_never_repeat_a_text(client, server):
    pieces = [chunk("a"), ROLE_ONLY, chunk("b")]
    script_stream(server, [data(c) for c in pieces] + [DONE])

    snapshots = list(client.chat_completions_stream(messages=MESSAGES).text_snapshots(0))

    assert snapshots == ["a", "ab"]


def test_text_snapshots_refuse_a_negative_interval_before_reading(client, server):
    stream = client.chat_completions_stream(messages=MESSAGES)
    with pytest.raises(ValueError, match="min_interval"):
        stream.text_snapshots(min_interval=-1)
    assert stream.collect().text  # nothing was read


def test_sse_relays_each_chunk_then_done(client, server):
    pieces = [chunk("Привет,\nмир"), USAGE_ONLY]
    script_stream(server, [data(c) for c in pieces] + [DONE])

    relayed = b"".join(client.chat_completions_stream(messages=MESSAGES).sse())

    events = relayed.decode().split("\n\n")
    assert [json.loads(e[len("data: "):]) for e in events[:2]] == pieces
    assert events[2:] == ["data: [DONE]", ""]


def test_sse_turns_a_failure_into_one_error_event_for_the_end_user(client, server):
    script_stream(
        server,
        [data(chunk("Hel"))],
        cut="reset",
        headers={"X-Request-ID": f"req-{server.project_key}"},
    )

    relayed = b"".join(client.chat_completions_stream(messages=MESSAGES).sse())

    last = relayed.decode().split("\n\n")[-2]
    assert last.startswith("event: error\ndata: ")
    payload = json.loads(last.split("data: ", 1)[1])
    assert payload == {
        "type": "StreamInterruptedError",
        "message": "The connection to the answering service was lost. Please try again.",
        "request_id": "req-[REDACTED]",
    }
    assert b"[DONE]" not in relayed
