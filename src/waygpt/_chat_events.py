"""A chat stream's body in, chunk dicts out: the parser both streams share (no I/O here).

Each event's data becomes a chunk dict; an in-stream error the typed error it stands for
(``stream_error``); anything else a chat stream must not hold an ``APIResponseValidationError``.
Every text an error keeps goes through the call's ``redact`` before it is cut.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional

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
_STREAM_JSON_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined] # (untyped)
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
    text = "" if error is None or error is True else error
    if isinstance(error, dict):
        found = (error[key] for key in ("message", "detail", "msg", "type") if error.get(key))
        text = next(found, "")
    message = text if isinstance(text, str) else json.dumps(text)
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
    try:
        value, end = _STREAM_JSON_SCAN(text, 0)
    except (StopIteration, ValueError):
        pass
    else:
        if end == len(text):
            return value
    return json.loads(text)


def not_a_stream_error(
    status: int, headers: Mapping[str, str], body: Optional[bytes], redact: Redact
) -> WayGPTError:
    """The error for a successful answer that is not an event stream (``body``: its JSON body,
    None when it is not JSON): the error a JSON ``error`` object says (a gateway refusing the
    stream), else an ``APIResponseValidationError`` (a proxy's login page, a plain answer)."""
    if body is None:
        content_type = redact(str(headers.get("content-type", "")) or "no Content-Type")
        return APIResponseValidationError(
            f"expected an event stream (text/event-stream), got {content_type[:100]!r}", status
        )
    _, payload = parse_json(body)
    if isinstance(payload, dict) and payload.get("error") is not None:
        return stream_error(payload, redact)
    return APIResponseValidationError(
        "expected an event stream, got a JSON answer "
        "(does the server support stream=true for this request?)",
        status, scrub_value(payload, redact),
    )


class ChatEventParser:
    """The body of a chat stream in, chunk dicts out.

    ``push`` raw body bytes (decoded here when the body has a ``Content-Encoding``), then
    ``pull`` the chunks they complete, a bounded batch at a time, until it returns ``[]``:
    a few KiB of gzip can inflate to millions of tiny events. ``done`` turns true at
    ``data: [DONE]``. The chunks before a failure (an in-stream error, data that is not a JSON
    object, a line over the size cap) come first; ``take_error()`` then gives the failure.
    """

    __slots__ = ("_decoder", "_error", "_line_ended", "_raw", "_redact", "_sse", "_status", "done")

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
        """The chunks of the next bounded piece of what was pushed; ``[]`` once all is read: an
        identity body as pushed (one transport read, at most 64 KiB), an encoded one inflated
        64 KiB at a time until a piece completes some chunks."""
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
        """Whether a complete line (an event, a keep-alive comment) arrived since the last call."""
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
            elif kind == "message":  # data that is not a JSON object, quoted
                what = "JSON" if payload is _NOT_JSON else "a JSON object"
                value = None if payload is _NOT_JSON else scrub_value(payload, self._redact)
                raise APIResponseValidationError(
                    f"stream event is not {what}: {self._redact(text)[:200]!r}", self._status, value
                )
            # else: an event of another type (a ping ...) is skipped
