"""The wait for a stream's next complete line (``_stream_loop.LineWait``), asked directly."""

from __future__ import annotations

import time

from waygpt._chat_events import ChatEventParser
from waygpt._stream_loop import LineWait


def parser_after(data: bytes) -> ChatEventParser:
    parser = ChatEventParser(200, None, str)
    parser.push(data)
    parser.pull()
    return parser


def test_a_complete_line_ends_the_wait() -> None:
    wait = LineWait(0.0)
    wait.reading()
    assert wait.overdue(parser_after(b": ping\n")) is None


def test_bytes_without_a_line_end_past_the_timeout_are_overdue() -> None:
    wait = LineWait(0.01)
    wait.reading()
    time.sleep(0.05)
    error = wait.overdue(parser_after(b"data: {"))
    assert error is not None and "no complete line" in error.message


def test_the_callers_own_time_between_reads_does_not_count() -> None:
    wait = LineWait(0.05)
    wait.reading()
    assert wait.overdue(parser_after(b"data: {\n\n")) is None  # a line ended: no wait is on
    time.sleep(0.1)  # the caller's own time with the chunk
    wait.reading()
    assert wait.overdue(parser_after(b"data: {")) is None


def test_a_stream_started_again_has_no_wait_on() -> None:
    wait = LineWait(0.01)
    wait.reading()
    time.sleep(0.05)
    wait.reset()
    wait.reading()
    assert wait.overdue(parser_after(b"data: {")) is None
