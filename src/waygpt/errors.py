"""The typed error hierarchy: every failure of a client method is a :class:`WayGPTError`, a rate
limit told from a bad key or a dropped connection by its type, and ``.message``,
``.status_code`` and ``.response`` read as with the reference client."""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Type, Union

if TYPE_CHECKING:
    from ._chat_result import ChatStreamResult

__all__ = [
    "WayGPTError", "ConfigurationError", "APIStatusError", "BadRequestError",
    "AuthenticationError", "PermissionDeniedError", "NotFoundError", "ConflictError",
    "UnprocessableEntityError", "RateLimitError", "InternalServerError", "APIConnectionError",
    "APITimeoutError", "StreamInterruptedError", "APIResponseValidationError",
    "StructuredOutputError", "MediaJobError", "MediaJobFailedError", "MediaJobTimeoutError",
]

# Bounds keep a hostile or broken server (a 20 MB error page) from blowing up memory or logs.
ERROR_BODY_LIMIT = 64 * 1024
# An error body is read this far past the bound, so that a secret echoed across it is whole
# when it is replaced, before the cut (the margin holds any credential, in any encoding).
ERROR_READ_LIMIT = ERROR_BODY_LIMIT + 32 * 1024
_MESSAGE_LIMIT = 500


class WayGPTError(Exception):
    """Base class of every error the SDK raises.

    Compatible with the reference client: ``message``, ``status_code`` (None when no HTTP
    answer was received) and ``response`` (the parsed JSON error body, or None).
    """

    def __init__(
        self, message: str, status_code: Optional[int] = None, response: Any = None, *,
        headers: Optional[Mapping[str, str]] = None, body: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.response = response
        # Plain strings (an aiohttp answer's names are `istr`s): what pickles anywhere.
        self.headers = {str(name): str(value) for name, value in (headers or {}).items()}
        self.body = body
        self.request_id = request_id

    # Set on every error a stream raises after some content was handed out: what was.
    partial: Optional[ChatStreamResult] = None
    # Set on every error a call raises: how many HTTP requests it sent, and the id the SDK
    # sent with each of them (X-Client-Request-ID), to quote to support.
    attempts: Optional[int] = None
    client_request_id: Optional[str] = None

    def __str__(self) -> str:
        if self.status_code is not None:
            return f"[{self.status_code}] {self.message}"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, status_code={self.status_code!r})"

    def __reduce__(self) -> Tuple[Any, ...]:
        # Exception's own pickling calls cls(*args), which the subclasses' signatures refuse:
        # rebuilt from its attributes, any error crosses a multiprocessing boundary.
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


def _restore_error(cls: Type[WayGPTError], args: Tuple[Any, ...], state: Dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigurationError(WayGPTError, ValueError):
    """A setting is missing or invalid; raised before anything is sent."""


class APIStatusError(WayGPTError):
    """The server answered with an error status (400 or more) or an unexpected redirect (3xx)."""

    status_code: int

    def __init__(self, message: str, status_code: int, response: Any = None, **kwargs: Any) -> None:
        super().__init__(message, status_code, response, **kwargs)


class BadRequestError(APIStatusError):
    """HTTP 400: the request was malformed."""


class AuthenticationError(APIStatusError):
    """HTTP 401: bad or missing project key or JWT."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: forbidden (domain not allowed, HMAC signature rejected, ...)."""


class NotFoundError(APIStatusError):
    """HTTP 404: no such object or endpoint."""


class ConflictError(APIStatusError):
    """HTTP 409: the request conflicts with the current state (duplicate key, finished job)."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422: the server rejected the request's fields."""


class RateLimitError(APIStatusError):
    """HTTP 429: rate limited. ``retry_after`` holds the server's hint in seconds, if any."""

    def __init__(
        self, message: str, status_code: int = 429, response: Any = None, *,
        retry_after: Optional[float] = None, **kwargs: Any,
    ) -> None:
        super().__init__(message, status_code, response, **kwargs)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """HTTP 5xx: the server or a gateway in front of it failed."""


class APIConnectionError(WayGPTError):
    """No usable HTTP answer: the connection failed or broke. ``status_code`` is None."""


class APITimeoutError(APIConnectionError):
    """The connect or read timeout ran out."""


class StreamInterruptedError(APIConnectionError):
    """A stream's connection failed after some of its content was handed out.

    Nothing was retried (the caller would see the first words twice): ``partial`` is the
    :class:`ChatStreamResult` of the chunks delivered, as ``collect()`` gathers them
    (``finish_reason`` and ``usage`` are None unless a chunk handed out carried them).
    """

    def __init__(
        self, message: str, status_code: Optional[int] = None, response: Any = None, *,
        partial: Optional[ChatStreamResult] = None, **kwargs: Any,
    ) -> None:
        super().__init__(message, status_code, response, **kwargs)
        self.partial = partial


class APIResponseValidationError(WayGPTError):
    """The server answered success, but the body is not the JSON the method expects."""


class StructuredOutputError(APIResponseValidationError):
    """A structured answer (``chat_completions_parse``) that cannot be used.

    ``reason`` says why: ``"refusal"`` (the model refused), ``"length"`` (cut at
    ``max_tokens``), ``"not_json"`` or ``"mismatch"`` (JSON that does not match the schema;
    the message says where). ``raw_text`` is what the model wrote (or its refusal), secrets
    replaced, cut at 64 KiB.
    """

    def __init__(
        self, message: str, status_code: Optional[int] = None, response: Any = None, *,
        reason: str = "", raw_text: str = "", **kwargs: Any,
    ) -> None:
        super().__init__(message, status_code, response, **kwargs)
        self.reason = reason
        self.raw_text = raw_text


class TransportFailure(Exception):
    """Internal: a transport's report that no usable answer came (``kind``: one of
    ``retry.CONNECT_FAILURE``, ``STALE_CONNECTION``, ``OTHER_FAILURE``), which the pipeline
    turns into the SDK's error, so that no HTTP library's exception is chained to it."""

    def __init__(self, kind: str, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.timed_out = timed_out

    def to_error(self, prefix: str = "") -> APIConnectionError:
        """The typed error a caller sees: ``APITimeoutError`` or ``APIConnectionError``."""
        cls = APITimeoutError if self.timed_out else APIConnectionError
        return cls(prefix + self.message)


class MediaJobError(WayGPTError):
    """A media job did not complete. ``job`` holds the last job dict seen."""

    def __init__(self, message: str, job: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message, None, job)
        self.job: Dict[str, Any] = dict(job or {})


class MediaJobFailedError(MediaJobError):
    """The media job ended as ``failed`` or ``cancelled``."""


class MediaJobTimeoutError(MediaJobError, TimeoutError):
    """Waiting for a media job ran past its timeout."""


def redact_error(error: WayGPTError, redact: Callable[[str], str]) -> WayGPTError:
    """Scrub secrets from everything an error holds (an answer may echo what was sent): every
    attribute (a subclass's too) and argument, at any depth, dict keys included."""
    for name, value in list(error.__dict__.items()):
        error.__dict__[name] = scrub_value(value, redact)
    error.args = tuple(scrub_value(arg, redact) for arg in error.args)
    return error


def scrub_value(value: Any, redact: Callable[[str], str]) -> Any:
    """A copy of ``value`` with ``redact`` applied to every string in it (dict keys too), at
    any depth: iterative, since parsed JSON can nest deeper than Python's recursion limit."""
    root: List[Any] = [value]
    pending: List[Tuple[Any, Any]] = [(root, 0)]  # (container in the copy, key or index)
    while pending:
        parent, key = pending.pop()
        item = parent[key]
        if isinstance(item, str):
            parent[key] = redact(item)
        elif isinstance(item, dict):
            parent[key] = copy = {
                redact(name) if isinstance(name, str) else name: each for name, each in item.items()
            }
            pending.extend((copy, name) for name in copy)
        elif isinstance(item, (list, tuple)):
            parent[key] = items = list(item)
            pending.extend((items, index) for index in range(len(items)))
    # Tuples were copied as lists; only the outermost one is turned back (JSON has none).
    return tuple(root[0]) if isinstance(value, tuple) else root[0]


_STATUS_CLASSES: Dict[int, Type[APIStatusError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 422: UnprocessableEntityError, 429: RateLimitError,
}


def error_class_for_status(status: int) -> Type[APIStatusError]:
    """The error class for an HTTP status of 400 or more."""
    return _STATUS_CLASSES.get(status) or (InternalServerError if status >= 500 else APIStatusError)


def _truncate(text: str) -> str:
    """``text`` stripped and cut to 500 characters (secrets must be replaced before)."""
    text = text.strip()
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def error_body_text(body: bytes, redact: Optional[Callable[[str], str]] = None) -> str:
    """An answer's body as an error keeps it: text, secrets replaced, then cut to the bound
    (so a secret across the bound, read up to ``ERROR_READ_LIMIT``, leaves no part behind)."""
    text = body[:ERROR_READ_LIMIT].decode("utf-8", errors="replace")
    if redact is not None:
        text = redact(text)
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= ERROR_BODY_LIMIT:
        return text
    return encoded[:ERROR_BODY_LIMIT].decode("utf-8", errors="ignore")


def _format_detail(detail: Any) -> str:
    """A ``detail`` (or ``message``) as one readable line (FastAPI sends a list for 422)."""
    if isinstance(detail, str):
        return detail
    if not isinstance(detail, list):
        return json.dumps(detail, ensure_ascii=False)
    parts = []
    for item in detail:
        if isinstance(item, dict) and "msg" in item:
            where = item.get("loc")  # a list in FastAPI's answers; anything elsewhere
            steps = where if isinstance(where, list) else [] if where is None else [where]
            loc = ".".join(str(p) for p in steps if p != "body")
            parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
        else:
            parts.append(str(item))
    return "; ".join(parts)


def _error_message(status: int, parsed: Any, text: str, redact: Callable[[str], str]) -> str:
    """``detail``, else ``message``, else ``error.message``, else ``text``, else ``HTTP
    <status>``; redacted after formatting, before the cut (no half of a secret is left)."""
    fields: List[Any] = []
    if isinstance(parsed, dict):
        error = parsed.get("error")
        fields = [parsed.get("detail"), parsed.get("message")]
        if isinstance(error, dict):
            fields.append(error.get("message"))
    for value in fields:
        try:
            message = _truncate(redact(_format_detail(value))) if value else ""
        except RecursionError:  # nested too deep to be turned back into text: the body's text
            break
        if message:  # (a field that formats to nothing, "" or [""], says nothing: the next)
            return message
    return _truncate(text) or f"HTTP {status}"


def parse_json(data: Union[str, bytes]) -> Tuple[bool, Any]:
    """``(True, value)``, or ``(False, None)`` for data that is not JSON (nested deeper than
    json reads, too). Never raises: a JSON error, which holds the whole document, would be
    chained to the SDK's error."""
    try:
        return True, json.loads(data)
    except (ValueError, RecursionError):
        return False, None


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None when
    there is none or it cannot be read (a number not finite, a date past any calendar)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = parse_http_date(value)
        return None if when is None else max(0.0, when - time.time())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def parse_http_date(value: Optional[str]) -> Optional[float]:
    """The Unix time of an HTTP date (``Date``, ``Retry-After``); None when it cannot be read."""
    if not value:
        return None
    import datetime  # only for an answer that has a date to read: `import waygpt` need not pay
    import email.utils

    try:  # (HTTP dates are GMT, whether they say so or not)
        when = email.utils.parsedate_to_datetime(value.strip())
        return when.replace(tzinfo=when.tzinfo or datetime.timezone.utc).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def request_id_of(headers: Mapping[str, str]) -> Optional[str]:
    """The server's request id (``X-Request-ID``, else ``Request-ID``) among an answer's
    headers, a mapping whose names are found in any case."""
    return headers.get("x-request-id") or headers.get("request-id")


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes,
    redact: Optional[Callable[[str], str]] = None, hint: str = "",
) -> APIStatusError:
    """The typed error of an HTTP error answer (``body`` bounded by the caller to
    ``ERROR_READ_LIMIT``), every part built from text whose secrets were replaced whole,
    before any cut. ``hint``, the setting to check, ends the message."""
    text = body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace")
    _, parsed = parse_json(text)  # a body cut at the bound is not JSON: its text is kept
    if redact is not None:
        parsed = scrub_value(parsed, redact)
        headers = scrub_value(dict(headers), redact)
    clean = error_body_text(body, redact)
    lower: Dict[str, str] = {}
    for name, value in headers.items():
        lower.setdefault(name.lower(), value)  # a name sent twice counts by its first value
    if 300 <= status < 400:
        # The SDK follows no redirect: an API URL that redirects (http -> https, a moved
        # host) is a configuration problem, said plainly.
        target = lower.get("location") or "elsewhere"
        message = f"unexpected redirect ({status}) to {target}: check api_url"
    else:
        message = _error_message(status, parsed, clean, redact or str) + hint
    error = error_class_for_status(status)(
        message, status, parsed, headers=dict(headers), body=clean, request_id=request_id_of(lower)
    )
    if isinstance(error, RateLimitError):
        error.retry_after = parse_retry_after(lower.get("retry-after"))
    return error


def forget_internal_locals(error: BaseException) -> None:
    """Clear the locals of the SDK's own finished frames in ``error``'s traceback: crash
    reporters (Sentry) record them, and they hold what the server sent before it was redacted
    (an answer's body, a block of a stream). A caller's frame (a callback) keeps its locals."""
    package = __name__.partition(".")[0]  # "waygpt", or the one-file build's module
    tb = error.__traceback__
    tb = tb.tb_next if tb is not None else None  # the frame handling it is still running
    while tb is not None:
        frame = tb.tb_frame
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] == package:
            try:
                frame.clear()
            except RuntimeError:  # still running (or suspended): nothing to clear yet
                pass
        tb = tb.tb_next
