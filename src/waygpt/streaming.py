"""Streamed chat completions: SSE events in, chunk dicts out, the connection always released.

A :class:`ChatStream` is what ``chat_completions(stream=True)`` returns. Iterate it for chunk
dicts, as with the reference client; use it as a context manager (or call ``close()``) to
release the connection early. The read timeout applies between two reads of the socket, so a
server that keeps the stream open but sends nothing for that long raises ``APITimeoutError``.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Type,
)

import requests

from ._stream_reader import STREAM_DRAIN_BYTES, StreamBodyReader
from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    WayGPTError,
    error_class_for_status,
    redact_error,
)
from .sse import SSEDecoder

__all__ = ["ChatStream", "ChatStreamResult", "collect_chat_stream"]

_STREAM_DONE = "[DONE]"
_STREAM_MESSAGE_LIMIT = 500
_STREAM_JSON_SCAN: Optional[Callable[[str, int], Tuple[Any, int]]] = getattr(
    json.JSONDecoder(), "scan_once", None
)


@dataclass
class ChatStreamResult:
    """A streamed chat gathered into its final form."""

    text: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[Dict[str, Any]] = None
    model: Optional[str] = None
    id: Optional[str] = None
    chunks: int = 0
    role: str = "assistant"


def collect_chat_stream(chunks: Iterable[Dict[str, Any]]) -> ChatStreamResult:
    """Gather chat chunk dicts (of choice 0) into the final text, finish reason and usage.

    ``chunks`` is usually a :class:`ChatStream`; it is read to its end.
    """
    result = ChatStreamResult()
    parts: List[str] = []
    for chunk in chunks:
        result.chunks += 1
        if not isinstance(chunk, dict):
            continue
        result.id = chunk.get("id", result.id)
        result.model = chunk.get("model", result.model)
        if isinstance(chunk.get("usage"), dict):
            result.usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("role"), str) and delta["role"]:
                    result.role = delta["role"]
                if isinstance(delta.get("content"), str):
                    parts.append(delta["content"])
            if choice.get("finish_reason"):
                result.finish_reason = str(choice["finish_reason"])
    result.text = "".join(parts)
    return result


def _stream_short(text: str) -> str:
    text = text.strip()
    if len(text) <= _STREAM_MESSAGE_LIMIT:
        return text
    return text[: _STREAM_MESSAGE_LIMIT - 3] + "..."


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


def _stream_error(payload: Any) -> WayGPTError:
    """The typed error for an ``error`` object sent inside the stream.

    An HTTP-like ``code``/``status`` (429, 503, ...) picks the matching class; without one it
    is a plain ``WayGPTError``. The payload is kept as the error's ``response``.
    """
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
    message = _stream_short(message) or "error in stream"
    # The status: in the error object, else beside it ({"error": "...", "status": 429}).
    code = _stream_status(error)
    if code is None and error is not payload:
        code = _stream_status(payload)
    if code is not None:
        return error_class_for_status(code)(message, code, payload)
    return WayGPTError(message, None, payload)


def _stream_json(text: str) -> Any:
    """``json.loads(text)``, through the C scanner directly when the text is one bare value.

    The event data of a chat stream is one compact JSON object, which the scanner reads in a
    single call; ``json.loads`` adds three Python-level calls and two regex matches per event.
    Anything else (surrounding whitespace, trailing garbage, errors) goes to ``json.loads``,
    so the result and the errors are exactly those of ``json.loads``.
    """
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


def _stream_default_wrap(exc: BaseException) -> WayGPTError:
    return APIConnectionError(f"connection failed: {type(exc).__name__}")


def _stream_transport_error(
    exc: BaseException, wrap: Callable[[BaseException], WayGPTError]
) -> WayGPTError:
    timed_out = "stream read timed out: no data within the read timeout"
    if isinstance(exc, socket.timeout):  # an alias of TimeoutError since Python 3.10
        return APITimeoutError(timed_out)
    error = wrap(exc)
    if isinstance(error, APITimeoutError):
        error.message = timed_out
    else:
        error.message = f"stream interrupted: {error.message}"
    error.args = (error.message,)
    return error


class _StreamControl:
    """What a ChatStream shares with its generator (never the ChatStream itself)."""

    __slots__ = ("closing", "reader")

    def __init__(self) -> None:
        self.closing = False  # close() was called: a failing read then ends the stream quietly
        self.reader: Optional[StreamBodyReader] = None


def _stream_chunks(
    response: requests.Response,
    wrap: Callable[[BaseException], WayGPTError],
    control: _StreamControl,
) -> Generator[Dict[str, Any], None, None]:
    """Yield the chunk dicts of a streamed response; the response is closed at the end.

    A module-level generator that holds no reference to its ChatStream, so that dropping a
    ChatStream (a ``break`` out of a ``for`` loop) finalises it at once and frees the socket.
    """
    try:
        status = int(response.status_code)
        content_type = str(response.headers.get("content-type", "")).lower()
        if "json" in content_type and "event-stream" not in content_type:
            _stream_json_answer(response, status)
            return
        reader = control.reader = StreamBodyReader(response)
        read = reader.read
        feed = SSEDecoder().feed
        parse = _stream_json
        while True:
            try:
                block = read()
            except Exception as exc:  # any transport failure becomes a typed error
                if control.closing:
                    return  # closed from another thread while this one was reading
                if isinstance(exc, WayGPTError):
                    raise
                raise _stream_transport_error(exc, wrap) from exc
            if not block:
                reader.finished()
                return  # a clean end without [DONE] simply ends the stream
            for event in feed(block):
                data = event.data
                if data == _STREAM_DONE:
                    reader.drain()
                    return
                kind = event.event
                try:
                    payload = parse(data)
                except (ValueError, RecursionError):
                    if kind == "message":
                        raise APIResponseValidationError(
                            f"stream event is not JSON: {data[:200]!r}", status
                        ) from None
                    if kind == "error":
                        raise _stream_error(data) from None
                    continue  # an event of another type (a ping ...) with non-JSON data
                if type(payload) is dict:
                    error = payload.get("error")
                    if (error is not None and error is not False) or kind == "error":
                        raise _stream_error(payload)
                    yield payload
                elif kind == "error":
                    raise _stream_error(payload)
                elif kind == "message":
                    raise APIResponseValidationError(
                        f"stream event is not a JSON object: {data[:200]!r}", status, payload
                    )
    finally:
        response.close()


def _stream_json_answer(response: requests.Response, status: int) -> None:
    """A JSON answer where an event stream was expected: its error, or a validation error."""
    try:
        body = response.raw.read(STREAM_DRAIN_BYTES + 1, decode_content=True)
    except Exception:  # noqa: BLE001 - the content type alone says it is not a stream
        body = b""
    try:
        payload = json.loads(body[:STREAM_DRAIN_BYTES])
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict) and payload.get("error") is not None:
        raise _stream_error(payload)
    raise APIResponseValidationError(
        "expected an event stream, got a JSON answer "
        "(does the server support stream=true for this request?)",
        status,
        payload,
    )


class ChatStream:
    """An iterator of chat chunk dicts over one streamed HTTP response.

    Use it in a ``for`` loop, or as a context manager so the connection is released however
    the block is left::

        with client.chat_completions_stream(messages=msgs) as stream:
            for chunk in stream:
                ...

    ``response`` is the ``requests.Response`` (status, headers); ``collect()`` reads the rest
    into a :class:`ChatStreamResult`.

    Raises (while iterating): a ``WayGPTError`` subclass for an ``error`` object in the
    stream (``RateLimitError`` for code 429, ``InternalServerError`` for 5xx, ...),
    ``APIConnectionError``/``APITimeoutError`` when the connection drops or the read timeout
    runs out between two reads, ``APIResponseValidationError`` for data that is not JSON.
    """

    def __init__(
        self,
        response: requests.Response,
        *,
        wrap_transport_error: Optional[Callable[[BaseException], WayGPTError]] = None,
        redact: Optional[Callable[[str], str]] = None,
    ) -> None:
        self.response = response
        self._control = _StreamControl()
        self._chunks = _stream_chunks(
            response, wrap_transport_error or _stream_default_wrap, self._control
        )
        self._closed = False
        self._redact = redact

    @property
    def status_code(self) -> int:
        return int(self.response.status_code)

    @property
    def headers(self) -> Any:
        return self.response.headers

    @property
    def request_id(self) -> Optional[str]:
        return self.response.headers.get("x-request-id")

    @property
    def closed(self) -> bool:
        """True once the stream was closed, ended, or failed."""
        return self._closed or getattr(self._chunks, "gi_frame", None) is None

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        try:
            return next(self._chunks)
        except WayGPTError as error:
            # An error event or a bad line may echo what was sent (project key, JWT).
            if self._redact is not None:
                redact_error(error, self._redact)
            raise

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A stream abandoned half-read (a `break` out of its loop) must not pin its connection.
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # noqa: BLE001, S110 - nothing can be raised from __del__
                pass

    def close(self) -> None:
        """Release the connection; iterating afterwards ends at once. Safe to call twice.

        It may be called from another thread while one is iterating (a "stop" button): that
        loop then ends quietly.
        """
        if self._closed:
            return
        self._closed = True
        self._control.closing = True
        try:
            self._chunks.close()
        except ValueError:  # "generator already executing": being read in another thread
            reader = self._control.reader
            if reader is not None:
                reader.interrupt()  # its blocked read returns, and its loop ends quietly
        finally:
            self.response.close()

    def collect(self) -> ChatStreamResult:
        """Read the rest of the stream into a :class:`ChatStreamResult`, then close it."""
        with self:
            return collect_chat_stream(self)
