"""Property tests: however a stream is cut into chunks, the decoder gives the events (and
the last event id) of a deliberately plain reading of the WHATWG rules written here, and
gives each event as soon as the bytes fed so far complete it."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waygpt.sse import ServerSentEvent, SSEDecoder

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_decode(body: bytes) -> Tuple[List[ServerSentEvent], Optional[str]]:
    """The events of a whole stream and its final last event id, one character at a time."""
    text = body.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: List[str] = []
    line = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\r" or char == "\n":
            lines.append(line)
            line = ""
            if char == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
        else:
            line += char
        i += 1
    # `line` is unterminated: the end of the stream discards it.
    events: List[ServerSentEvent] = []
    data, event_type, retry = "", "", None
    id_buffer: Optional[str] = None
    last_event_id: Optional[str] = None
    for line in lines:
        if line == "":
            last_event_id = id_buffer
            if data != "":
                if data.endswith("\n"):
                    data = data[:-1]
                events.append(ServerSentEvent(data, event_type or "message", id_buffer, retry))
            data, event_type, retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name = line[: line.index(":")]
            value = line[line.index(":") + 1 :]
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "data":
            data += value + "\n"
        elif name == "event":
            event_type = value
        elif name == "id" and "\x00" not in value:
            id_buffer = value
        elif name == "retry" and value != "" and all(c in "0123456789" for c in value):
            retry = int(value)
    return events, last_event_id


def feed_checking_each_step(body: bytes, cuts: Sequence[int]) -> List[ServerSentEvent]:
    """Feed body in pieces; after each, the events so far must be those of the bytes so far."""
    decoder = SSEDecoder()
    events: List[ServerSentEvent] = []
    start = 0
    for cut in sorted(set(cuts) | {len(body)}):
        events.extend(decoder.feed(body[start:cut]))
        start = cut
        expected, expected_last_id = reference_decode(body[:cut])
        assert events == expected, cut
        assert decoder.last_event_id == expected_last_id, cut
    assert decoder.close() == []
    return events


# The text of field values: any characters but CR and LF, with a good share of the ones
# str.splitlines() breaks on, Cyrillic, NUL, spaces and digits (ASCII and not).
VALUE_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(' ab{}"\u2028\u2029\x85\x0b\x0c\x1c\x00\t\ufeff07\u0663\u00b2')),
        st.characters(min_codepoint=0x410, max_codepoint=0x44F),  # Cyrillic
        st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    ),
    max_size=20,
)
LINE_ENDS = ["\n", "\r\n", "\r"]


@st.composite
def field_line(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["data", "event", "id", "retry", "", "Data", "data ", "foo"]))
    if name == "retry":
        odd = ["", "7", "٣", "1²", "-1", "1.5", " 2", "3 "]  # only the first 2 are valid
        value = draw(st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(odd), VALUE_TEXT))
    elif name == "id":
        value = draw(st.one_of(st.sampled_from(["1", "", "2\x003", "\x00"]), VALUE_TEXT))
    else:
        value = draw(VALUE_TEXT)
    return name + draw(st.sampled_from([": ", ":"] + ([""] if value == "" else []))) + value


def mostly(usual: str, others: List[str], rarity: int) -> st.SearchStrategy[str]:
    """`usual`, or one of `others` once in `rarity` draws (never if rarity is 0)."""
    return st.sampled_from([usual] * rarity + others) if rarity else st.just(usual)


@st.composite
def event_stream(draw: st.DrawFn) -> Tuple[bytes, List[int]]:
    """An encoded stream of blocks, each ended by a blank line, and where its lines end.

    Each stream has its usual line end and data prefix, with exceptions at a rate of its
    own. Blocks come in runs of one data line each, as in chat streams, between blocks of
    several data lines or of other fields.
    """
    style = draw(st.sampled_from(LINE_ENDS))
    line_end = mostly(style, LINE_ENDS, draw(st.sampled_from([0, 2, 30])))
    prefix = draw(st.sampled_from(["data: ", "data:"]))
    data_line = st.builds(
        str.__add__,
        mostly(prefix, ["data: ", "data:", "data:  "], draw(st.sampled_from([0, 2, 30]))),
        VALUE_TEXT,
    )
    run = st.integers(1, 40).flatmap(
        lambda n: st.lists(data_line.map(lambda line: [line]), min_size=n, max_size=n)
    )
    block = st.one_of(
        st.lists(data_line, min_size=2, max_size=3),
        st.tuples(field_line(), data_line).map(list),
        st.lists(st.one_of(data_line, field_line()), max_size=4),
    )
    blocks = draw(st.lists(st.one_of(run, run, block.map(lambda b: [b])), max_size=8))
    text = ""
    ends: List[int] = []
    for lines in (block for group in blocks for block in group):
        for line in [*lines, ""]:
            text += line + draw(line_end)
            ends.append(len(text.encode()))
    text += draw(st.sampled_from(["", "data: unterminated", "data: x" + style, ": c"]))
    body = text.encode()
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
        ends = [end + 3 for end in ends]
    return body, ends


@st.composite
def cut_points(draw: st.DrawFn, body: bytes, ends: Sequence[int] = ()) -> List[int]:
    """Where to cut body into pieces: anywhere, and at line ends (where servers flush)."""
    cuts = draw(st.lists(st.integers(0, len(body)), max_size=12))
    at_line_ends = draw(st.booleans())
    if ends and at_line_ends:
        cuts += draw(st.lists(st.sampled_from(list(ends)), max_size=len(ends)))
    return cuts


@SETTINGS
@given(stream=event_stream(), data=st.data())
def test_any_split_of_a_valid_stream_gives_the_same_events(
    stream: Tuple[bytes, List[int]], data: st.DataObject
) -> None:
    body, ends = stream
    expected, _ = reference_decode(body)
    assert feed_checking_each_step(body, []) == expected
    assert feed_checking_each_step(body, data.draw(cut_points(body, ends))) == expected


@SETTINGS
@given(
    values=st.lists(VALUE_TEXT, max_size=60),
    style=st.sampled_from(LINE_ENDS),
    data=st.data(),
)
def test_simple_data_events_come_out_as_sent(
    values: List[str], style: str, data: st.DataObject
) -> None:
    events = [f"data: {value}{style}{style}".encode() for value in values]
    body = b"".join(events)
    ends = [sum(map(len, events[: i + 1])) for i in range(len(events))]  # flushes per event
    decoded = feed_checking_each_step(body, data.draw(cut_points(body, ends)))
    assert decoded == [ServerSentEvent(data=value) for value in values]


RANDOM_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [
                *(b"\r", b"\n", b"\r\n", b"\n\n", b":", b" ", b"7"),
                *(b"data:", b"data: ", b"id:", b"retry:", b"event:"),
                *(b"\xef\xbb\xbf", b"\xd0", b"\xbf", b"\xf0\x9f", b"\xff", b"\x00"),
            ]
        ),
        max_size=80,
    ).map(b"".join),
)


@SETTINGS
@given(body=RANDOM_BYTES, data=st.data())
def test_random_bytes_in_random_splits_never_raise(body: bytes, data: st.DataObject) -> None:
    """Nor do they give other events than the reference reading."""
    feed_checking_each_step(body, data.draw(cut_points(body)))
