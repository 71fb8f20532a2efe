"""Streamed chat completions: SSE events in, chunk dicts out, the connection always released.

A :class:`ChatStream` is what ``chat_completions(stream=True)`` returns. Iterate it for chunk
dicts, as with the reference client; use it as a context manager (or call ``close()``) to
release the connection early. The read timeout applies between two reads of the socket, so a
server that keeps the stream open but sends nothing for that long raises ``APITimeoutError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Dict, Generator, Iterable, Iterator, List, Optional, Type

import requests

from .errors import APIResponseValidationError, WayGPTError, error_class_for_status
from .sse import SSEDecoder

__all__ = ["ChatStream", "ChatStreamResult", "collect_chat_stream"]

_READ_SIZE = 64 * 1024
_DONE = "[DONE]"


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
    """Gather chat chunk dicts into the final text, finish reason and usage."""
    result = ChatStreamResult()
    parts: List[str] = []
    for chunk in chunks:
        result.chunks += 1
        result.id = chunk.get("id", result.id)
        result.model = chunk.get("model", result.model)
        if chunk.get("usage"):
            result.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("role"):
                result.role = delta["role"]
            if delta.get("content"):
                parts.append(delta["content"])
            if choice.get("finish_reason"):
                result.finish_reason = choice["finish_reason"]
    result.text = "".join(parts)
    return result


def _stream_error(payload: Any) -> WayGPTError:
    """The typed error for an ``error`` object sent inside the stream."""
    error = payload.get("error") if isinstance(payload, dict) else payload
    code: Optional[int] = None
    message = str(error) if error and not isinstance(error, dict) else "error in stream"
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("detail") or message)
        for key in ("status", "status_code", "code", "http_status"):
            value = error.get(key)
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                code = value
                break
    if code is not None and code >= 400:
        return error_class_for_status(code)(message, code, payload)
    return WayGPTError(message, None, payload)


class ChatStream:
    """An iterator of chat chunk dicts over one streamed HTTP response.

    Raises (while iterating): a ``WayGPTError`` subclass for an ``error`` object in the
    stream, ``APIConnectionError``/``APITimeoutError`` when the connection drops or the read
    timeout runs out between events, ``APIResponseValidationError`` for data that is not JSON.
    """

    def __init__(
        self,
        response: requests.Response,
        *,
        wrap_transport_error: Callable[[BaseException], WayGPTError],
    ) -> None:
        self.response = response
        self._wrap = wrap_transport_error
        self._iterator = self._iter_chunks()
        self._closed = False

    @property
    def status_code(self) -> int:
        return int(self.response.status_code)

    @property
    def headers(self) -> Any:
        return self.response.headers

    @property
    def request_id(self) -> Optional[str]:
        return self.response.headers.get("x-request-id")

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        return next(self._iterator)

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
        # A stream abandoned half-read must not pin its pooled connection forever.
        if not getattr(self, "_closed", True):
            self.close()

    def close(self) -> None:
        """Release the connection; iterating afterwards ends at once. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._iterator.close()
        self.response.close()

    def collect(self) -> ChatStreamResult:
        """Read the rest of the stream into a :class:`ChatStreamResult`."""
        with self:
            return collect_chat_stream(self)

    def _read_chunks(self) -> Iterator[bytes]:
        raw = self.response.raw
        # read1 returns whatever the socket has, so a small event on a close-delimited body
        # is not held back until a fixed-size block fills up.
        read1 = getattr(raw, "read1", None)
        if read1 is None:
            yield from raw.stream(_READ_SIZE, decode_content=True)
            return
        while True:
            chunk = read1(_READ_SIZE)
            if not chunk:
                return
            yield chunk

    def _iter_chunks(self) -> Generator[Dict[str, Any], None, None]:
        decoder = SSEDecoder()
        try:
            for raw_chunk in self._read_chunks_guarded():
                for event in decoder.feed(raw_chunk):
                    data = event.data
                    if data == _DONE:
                        return
                    if event.event not in ("message", "error"):
                        continue
                    try:
                        payload = json.loads(data)
                    except ValueError:
                        raise APIResponseValidationError(
                            f"stream event is not JSON: {data[:200]!r}",
                            self.status_code,
                        ) from None
                    if event.event == "error" or (
                        isinstance(payload, dict) and payload.get("error") is not None
                    ):
                        raise _stream_error(payload)
                    if not isinstance(payload, dict):
                        raise APIResponseValidationError(
                            f"stream event is not a JSON object: {data[:200]!r}",
                            self.status_code,
                        )
                    yield payload
        finally:
            self._closed = True
            self.response.close()

    def _read_chunks_guarded(self) -> Iterator[bytes]:
        chunks = self._read_chunks()
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except Exception as exc:  # any transport failure becomes a typed error
                raise self._wrap(exc) from exc
            yield chunk

