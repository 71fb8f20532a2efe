"""OpenTelemetry spans for calls, when ``opentelemetry-api`` is installed (``waygpt[otel]``).

Each logical call is one ``CLIENT`` span following the GenAI semantic conventions: named
``"{gen_ai.operation.name} {gen_ai.request.model}"``, with the provider, the models, the
response id, finish reasons and token usage, the server's address and port, ``error.type``
on failure, and one ``retry`` event per retry. A stream's span lasts until the stream ends,
however it ends, and records the time to its first chunk.

Without the package nothing here imports it (``import waygpt`` never does): whether it can
be imported is looked up once, when the first client is made. Prompts and answers are
recorded only when ``WAYGPT_OTEL_CAPTURE_CONTENT=true``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, Optional

from ._version import __version__

__all__ = ["CallSpan", "tracer", "tracing"]

_OPERATIONS = {
    "chat_completions": "chat",
    "image_generations": "generate_content",
    "video_generations": "generate_content",
}
_UNSET: Any = object()
_tracer: Any = _UNSET
_silent_providers: Any = ()  # the API's own providers, which record nothing
_current_provider: Any = None  # opentelemetry.trace.get_tracer_provider


def tracer() -> Optional[Any]:
    """The SDK's tracer, or None when ``opentelemetry`` is not installed (looked up once)."""
    global _tracer
    if _tracer is _UNSET:
        import importlib.util

        try:
            found = importlib.util.find_spec("opentelemetry.trace") is not None
        except (ImportError, ValueError):
            found = False
        if found:
            global _current_provider, _silent_providers
            from opentelemetry import trace

            _tracer = trace.get_tracer("waygpt", __version__)
            _silent_providers = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
            _current_provider = trace.get_tracer_provider
        else:
            _tracer = None
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
    """One call's span: started with the call, ended once, whatever ends the call."""

    __slots__ = (
        "_capture", "_ending", "_finish", "_first_at", "_parts", "_span", "_started", "_status",
        "ended",
    )

    def __init__(
        self,
        source: Any,
        name: str,
        body: Any,
        server_address: str,
        server_port: Optional[int],
        capture: bool,
    ) -> None:
        from opentelemetry.trace import SpanKind

        operation = _OPERATIONS.get(name, name or "call")
        model = body.get("model") if isinstance(body, dict) else None
        attributes: Dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": "waygpt",
            "server.address": server_address,
        }
        if server_port is not None:
            attributes["server.port"] = server_port
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
        if isinstance(body, dict):
            for key, attribute in (
                ("temperature", "gen_ai.request.temperature"),
                ("max_tokens", "gen_ai.request.max_tokens"),
            ):
                if isinstance(body.get(key), (int, float)) and not isinstance(body[key], bool):
                    attributes[attribute] = body[key]
            if capture and isinstance(body.get("messages"), list):
                attributes["gen_ai.input.messages"] = _json(body["messages"])
            if capture and isinstance(body.get("prompt"), str):
                attributes["gen_ai.input.messages"] = _json(
                    [{"role": "user", "content": body["prompt"]}]
                )
        span_name = f"{operation} {model}" if isinstance(model, str) and model else operation
        self._span = source.start_span(span_name, kind=SpanKind.CLIENT, attributes=attributes)
        self._capture = capture
        self._started = time.monotonic()
        self._first_at: Optional[float] = None
        self._finish: List[str] = []
        self._parts: List[str] = []
        self._status = False  # http.response.status_code was set from an answer
        self._ending = threading.Lock()  # a stream may be closed from another thread
        self.ended = False

    def retry(self, attempt: int, reason: str, delay: float) -> None:
        """One span event per retry: what failed, and how long the client waits."""
        if not self.ended:
            self._span.add_event(
                "retry",
                {"waygpt.retry.attempt": attempt, "waygpt.retry.reason": reason,
                 "waygpt.retry.delay": delay},
            )

    def status(self, code: int) -> None:
        if not self.ended:
            self._status = True
            self._span.set_attribute("http.response.status_code", code)

    def clock_corrected(self, offset: float) -> None:
        """A span event for the clock-skew correction that sent the call once more."""
        if not self.ended:
            self._span.add_event("clock_corrected", {"waygpt.clock_offset": offset})

    def succeed(self, value: Any) -> None:
        """A plain call's answer: its model, id, finish reasons and usage, then the end."""
        if self.ended:
            return
        if isinstance(value, dict):
            self._response(value)
            for choice in value.get("choices") or ():
                if isinstance(choice, dict):
                    self._choice(choice, choice.get("message"))
        self.end()

    def chunk(self, chunk: Any) -> None:
        """A stream's chunk as it is handed to the caller (chunks parsed and never handed
        out add nothing: a stream closed early does not claim its usage)."""
        if self.ended:
            return
        if self._first_at is None:
            self._first_at = time.monotonic()
            self._span.set_attribute(
                "gen_ai.response.time_to_first_chunk", self._first_at - self._started
            )
        if isinstance(chunk, dict):
            self._response(chunk)
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    self._choice(choice, choice.get("delta"))

    def fail(self, error: BaseException) -> None:
        """The call failed: ``error.type`` (the error's class) and an error status."""
        if self.ended:
            return
        from opentelemetry.trace import Status, StatusCode

        # A cancelled task reaches a span two ways: as the GeneratorExit of a pipeline closed
        # under it (a plain call), or as the CancelledError itself (a stream's read). Both are
        # named alike, so that one query finds every cancelled call. asyncio is only looked
        # up: a process that never imported it has no CancelledError to see.
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
        """End the span (once; later calls do nothing)."""
        with self._ending:
            if self.ended:
                return
            self.ended = True
        if self._finish:
            self._span.set_attribute("gen_ai.response.finish_reasons", self._finish)
        if self._capture and self._parts:
            self._span.set_attribute(
                "gen_ai.output.messages",
                _json([{"role": "assistant", "content": "".join(self._parts)}]),
            )
        self._span.end()

    def _response(self, data: Mapping[str, Any]) -> None:
        span = self._span
        if isinstance(data.get("model"), str):
            span.set_attribute("gen_ai.response.model", data["model"])
        if isinstance(data.get("id"), str):
            span.set_attribute("gen_ai.response.id", data["id"])
        usage = data.get("usage")
        if isinstance(usage, dict):
            for key, attribute in (
                ("prompt_tokens", "gen_ai.usage.input_tokens"),
                ("completion_tokens", "gen_ai.usage.output_tokens"),
            ):
                if isinstance(usage.get(key), int):
                    span.set_attribute(attribute, usage[key])

    def _choice(self, choice: Mapping[str, Any], message: Any) -> None:
        if isinstance(choice.get("finish_reason"), str):
            self._finish.append(choice["finish_reason"])
        if self._capture and isinstance(message, dict):
            if isinstance(message.get("content"), str):
                self._parts.append(message["content"])


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
