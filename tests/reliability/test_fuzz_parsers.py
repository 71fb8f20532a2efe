"""Property-based fuzzing of the two parsers that read what the server sends.

* ``error_from_response``: any status, headers and body bytes give a typed error with a
  bounded message, never an exception;
* ``SSEDecoder``: any bytes, cut anywhere, decode without an exception, and the events do
  not depend on where the cuts fall.

The example counts are fixed and the deadline is off, so the run time stays bounded and a
slow shared machine cannot turn a pass into a failure; a failure prints its example.
"""

from __future__ import annotations

import json
from typing import Dict, List

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from waygpt.errors import (
    ERROR_BODY_LIMIT,
    APIStatusError,
    RateLimitError,
    error_class_for_status,
    error_from_response,
)
from waygpt.sse import ServerSentEvent, SSEDecoder

MESSAGE_LIMIT = 500
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- error bodies ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


error_documents = st.one_of(
    json_values,
    st.fixed_dictionaries({"detail": json_values}),
    st.fixed_dictionaries({"message": json_values}),
    st.fixed_dictionaries({"error": json_values}),
    st.fixed_dictionaries({"error": st.fixed_dictionaries({"message": json_values})}),
    st.fixed_dictionaries(
        {"detail": st.lists(st.fixed_dictionaries({"loc": json_values, "msg": json_values}))}
    ),
)
bodies = st.one_of(
    st.binary(max_size=2000),
    error_documents.map(lambda doc: json.dumps(doc).encode("utf-8")),
    error_documents.map(lambda doc: json.dumps(doc, ensure_ascii=False).encode("utf-8")),
    # Long, deep, or cut: past the body bound, past the parser's recursion limit, half JSON.
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 200_000).map(lambda n: b'{"detail":"' + b"x" * n + b'"}'),
    error_documents.map(lambda doc: json.dumps({"detail": doc}).encode()[:-3]),
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40
)
headers = st.dictionaries(
    st.sampled_from(
        ["Retry-After", "retry-after", "X-Request-ID", "request-id", "Content-Type", "X-Other"]
    )
    | header_text,
    header_text,
    max_size=6,
)


@FUZZ
@given(status=st.integers(400, 599), headers=headers, body=bodies)
@example(status=400, headers={}, body=b'{"detail":[""]}')  # once gave an empty message
@example(status=502, headers={}, body=b'{"message":"   "}')
def test_error_from_response_never_raises_and_stays_bounded(
    status: int, headers: Dict[str, str], body: bytes
) -> None:
    error = error_from_response(status, headers, body)

    assert isinstance(error, APIStatusError)
    assert type(error) is error_class_for_status(status)
    assert error.status_code == status
    assert isinstance(error.message, str) and error.message
    assert len(error.message) <= MESSAGE_LIMIT
    assert error.body is not None and len(error.body) <= ERROR_BODY_LIMIT
    assert len(str(error)) <= MESSAGE_LIMIT + 10
    if isinstance(error, RateLimitError):
        assert error.retry_after is None or error.retry_after >= 0


@FUZZ
@given(status=st.integers(400, 599), headers=headers, body=bodies)
def test_error_from_response_with_a_redactor_never_raises(
    status: int, headers: Dict[str, str], body: bytes
) -> None:
    error = error_from_response(status, headers, body, redact=lambda t: t.replace("x", "[R]"))

    assert "x" not in error.message
    assert isinstance(error, APIStatusError)


# -- the SSE parser -------------------------------------------------------------------------------

sse_lines = st.one_of(
    st.sampled_from(
        [
            "data: [DONE]",
            "data:",
            "data",
            ": ping",
            ":",
            "",
            "event: error",
            "event:message",
            "id: 7",
            "id",
            "id: a\x00b",
            "retry: 1500",
            "retry: x",
            "\ufeffdata: bom",
        ]
    ),
    st.text(max_size=60).map(lambda t: "data: " + t),
    st.text(max_size=30),
)
line_ends = st.sampled_from(["\n", "\r\n", "\r"])
sse_streams = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.tuples(sse_lines, line_ends), max_size=60).map(
        lambda pairs: "".join(line + end for line, end in pairs).encode("utf-8")
    ),
    # Valid-looking text with invalid UTF-8 bytes spliced in.
    st.tuples(st.text(max_size=200), st.binary(max_size=20), st.text(max_size=200)).map(
        lambda parts: b"data: " + parts[0].encode() + parts[1] + parts[2].encode() + b"\n\n"
    ),
)


def _decode(data: bytes, cuts: List[int]) -> List[ServerSentEvent]:
    decoder = SSEDecoder()
    events: List[ServerSentEvent] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        events.extend(decoder.feed(data[start:cut]))
        start = cut
    events.extend(decoder.close())
    return events


@FUZZ
@given(data=st.data(), stream=sse_streams)
def test_sse_decoder_never_raises_and_ignores_where_the_bytes_are_cut(
    data: st.DataObject, stream: bytes
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")

    whole = _decode(stream, [])
    pieces = _decode(stream, cuts)
    byte_by_byte = _decode(stream, list(range(len(stream)))) if len(stream) < 400 else pieces

    assert pieces == whole
    assert byte_by_byte == whole
    for event in whole:
        assert isinstance(event.data, str)
        assert isinstance(event.event, str) and event.event
        assert event.id is None or "\x00" not in event.id
        assert event.retry is None or event.retry >= 0


@FUZZ
@given(chunks=st.lists(st.binary(max_size=300), max_size=30))
def test_sse_decoder_survives_any_sequence_of_chunks(chunks: List[bytes]) -> None:
    decoder = SSEDecoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            assert isinstance(event, ServerSentEvent)
    decoder.close()
    # After close the decoder reads a new stream from its start.
    assert decoder.feed(b"data: again\n\n")[0].data == "again"
