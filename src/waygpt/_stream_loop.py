"""How a chat stream is read, started again before its first content, and handed out.

Written once for both streams, as the request pipeline is: :func:`stream_steps` is a
generator that does no I/O. It yields *steps* and is sent back their outcomes; ``ChatStream``
runs them with blocking calls, ``AsyncChatStream`` with ``await``:

    READ     read the next bytes of the answer   -> bytes (b"" at its end), or a TransportFailure
    a list   hand these chunks out, in order     -> None
    a float  wait that long, then start again    -> False when the stream was closed meanwhile
    RESTART  send the call again                 -> (answer, parser), or the WayGPTError raised
    DRAIN    after [DONE]: let the body end, so the connection can be reused  -> None

The answer is closed and the trace span ended when the steps end, however they end.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Generator, List, Optional, Union

from ._chat_events import ChatEventParser
from ._core import StreamRestart
from .errors import (
    APIConnectionError,
    APITimeoutError,
    StreamInterruptedError,
    TransportFailure,
    WayGPTError,
)

if TYPE_CHECKING:
    from .types import ChatCompletionChunk

READ = "read"
DRAIN = "drain"
RESTART = "restart"
StreamStep = Union[str, float, List["ChatCompletionChunk"]]
StreamSteps = Generator[StreamStep, Any, None]

# Content-less chunks (a role, an empty delta) held back before the first content, at most:
# past this many, they are handed out and the stream is no longer started again.
_HELD_LIMIT = 64
# The partial answer kept for an error keeps at most this much text (characters).
_PARTIAL_TEXT_LIMIT = 16 * 1024 * 1024
Restart = StreamRestart  # (the name the streams and transports know it by)


class StreamState:
    """What a stream shares with its steps (never the stream itself, so that a stream
    dropped half-read is freed at once): the answer being read, whether ``close()`` was
    called, the trace span."""

    __slots__ = ("answer", "closing", "span", "wake")

    def __init__(self, answer: Any, span: Any) -> None:
        self.answer = answer  # a new one when the stream starts again
        self.closing = False  # close() was called: a failing read then ends the stream quietly
        self.span = span
        self.wake: Optional[threading.Event] = None  # set by close(): a wait to restart ends

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (the sync stream); False, at once, when ``close()`` is called
        meanwhile from another thread (a "stop" button)."""
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

    def end_span(self, error: Optional[BaseException] = None) -> None:
        """The stream ended: by ``error``, or (None) read to its end, closed or dropped."""
        span = self.span
        if not span.ended:
            if error is None or isinstance(error, GeneratorExit):
                span.end()
            else:
                span.fail(error)


def stream_steps(
    state: StreamState, parser: ChatEventParser, read_timeout: float, restart: Restart
) -> StreamSteps:
    """The steps of a stream, from its first read to its end. Raises the stream's failure:
    before the first content, once the call cannot start again; after it, with ``partial`` (a
    dropped connection as :class:`StreamInterruptedError`). After ``close()``, a failing read
    or a failed new attempt ends the steps quietly."""
    wait = LineWait(read_timeout)
    delivery = Delivery()
    try:
        while True:
            if state.closing:
                return
            wait.reading()
            # While the next read waits, nothing of the last one is held: with thousands of
            # streams at once, its parsed chunks would outweigh the rest of a stream.
            block = released = None
            block = yield READ
            if isinstance(block, TransportFailure):
                if state.closing:
                    return  # closed from another thread or task while this read waited
                error: Optional[WayGPTError] = (
                    APITimeoutError("stream read timed out: no data within the read timeout")
                    if block.timed_out else block.to_error("stream interrupted: ")
                )
            elif not block:
                parser.end()
                break  # a clean end without [DONE] simply ends the stream
            else:
                parser.push(block)
                chunks = parser.pull()
                while chunks:  # handed out a batch at a time, as they are parsed
                    released = delivery.release(chunks)
                    if released:
                        yield released
                    chunks = parser.pull()
                error = parser.take_error()
                if error is None:
                    if parser.done:
                        break
                    error = wait.overdue(parser)
                    if error is None:
                        continue
            assert error is not None
            if delivery.content:
                raise delivery.failed(error)
            delay = restart.delay(error)
            if delay is None:
                raise error  # outside the except block: no transport exception is chained
            state.answer.close()
            if not (yield delay):
                return  # closed while waiting: the next attempt is never sent
            started = yield RESTART
            if isinstance(started, WayGPTError):
                if state.closing:
                    return  # closed while it was sent: how it failed is no longer news
                raise started
            state.answer, parser = started
            if state.closing:
                return  # closed while it was sent: its answer is closed below
            delivery.drop_held()
            wait.reset()
        held = delivery.flush()  # (the chunks held back: the stream had no content at all)
        if held:
            yield held
        if parser.done:
            yield DRAIN
    except BaseException as failure:  # an error, a cancelled task, or GeneratorExit (closed)
        state.end_span(failure)
        raise
    finally:
        state.end_span()
        state.answer.close()


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
    """Which chunks a stream hands out, and what they add up to. Chunks before the first
    content are held back, so that a stream that fails then starts again without repeating
    them; from the first content on, every chunk is handed out once and gathered as
    ``collect()`` gathers them, for the ``partial`` of an error."""

    __slots__ = ("_gathered", "_held", "content")

    def __init__(self) -> None:
        from ._chat_result import ChatStreamCollector

        self._held: List[ChatCompletionChunk] = []
        self._gathered = ChatStreamCollector(_PARTIAL_TEXT_LIMIT)
        self.content = False  # a chunk with content was handed out

    def release(self, chunks: List[ChatCompletionChunk]) -> List[ChatCompletionChunk]:
        """The chunks of a parsed batch to hand out now (none while all lack content)."""
        if not self.content:
            held = self._held
            for index, chunk in enumerate(chunks):
                if _has_content(chunk) or len(held) >= _HELD_LIMIT:
                    self.content = True
                    chunks, self._held = held + chunks[index:], []
                    break
                held.append(chunk)
            else:
                return []
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
        """``error``, once content was handed out, with ``partial``: a dropped connection as
        a :class:`StreamInterruptedError`, any other error keeping its type."""
        partial = self._gathered.result()
        if type(error) is APIConnectionError:
            error = StreamInterruptedError(
                f"{error.message} (after {partial.chunks} chunks: the answer is incomplete, "
                "and was not retried; .partial holds what arrived)",
                partial=partial,
            )
        error.partial = partial
        return error


class LineWait:
    """The wait for a stream's next complete line, bounded by the read timeout as each read
    is: a server trickling a byte now and then into a line that never ends cannot hold a
    stream for ever. Only time spent reading counts, not the caller's own between chunks."""

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
