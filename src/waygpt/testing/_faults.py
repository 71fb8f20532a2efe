"""Scripted answers: how a test makes the server slow, wrong or broken on purpose.

The same :class:`ScriptedResponse` type also describes the server's ordinary
answers, so one writer in ``_server.py`` sends both.
"""

import json
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Literal, Optional, Union

Framing = Literal["chunked", "close", "length"]
_FRAMINGS = ("chunked", "close", "length")
Cut = Literal["close", "reset"]
_CUTS = ("close", "reset")


@dataclass
class ScriptedResponse:
    """One answer the server gives instead of its normal behaviour.

    ``body``: a dict or list is sent as compact JSON, a str as UTF-8 text, bytes
    as they are, None as an empty body. ``chunks`` (a list of bytes) streams the
    body as separate writes instead; ``framing`` says how the body is delimited:
    ``"chunked"`` (Transfer-Encoding), ``"close"`` (no length, connection closed
    at the end) or ``"length"`` (Content-Length). When ``framing`` is None it is
    ``"chunked"`` for ``chunks`` and ``"length"`` for ``body``.

    ``content_length`` sends that Content-Length whatever the body really holds,
    then closes the connection: a body that stops half-way. ``reset`` closes the
    socket with SO_LINGER 0 and no answer at all, so the client sees a reset.
    ``cut`` ends the connection abruptly once the body's pieces are written, with
    ``"chunked"`` or ``"close"`` framing: ``"close"`` closes it without the chunked
    body's terminating chunk, ``"reset"`` resets it.
    ``close_connection`` answers normally, then closes the kept-alive socket
    without announcing it. ``delay`` sleeps before answering, ``chunk_delay``
    between pieces.

    ``method`` and ``path`` restrict which requests the script answers: ``path``
    is compared with the request path without its query string, exactly, or as
    a prefix when it ends with ``*``. ``times`` is how many requests it answers
    (None: every matching request, forever).
    """

    status: int = 200
    body: Any = None
    headers: Dict[str, str] = field(default_factory=dict)
    content_type: Optional[str] = None
    delay: float = 0.0
    reset: bool = False
    chunks: Optional[List[bytes]] = None
    chunk_delay: float = 0.0
    framing: Optional[Framing] = None
    content_length: Optional[int] = None
    close_connection: bool = False
    cut: Optional[Cut] = None
    method: Optional[str] = None
    path: Optional[str] = None
    times: Optional[int] = 1

    def __post_init__(self) -> None:
        if self.framing is not None and self.framing not in _FRAMINGS:
            raise ValueError(f"framing must be one of {_FRAMINGS}, not {self.framing!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for forever")
        if self.chunks is not None and self.body is not None:
            raise ValueError("give either body or chunks, not both")
        if self.content_length is not None and self.framing not in (None, "length"):
            raise ValueError("content_length only makes sense with length framing")
        if self.delay < 0 or self.chunk_delay < 0:
            raise ValueError("delays cannot be negative")
        if not isinstance(self.body, (dict, list, str, bytes, type(None))):
            raise TypeError("body must be a dict, list, str, bytes or None")
        if self.cut is not None:
            if self.cut not in _CUTS:
                raise ValueError(f"cut must be one of {_CUTS}, not {self.cut!r}")
            if self.effective_framing() == "length":
                raise ValueError('cut needs framing "chunked" or "close" (or chunks)')

    def matches(self, method: str, path: str) -> bool:
        """Whether this script applies to a request (``path`` without query)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def pieces(self) -> List[bytes]:
        """The body as the list of writes the server makes."""
        if self.chunks is not None:
            return list(self.chunks)
        body = self.body
        if body is None:
            return []
        if isinstance(body, bytes):
            return [body]
        if isinstance(body, str):
            return [body.encode("utf-8")]
        return [json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")]

    def effective_framing(self) -> Framing:
        if self.content_length is not None:
            return "length"
        if self.framing is not None:
            return self.framing
        return "chunked" if self.chunks is not None else "length"

    def effective_content_type(self) -> Optional[str]:
        if self.content_type is not None:
            return self.content_type
        body = self.body
        if isinstance(body, (dict, list)):
            return "application/json"
        if isinstance(body, str) and body.lstrip().startswith("<"):
            return "text/html; charset=utf-8"
        if body is None and self.chunks is None:
            # An empty answer has nothing to describe.
            return None
        return "text/plain; charset=utf-8"


def sse_event(
    data: Union[Dict[str, Any], List[Any], str],
    event: Optional[str] = None,
    id: Optional[str] = None,
) -> bytes:
    """Build one Server-Sent Event, ended by a blank line, as UTF-8 bytes.

    A dict or list becomes compact JSON with non-ASCII characters kept; a str
    holding newlines becomes several ``data:`` lines, as the format requires.
    """
    text = (
        data
        if isinstance(data, str)
        else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    )
    lines: List[str] = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def usage_chunk(
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    *,
    id: str = "chatcmpl-test",
    model: str = "gpt-4o-mini",
    created: Optional[int] = None,
) -> Dict[str, Any]:
    """The usage-only chunk that ends a stream asked for with ``stream_options:
    {"include_usage": true}``: no choices, the whole request's token counts.

    ``sse_event(usage_chunk(3, 5))`` puts one in a scripted stream, before ``[DONE]``.
    ``created`` is this machine's time when not given.
    """
    for name, count in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens)):
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"{name} must be an int")
        if count < 0:
            raise ValueError(f"{name} cannot be negative")
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@dataclass
class _Entry:
    script: ScriptedResponse
    remaining: Optional[int]  # None: answers forever


class ScriptBook:
    """The FIFO queue of scripted answers, each with its remaining uses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: List[_Entry] = []

    def add(self, script: ScriptedResponse) -> None:
        with self._lock:
            self._entries.append(_Entry(script, script.times))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def pending(self) -> List[ScriptedResponse]:
        with self._lock:
            return [entry.script for entry in self._entries]

    def take(self, method: str, path: str) -> Optional[ScriptedResponse]:
        """Consume one use of the first script matching the request, if any."""
        with self._lock:
            for index, entry in enumerate(self._entries):
                if not entry.script.matches(method, path):
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        del self._entries[index]
                return entry.script
        return None


# What an upstream provider's in-stream error says, by code, when the test gives no message.
_UPSTREAM_MESSAGES: Dict[Union[int, str], str] = {
    400: "Upstream provider rejected the request",
    401: "Upstream provider refused the credentials",
    429: "Upstream rate limit exceeded, retry later",
    500: "Upstream provider error",
    502: "Bad gateway: the upstream provider answered badly",
    503: "Upstream provider is overloaded, retry later",
    504: "Upstream provider timed out",
}


@dataclass
class StreamFault:
    """A fault in the server's own answer to the next streamed chat completion(s).

    The request is authenticated, checked and answered as usual (``stream: true``), and the
    stream starts as usual: ``200``, ``text/event-stream``, then the server's normal chunks,
    one per word of the answer, with content. After ``after_events`` of them (0: right after
    the headers) the fault happens instead of the rest of the stream:

    * ``cut="close"``: the connection is closed, the chunked body left unterminated;
    * ``cut="reset"``: the connection is reset (RST);
    * ``error_code=C``: one more event, ``data: {"error": {"message": ..., "code": C}}``,
      as upstream gateways send it, then the stream ends (no ``[DONE]``).
      ``error_message`` is its message (a default per code otherwise).

    Exactly one of ``cut`` and ``error_code`` is given. ``after_events`` counts the events
    before ``data: [DONE]``: the content chunks, then the final chunk with ``finish_reason``
    (and ``usage``), then the usage-only chunk when the request asked for one; a larger
    number means all of them. ``times`` is how many streamed chat
    completions it applies to (None: all, forever). Only a stream the server would send
    uses one up: a scripted answer, an error answer or a non-streamed call leaves it queued.
    """

    after_events: int = 0
    cut: Optional[Cut] = None
    error_code: Optional[Union[int, str]] = None
    error_message: Optional[str] = None
    times: Optional[int] = 1

    def __post_init__(self) -> None:
        if isinstance(self.after_events, bool) or not isinstance(self.after_events, int):
            raise TypeError("after_events must be an int")
        if self.after_events < 0:
            raise ValueError("after_events cannot be negative")
        if (self.cut is None) == (self.error_code is None):
            raise ValueError("give exactly one of cut and error_code")
        if self.cut is not None and self.cut not in _CUTS:
            raise ValueError(f"cut must be one of {_CUTS}, not {self.cut!r}")
        if self.error_code is not None and (
            isinstance(self.error_code, bool) or not isinstance(self.error_code, (int, str))
        ):
            raise TypeError("error_code must be an int (429, 503, ...) or a str")
        if self.error_message is not None:
            if self.error_code is None:
                raise ValueError("error_message needs error_code")
            if not isinstance(self.error_message, str):
                raise TypeError("error_message must be a str")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for forever")

    def error_event(self) -> Dict[str, Any]:
        """The in-stream error event's data."""
        assert self.error_code is not None
        message = self.error_message
        if message is None:
            message = _UPSTREAM_MESSAGES.get(self.error_code, f"Upstream error {self.error_code}")
        return {"error": {"message": message, "code": self.error_code}}

    def answer(self, stream: ScriptedResponse) -> ScriptedResponse:
        """The server's normal ``stream`` answer, with this fault in it."""
        events = list(stream.chunks or [])
        # The last event is "data: [DONE]": a fault always comes before it.
        kept = events[: min(self.after_events, max(len(events) - 1, 0))]
        if self.error_code is not None:
            kept.append(sse_event(self.error_event()))
        return replace(stream, chunks=kept, cut=self.cut, times=None)


@dataclass
class _FaultEntry:
    fault: StreamFault
    remaining: Optional[int]  # None: applies forever


class StreamFaultBook:
    """The FIFO queue of stream faults, each with its remaining uses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: List[_FaultEntry] = []

    def add(self, fault: StreamFault) -> None:
        with self._lock:
            self._entries.append(_FaultEntry(fault, fault.times))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def pending(self) -> List[StreamFault]:
        with self._lock:
            return [entry.fault for entry in self._entries]

    def take(self) -> Optional[StreamFault]:
        """Consume one use of the first fault, if any."""
        with self._lock:
            if not self._entries:
                return None
            entry = self._entries[0]
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    del self._entries[0]
            return entry.fault
