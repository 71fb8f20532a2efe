"""Streamed chat completions: SSE events in, chunk dicts out, the connection always released.

A :class:`ChatStream` is what ``chat_completions(stream=True)`` returns. Iterate it for chunk
dicts, as with the reference client; use it as a context manager (or call ``close()``) to
release the connection early. The read timeout applies between two reads of the socket, so a
server that keeps the stream open but sends nothing for that long raises ``APITimeoutError``.

How the bytes are read matters for both latency and CPU:

* Every read returns whatever the socket has (``read1``), never waiting for a fixed-size block
  to fill, so an event is yielded as soon as its blank line arrives, whatever the framing.
* A chunked body (the usual framing of a stream) is de-chunked here, from the connection's
  buffered reader, in blocks of up to 64 KiB: ``http.client`` would hand over one HTTP chunk,
  that is one event, per call, and that per-call overhead would outweigh the parsing itself.
* When the body is fully read (a ``[DONE]`` is normally followed at once by the end of the
  body), the connection goes back to the pool for the next request; a stream left half-read
  closes its connection instead.
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

from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    WayGPTError,
    error_class_for_status,
)
from .sse import SSEDecoder

__all__ = ["ChatStream", "ChatStreamResult", "collect_chat_stream"]

_STREAM_READ_SIZE = 64 * 1024
_STREAM_DONE = "[DONE]"
# After [DONE], how long and how much the stream waits for the end of the body so that the
# connection can be reused; past either bound the connection is simply closed.
_STREAM_DRAIN_SECONDS = 0.1
_STREAM_DRAIN_BYTES = 64 * 1024
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


class _ChunkedBody:
    """A chunked HTTP body read straight from the connection's buffered reader.

    ``read()`` returns the data of whatever chunks (or parts of a chunk) the next read of the
    socket delivered, joined, and ``b""`` after the last chunk and its trailers.
    """

    __slots__ = ("_crlf", "_left", "_pending", "_read1", "_trailers", "done")

    def __init__(self, reader: Any) -> None:
        self._read1: Callable[[int], bytes] = reader.read1
        self._pending = b""  # framing bytes not parsed yet (a size line cut by the read)
        self._left = 0  # bytes of the current chunk's data still to come
        self._crlf = False  # the CRLF ending a chunk's data is still to come
        self._trailers = False  # the last chunk was read: trailer lines until a blank one
        self.done = False

    def read(self) -> bytes:
        while not self.done:
            block = self._read1(_STREAM_READ_SIZE)
            if not block:
                raise APIConnectionError(
                    "connection closed mid-stream (the chunked body was cut off)"
                )
            data = self._parse(block)
            if data:
                return data
        return b""

    def _parse(self, block: bytes) -> bytes:
        if self._pending:
            block = self._pending + block
            self._pending = b""
        out: List[bytes] = []
        pos = 0
        size = len(block)
        left = self._left
        while pos < size:
            if left:  # chunk data
                stop = pos + left
                if stop > size:
                    out.append(block[pos:] if pos else block)
                    left = stop - size
                    break
                out.append(block[pos:stop])
                pos = stop
                left = 0
                self._crlf = True
                continue
            eol = block.find(b"\n", pos)
            if eol < 0:
                if size - pos > 4096:
                    raise APIConnectionError("malformed chunked body (a framing line is too long)")
                self._pending = block[pos:]
                break
            line = block[pos:eol]
            pos = eol + 1
            if self._crlf:  # the line ending a chunk's data: must be empty
                self._crlf = False
                if line not in (b"", b"\r"):
                    raise APIConnectionError("malformed chunked body (no CRLF after a chunk)")
                continue
            if self._trailers:
                if line in (b"", b"\r"):
                    self.done = True
                    break
                continue
            try:
                left = int(line.split(b";", 1)[0], 16)
            except ValueError:
                left = -1
            if left < 0:
                raise APIConnectionError(f"malformed chunked body (chunk size {line[:40]!r})")
            if left == 0:
                self._trailers = True
        self._left = left
        return b"".join(out) if len(out) != 1 else out[0]


def _stream_raw_socket(raw: Any) -> Optional[socket.socket]:
    """The socket under a urllib3 response: its connection's, else its reader's."""
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if not isinstance(sock, socket.socket):  # a close-delimited answer owns the socket alone
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _stream_plain_reader(raw: Any) -> Optional[Any]:
    """The ``http.client`` response under urllib3's, when its body can be read directly.

    Only for an unencoded body that nothing has read yet; otherwise None and urllib3 reads.
    """
    fp = getattr(raw, "_fp", None)
    if fp is None or getattr(fp, "fp", None) is None or not hasattr(fp.fp, "read1"):
        return None
    encoding = str(raw.headers.get("content-encoding", "identity")).strip().lower()
    if encoding not in ("", "identity"):
        return None
    if getattr(fp, "chunked", False) and getattr(fp, "chunk_left", None) is not None:
        return None  # http.client has started on the chunks
    if getattr(raw, "_fp_bytes_read", None):
        return None  # urllib3 has read some of the body
    return fp


class _StreamReader:
    """The byte source of one streamed response; knows how to finish and release it."""

    def __init__(self, response: requests.Response) -> None:
        raw = response.raw
        self._raw = raw
        try:
            self._fp = _stream_plain_reader(raw)
        except Exception:  # noqa: BLE001 - not urllib3 over http.client: use the generic reads
            self._fp = None
        self._chunked: Optional[_ChunkedBody] = None
        self.read: Callable[[], bytes]
        if self._fp is not None and getattr(self._fp, "chunked", False) is True:
            self._chunked = _ChunkedBody(self._fp.fp)
            self.read = self._chunked.read
        elif hasattr(raw, "read1"):
            self.read = self._read_urllib3
        elif self._fp is not None:  # urllib3 1.26 has no read1 of its own
            self.read = self._read_http_client
        elif hasattr(raw, "stream"):
            chunks = raw.stream(_STREAM_READ_SIZE, decode_content=True)
            self.read = lambda: next(chunks, b"")
        else:
            self.read = lambda: raw.read(_STREAM_READ_SIZE) or b""

    def _read_urllib3(self) -> bytes:
        # requests asks urllib3 not to decode; a compressed stream is decoded here.
        return self._raw.read1(_STREAM_READ_SIZE, decode_content=True)

    def _read_http_client(self) -> bytes:
        assert self._fp is not None
        data: bytes = self._fp.read1(_STREAM_READ_SIZE)
        if not data and self._fp.length:  # http.client reads a short body without a word
            raise APIConnectionError(
                "connection closed mid-stream (the body is shorter than its Content-Length)"
            )
        return data

    def finished(self) -> None:
        """The body was read to its end: hand the connection back to the pool."""
        if self._fp is not None:
            # Closing the http.client response closes its reader, not the socket.
            self._fp.close()
        if self._fp is None or self._fp.isclosed():
            release = getattr(self._raw, "release_conn", None)
            if release is not None:
                release()

    def drain(self) -> None:
        """After [DONE]: read the (normally empty) rest of the body, within small bounds.

        When the body ends in time, the connection goes back to the pool; otherwise it is
        left to be closed.
        """
        raw = self._raw
        if self._chunked is None and getattr(raw, "length_remaining", None) is None:
            return  # close-delimited: this connection cannot be reused anyway
        if self._fp is not None and self._fp.isclosed():
            return  # nothing left to read (or to reuse)
        sock = _stream_raw_socket(raw)
        if sock is None:
            return
        previous = sock.gettimeout()
        ended = False
        try:
            limit = _STREAM_DRAIN_SECONDS
            sock.settimeout(limit if previous is None else min(previous, limit))
            total = 0
            while total <= _STREAM_DRAIN_BYTES:
                data = self.read()
                if not data:
                    ended = True
                    break
                total += len(data)
        except Exception:  # noqa: BLE001, S110 - any trouble here: the connection is closed
            pass
        finally:
            try:
                sock.settimeout(previous)  # before the pool can hand the socket to anyone
            except OSError:
                ended = False
        if ended:
            self.finished()

    def interrupt(self) -> None:
        """Wake a read blocked in another thread (used by ``ChatStream.close``)."""
        shutdown = getattr(self._raw, "shutdown", None)  # urllib3 >= 2.3
        try:
            if shutdown is not None:
                shutdown()
                return
            sock = _stream_raw_socket(self._raw)
            if sock is not None:
                sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


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
        self.reader: Optional[_StreamReader] = None


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
        reader = control.reader = _StreamReader(response)
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
        body = response.raw.read(_STREAM_DRAIN_BYTES + 1, decode_content=True)
    except Exception:  # noqa: BLE001 - the content type alone says it is not a stream
        body = b""
    try:
        payload = json.loads(body[:_STREAM_DRAIN_BYTES])
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
                error.message = self._redact(error.message)
                error.args = (error.message,)
                if error.body is not None:
                    error.body = self._redact(error.body)
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
