"""Streamed chat completions: chunk dicts out, the connection always released.

:class:`ChatStream` and :class:`AsyncChatStream` run the same steps (``_stream_loop``), with
blocking calls or with ``await``, on the *answer* their transport built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, List, Optional

from ._chat_events import ChatEventParser
from ._stream_forms import (
    snapshots,
    snapshots_async,
    sse_events,
    sse_events_async,
    text_pieces,
    text_pieces_async,
)
from ._stream_loop import DRAIN, READ, RESTART, Restart, StreamState, StreamSteps, stream_steps
from .errors import (
    TransportFailure,
    WayGPTError,
    forget_internal_locals,
    redact_error,
    request_id_of,
    scrub_value,
)

__all__ = ["AsyncChatStream", "ChatStream"]

if TYPE_CHECKING:
    from typing import Generator, Mapping

    from ._chat_result import ChatStreamResult
    from .types import ChatCompletionChunk


def _redacted(result: ChatStreamResult, redact: Callable[[str], str]) -> ChatStreamResult:
    """``result`` with every string the server sent in it redacted."""
    import dataclasses  # (only for an error: `import waygpt` need not pay)

    from ._chat_result import ChatChoiceResult

    fields = scrub_value(dataclasses.asdict(result), redact)
    choices = [ChatChoiceResult(**choice) for choice in fields.pop("choices")]
    return type(result)(**fields, choices=choices)


class _StreamBase:
    """What both streams show of their answer (status, headers, request id, ``closed``), and
    what an error is given before it leaves a stream."""

    def __init__(
        self, answer: Any, parser: ChatEventParser, *, read_timeout: float,
        redact: Callable[[str], str], restart: Restart,
    ) -> None:
        self._call = restart.state  # the call's CallState
        self._state = StreamState(answer, self._call.span)
        self._steps = stream_steps(self._state, parser, read_timeout, restart)
        self._restart = restart
        self._redact = redact
        self._closed = False

    @property
    def response(self) -> Any:
        """The HTTP library's response (of the last attempt, when the stream started again)."""
        return self._state.answer.response

    @property
    def status_code(self) -> int:
        return int(self._state.answer.status)

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
        """Make ``error`` fit to leave the stream as a plain call's is (redacted, frames
        cleared, the call's attempts and id); one a hook raised (on a restart) is left as is."""
        call = self._call
        if id(error) == call.hook_error_id:
            return
        if error.request_id is None:  # (a header, which may echo a secret as well)
            error.request_id = request_id_of(self.headers)
        redact_error(error, self._redact)
        if error.partial is not None:
            error.partial = _redacted(error.partial, self._redact)
        forget_internal_locals(error)  # the raw blocks the stream's frames read
        error.attempts = call.attempts
        error.client_request_id = call.client_request_id or None

    def _stop_restarts(self) -> None:
        self._state.close()
        self._call.stopped = True  # a restart's own retries send nothing more either

    def __del__(self) -> None:
        # A stream abandoned half-read (a `break` out of its loop) must not pin its connection.
        if not getattr(self, "_closed", True):
            try:
                self._release()
            except Exception:  # noqa: BLE001, S110 - nothing can be raised from __del__
                pass

    _release: Callable[[], None]


def _chunks_of(
    steps: StreamSteps, state: StreamState, restart: Restart
) -> Generator[ChatCompletionChunk, None, None]:
    """The sync stream's chunks: its steps run with blocking calls.

    A module-level generator that holds no reference to its ChatStream, so that dropping a
    ChatStream (a ``break`` out of a ``for`` loop) finalises it at once and frees the socket.
    While it reads, it is executing: ``close()`` from another thread then wakes the read.
    """
    reply: Any = None
    try:
        while True:
            try:
                step = steps.send(reply)
            except StopIteration:
                return
            reply = None
            if type(step) is list:
                span = state.span
                for chunk in step:
                    span.chunk(chunk)  # as it is handed out
                    yield chunk
                chunk = None  # type: ignore[assignment] # (not held while the next read waits)
                continue
            try:
                if step is READ:
                    reply = state.answer.read()
                elif step is DRAIN:
                    state.answer.drain()
                elif step is RESTART:
                    reply = restart.transport.run(restart.steps(), restart.deadline)
                else:
                    reply = state.pause(step)  # type: ignore[arg-type]
            except (TransportFailure, WayGPTError) as outcome:
                reply = outcome
            except BaseException as stopped:  # a KeyboardInterrupt, a hook's exception
                steps.throw(stopped)  # the steps close the answer and end the span with it
                raise
    finally:
        reply = None  # (the last bytes read: kept out of tracebacks)
        steps.close()


class ChatStream(_StreamBase):
    """An iterator of chat chunk dicts over one streamed HTTP response.

    Use it in a ``for`` loop, or as a context manager so the connection is released however
    the block is left::

        with client.chat_completions_stream(messages=msgs) as stream:
            for chunk in stream:
                ...

    A stream that fails before its first content (the connection cut, an in-stream 429 or
    5xx) is started again, within ``max_retries`` and ``total_timeout``; after the first
    content nothing is retried.

    Raises (while iterating): a ``WayGPTError`` subclass for an ``error`` object in the
    stream (``RateLimitError`` for code 429, ...), ``APIConnectionError``/``APITimeoutError``
    when the connection drops or the read timeout runs out between two complete lines,
    ``APIResponseValidationError`` for data that is not JSON, or a line or event over 16 MiB.
    After content, a dropped connection raises :class:`StreamInterruptedError`, and every
    error carries ``partial``, the :class:`ChatStreamResult` of what was handed out.
    """

    def __init__(self, answer: Any, parser: ChatEventParser, **options: Any) -> None:
        super().__init__(answer, parser, **options)
        self._chunks = _chunks_of(self._steps, self._state, self._restart)

    @property
    def closed(self) -> bool:
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

    def __exit__(self, *exc_info: object) -> None:
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
        self._stop_restarts()
        try:
            self._chunks.close()
        except ValueError:  # "generator already executing": being read in another thread
            # Its blocked read returns, and that thread ends the steps (answer, span) quietly.
            state.answer.interrupt()
            return
        self._steps.close()  # (steps never started run no finally)
        state.end_span()
        state.answer.close()

    _release = close

    def collect(self) -> ChatStreamResult:
        """Read the rest of the stream into a :class:`ChatStreamResult`, then close it."""
        from ._chat_result import collect_chat_stream

        with self:
            return collect_chat_stream(self)

    def text(self) -> Iterator[str]:
        """The answer's text (choice 0) as it arrives, chunks without text skipped; leaving
        the loop closes the stream. Raises as iterating the stream does."""
        return text_pieces(self)

    def text_snapshots(self, min_interval: float = 1.0) -> Iterator[str]:
        """The whole answer so far, at most once per ``min_interval`` seconds while it grows and
        once more at its end (a chat window). Raises ValueError for a bad ``min_interval``."""
        return snapshots(text_pieces(self), min_interval)

    def sse(self) -> Iterator[bytes]:
        """The stream relayed to a browser as Server-Sent Events: ``data: <json>`` per chunk,
        ``data: [DONE]`` at the end, a failure as one ``event: error`` fit for an end user.
        Closing the relay closes the stream."""
        return sse_events(self)


class AsyncChatStream(_StreamBase):
    """An async iterator of chat chunk dicts over one streamed HTTP response.

    ``async for chunk in stream``; ``async with stream`` (or ``await stream.close()``)
    releases the connection however the block is left; ``await stream.collect()`` reads the
    rest into a :class:`ChatStreamResult`. A task cancelled while it waits for the next chunk
    releases the connection and gets its ``CancelledError`` unchanged.

    Starts again, and raises (while iterating), as :class:`ChatStream`.
    """

    def __init__(self, answer: Any, parser: ChatEventParser, **options: Any) -> None:
        super().__init__(answer, parser, **options)
        self._read_timeout: float = options["read_timeout"]
        self._ready: List[ChatCompletionChunk] = []  # chunks read but not yet handed out
        self._next = 0
        self._sleeping: Any = None  # the wait before a restart, which close() ends

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        index = self._next
        if index < len(self._ready):
            chunk = self._ready[index]
            self._next = index + 1
        else:
            chunk = await self._advance()
        self._state.span.chunk(chunk)  # as it is handed out
        return chunk

    async def _advance(self) -> ChatCompletionChunk:
        """Run the steps with ``await`` until they hand out chunks: the first of them."""
        steps = self._steps
        state = self._state
        self._ready = []  # (the chunks handed out are not held while the next read waits)
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration:
                self._release()
                raise StopAsyncIteration from None
            except WayGPTError as error:
                reply = None  # (the last bytes read: kept out of tracebacks)
                self._failed(error)
                self._release()
                raise
            reply = None
            if type(step) is list:
                self._ready, self._next = step, 1
                return step[0]
            try:
                if step is READ:
                    reply = await state.answer.read()
                elif step is DRAIN:
                    if not self._closed:
                        await state.answer.drain()  # so that the connection can be reused
                elif step is RESTART:
                    reply = await self._start_again()
                else:
                    reply = await self._pause(step)  # type: ignore[arg-type]
            except (TransportFailure, WayGPTError) as outcome:
                reply = outcome
            except BaseException as stopped:  # a cancelled task, a hook's exception
                try:
                    steps.throw(stopped)  # the steps close the answer and end the span
                finally:
                    self._release()
                raise

    async def _start_again(self) -> Any:
        restart = self._restart
        answer, parser = await restart.transport.run(restart.steps(), restart.deadline)
        answer.bound_each_read(self._read_timeout)
        return answer, parser

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` before the stream starts again; False, at once, when another
        task closes the stream meanwhile (a "stop" button)."""
        import asyncio  # (imported already by the async client: this module does not need it)

        sleeping = asyncio.ensure_future(self._restart.transport.sleep(seconds))
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
            self._steps.close()  # the steps close the answer and end the span
            self._state.end_span()
            self._state.answer.close()

    async def close(self) -> None:
        """Release the connection, as :meth:`ChatStream.close` (from another task too)."""
        self._stop_restarts()
        self._release()
        if self._sleeping is not None:
            self._sleeping.cancel()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def collect(self) -> ChatStreamResult:
        """Read the rest of the stream into a :class:`ChatStreamResult`, then close it."""
        from ._chat_result import ChatStreamCollector

        collector = ChatStreamCollector()
        async with self:
            async for chunk in self:
                collector.add(chunk)
        return collector.result()

    def text(self) -> AsyncIterator[str]:
        """The answer's text as it arrives (``async for``), as :meth:`ChatStream.text`."""
        return text_pieces_async(self)

    def text_snapshots(self, min_interval: float = 1.0) -> AsyncIterator[str]:
        """The whole answer so far, throttled, as :meth:`ChatStream.text_snapshots`."""
        return snapshots_async(text_pieces_async(self), min_interval)

    def sse(self) -> AsyncIterator[bytes]:
        """The stream relayed as Server-Sent Events, as :meth:`ChatStream.sse`."""
        return sse_events_async(self)
