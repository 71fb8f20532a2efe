"""A chat stream's body in, chunk dicts out: the parser both streams share (no I/O here).

Each event's data becomes a chunk dict; an in-stream error the typed error it stands for
(``stream_error``); anything else a chat stream must not hold an ``APIResponseValidationError``.
Every text an error keeps goes through the call's ``redact`` before it is cut.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Tuple

from ._body import ContentDecoder
from .errors import (
    APIResponseValidationError,
    RateLimitError,
    WayGPTError,
    error_class_for_status,
    parse_json,
    parse_retry_after,
    scrub_value,
)

if TYPE_CHECKING:
    from .types import ChatCompletionChunk

_STREAM_DONE = "[DONE]"
_STREAM_MESSAGE_LIMIT = 500
Redact = Callable[[str], str]
_STREAM_JSON_SCAN: Optional[Callable[[str, int], Tuple[Any, int]]] = getattr(
    json.JSONDecoder(), "scan_once", None
)
_NOT_JSON: Any = object()


def _stream_status(fields: Any) -> Optional[int]:
    """An HTTP-like error status (400-599) among an error object's fields, if any."""
    if not isinstance(fields, dict):
        return None
    for key in ("status", "status_code", "code", "http_status"):
        value = fields.get(key)
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 4:
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return value
    return None


def stream_error(payload: Any, redact: Redact) -> WayGPTError:
    """The typed error for an ``error`` object sent inside the stream: an HTTP-like
    ``code``/``status`` (429, 503, ...) picks its class, else a plain ``WayGPTError``; the
    payload is kept as ``response``."""
    payload = scrub_value(payload, redact)
    error = payload
    if isinstance(payload, dict) and payload.get("error") is not None:
        error = payload["error"]  # else an `event: error` whose data is the error itself
    message = "error in stream"
    if isinstance(error, dict):
        for key in ("message", "detail", "msg", "type"):
            if error.get(key):
                value = error[key]
                message = value if isinstance(value, str) else json.dumps(value)
                break
    elif isinstance(error, str) and error:
        message = error
    elif error is not None and error is not True:
        message = json.dumps(error)
    message = redact(message).strip()  # (JSON of a field is new text: redacted too)
    if len(message) > _STREAM_MESSAGE_LIMIT:
        message = message[: _STREAM_MESSAGE_LIMIT - 3] + "..."
    message = message or "error in stream"
    # The status: in the error object, else beside it ({"error": "...", "status": 429}).
    code = _stream_status(error)
    if code is None and error is not payload:
        code = _stream_status(payload)
    if code == 429:
        return RateLimitError(
            message, code, payload, retry_after=parse_retry_after(retry_after_in(payload))
        )
    if code is not None:
        return error_class_for_status(code)(message, code, payload)
    return WayGPTError(message, None, payload)


def retry_after_in(payload: Any) -> Optional[str]:
    """A ``retry_after`` (seconds) in an in-stream error object, as a header would say it."""
    for fields in (payload.get("error"), payload) if isinstance(payload, dict) else ():
        value = fields.get("retry_after") if isinstance(fields, dict) else None
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return str(value)
    return None


def _stream_json(text: str) -> Any:
    """``json.loads(text)``, through the C scanner directly when the text is one bare value
    (``json.loads`` adds three Python calls and two regex matches per event: 12 % of a
    model-speed stream's CPU, docs/performance.md); its results and errors are the same."""
    scan = _STREAM_JSON_SCAN
    if scan is not None:
        try:
            value, end = scan(text, 0)
        except (StopIteration, ValueError):
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


def stream_kind(headers: Mapping[str, str]) -> str:
    """What a successful answer to a stream request holds: "sse", "json" or "other"."""
    content_type = str(headers.get("content-type", "")).lower()
    if "event-stream" in content_type:
        return "sse"
    if "json" in content_type:
        return "json"
    return "other"


def not_a_stream_error(
    status: int, headers: Mapping[str, str], body: bytes, redact: Redact
) -> WayGPTError:
    """The error for a successful answer that is not an event stream: the error a JSON
    ``error`` object says (a gateway refusing the stream), else an
    ``APIResponseValidationError`` (a proxy's login page, a plain JSON answer)."""
    content_type = redact(str(headers.get("content-type", "")) or "no Content-Type")
    if stream_kind(headers) != "json":
        return APIResponseValidationError(
            f"expected an event stream (text/event-stream), got {content_type[:100]!r}", status
        )
    _, payload = parse_json(body)
    if isinstance(payload, dict) and payload.get("error") is not None:
        return stream_error(payload, redact)
    return APIResponseValidationError(
        "expected an event stream, got a JSON answer "
        "(does the server support stream=true for this request?)",
        status,
        scrub_value(payload, redact),
    )


def stream_data_error(text: str, payload: Any, status: int, redact: Redact) -> WayGPTError:
    """The error for a stream event whose data is not a JSON object (``payload``: its JSON
    value, or ``_NOT_JSON``), quoting the data."""
    what = "JSON" if payload is _NOT_JSON else "a JSON object"
    value = None if payload is _NOT_JSON else scrub_value(payload, redact)
    return APIResponseValidationError(
        f"stream event is not {what}: {redact(text)[:200]!r}", status, value
    )


class ChatEventParser:
    """The body of a chat stream in, chunk dicts out.

    ``push`` raw body bytes (decoded here when the body has a ``Content-Encoding``), then
    ``pull`` the chunks they complete, a bounded batch at a time, until it returns ``[]``:
    a few KiB of gzip can inflate to millions of tiny events. ``done`` turns true at
    ``data: [DONE]``. The chunks before a failure (an in-stream error, data that is not a JSON
    object, a line over the size cap) come first; ``take_error()`` then gives the failure.
    """

    __slots__ = (
        "_decoder", "_error", "_line_ended", "_raw", "_redact", "_sse", "_status", "done",
    )

    def __init__(self, status: int, content_encoding: Optional[str], redact: Redact) -> None:
        from .sse import SSEDecoder  # (its dataclasses: for streams only)

        self._status = status
        self._redact = redact
        self._sse = SSEDecoder().feed
        decoder = ContentDecoder(content_encoding, status)
        self._decoder: Optional[ContentDecoder] = None if decoder.identity else decoder
        self._raw = b""  # identity bytes pushed and not parsed yet
        self._error: Optional[WayGPTError] = None
        self._line_ended = False
        self.done = False

    def push(self, block: bytes) -> None:
        """Take the next raw bytes of the body; ``pull`` then returns their chunks."""
        if self._decoder is None:
            self._raw = self._raw + block if self._raw else block
        else:
            self._decoder.push(block)

    def pull(self) -> List[ChatCompletionChunk]:
        """The chunks of the next bounded piece of what was pushed; ``[]`` once all is read.

        An identity body is parsed as it was pushed (one transport read, at most 64 KiB); an
        encoded one is inflated 64 KiB at a time, until a piece completes some chunks.
        """
        out: List[ChatCompletionChunk] = []
        if self.done or self._error is not None:
            return out
        try:
            decoder = self._decoder
            if decoder is None:
                block, self._raw = self._raw, b""
                if block:
                    self._chunks(block, out)
                return out
            while not out and not self.done:
                piece = decoder.pull()  # bounded: a compressed bomb never expands at once
                if not piece:
                    break
                self._chunks(piece, out)
        except WayGPTError as error:
            if error.status_code is None and isinstance(error, APIResponseValidationError):
                error.status_code = self._status  # the decoder's cap knows no status
            self._error = error
        return out

    def line_ended(self) -> bool:
        """True when a complete line (an event, a keep-alive comment) arrived since the last
        call."""
        ended, self._line_ended = self._line_ended, False
        return ended

    def take_error(self) -> Optional[WayGPTError]:
        """The failure met after the chunks that ``pull`` returned, if any (then ``done``)."""
        error, self._error = self._error, None
        if error is not None:
            self.done = True
        return error

    def end(self) -> None:
        """The body ended (without ``[DONE]``): a compressed body must be complete."""
        if self._decoder is not None and not self.done:
            self._decoder.finish()

    def _chunks(self, data: bytes, out: List[ChatCompletionChunk]) -> None:
        parse = _stream_json
        events = self._sse(data)
        if events or b"\n" in data or b"\r" in data:
            self._line_ended = True
        for event in events:
            text = event.data
            if text == _STREAM_DONE:
                self.done = True
                return
            kind = event.event
            try:
                payload = parse(text)
            except (ValueError, RecursionError):
                payload = _NOT_JSON
            if type(payload) is dict:
                error = payload.get("error")
                if (error is not None and error is not False) or kind == "error":
                    raise stream_error(payload, self._redact)
                out.append(payload)  # type: ignore[arg-type] # a chunk is a JSON object
            elif kind == "error":
                raise stream_error(text if payload is _NOT_JSON else payload, self._redact)
            elif kind == "message":
                raise stream_data_error(text, payload, self._status, self._redact)
            # else: an event of another type (a ping ...) is skipped
