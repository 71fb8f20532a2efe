"""OpenTelemetry spans for calls, when ``opentelemetry-api`` is installed (``waygpt[otel]``):
one ``CLIENT`` span per call, after the GenAI semantic conventions (docs/observability.md).
``import waygpt`` never imports the package: it is looked up when the first client is made.

Tracing never changes what a call does: what a sampler, a span processor or an exporter
raises (as a span starts or ends) is logged once, and the call goes on without its span.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional

from ._logging import logger
from ._version import __version__

_OPERATIONS = {
    "chat_completions": "chat", "image_generations": "generate_content",
    "video_generations": "generate_content",
}
_UNSET: Any = object()
# The choices whose finish reasons a span keeps (OpenAI's ``n`` goes up to 128), and the
# characters of an answer it captures: a stream of any length keeps a span's size flat.
_SPAN_CHOICES = 128
_CAPTURED_TEXT_LIMIT = 1024 * 1024
# Kept past the limit until the span ends, so that a secret across it is redacted whole.
_CAPTURED_TEXT_MARGIN = 32 * 1024
_tracer: Any = _UNSET
_silent_providers: Any = ()  # the API's own providers, which record nothing
_current_provider: Any = None  # opentelemetry.trace.get_tracer_provider


def tracer() -> Optional[Any]:
    """The SDK's tracer, or None when ``opentelemetry`` is not installed (looked up once)."""
    global _tracer, _current_provider, _silent_providers
    if _tracer is _UNSET:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = None
            return None
        _tracer = trace.get_tracer("waygpt", __version__)
        _silent_providers = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        _current_provider = trace.get_tracer_provider
    return _tracer


def tracing(source: Any) -> bool:
    """Whether spans from ``source`` (the SDK's tracer, or one a test or benchmark set) are
    recorded: with only opentelemetry-api installed and no provider configured, every span
    would be a no-op, and the call need not build one."""
    if source is not _tracer:
        return source is not None
    return not isinstance(_current_provider(), _silent_providers)


def capture_content() -> bool:
    """``WAYGPT_OTEL_CAPTURE_CONTENT=true``: prompts and answers go into spans too."""
    return os.environ.get("WAYGPT_OTEL_CAPTURE_CONTENT", "").strip().lower() == "true"


class CallSpan:
    """One call's span: started with the call, ended once, whatever ends the call. The
    server's texts it records (the response's id and model, finish reasons, a captured
    answer) go through ``redact``, the call's redaction, when the span ends."""

    __slots__ = (
        "_answer", "_answer_size", "_capture", "_ending", "_finish", "_first_chunk", "_id",
        "_model", "_redact", "_span", "_started", "_status", "ended",
    )

    def __init__(
        self, source: Any, name: str, body: Any, server_address: str, server_port: int,
        capture: bool, redact: Callable[[str], str],
    ) -> None:
        self._capture = capture
        self._redact = redact
        self._started = time.monotonic()
        self._first_chunk: Optional[float] = None  # seconds from the start to the first chunk
        self._finish: Dict[int, str] = {}  # by choice index: the last reason seen
        self._id: Optional[str] = None
        self._model: Optional[str] = None
        # A captured answer's text, as UTF-8: a list of a stream's pieces would hold an
        # object per chunk (and so does a StringIO, on some of the Pythons supported).
        self._answer: Optional[bytearray] = None
        self._answer_size = 0  # characters
        self._status = False  # http.response.status_code was set from an answer
        self._ending = threading.Lock()  # a stream may be closed from another thread
        self.ended = False
        try:
            self._span = self._start(source, name, body, server_address, server_port)
        except Exception as error:  # noqa: BLE001 - a tracer's fault is not the call's
            self._drop(error)

    def _start(self, source: Any, name: str, body: Any, address: str, port: int) -> Any:
        from opentelemetry.trace import SpanKind

        operation = _OPERATIONS.get(name, name or "call")
        model = body.get("model") if isinstance(body, dict) else None
        attributes: Dict[str, Any] = {
            "gen_ai.operation.name": operation, "gen_ai.provider.name": "waygpt",
            "server.address": address, "server.port": port,
        }
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
        if isinstance(body, dict):
            for key in ("temperature", "max_tokens"):
                if isinstance(body.get(key), (int, float)) and not isinstance(body[key], bool):
                    attributes["gen_ai.request." + key] = body[key]
            if self._capture:  # (a body JSON cannot hold is refused by the call, a TypeError)
                messages = body.get("messages")
                if isinstance(body.get("prompt"), str):
                    messages = [{"role": "user", "content": body["prompt"]}]
                text = _json(messages) if isinstance(messages, list) else None
                if text is not None:
                    attributes["gen_ai.input.messages"] = text
        span_name = f"{operation} {model}" if isinstance(model, str) and model else operation
        return source.start_span(span_name, kind=SpanKind.CLIENT, attributes=attributes)

    def _drop(self, error: Exception) -> None:
        """The tracing code raised ``error``: say so once, and record nothing more."""
        from opentelemetry.trace import INVALID_SPAN

        self._span = INVALID_SPAN
        message = "OpenTelemetry raised %s while tracing a call; the call goes on without its span"
        logger.warning(message, type(error).__name__)

    def retry(self, attempt: int, reason: str, delay: float) -> None:
        """One span event per retry: what failed, and how long the client waits."""
        self._span.add_event("retry", {"waygpt.retry.attempt": attempt,
                                        "waygpt.retry.reason": reason, "waygpt.retry.delay": delay})

    def status(self, code: int) -> None:
        self._status = True
        self._span.set_attribute("http.response.status_code", code)

    def clock_corrected(self, offset: float) -> None:
        """A span event for the clock-skew correction that sent the call once more."""
        self._span.add_event("clock_corrected", {"waygpt.clock_offset": offset})

    def succeed(self, value: Any) -> None:
        """A plain call's answer: its model, id, finish reasons and usage, then the end."""
        self._read(value, "message")
        self.end()

    def chunk(self, chunk: Any) -> None:
        """A stream's chunk as it is handed to the caller (chunks parsed and never handed
        out add nothing: a stream closed early does not claim its usage)."""
        if self._first_chunk is None:
            self._first_chunk = time.monotonic() - self._started
            self._span.set_attribute("gen_ai.response.time_to_first_chunk", self._first_chunk)
        self._read(chunk, "delta")

    def fail(self, error: BaseException) -> None:
        """The call failed: ``error.type`` (the error's class) and an error status."""
        from opentelemetry.trace import Status, StatusCode

        # A cancelled task arrives as the GeneratorExit of a pipeline closed under it (a plain
        # call) or as the CancelledError itself (a stream's read); asyncio is only looked up.
        asyncio = sys.modules.get("asyncio")
        cancelled = isinstance(error, GeneratorExit) or (
            asyncio is not None and isinstance(error, asyncio.CancelledError)
        )
        kind = "cancelled" if cancelled else type(error).__name__
        self._span.set_attribute("error.type", kind)
        code = getattr(error, "status_code", None)
        if isinstance(code, int) and not self._status:  # (an in-stream error's code is not
            self._span.set_attribute("http.response.status_code", code)  # the answer's)
        self._span.set_status(Status(StatusCode.ERROR, kind))
        self.end()

    def end(self) -> None:
        """End the span (once; later calls of any method record nothing)."""
        with self._ending:
            if self.ended:
                return
            self.ended = True
        from opentelemetry.trace import INVALID_SPAN

        span, redact = self._span, self._redact
        self._span = INVALID_SPAN  # a span that records nothing and raises nothing
        if self._model is not None:
            span.set_attribute("gen_ai.response.model", redact(self._model))
        if self._id is not None:
            span.set_attribute("gen_ai.response.id", redact(self._id))
        if self._finish:
            reasons = [redact(self._finish[index]) for index in sorted(self._finish)]
            span.set_attribute("gen_ai.response.finish_reasons", reasons)
        if self._answer is not None:
            text = redact(self._answer.decode("utf-8", "surrogatepass"))[:_CAPTURED_TEXT_LIMIT]
            span.set_attribute(
                "gen_ai.output.messages", _json([{"role": "assistant", "content": text}])
            )
        try:
            span.end()
        except Exception as error:  # noqa: BLE001 - a span processor's on_end, an exporter
            self._drop(error)

    def _read(self, data: Any, part: str) -> None:
        """An answer's or a chunk's model, id and usage, and its choices' finish reasons and
        content (in their ``part``: ``message`` or ``delta``)."""
        if not isinstance(data, dict):
            return
        # The last model and id seen: set (and redacted) once, when the span ends.
        if isinstance(data.get("model"), str):
            self._model = data["model"]
        if isinstance(data.get("id"), str):
            self._id = data["id"]
        span = self._span
        usage = data.get("usage")
        if isinstance(usage, dict):
            for key, attribute in (
                ("prompt_tokens", "gen_ai.usage.input_tokens"),
                ("completion_tokens", "gen_ai.usage.output_tokens"),
            ):
                if isinstance(usage.get(key), int):
                    span.set_attribute(attribute, usage[key])
        for position, choice in enumerate(data.get("choices") or ()):
            if isinstance(choice, dict):
                self._choice(choice, choice.get(part), position)

    def _choice(self, choice: Mapping[str, Any], message: Any, position: int) -> None:
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            index = choice.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = position
            finish = self._finish
            if index in finish or len(finish) < _SPAN_CHOICES:
                finish[index] = reason  # one per choice: the latest
        if self._capture and isinstance(message, dict):
            content = message.get("content")
            room = _CAPTURED_TEXT_LIMIT + _CAPTURED_TEXT_MARGIN - self._answer_size
            if isinstance(content, str) and content and room > 0:
                if self._answer is None:
                    self._answer = bytearray()
                piece = content[:room]
                self._answer += piece.encode("utf-8", "surrogatepass")
                self._answer_size += len(piece)


class NoSpan:
    """The span of a call that is not traced: it records nothing, so that the pipeline
    never asks whether a call is."""

    __slots__ = ()
    ended = True  # nothing is left to end

    def _nothing(self, *args: Any) -> None:
        pass

    retry = status = clock_corrected = succeed = chunk = fail = end = _nothing


NO_SPAN = NoSpan()


def _json(value: Any) -> Optional[str]:
    """``value`` as JSON text; None when it has no JSON form (a circular list)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except Exception:  # noqa: BLE001 - a str() of a caller's object may raise anything
        return None
