"""Hostile and broken answers: whatever the server sends, the caller meets a typed error.

Invalid UTF-8, a 20 MB error page, bodies that stop half-way, headers with no body, JSON of
the wrong shape or nested past the parser's recursion limit: every call either returns or
raises a ``WayGPTError`` (the ``typed`` fixture fails the test on anything else), messages
and stored bodies stay bounded, and so does the memory the client allocates.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any, Callable, Dict, List

import pytest

from waygpt.errors import ERROR_BODY_LIMIT
from waygpt.testing import WayGPTTestServer, sse_event

CHAT = "/api/v1/waygpt/chat/completions"
MODELS = "/api/v1/waygpt/models"
MESSAGES = [{"role": "user", "content": "hello"}]
EVENT_STREAM = "text/event-stream; charset=utf-8"
MESSAGE_LIMIT = 500
BODY_LIMIT = ERROR_BODY_LIMIT
MB = 1024 * 1024
INVALID_UTF8 = b"\xff\xfe\xfa \xc3\x28 \xed\xa0\x80 \xf8\x88\x80\x80\x80 \x80"
DEEP = 100_000  # far past json's recursion limit


def _chunk(content: str) -> Dict[str, Any]:
    return {"id": "c1", "choices": [{"index": 0, "delta": {"content": content}}]}


def _stream(client: Any) -> List[Dict[str, Any]]:
    with client.chat_completions(messages=MESSAGES, stream=True) as chunks:
        return list(chunks)


# (name, the call, the path its answer is scripted on)
CALLS: List[Any] = [
    ("get_models", lambda c: c.get_models(), MODELS),
    ("chat", lambda c: c.chat_completions(messages=MESSAGES), CHAT),
    ("chat_stream", _stream, CHAT),
]


def _assert_bounded(error: Any) -> None:
    assert len(error.message) <= MESSAGE_LIMIT
    assert error.body is None or len(error.body) <= BODY_LIMIT
    assert len(str(error)) <= MESSAGE_LIMIT + 20


# -- invalid UTF-8 ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, call, path", CALLS, ids=[c[0] for c in CALLS])
def test_invalid_utf8_success_body_raises_a_typed_error(
    sdk, typed, plain_client, server: WayGPTTestServer, name, call, path
):
    server.script(path=path, status=200, body=INVALID_UTF8, content_type="application/json")

    result = typed(lambda: call(plain_client))

    assert isinstance(result, sdk.APIResponseValidationError), result


@pytest.mark.parametrize("status", [400, 429, 500, 503])
def test_invalid_utf8_error_body_gives_a_bounded_readable_message(
    sdk, typed, plain_client, server, status
):
    server.script(path=MODELS, status=status, body=INVALID_UTF8 * 1000)

    error = typed(plain_client.get_models)

    assert isinstance(error, sdk.APIStatusError)
    assert error.status_code == status
    assert "\ufffd" in error.message  # replaced, not dropped or raised
    _assert_bounded(error)


def test_invalid_utf8_inside_stream_events_is_a_typed_outcome(sdk, typed, plain_client, server):
    pieces = [sse_event(_chunk("ok")), b"data: " + INVALID_UTF8 + b"\n\n", b"data: [DONE]\n\n"]
    server.script(method="POST", path=CHAT, chunks=pieces, content_type=EVENT_STREAM)

    result = typed(lambda: _stream(plain_client))

    assert isinstance(result, sdk.APIResponseValidationError), result


def test_invalid_utf8_split_across_reads_inside_a_json_string_is_replaced(
    typed, plain_client, server
):
    event = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a\xffb\xe2\x82"}}]}\n\n'
    pieces = [event[:40], event[40:70], event[70:], b"data: [DONE]\n\n"]
    server.script(method="POST", path=CHAT, chunks=pieces, content_type=EVENT_STREAM)

    chunks = typed(lambda: _stream(plain_client))

    assert chunks[0]["choices"][0]["delta"]["content"] == "a\ufffdb\ufffd"


# -- a 20 MB error body -------------------------------------------------------------------------


def _traced_peak(call: Callable[[], Any]) -> Any:
    """(result, peak bytes traced while ``call`` ran) for this whole process."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = call()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("kind", ["text", "json"])
def test_a_20_mb_error_body_is_read_only_up_to_the_bound(
    sdk, typed, plain_client, server, framing, kind
):
    if kind == "json":  # a huge "detail": the message is cut, the body stays bounded
        body = b'{"detail": "' + b"x" * (20 * MB) + b'"}'
    else:
        body = b"<html>" + b"A" * (20 * MB) + b"</html>"
    if framing == "length":  # one write of the body as it is (the server copies nothing)
        server.script(path=MODELS, status=500, body=body)
    else:
        pieces = [body[i : i + MB] for i in range(0, len(body), MB)]
        server.script(path=MODELS, status=500, chunks=pieces, framing=framing)

    error, peak = _traced_peak(lambda: typed(plain_client.get_models))

    assert isinstance(error, sdk.InternalServerError), error
    _assert_bounded(error)
    # The JSON is cut at the bound, so it no longer parses: the message is its text.
    assert error.message.startswith("<html>AAAA" if kind == "text" else '{"detail": "xxxx')
    assert len(error.body) == BODY_LIMIT
    # The client keeps at most the bound plus a read buffer; the 20 MB never enter memory
    # (tracemalloc sees the whole process, the in-process server included: it copies nothing).
    assert peak < 8 * MB, f"{peak / MB:.1f} MB traced"
    assert plain_client.get_models()  # and the client still works afterwards


def test_a_20_mb_error_body_on_a_stream_request_is_bounded(sdk, typed, plain_client, server):
    pieces = [b"E" * MB for _ in range(20)]
    server.script(method="POST", path=CHAT, status=503, chunks=pieces)

    error, peak = _traced_peak(lambda: typed(lambda: _stream(plain_client)))

    assert isinstance(error, sdk.InternalServerError), error
    _assert_bounded(error)
    assert peak < 8 * MB, f"{peak / MB:.1f} MB traced"


# -- bodies that stop half-way, headers without a body ------------------------------------------


@pytest.mark.parametrize("name, call, path", CALLS, ids=[c[0] for c in CALLS])
def test_a_success_body_that_stops_half_way_raises_a_connection_error(
    sdk, typed, plain_client, server, name, call, path
):
    if name == "chat_stream":
        pieces = [sse_event(_chunk("one")), sse_event(_chunk("two"))]
        server.script(
            method="POST", path=path, chunks=pieces, content_length=10_000,
            content_type=EVENT_STREAM,
        )
    else:
        server.script(path=path, body='{"id": "x", "choices": [', content_length=5000,
                      content_type="application/json")

    result = typed(lambda: call(plain_client))

    assert isinstance(result, sdk.APIConnectionError), result
    assert result.status_code is None


def test_an_error_body_that_stops_half_way_still_raises_its_status(
    sdk, typed, plain_client, server
):
    server.script(path=MODELS, status=502, body="<html>Bad Gateway", content_length=100_000)

    error = typed(plain_client.get_models)

    assert isinstance(error, sdk.InternalServerError)
    assert error.status_code == 502
    assert "Bad Gateway" in error.message


@pytest.mark.parametrize("name, call, path", CALLS, ids=[c[0] for c in CALLS])
def test_headers_announcing_a_body_that_never_comes(
    sdk, typed, plain_client, server, name, call, path
):
    content_type = EVENT_STREAM if name == "chat_stream" else "application/json"
    server.script(path=path, body=None, content_length=300, content_type=content_type)

    result = typed(lambda: call(plain_client))

    assert isinstance(result, sdk.APIConnectionError), result


@pytest.mark.parametrize("name, call, path", CALLS[:2], ids=[c[0] for c in CALLS[:2]])
def test_headers_with_an_empty_body_raise_a_validation_error(
    sdk, typed, plain_client, server, name, call, path
):
    server.script(path=path, status=200, body=None, content_type="application/json")

    result = typed(lambda: call(plain_client))

    assert isinstance(result, sdk.APIResponseValidationError), result


def test_an_empty_stream_is_an_empty_iteration(typed, plain_client, server):
    server.script(method="POST", path=CHAT, chunks=[], content_type=EVENT_STREAM)

    assert typed(lambda: _stream(plain_client)) == []


@pytest.mark.parametrize("status", [400, 500])
def test_headers_with_an_empty_error_body(sdk, typed, plain_client, server, status):
    server.script(path=MODELS, status=status, body=None)

    error = typed(plain_client.get_models)

    assert isinstance(error, sdk.APIStatusError)
    assert error.message == f"HTTP {status}"


# -- JSON of the wrong shape ----------------------------------------------------------------------

WRONG_SHAPES = ['"a string"', "42", "-1.5e300", "true", "null", "[]", "{}", '"[1, 2]"']

SHAPED_CALLS: List[Any] = [
    ("get_models", lambda c: c.get_models(), MODELS, list),
    ("get_models_full", lambda c: c.get_models_full(), MODELS + "/full", list),
    ("get_use_cases", lambda c: c.get_use_cases(detailed=True), "/api/v1/waygpt/use-cases", list),
    ("chat", lambda c: c.chat_completions(messages=MESSAGES), CHAT, dict),
    ("image", lambda c: c.image_generations("cat"), "/api/v1/waygpt/images/generations", dict),
    ("video", lambda c: c.video_generations("cat"), "/api/v1/waygpt/videos/generations", dict),
    ("get_media_job", lambda c: c.get_media_job("j1"), "/api/v1/waygpt/media/jobs/j1", dict),
    ("widget_token", lambda c: c.create_widget_token(), "/api/v1/widget/token", dict),
]


@pytest.mark.parametrize("body", WRONG_SHAPES)
@pytest.mark.parametrize(
    "name, call, path, expected", SHAPED_CALLS, ids=[c[0] for c in SHAPED_CALLS]
)
def test_json_of_the_wrong_type_raises_a_validation_error(
    sdk, typed, plain_client, server, name, call, path, expected, body
):
    server.script(path=path, body=body, content_type="application/json")

    result = typed(lambda: call(plain_client))

    if body in ("[]", "{}") and isinstance([] if body == "[]" else {}, expected):
        assert isinstance(result, expected)  # the right type, merely empty
    else:
        assert isinstance(result, sdk.APIResponseValidationError), result
        assert result.status_code == 200


def test_wait_for_media_job_with_a_string_answer_raises_a_typed_error(
    sdk, typed, plain_client, server
):
    server.script(path="/api/v1/waygpt/media/jobs/j1", body='"completed"', times=None,
                  content_type="application/json")

    result = typed(lambda: plain_client.wait_for_media_job("j1", poll_interval=0.01, timeout=2))

    assert isinstance(result, sdk.APIResponseValidationError), result


def test_client_login_without_a_token_raises_a_typed_error(sdk, typed, plain_client, server):
    server.script(path="/api/v1/auth/login/access-token", body={"access_token": 42})

    result = typed(lambda: plain_client.client_login(server.user_email, server.user_password))

    assert isinstance(result, sdk.APIResponseValidationError), result


@pytest.mark.parametrize("payload", ['"text"', "42", "[1, 2]", "null", '{"error": 42}'])
def test_stream_events_of_the_wrong_shape_raise_typed_errors(
    sdk, typed, plain_client, server, payload
):
    pieces = [b"data: " + payload.encode() + b"\n\n", b"data: [DONE]\n\n"]
    server.script(method="POST", path=CHAT, chunks=pieces, content_type=EVENT_STREAM)

    result = typed(lambda: _stream(plain_client))

    assert isinstance(result, sdk.WayGPTError), result


@pytest.mark.parametrize("status", [400, 500])
@pytest.mark.parametrize("body", [*WRONG_SHAPES, '{"detail": 42}', '{"detail": [1, {"a": 2}]}'])
def test_error_json_of_any_shape_gives_a_typed_error(
    sdk, typed, plain_client, server, status, body
):
    server.script(path=MODELS, status=status, body=body, content_type="application/json")

    error = typed(plain_client.get_models)

    assert isinstance(error, sdk.APIStatusError)
    assert error.status_code == status
    assert error.message
    _assert_bounded(error)


# -- JSON nested past the recursion limit ---------------------------------------------------------

NESTED = [
    ("list", "[" * DEEP + "]" * DEEP),
    ("object", '{"a":' * DEEP + "1" + "}" * DEEP),
    ("detail", '{"detail":' + "[" * DEEP + "]" * DEEP + "}"),
    ("unclosed", "[" * DEEP),
]


@pytest.mark.parametrize("shape, body", NESTED, ids=[n[0] for n in NESTED])
@pytest.mark.parametrize("name, call, path", CALLS[:2], ids=[c[0] for c in CALLS[:2]])
def test_deeply_nested_success_json_raises_a_validation_error(
    sdk, typed, plain_client, server, name, call, path, shape, body
):
    server.script(path=path, body=body, content_type="application/json")

    result = typed(lambda: call(plain_client))

    assert isinstance(result, sdk.APIResponseValidationError), result


@pytest.mark.parametrize("shape, body", NESTED, ids=[n[0] for n in NESTED])
def test_deeply_nested_error_json_still_gives_its_status_error(
    sdk, typed, plain_client, server, shape, body
):
    server.script(path=MODELS, status=500, body=body, content_type="application/json")

    error = typed(plain_client.get_models)

    assert isinstance(error, sdk.InternalServerError), error
    _assert_bounded(error)


@pytest.mark.parametrize("shape, body", NESTED, ids=[n[0] for n in NESTED])
def test_deeply_nested_stream_event_raises_a_typed_error(
    sdk, typed, plain_client, server, shape, body
):
    pieces = [sse_event(_chunk("ok")), b"data: " + body.encode() + b"\n\n"]
    server.script(method="POST", path=CHAT, chunks=pieces, content_type=EVENT_STREAM)

    result = typed(lambda: _stream(plain_client))

    assert isinstance(result, sdk.APIResponseValidationError), result


@pytest.mark.parametrize("depth", [200, 900])
def test_an_in_stream_error_object_nested_deep_gives_a_typed_error(
    sdk, typed, plain_client, server, depth
):
    error = '{"error":{"message":' + "[" * depth + "]" * depth + ',"code":429}}'
    pieces = [b"data: " + error.encode() + b"\n\n"]
    server.script(method="POST", path=CHAT, chunks=pieces, content_type=EVENT_STREAM)

    result = typed(lambda: _stream(plain_client))

    assert isinstance(result, sdk.WayGPTError), result
    assert len(result.message) <= 100_000
