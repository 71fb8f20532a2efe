"""Behaviour of the SSE decoder, one test per rule of the WHATWG event stream format."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Iterator, List

import pytest

from waygpt.sse import ServerSentEvent, SSEDecoder, iter_sse


def decode(*chunks: bytes) -> List[ServerSentEvent]:
    decoder = SSEDecoder()
    events: List[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def datas(*chunks: bytes) -> List[str]:
    return [event.data for event in decode(*chunks)]


# Line endings


def test_lf_line_endings() -> None:
    assert datas(b"data: a\n\ndata: b\n\n") == ["a", "b"]


def test_crlf_line_endings() -> None:
    assert datas(b"data: a\r\n\r\ndata: b\r\n\r\n") == ["a", "b"]


def test_cr_line_endings() -> None:
    assert datas(b"data: a\r\rdata: b\r\r") == ["a", "b"]


def test_mixed_line_endings() -> None:
    assert datas(b"data: a\r\ndata: b\rdata: c\n\r\n") == ["a\nb\nc"]


def test_crlf_split_across_feeds_is_one_line_ending() -> None:
    # Were the CR and the LF two line endings, the LF would be a blank line and dispatch "a".
    assert datas(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == ["a\nb"]


def test_cr_at_end_of_feed_ends_the_line_at_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert [e.data for e in decoder.feed(b"\r")] == ["a"]  # CR, CR: a line end, a blank line


def test_cr_at_end_of_feed_followed_by_other_text() -> None:
    assert datas(b"data: a\r", b"data: b\r", b"\r") == ["a\nb"]


def test_one_event_chunks() -> None:
    decoder = SSEDecoder()
    for chunk, data in [
        (b"data: a\n\n", ["a"]),
        (b"data:b\r\n\r\n", ["b"]),
        (b"data: \n\n", [""]),
        (b"data:\r\n\r\n", [""]),
        (b"data: c\r\n\n", ["c"]),
        (b"data: d\n\r\n", ["d"]),
        (b"data: e\r\r\n", ["e"]),
        (b"data: f\r\n\r", ["f"]),
        (b"\ndata: g\n\n", ["g"]),  # that LF is the pair of the CR before
        (b"data: h\rx\r\n\r\n", ["h"]),
        (b"data: i\nx\r\n\r\n", ["i"]),
        (b"data: j\r\nx\r\n\r\n", ["j"]),
    ]:
        assert [event.data for event in decoder.feed(chunk)] == data, chunk


def test_lone_cr_inside_a_one_event_chunk_ends_a_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\rdata: b\n\n") == [ServerSentEvent(data="a\nb")]
    assert decoder.feed(b"data: c\rd\n\n") == [ServerSentEvent(data="c")]  # "d": a field


def test_lone_cr_or_lf_inside_a_long_crlf_chunk_ends_a_line() -> None:
    body = b"data: a\r\n\r\n" * 150 + b"data: b\rdata: c\r\n\r\ndata: d\ndata: e\r\n\r\n"
    assert datas(body + b"data: f\r\n\r\n" * 150) == ["a"] * 150 + ["b\nc", "d\ne"] + ["f"] * 150


def test_lf_after_split_crlf_is_skipped_only_once() -> None:
    assert datas(b"data: a\r", b"\n\ndata: b\n\n") == ["a", "b"]


# Decoding


def test_utf8_character_split_across_feeds() -> None:
    encoded = "data: привет 👋\n\n".encode()
    for cut in range(len(encoded) + 1):
        assert datas(encoded[:cut], encoded[cut:]) == ["привет 👋"], cut


def test_utf8_character_fed_byte_by_byte() -> None:
    encoded = "data: мир 👋\n\n".encode()
    assert datas(*(encoded[i : i + 1] for i in range(len(encoded)))) == ["мир 👋"]


def test_bom_at_start_is_dropped() -> None:
    assert decode(b"\xef\xbb\xbfdata: a\n\n") == [ServerSentEvent(data="a")]


def test_bom_split_across_feeds_is_dropped() -> None:
    assert datas(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == ["a"]


def test_bom_is_dropped_only_at_start() -> None:
    assert datas(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == ["a"]  # "\ufeffdata" is no field
    assert datas(b"data: \xef\xbb\xbfa\n\n") == ["\ufeffa"]


def test_only_one_bom_is_dropped() -> None:
    assert datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []


def test_incomplete_bom_then_text_is_replaced() -> None:
    assert datas(b"\xef\xbb", b"\n\ndata: a\n\n") == ["a"]


def test_invalid_utf8_is_replaced() -> None:
    assert datas(b"data: a\xff\xfeb\xe2\x82\n\n") == ["a\ufffd\ufffdb\ufffd"]


def test_truncated_character_at_end_of_input_is_discarded() -> None:
    assert datas(b"data: a\n\ndata: \xd0") == ["a"]


# Fields


def test_comment_lines_are_ignored() -> None:
    assert decode(b": ping\n:\ndata: a\n: between\ndata: b\n\n: ping\n\n") == [
        ServerSentEvent(data="a\nb")
    ]


def test_data_without_space() -> None:
    assert datas(b"data:a\n\n") == ["a"]


def test_only_one_leading_space_is_removed() -> None:
    assert datas(b"data:  a \n\n") == [" a "]


def test_multi_line_data_is_joined_with_newline() -> None:
    assert datas(b"data: line 1\ndata:\ndata: line 3\n\n") == ["line 1\n\nline 3"]


def test_empty_data_line_dispatches_empty_data() -> None:
    assert decode(b"data:\n\ndata: \n\n") == [ServerSentEvent(data=""), ServerSentEvent(data="")]


def test_field_name_without_colon_has_empty_value() -> None:
    assert datas(b"data\ndata\n\n") == ["\n"]


def test_event_field_sets_the_type() -> None:
    assert decode(b"event: delta\ndata: a\n\n") == [ServerSentEvent(data="a", event="delta")]


def test_empty_event_field_means_message() -> None:
    assert decode(b"event:\ndata: a\n\n") == [ServerSentEvent(data="a", event="message")]


def test_fields_fed_before_the_data_apply_to_its_event() -> None:
    for data in (b"data: a\n\n", b"data: a\n\n" * 200):  # one event, many (a long chunk)
        decoder = SSEDecoder()
        assert decoder.feed(b"id: 7\n") == []
        assert decoder.feed(b"event: x\n") == []
        assert decoder.feed(b"retry: 5\n") == []
        assert decoder.last_event_id is None  # not dispatched yet
        events = decoder.feed(data)
        assert events[0] == ServerSentEvent(data="a", event="x", id="7", retry=5)
        assert set(events[1:]) <= {ServerSentEvent(data="a", id="7")}
        assert decoder.last_event_id == "7"


def test_id_fed_alone_is_the_last_event_id_once_its_event_is_dispatched() -> None:
    for data in (b"data: a\n\n", b"data: a\n\n" * 200):
        decoder = SSEDecoder()
        decoder.feed(b"id: 1\ndata: z\n\nid: 2\n")
        assert decoder.last_event_id == "1"
        assert {e.id for e in decoder.feed(data)} == {"2"}
        assert decoder.last_event_id == "2"


def test_event_type_is_reset_after_dispatch() -> None:
    assert [e.event for e in decode(b"event: delta\ndata: a\n\ndata: b\n\n")] == [
        "delta",
        "message",
    ]


def test_id_field_persists_across_events() -> None:
    events = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", "2"]


def test_empty_id_field_resets_the_id() -> None:
    assert [e.id for e in decode(b"id: 1\ndata: a\n\nid\ndata: b\n\n")] == ["1", ""]


def test_id_with_nul_is_ignored() -> None:
    assert [e.id for e in decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")] == ["1", "1"]


def test_retry_field_sets_reconnection_time() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 3000\ndata: a\n\ndata: b\n\n") == [
        ServerSentEvent(data="a", retry=3000),
        ServerSentEvent(data="b"),
    ]
    assert decoder.retry == 3000


def test_retry_non_digit_is_ignored() -> None:
    for value in (b"3s", b"-1", b"1.5", b"", b" 10", b"\xd9\xa3"):  # last: Arabic-Indic three
        decoder = SSEDecoder()
        assert decoder.feed(b"retry: " + value + b"\ndata: a\n\n") == [ServerSentEvent("a")]
        assert decoder.retry is None


def test_retry_in_event_without_data_is_kept_by_the_decoder() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 500\n\ndata: a\n\n") == [ServerSentEvent(data="a")]
    assert decoder.retry == 500


def test_unknown_fields_are_ignored() -> None:
    assert decode(b"foo: bar\nDATA: x\ndata : y\ndata: a\n\n") == [ServerSentEvent(data="a")]


def test_done_is_an_ordinary_event() -> None:
    assert decode(b"data: [DONE]\n\n") == [ServerSentEvent(data="[DONE]")]


# Characters that str.splitlines() would take for line breaks


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e"])
def test_unicode_line_separators_inside_data_are_not_line_breaks(char: str) -> None:
    encoded = f"data: a{char}b\n\ndata: {char}\n\n".encode()
    assert datas(encoded) == [f"a{char}b", char]


def test_u2028_and_u0085_inside_data_are_not_line_breaks() -> None:
    assert datas("data: a\u2028b\x85c\n\n".encode()) == ["a\u2028b\x85c"]


# Dispatch and end of input


def test_empty_data_event_is_not_dispatched() -> None:
    assert decode(b"event: x\nid: 7\n\n: ping\n\n\n\n") == []


def test_blank_line_without_data_resets_event_type() -> None:
    assert decode(b"event: x\n\ndata: a\n\n") == [ServerSentEvent(data="a")]


def test_unterminated_last_event_is_dropped_on_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [ServerSentEvent(data="a")]
    assert decoder.close() == []


def test_unterminated_last_line_is_dropped_on_close() -> None:
    assert datas(b"data: a\n\ndata: b") == ["a"]


def test_event_is_returned_by_the_feed_with_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent(data="a")]
    assert decoder.feed(b"data: b\n\ndata: c") == [ServerSentEvent(data="b")]
    assert decoder.feed(b"\n\n") == [ServerSentEvent(data="c")]


def test_iter_sse_yields_each_event_before_reading_further() -> None:
    fed: List[bytes] = []

    def chunks() -> Iterator[bytes]:
        for chunk in (b"data: a\n\n", b"data: b\n", b"\n", b"data: c"):
            fed.append(chunk)
            yield chunk

    events = iter_sse(chunks())
    assert next(events).data == "a"
    assert len(fed) == 1
    assert next(events).data == "b"
    assert len(fed) == 3
    assert list(events) == []  # "c" is never terminated


def test_last_event_id_is_the_id_as_of_the_latest_dispatch() -> None:
    decoder = SSEDecoder()
    assert decoder.last_event_id is None
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert decoder.last_event_id == "1"  # the event carrying id 2 is not complete
    decoder.feed(b"\n")
    assert decoder.last_event_id == "2"


def test_close_readies_the_decoder_for_a_reconnected_stream() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\nretry: 10\nevent: x\ndata: a\n\nid: 2\nevent: y\ndata: b\r")
    assert decoder.close() == []
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"\xef\xbb\xbf\ndata: c\n\n") == [ServerSentEvent(data="c", id="1")]
    assert decoder.retry == 10


# Chunks of any size, events of any shape


def test_many_events_in_one_chunk() -> None:
    body = "".join(f'data: {{"n": {i}}}\n\n' for i in range(500)).encode()
    assert datas(body) == [f'{{"n": {i}}}' for i in range(500)]


def test_many_crlf_events_in_one_chunk() -> None:
    body = b"".join(b"data: %d\r\n\r\n" % i for i in range(500))
    assert datas(body) == [str(i) for i in range(500)]


def test_long_chunk_mixing_simple_and_other_events() -> None:
    body = b"data: a\n\n" * 200 + b"id: 1\nevent: e\ndata: b\ndata: c\n\n" + b"data:d\n\n" * 200
    events = decode(body[:1001], body[1001:])
    assert [e.data for e in events] == ["a"] * 200 + ["b\nc"] + ["d"] * 200
    assert events[200] == ServerSentEvent(data="b\nc", event="e", id="1")
    assert events[-1] == ServerSentEvent(data="d", id="1")


def test_long_chunk_mixing_data_with_and_without_space() -> None:
    body = b"data: a\n\ndata:b\n\n" * 100 + b"data:  c\n\n"
    assert datas(body) == ["a", "b"] * 100 + [" c"]
    body = b"data:a\n\ndata: b\n\n" * 100 + b"data:  c\n\n"
    assert datas(body) == ["a", "b"] * 100 + [" c"]


def test_long_chunk_with_pings_and_fields_between_events() -> None:
    body = b": ok\n\n" + b"data: a\n\n: ping\n\nevent: e\ndata: b\n\nid: 3\n\ndata: c\n\n" * 50
    events = decode(body)
    assert [e.data for e in events] == ["a", "b", "c"] * 50
    assert events[:4] == [
        ServerSentEvent(data="a"),
        ServerSentEvent(data="b", event="e"),
        ServerSentEvent(data="c", id="3"),
        ServerSentEvent(data="a", id="3"),
    ]


def test_chunk_sizes_do_not_change_events() -> None:
    body = ("event: x\r\nid: 9\r\ndata: é\r\n\r\n" + "data: ж\n\n" * 300 + ": end\r\r").encode()
    whole = decode(body)
    assert len(whole) == 301
    for size in (1, 2, 3, 7, 64, 999, 1000, 1001, 4096):
        assert decode(*(body[i : i + size] for i in range(0, len(body), size))) == whole


def test_events_are_ordinary_frozen_dataclass_instances() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 5\n\n") == []
    events = decoder.feed(b"data: a\n\n")  # the one-event chunk shortcut
    events += decoder.feed(b"data: b\n\n" * 200)  # the many-event shortcut
    events += decoder.feed(b"retry: 1\ndata: c\n\n")  # line by line
    expected = [ServerSentEvent("a", "message", "5")]
    expected += [ServerSentEvent("b", "message", "5")] * 200
    expected += [ServerSentEvent("c", "message", "5", 1)]
    assert events == expected
    for event, twin in zip(events, expected):
        assert type(event) is ServerSentEvent
        assert repr(event) == repr(twin)
        assert hash(event) == hash(twin)
        assert vars(event) == vars(twin)
        assert dataclasses.asdict(event) == dataclasses.asdict(twin)
        assert dataclasses.replace(event, data="x") == dataclasses.replace(twin, data="x")
        assert pickle.loads(pickle.dumps(event)) == twin
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.data = "x"  # type: ignore[misc]
