"""An incremental Server-Sent Events decoder: bytes in, events out.

Parsing follows the WHATWG HTML "event stream" rules: the stream is UTF-8 (a byte order
mark at its very start is dropped, invalid bytes become U+FFFD); lines end with CRLF, LF or
CR and with nothing else (U+2028 or U+0085 in data is data); a blank line dispatches the
event; ``:`` starts a comment; an event left unterminated at the end of input is dropped.
``data: [DONE]`` is an ordinary event here: the chat stream layer gives it its meaning.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional

from .errors import APIResponseValidationError

__all__ = ["SSE_SIZE_LIMIT", "SSEDecoder", "ServerSentEvent", "iter_sse"]

# The longest line, and the largest event, a decoder holds (in characters): far above any
# chat chunk, and a bound on the memory an endless line or event can take.
SSE_SIZE_LIMIT = 16 * 1024 * 1024
# What one line counts toward the event cap at least: 16 M empty "data" lines add up to no
# characters but hold 128 MB of references; at 16 a line, an event has at most 1 M lines.
_SSE_LINE_COST = 16


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event."""

    data: str = ""
    event: str = "message"
    id: Optional[str] = None  # the last event id seen so far (it persists across events)
    retry: Optional[int] = None  # reconnection time in ms, when this event carried one


_SSE_BOM = codecs.BOM_UTF8


class SSEDecoder:
    """Turn the bytes of an event stream, fed in chunks of any size, into events."""

    __slots__ = ("_data", "_data_size", "_event", "_id", "_last_id", "_limit", "_pending",
                 "_reconnect", "_retry", "_skip_lf", "_started", "_tail", "_tail_size")

    def __init__(self, max_size: int = SSE_SIZE_LIMIT) -> None:
        self._limit = max_size  # see SSE_SIZE_LIMIT
        self._last_id: Optional[str] = None  # the last event id, as of the latest dispatch
        self._reconnect: Optional[int] = None  # the latest valid retry field in the stream
        self._start()

    def _start(self) -> None:
        """The state of a stream read from its start."""
        self._pending = b""  # the bytes of a character split across chunks (or of the BOM)
        self._started = False  # whether the stream's first bytes were checked for a BOM
        self._skip_lf = False  # the text so far ends with CR: a LF coming next is its pair
        self._tail: List[str] = []  # the pieces of a line not ended yet
        self._data: List[str] = []  # the data lines of the event being read
        self._tail_size = 0  # characters in _tail
        self._data_size = 0  # what the lines of the event being read count toward the cap
        self._event = ""  # the event type buffer
        self._retry: Optional[int] = None  # the retry field of the event being read
        self._id = self._last_id  # the last event id buffer

    @property
    def last_event_id(self) -> Optional[str]:
        """The id to send as ``Last-Event-ID`` when reconnecting (None if none was set)."""
        return self._last_id

    @property
    def retry(self) -> Optional[int]:
        """The reconnection time (ms) the stream set last, even in an event with no data."""
        return self._reconnect

    def feed(self, chunk: bytes) -> List[ServerSentEvent]:
        """Consume ``chunk``; return the events it completes, in order.

        Raises:
            APIResponseValidationError: a line or an event grew past ``max_size`` characters.
        """
        if self._pending or not self._started:
            chunk = self._join_pending(chunk)
        text, used = codecs.utf_8_decode(chunk, "replace", False)
        if used < len(chunk):  # the chunk ends inside a character
            self._pending = chunk[used:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        events: List[ServerSentEvent] = []
        self._read_lines(text, events)
        return events

    def close(self) -> List[ServerSentEvent]:
        """Signal the end of input; an event without its closing blank line is discarded (an id
        read in it too). The decoder is then ready to read a new stream (a reconnection) from
        its start; ``last_event_id`` and ``retry`` are kept.
        """
        self._start()
        return []

    def _join_pending(self, chunk: bytes) -> bytes:
        chunk = self._pending + chunk
        self._pending = b""
        if not self._started:
            if len(chunk) < 3 and _SSE_BOM.startswith(chunk):
                self._pending = chunk  # perhaps a BOM: wait for more
                return b""
            self._started = True
            if chunk.startswith(_SSE_BOM):
                chunk = chunk[3:]
        return chunk

    def _read_lines(self, text: str, events: List[ServerSentEvent]) -> None:
        if "\r" in text:
            # A CR ending the text ends its line now; a LF starting the next chunk is its pair.
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        tail = self._tail
        if len(lines) == 1:  # no line ends here: keep the piece, to join once its line ends
            if text:
                tail.append(text)
                self._tail_size += len(text)
                if self._tail_size > self._limit:
                    raise self._overflow()
            return
        if tail:
            tail.append(lines[0])
            lines[0] = "".join(tail)
        last = lines.pop()
        self._tail = [last] if last else []
        self._tail_size = len(last)
        data = self._data
        limit = self._limit
        for line in lines:
            if not line:  # a blank line: dispatch
                self._last_id = self._id
                if data:
                    event = self._event or "message"
                    events.append(ServerSentEvent("\n".join(data), event, self._id, self._retry))
                    data = self._data = []
                self._data_size = 0
                self._event = ""
                self._retry = None
                continue
            # Every line of an event counts toward its cap, comments and empty lines too.
            size = len(line)
            self._data_size += size + 1 if size >= _SSE_LINE_COST else _SSE_LINE_COST
            if self._data_size > limit:
                raise self._overflow()
            if line.startswith("data:"):
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif line[0] != ":":  # not a comment
                self._read_field(line)

    def _read_field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":  # a "data" line without a colon (counted by _read_lines)
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = self._reconnect = int(value)

    def _overflow(self) -> APIResponseValidationError:
        mib = self._limit / (1024 * 1024)
        return APIResponseValidationError(
            f"an event stream line or event is longer than {mib:g} MiB: refused", None
        )


def iter_sse(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """Yield the events of a byte stream, each as soon as the chunk completing it arrives."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()
