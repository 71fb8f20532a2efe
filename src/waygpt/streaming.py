"""Streamed chat completions: SSE events in, chunk dicts out, the connection always released.

A :class:`ChatStream` is what ``chat_completions(stream=True)`` returns (an
:class:`AsyncChatStream` on the async client). Iterate it for chunk dicts, as with the
reference client; use it as a context manager (or call ``close()``) to release the
connection early. The read timeout bounds each wait for bytes and each wait for a complete
line, so a server that keeps the stream open but sends nothing raises ``APITimeoutError``.

Nothing here knows an HTTP library: :class:`ChatEventParser` turns body bytes into chunk dicts
for both streams, and each stream reads its bytes from the *answer* its transport built
(:class:`Answer`, :class:`AsyncAnswer`), through the same ``read`` the pipeline uses.
"""

from __future__ import annotations

import json
import threading
import time
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generator,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Protocol,
    Tuple,
    Type,
    Union,
)

from ._body import ContentDecoder
from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    StreamInterruptedError,
    TransportFailure,
    WayGPTError,
    error_class_for_status,
    forget_internal_locals,
    parse_json,
    redact_error,
    request_id_of,
    scrub_value,
)

__all__ = ["AsyncChatStream", "ChatStream"]

if TYPE_CHECKING:
    from ._chat_result import ChatStreamResult
    from .types import ChatCompletionChunk

_STREAM_DONE = "[DONE]"
_STREAM_MESSAGE_LIMIT = 500
_STREAM_JSON_SCAN: Optional[Callable[[str, int], Tuple[Any, int]]] = getattr(
    json.JSONDecoder(), "scan_once", None
)
_NOT_JSON: Any = object()


def _stream_short(text: str) -> str:
    """``text`` stripped and cut to the message bound (its secrets replaced before)."""
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


def stream_error(payload: Any, redact: Optional[Callable[[str], str]] = None) -> WayGPTError:
    """The typed error for an ``error`` object sent inside the stream.

    An HTTP-like ``code``/``status`` (429, 503, ...) picks the matching class; without one it
    is a plain ``WayGPTError``. The payload is kept as the error's ``response``. ``redact``
    replaces secrets in the payload before the message is taken from it and cut.
    """
    if redact is not None:
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
    if redact is not None:  # the message may be new text (JSON of a field): redacted too
        message = redact(message)
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


def stream_kind(headers: Mapping[str, str]) -> str:
    """What a successful answer to a stream request holds: "sse", "json" or "other"."""
    content_type = str(headers.get("content-type", "")).lower()
    if "event-stream" in content_type:
        return "sse"
    if "json" in content_type:
        return "json"
    return "other"


def not_a_stream_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    redact: Optional[Callable[[str], str]] = None,
) -> WayGPTError:
    """The error for a successful answer that is not an event stream.

    A JSON body holding an ``error`` object raises that error (a gateway that refuses the
    stream before starting it); anything else (a proxy's HTML login page, a plain JSON
    answer) is an ``APIResponseValidationError`` rather than an empty stream. ``redact``
    replaces secrets in what the error keeps, before anything is cut.
    """
    content_type = str(headers.get("content-type", "")) or "no Content-Type"
    if stream_kind(headers) != "json":
        if redact is not None:
            content_type = redact(content_type)
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
        payload if redact is None else scrub_value(payload, redact),
    )


def stream_data_error(
    text: str, payload: Any, status: int, redact: Optional[Callable[[str], str]] = None
) -> APIResponseValidationError:
    """The error for a stream event whose data is not a JSON object.

    ``payload`` is the data's JSON value, or ``_NOT_JSON``. The data is quoted in the
    message, its secrets replaced before it is cut.
    """
    what = "JSON" if payload is _NOT_JSON else "a JSON object"
    value = None if payload is _NOT_JSON else payload
    if redact is not None:
        text = redact(text)
        value = scrub_value(value, redact)
    return APIResponseValidationError(f"stream event is not {what}: {text[:200]!r}", status, value)


class ChatEventParser:
    """The body of a chat stream in, chunk dicts out; shared by the sync and async streams.

    ``push`` raw body bytes (decoded here when the body has a ``Content-Encoding``), then
    ``pull`` the chunks they complete, a bounded batch at a time, until it returns ``[]``:
    a few KiB of gzip can inflate to millions of tiny events, and holding all their dicts at
    once would take hundreds of MB. ``done`` turns true at ``data: [DONE]``. When the bytes
    also hold a failure (an in-stream error, data that is not a JSON object, a line or event
    over the size cap), the chunks before it are returned first and ``check()``, called after
    they have been handed out, raises it. ``line_ended()`` tells whether a complete line (an
    event, a keep-alive comment) arrived since it was last asked.
    """

    __slots__ = (
        "_decoder", "_error", "_line_ended", "_raw", "_redact", "_sse", "_status", "done",
    )

    def __init__(
        self,
        status: int,
        content_encoding: Optional[str],
        redact: Optional[Callable[[str], str]] = None,
    ) -> None:
        # Imported here: the SSE module (and its dataclasses) is needed by streams only.
        from .sse import SSEDecoder

        self._status = status
        self._redact = redact  # secrets out of an error's texts before they are cut
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
        """True when a complete line arrived since the last call."""
        ended, self._line_ended = self._line_ended, False
        return ended

    def take_error(self) -> Optional[WayGPTError]:
        """The failure met after the chunks that ``pull`` returned, if any (then ``done``)."""
        error, self._error = self._error, None
        if error is not None:
            self.done = True
        return error

    def check(self) -> None:
        """Raise the failure met after the chunks that ``pull`` returned, if any."""
        error = self.take_error()
        if error is not None:
            raise error

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


class Answer(Protocol):
    """What a :class:`ChatStream` reads its body from: the requests transport's answer."""

    @property
    def response(self) -> Any:
        """The HTTP library's response."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def read(self) -> bytes:
        """The next raw bytes, as soon as some arrive; b"" at the end. Raises TransportFailure."""

    def finished(self) -> None:
        """The body was read to its end: the connection may be reused."""

    def drain(self) -> None:
        """After ``[DONE]``: read the rest of the body within small bounds, then release."""

    def interrupt(self) -> None:
        """Wake a read blocked in another thread."""

    def close(self) -> None:
        """Release the connection (closed unless the body was read to its end)."""


class AsyncAnswer(Protocol):
    """What an :class:`AsyncChatStream` reads its body from: the aiohttp transport's answer."""

    @property
    def response(self) -> Any:
        """The HTTP library's response."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes:
        """The next raw bytes, as soon as some arrive; b"" at the end. Raises TransportFailure."""

    async def drain(self) -> None:
        """After ``[DONE]``: wait a little for the end of the body, so it can be reused."""

    def close(self) -> None:
        """Release the connection (back to the pool when the body was read to its end)."""


class _StreamState:
    """What a ChatStream shares with its generator (never the ChatStream itself): the answer
    being read (a new one when the stream starts again), whether ``close()`` was called, and
    the call's trace span, if any."""

    __slots__ = ("answer", "closing", "span", "wake")

    def __init__(self, answer: Any, span: Any) -> None:
        self.answer = answer
        self.closing = False  # close() was called: a failing read then ends the stream quietly
        self.span = span  # ended once, however the stream ends
        self.wake: Optional[threading.Event] = None  # set by close(): the wait to restart ends

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` before the stream starts again; False, at once, when ``close()``
        is called meanwhile (from another thread: a "stop" button)."""
        wake = self.wake = threading.Event()
        if not self.closing:  # (close() sets closing, then reads wake: one of them sees it)
            wake.wait(seconds)
        return not self.closing

    def close(self) -> None:
        """``close()`` was called: end a wait to restart, and what comes after it."""
        self.closing = True
        wake = self.wake
        if wake is not None:
            wake.set()

    def handed_out(self, chunks: List[ChatCompletionChunk]) -> Iterable[ChatCompletionChunk]:
        """``chunks``, each seen by the trace span as it is handed out."""
        span = self.span
        return chunks if span is None else _each_seen(span, chunks)

    def end_span(self, error: Optional[BaseException] = None) -> None:
        """The stream ended: by ``error``, or (None) read to its end, closed or dropped."""
        span = self.span
        if span is not None and not span.ended:
            if error is None or isinstance(error, GeneratorExit):
                span.end()
            else:
                span.fail(error)


def _each_seen(span: Any, chunks: List[ChatCompletionChunk]) -> Iterator[ChatCompletionChunk]:
    for chunk in chunks:
        span.chunk(chunk)
        yield chunk


class Restart(Protocol):
    """How a stream that failed before its first content starts again (``_core.StreamRestart``)."""

    transport: Any
    deadline: Any
    state: Any  # the call's CallState: its attempts, id and span

    def delay(self, error: WayGPTError) -> Optional[float]:
        """Seconds to wait before starting again after ``error``; None to raise it."""

    def steps(self) -> Any:
        """The pipeline of the next attempt, for ``transport.run``."""


def stream_failure_error(failure: TransportFailure) -> WayGPTError:
    """The typed error for a stream's connection failing after its headers (both streams)."""
    if failure.timed_out:
        return APITimeoutError("stream read timed out: no data within the read timeout")
    return failure.to_error("stream interrupted: ")


# Content-less chunks (a role, an empty delta) held back before the first content, at most:
# past this many, they are handed out and the stream is no longer started again.
_HELD_LIMIT = 64
# The partial answer kept for an error keeps at most this much text (characters).
_PARTIAL_TEXT_LIMIT = 16 * 1024 * 1024


def _has_content(chunk: Any) -> bool:
    """Whether a chunk carries some of the answer: any delta field but its role."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role"):
            return True
    return False


class Delivery:
    """Which chunks a stream hands to its caller, and what they add up to (both streams).

    Before the first chunk with content, chunks are held back: a stream that fails then can
    start again without repeating them. From the first content on, every chunk is handed
    out once, and gathered as ``collect()`` gathers chunks (the text kept up to 16 M
    characters) for the ``partial`` answer of an error, since the stream is then never
    started again.
    """

    __slots__ = ("_gathered", "_held", "content")

    def __init__(self) -> None:
        from ._chat_result import ChatStreamCollector

        self._held: List[ChatCompletionChunk] = []
        self._gathered = ChatStreamCollector(_PARTIAL_TEXT_LIMIT)
        self.content = False  # a chunk with content was handed out

    def release(self, chunks: List[ChatCompletionChunk]) -> List[ChatCompletionChunk]:
        """The chunks of a parsed batch to hand out now (none while all lack content)."""
        if not self.content:
            chunks = self._gate(chunks)
            if not chunks:
                return chunks
        self._gathered.extend(chunks)
        return chunks

    def flush(self) -> List[ChatCompletionChunk]:
        """At the stream's clean end: the chunks still held (it had no content at all)."""
        held, self._held = self._held, []
        self._gathered.extend(held)
        return held

    def drop_held(self) -> None:
        """The stream starts again: what it held will come again."""
        self._held = []

    def failed(self, error: WayGPTError) -> WayGPTError:
        """The error to raise for ``error`` once content was handed out: with ``partial``.

        A dropped connection becomes a :class:`StreamInterruptedError`; any other error
        (a timeout, an in-stream error) keeps its type and gets ``partial`` as well.
        """
        partial = self.partial()
        if type(error) is APIConnectionError:
            error = StreamInterruptedError(
                f"{error.message} (after {partial.chunks} chunks: the answer is incomplete, "
                "and was not retried; .partial holds what arrived)",
                partial=partial,
            )
        error.partial = partial
        return error

    def partial(self) -> ChatStreamResult:
        """What was handed out, gathered as ``collect()`` would have gathered it."""
        return self._gathered.result()

    def _gate(self, chunks: List[ChatCompletionChunk]) -> List[ChatCompletionChunk]:
        held = self._held
        for index, chunk in enumerate(chunks):
            if _has_content(chunk) or len(held) >= _HELD_LIMIT:
                self.content = True
                out = held + chunks[index:]
                self._held = []
                return out
            held.append(chunk)
        return []


class LineWait:
    """How long a stream has been waiting for its next complete line (both streams).

    The read timeout bounds each wait for bytes; this bounds the wait for a *line*, so that a
    server trickling a byte now and then into a line that never ends cannot hold a stream
    for ever. Only time spent reading counts: the caller's own time between two chunks
    never makes a stream time out.
    """

    __slots__ = ("_since", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._since: Optional[float] = None

    def reset(self) -> None:
        """The stream starts again on a new answer: no wait is on."""
        self._since = None

    def reading(self) -> None:
        """A read begins: the wait starts now, unless it is still on from an earlier read."""
        if self._since is None:
            self._since = time.monotonic()

    def overdue(self, parser: ChatEventParser) -> Optional[APITimeoutError]:
        """After the bytes read were parsed: the error when no line ended for too long."""
        if parser.line_ended() or self._since is None:
            self._since = None
            return None
        if time.monotonic() - self._since < self._timeout:
            return None
        return APITimeoutError(
            f"stream read timed out: no complete line within the read timeout "
            f"({self._timeout:g} s)"
        )


def _stream_chunks(
    state: _StreamState,
    parser: ChatEventParser,
    wait: LineWait,
    delivery: Delivery,
    restart: Optional[Restart],
) -> Generator[ChatCompletionChunk, None, None]:
    """Yield the chunk dicts of a streamed body; the answer is closed at the end.

    A module-level generator that holds no reference to its ChatStream, so that dropping a
    ChatStream (a ``break`` out of a ``for`` loop) finalises it at once and frees the socket.
    A failure before the first content starts the call again, within its retry budget.
    """
    try:
        while True:
            answer = state.answer
            wait.reading()
            try:
                block = answer.read()
            except TransportFailure as failure:
                if state.closing:
                    return  # closed from another thread while this one was reading
                error: Optional[WayGPTError] = stream_failure_error(failure)
            else:
                if not block:
                    parser.end()
                    yield from state.handed_out(delivery.flush())
                    answer.finished()
                    return  # a clean end without [DONE] simply ends the stream
                parser.push(block)
                chunks = parser.pull()
                while chunks:  # handed out a batch at a time, as they are parsed
                    yield from state.handed_out(delivery.release(chunks))
                    chunks = parser.pull()
                error = parser.take_error()
                if error is None:
                    if parser.done:
                        yield from state.handed_out(delivery.flush())
                        answer.drain()
                        return
                    error = wait.overdue(parser)
                    if error is None:
                        continue
            assert error is not None
            if delivery.content:
                raise delivery.failed(error)
            delay = restart.delay(error) if restart is not None else None
            if restart is None or delay is None:
                raise error  # outside the except block: no transport exception is chained
            answer.close()
            if not state.pause(delay):
                return  # closed while waiting: the next attempt is never sent
            try:
                state.answer, parser = restart.transport.run(restart.steps(), restart.deadline)
            except WayGPTError:
                if state.closing:
                    return  # closed while it was sent: how it failed is no longer news
                raise
            if state.closing:
                return  # closed while it was sent: its answer is closed below
            delivery.drop_held()
            wait.reset()
    except BaseException as failure:  # an error, or GeneratorExit: closed or dropped
        state.end_span(failure)
        raise
    finally:
        state.end_span()
        state.answer.close()


class _StreamBase:
    """What both streams show of their answer: status, headers, request id, ``closed``."""

    def __init__(
        self, answer: Any, redact: Optional[Callable[[str], str]], restart: Optional[Restart]
    ) -> None:
        self._call = restart.state if restart is not None else None  # the call's CallState
        self._state = _StreamState(answer, getattr(self._call, "span", None))
        self._redact = redact
        self._closed = False

    @property
    def response(self) -> Any:
        """The HTTP library's response (of the last attempt, when the stream started again)."""
        return self._state.answer.response

    @property
    def status_code(self) -> int:
        status: int = self._state.answer.status
        return status

    @property
    def headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self._state.answer.headers
        return headers

    @property
    def request_id(self) -> Optional[str]:
        """The server's ``X-Request-ID`` for this stream, if it sent one."""
        return request_id_of(self.headers)

    @property
    def closed(self) -> bool:
        """True once the stream was closed, ended, or failed."""
        return self._closed

    def _failed(self, error: WayGPTError) -> None:
        """Make ``error`` fit to leave the stream: redacted, the stream's frames cleared.

        An error a hook raised (when the stream started again) is left as it is.
        """
        call = self._call
        if call is not None and id(error) == call.hook_error_id:
            self._state.end_span(error)
            return
        if error.request_id is None:  # (a header, which may echo a secret as well)
            error.request_id = request_id_of(self.headers)
        # An error event or a bad line may echo what was sent (project key, JWT).
        if self._redact is not None:
            redact_error(error, self._redact)
        forget_internal_locals(error)  # the raw blocks the stream's frames read
        if call is not None:  # every error says which call it was, as a plain call's does
            error.attempts = call.attempts
            error.client_request_id = call.client_request_id or None
        self._state.end_span(error)

    def __del__(self) -> None:
        # A stream abandoned half-read (a `break` out of its loop) must not pin its connection.
        if not getattr(self, "_closed", True):
            try:
                self._state.end_span()
                self._release()
            except Exception:  # noqa: BLE001, S110 - nothing can be raised from __del__
                pass

    def _release(self) -> None:
        raise NotImplementedError


class ChatStream(_StreamBase):
    """An iterator of chat chunk dicts over one streamed HTTP response.

    Use it in a ``for`` loop, or as a context manager so the connection is released however
    the block is left::

        with client.chat_completions_stream(messages=msgs) as stream:
            for chunk in stream:
                ...

    ``response`` is the HTTP library's response (status, headers); ``collect()`` reads the
    rest into a :class:`ChatStreamResult`.

    A stream that fails before its first content (the connection cut, an in-stream 429 or
    5xx) is started again, within ``max_retries`` and ``total_timeout``; chunks without
    content that came before are not repeated. After the first content nothing is retried.

    Raises (while iterating): a ``WayGPTError`` subclass for an ``error`` object in the
    stream (``RateLimitError`` for code 429, ``InternalServerError`` for 5xx, ...),
    ``APIConnectionError``/``APITimeoutError`` when the connection drops, or when the read
    timeout runs out between two reads or since the last complete line (an event or a
    keep-alive comment), ``APIResponseValidationError`` for data that is not JSON, or a
    line or event over 16 MiB. After content, a dropped connection raises
    :class:`StreamInterruptedError`, and every error carries ``partial``, the
    :class:`ChatStreamResult` of what was handed out.
    """

    def __init__(
        self,
        answer: Answer,
        parser: ChatEventParser,
        *,
        read_timeout: float,
        redact: Optional[Callable[[str], str]] = None,
        restart: Optional[Restart] = None,
    ) -> None:
        super().__init__(answer, redact, restart)
        self._chunks = _stream_chunks(
            self._state, parser, LineWait(read_timeout), Delivery(), restart
        )

    @property
    def closed(self) -> bool:
        """True once the stream was closed, ended, or failed."""
        return self._closed or getattr(self._chunks, "gi_frame", None) is None

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        try:
            return next(self._chunks)
        except WayGPTError as error:
            self._failed(error)
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

    def _release(self) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection; iterating afterwards ends at once. Safe to call twice.

        It may be called from another thread while one is iterating (a "stop" button): that
        loop then ends quietly, and a stream waiting to start again sends nothing more.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        state.close()
        if self._call is not None:
            self._call.stopped = True  # a restart's own retries send nothing more either
        try:
            self._chunks.close()
        except ValueError:  # "generator already executing": being read in another thread
            state.answer.interrupt()  # its blocked read returns, and its loop ends quietly
        finally:
            state.end_span()  # (a generator closed before it started runs no finally)
            state.answer.close()

    def collect(self) -> ChatStreamResult:
        """Read the rest of the stream into a :class:`ChatStreamResult`, then close it."""
        from ._chat_result import collect_chat_stream

        with self:
            return collect_chat_stream(self)


class AsyncChatStream(_StreamBase):
    """An async iterator of chat chunk dicts over one streamed HTTP response.

    ``async for chunk in stream``; ``async with stream`` (or ``await stream.close()``)
    releases the connection however the block is left; ``await stream.collect()`` reads the
    rest into a :class:`ChatStreamResult`. A task cancelled while it waits for the next chunk
    releases the connection and gets its ``CancelledError`` unchanged.

    Starts again, and raises (while iterating), as :class:`ChatStream`.
    """

    def __init__(
        self,
        answer: AsyncAnswer,
        parser: ChatEventParser,
        *,
        read_timeout: float,
        redact: Optional[Callable[[str], str]] = None,
        restart: Optional[Restart] = None,
    ) -> None:
        super().__init__(answer, redact, restart)
        self._parser = parser
        self._wait = LineWait(read_timeout)
        self._delivery = Delivery()
        self._restart = restart
        self._ready: List[ChatCompletionChunk] = []  # chunks read but not yet handed out
        self._next = 0
        self._sleeping: Any = None  # the wait before a restart, which close() ends

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        ready = self._ready
        if self._next < len(ready):
            chunk = ready[self._next]
            self._next += 1
        else:
            try:
                chunk = await self._read_more()
            except WayGPTError as error:
                self._failed(error)
                raise
        span = self._state.span
        if span is not None:  # as it is handed out
            span.chunk(chunk)
        return chunk

    async def _read_more(self) -> ChatCompletionChunk:
        delivery = self._delivery
        while True:
            parser = self._parser
            chunks = delivery.release(parser.pull())  # the next batch of what was read
            if chunks:
                self._ready, self._next = chunks, 1
                return chunks[0]
            error = parser.take_error()  # the failure that followed the chunks handed out
            if error is None:
                if parser.done:
                    return await self._end(drain=True)
                error = self._wait.overdue(parser)
            if error is None:
                block = await self._read()
                if block is None:  # closed by another task while this one waited
                    raise StopAsyncIteration
                if isinstance(block, WayGPTError):
                    error = block
                elif not block:
                    parser.end()
                    return await self._end(drain=False)
                else:
                    parser.push(block)
                    continue
            await self._fail(error)

    async def _read(self) -> Union[bytes, WayGPTError, None]:
        """The next bytes of the answer, the error when its connection failed, or None when
        the stream was closed meanwhile."""
        if self._closed:
            return None
        self._wait.reading()
        try:
            block: bytes = await self._state.answer.read()
        except TransportFailure as failure:
            return None if self._closed else stream_failure_error(failure)
        except BaseException as cancelled:  # release the connection, let it propagate as is
            self._state.end_span(cancelled)
            self._release()
            raise
        return block

    async def _end(self, *, drain: bool) -> ChatCompletionChunk:
        """The stream ended cleanly: what it held back, then the end of the iteration."""
        held = self._delivery.flush()
        if held:
            self._ready, self._next = held, 1
            return held[0]
        try:
            if drain and not self._closed:
                await self._state.answer.drain()  # so that the connection can be reused
        finally:  # cancelled while draining: released all the same
            self._state.end_span()
            self._release()
        raise StopAsyncIteration

    async def _fail(self, error: WayGPTError) -> None:
        """Raise ``error``, or start the stream again when nothing was handed out yet."""
        restart = self._restart
        delivery = self._delivery
        if delivery.content:
            self._release()
            raise delivery.failed(error)
        delay = restart.delay(error) if restart is not None else None
        if restart is None or delay is None:
            self._release()
            raise error
        self._state.answer.close()
        try:
            if await self._pause(restart, delay):
                self._state.answer, self._parser = await restart.transport.run(
                    restart.steps(), restart.deadline
                )
        except BaseException as stopped:  # the new attempt failed too, or the task was cancelled
            # (A failure after close() is no longer news: the iteration ends quietly below.)
            if not self._closed or not isinstance(stopped, WayGPTError):
                self._state.end_span(stopped)
                self._release()
                raise
        if self._closed:  # by another task, while this one waited or sent the new attempt
            self._state.answer.close()
            raise StopAsyncIteration
        delivery.drop_held()
        self._wait.reset()

    async def _pause(self, restart: Restart, seconds: float) -> bool:
        """Wait ``seconds`` before the stream starts again; False, at once, when another
        task closes the stream meanwhile (a "stop" button)."""
        import asyncio  # (imported already by the async client: this module does not need it)

        sleeping = asyncio.ensure_future(restart.transport.sleep(seconds))
        self._sleeping = sleeping
        try:
            await asyncio.wait((sleeping,))  # cancelled by close(), or this task cancelled
        finally:
            self._sleeping = None
            sleeping.cancel()
        return not self._closed

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            self._ready, self._next = [], 0
            self._state.answer.close()

    async def close(self) -> None:
        """Release the connection; iterating afterwards ends at once. Safe to call twice.

        It may be called from another task while one is iterating (a "stop" button): that
        loop then ends quietly, and a stream waiting to start again sends nothing more.
        """
        self._state.end_span()
        self._release()
        if self._call is not None:
            self._call.stopped = True  # a restart's own retries send nothing more either
        if self._sleeping is not None:
            self._sleeping.cancel()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def collect(self) -> ChatStreamResult:
        """Read the rest of the stream into a :class:`ChatStreamResult`, then close it."""
        from ._chat_result import ChatStreamCollector

        collector = ChatStreamCollector()
        try:
            async for chunk in self:
                collector.add(chunk)
        finally:
            self._release()
        return collector.result()
