"""Which chunks a stream hands out, and when it may start again (``_stream_loop.Delivery``),
asked directly; the streams over sockets are in tests/client/test_recovery.py."""

from __future__ import annotations

from typing import Any, Dict

from waygpt._stream_loop import _HELD_LIMIT, Delivery
from waygpt.errors import APIConnectionError, APITimeoutError, StreamInterruptedError


def chunk(**delta: Any) -> Dict[str, Any]:
    return {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": delta}]}


def test_chunks_without_content_are_held_back_until_the_first_content() -> None:
    delivery = Delivery()
    assert delivery.release([chunk(role="assistant"), chunk(content="")]) == []
    released = delivery.release([chunk(content="Hi")])
    assert [c["choices"][0]["delta"] for c in released] == [
        {"role": "assistant"}, {"content": ""}, {"content": "Hi"}
    ]
    assert delivery.content


def test_after_the_first_content_every_chunk_is_handed_out() -> None:
    delivery = Delivery()
    delivery.release([chunk(content="a")])
    assert delivery.release([chunk(role="assistant")]) == [chunk(role="assistant")]


def test_past_the_held_limit_chunks_go_out_and_the_stream_no_longer_starts_again() -> None:
    delivery = Delivery()
    for _ in range(_HELD_LIMIT):
        assert delivery.release([chunk(role="assistant")]) == []
    assert len(delivery.release([chunk(role="assistant")])) == _HELD_LIMIT + 1
    assert delivery.content


def test_what_was_held_is_dropped_when_the_stream_starts_again() -> None:
    delivery = Delivery()
    delivery.release([chunk(role="assistant")])
    delivery.drop_held()
    assert delivery.flush() == []


def test_a_clean_end_without_content_hands_out_what_was_held() -> None:
    delivery = Delivery()
    delivery.release([chunk(role="assistant")])
    assert delivery.flush() == [chunk(role="assistant")]


def test_a_dropped_connection_after_content_is_a_stream_interruption_with_the_partial() -> None:
    delivery = Delivery()
    delivery.release([chunk(content="Hel"), chunk(content="lo")])
    error = delivery.failed(APIConnectionError("stream interrupted: reset"))
    assert isinstance(error, StreamInterruptedError)
    assert error.partial is not None and error.partial.text == "Hello"
    assert error.partial.chunks == 2


def test_another_error_after_content_keeps_its_type_and_gets_the_partial() -> None:
    delivery = Delivery()
    delivery.release([chunk(content="Hel")])
    timeout = APITimeoutError("stream read timed out")
    assert delivery.failed(timeout) is timeout
    assert timeout.partial is not None and timeout.partial.text == "Hel"
