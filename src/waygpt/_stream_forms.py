"""What a stream can be turned into: its text as it arrives (``text()``), snapshots of the
whole answer for a chat window (``text_snapshots()``), and a Server-Sent Events relay for a
browser (``sse()``), each for both streams: a generator over a ``ChatStream`` and an async
generator over an ``AsyncChatStream``, the decisions written once.
"""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator, Iterator, List, Optional

from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InternalServerError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    WayGPTError,
)

SSE_DONE = b"data: [DONE]\n\n"

# What a browser's user is told when the answer fails, by the kind of failure: short, with
# nothing of the SDK's or the server's own words (which may name internals, or a secret).
_END_USER_MESSAGES = (
    (RateLimitError, "The service is busy right now. Please try again in a moment."),
    (APITimeoutError, "The answer took too long. Please try again."),
    (APIConnectionError, "The connection to the answering service was lost. Please try again."),
    (InternalServerError, "The answering service failed. Please try again."),
    ((AuthenticationError, PermissionDeniedError, ConfigurationError),
     "The answering service is not available right now."),
    ((BadRequestError, UnprocessableEntityError), "This request could not be answered."),
    (APIResponseValidationError, "The answer could not be read. Please try again."),
    (APIStatusError, "The answering service could not answer. Please try again."),
)
_SOMETHING_WENT_WRONG = "Something went wrong while answering. Please try again."


def choice_index(choice: Any) -> Optional[int]:
    """The choice a streamed choice object belongs to: its ``index`` when that is an int,
    choice 0 when it has none (missing or null), None for anything else."""
    if not isinstance(choice, dict):
        return None
    index = choice.get("index")
    if index is None:
        return 0
    return index if type(index) is int else None


def text_of(chunk: Any) -> str:
    """The text a chunk adds to choice 0's answer ("" when it adds none)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        if choice_index(choice) == 0:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                return content
    return ""


class Snapshots:
    """When a chat window shows the answer so far: at most once per ``min_interval``
    seconds while it grows, and once more at its end; never the same text twice in a row,
    and never an empty one."""

    __slots__ = ("_interval", "_parts", "_shown", "_shown_at")

    def __init__(self, min_interval: float) -> None:
        if not isinstance(min_interval, (int, float)) or isinstance(min_interval, bool) or (
            not min_interval >= 0
        ):
            raise ValueError(f"min_interval must be seconds >= 0, got {min_interval!r}")
        self._interval = float(min_interval)
        self._parts: List[str] = []
        self._shown = ""
        self._shown_at: Optional[float] = None

    def add(self, piece: str) -> Optional[str]:
        """The answer to show now that ``piece`` arrived, or None to wait."""
        self._parts.append(piece)
        now = time.monotonic()
        if self._shown_at is not None and now - self._shown_at < self._interval:
            return None
        self._shown_at = now
        return self._show()

    def end(self) -> Optional[str]:
        """The final answer, unless it was the last shown (or is empty)."""
        return self._show()

    def _show(self) -> Optional[str]:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        text = self._parts[0] if self._parts else ""
        if not text or text == self._shown:
            return None
        self._shown = text
        return text


def sse_chunk(chunk: Any) -> bytes:
    """One chunk as an event of an OpenAI-style stream: ``data: <json>``."""
    data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + data.encode("utf-8", "surrogatepass") + b"\n\n"


def sse_error(error: WayGPTError) -> bytes:
    """The ``error`` event a browser gets when the answer fails: the error's class, a
    message for the end user, and the request id to quote to support (all redacted)."""
    message = next(
        (text for kinds, text in _END_USER_MESSAGES if isinstance(error, kinds)),
        _SOMETHING_WENT_WRONG,
    )
    payload = {"type": type(error).__name__, "message": message, "request_id": error.request_id}
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"event: error\ndata: " + data.encode("utf-8", "surrogatepass") + b"\n\n"


def text_pieces(stream: Any) -> Iterator[str]:
    with stream:  # a loop left early closes the stream
        for chunk in stream:
            piece = text_of(chunk)
            if piece:
                yield piece


async def text_pieces_async(stream: Any) -> AsyncIterator[str]:
    async with stream:
        async for chunk in stream:
            piece = text_of(chunk)
            if piece:
                yield piece


def snapshots(pieces: Iterator[str], min_interval: float) -> Iterator[str]:
    shown = Snapshots(min_interval)  # (checked before the first piece is asked for)
    return _snapshots(pieces, shown)


def _snapshots(pieces: Iterator[str], shown: Snapshots) -> Iterator[str]:
    for piece in pieces:
        snapshot = shown.add(piece)
        if snapshot is not None:
            yield snapshot
    final = shown.end()
    if final is not None:
        yield final


def snapshots_async(pieces: AsyncIterator[str], min_interval: float) -> AsyncIterator[str]:
    shown = Snapshots(min_interval)
    return _snapshots_async(pieces, shown)


async def _snapshots_async(pieces: AsyncIterator[str], shown: Snapshots) -> AsyncIterator[str]:
    async for piece in pieces:
        snapshot = shown.add(piece)
        if snapshot is not None:
            yield snapshot
    final = shown.end()
    if final is not None:
        yield final


def sse_events(stream: Any) -> Iterator[bytes]:
    with stream:  # the browser went away: the stream, and the generation, stop
        try:
            for chunk in stream:
                yield sse_chunk(chunk)
        except WayGPTError as error:
            yield sse_error(error)
            return
        yield SSE_DONE


async def sse_events_async(stream: Any) -> AsyncIterator[bytes]:
    async with stream:
        try:
            async for chunk in stream:
                yield sse_chunk(chunk)
        except WayGPTError as error:
            yield sse_error(error)
            return
        yield SSE_DONE
