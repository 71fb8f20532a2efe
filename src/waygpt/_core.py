"""The transport-free core that the sync and the async client share.

One request pipeline serves every method of both clients: build, sign, send, retry, map
errors, decode. It is a generator that never does I/O itself: it yields *steps* (:class:`Send`,
:class:`Read`, :class:`Sleep`, :class:`Notify`) and is sent back their outcomes, which each
transport gets in its own way (blocking calls, ``await``).
"""

from __future__ import annotations

import copy
import json
import re
import sys
import time
from contextvars import ContextVar
from secrets import token_hex
from typing import Any, Dict, Generator, List, Mapping, NamedTuple, Optional, Tuple, Union
from urllib.parse import urlencode, urlsplit

from urllib3.util.retry import Retry

from ._body import ACCEPT_ENCODING, SUCCESS_BODY_LIMIT, BodyCollector
from ._chat_events import ChatEventParser, not_a_stream_error, retry_after_in
from ._config import (
    DEFAULT_API_URL,
    Timeout,
    check_api_url,
    check_timeout,
    check_total_timeout,
    env_use_hmac,
    read_setting,
    split_timeout,
)
from ._endpoints import NO_BODY, Call, check_jwt
from ._logging import configure_logging_from_env, logger
from ._observe import (
    CLIENT_REQUEST_ID,
    Headers,
    RawResponse,
    RequestView,
    ResponseView,
    check_event_hooks,
    check_extra_headers,
)
from ._redaction import LazyRedactor, Redactor
from ._telemetry import NO_SPAN, CallSpan, NoSpan, capture_content, tracer, tracing
from ._version import __version__
from .errors import (
    ERROR_BODY_LIMIT,
    ERROR_READ_LIMIT,
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    ConfigurationError,
    TransportFailure,
    WayGPTError,
    error_body_text,
    error_from_response,
    parse_json,
    redact_error,
    request_id_of,
)
from .retry import RetryPolicy, RetryState, build_retry
from .signing import HMACSigner


class Request(NamedTuple):
    """One HTTP request as it goes on the wire; the signer rewrites its headers per attempt.
    ``url`` is the full URL, percent-encoded; ``path`` its path and query, as signed."""

    method: str
    url: str
    path: str
    headers: Dict[str, str]
    body: Optional[bytes]


class Deadline:
    """The wall-clock bound of one call (``total_timeout``)."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def allows(self, delay: float) -> bool:
        """Whether a sleep of ``delay`` seconds still leaves time for another attempt."""
        return time.monotonic() + delay < self.at

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def error(self) -> APITimeoutError:
        return APITimeoutError(f"the call did not finish within total_timeout={self.seconds:g} s")


# The calls made in this context (thread, task) while a with_raw_response method runs; None
# when none does, and while wait_for_media_job's on_update runs (its calls are its own).
RECORDING: ContextVar[Optional[List[Tuple[CallState, Call[Any]]]]] = ContextVar(
    "waygpt_recording", default=None
)


class CallState:
    """What one call has done so far, shared by its attempts and a stream's restart before its
    first content (which spends the same budget)."""

    __slots__ = (
        "answer", "attempts", "client_request_id", "clock_corrected", "hook_error_id", "retry",
        "secrets", "span", "started", "stopped",
    )

    def __init__(self, retry: RetryState) -> None:
        self.retry = retry
        self.attempts = 0  # HTTP requests sent, a clock correction's included
        self.started = time.monotonic()
        self.clock_corrected = False  # at most one correction per call
        self.client_request_id = ""  # set when the request is built
        # What its requests carried, to redact: set when the request is built, not read when an
        # error is (a login in another thread must not unmask the token this call sent).
        self.secrets: Tuple[Optional[str], ...] = ()
        self.answer: Any = None  # the last 2xx answer (for with_raw_response)
        self.span: Union[CallSpan, NoSpan] = NO_SPAN
        # The id() of what a hook raised (its traceback holds this state): it reaches the
        # caller as it is, not stamped with this call's attempts.
        self.hook_error_id = 0
        self.stopped = False  # the stream this call started was closed: send nothing more


class Send(NamedTuple):
    """Send ``request``; the outcome is an answer (headers read) or a TransportFailure."""

    request: Request
    connect_timeout: float
    read_timeout: float
    stream: bool


class Read(NamedTuple):
    """Read the next raw bytes of ``answer``'s body (b"" at its end), or a TransportFailure."""

    answer: Any


class Notify(NamedTuple):
    """Call the caller's event hooks with ``view``; what a hook raises reaches the caller."""

    hooks: Tuple[Any, ...]
    view: Any


class Sleep(NamedTuple):
    """Wait before the next attempt."""

    seconds: float


Step = Union[Send, Read, Sleep, Notify]
Steps = Generator[Step, Any, Any]


class ClientCore:
    """Configuration, state and the request pipeline shared by both clients. ``transport``
    (the requests or the aiohttp one) sends its requests; the core only ever calls into it."""

    def __init__(
        self, transport: Any, api_url: Optional[str], project_key: Optional[str],
        project_id: Optional[str], hmac_secret: Optional[str], use_hmac: bool, timeout: Timeout,
        max_retries: Union[int, Retry], total_timeout: float,
        event_hooks: Optional[Mapping[str, Any]],
    ) -> None:
        self._transport = transport
        configure_logging_from_env()
        self._project_key = read_setting("project_key", project_key)
        self.project_id = read_setting("project_id", project_id)
        self._hmac_secret = read_setting("hmac_secret", hmac_secret)
        self.use_hmac = bool(use_hmac) or env_use_hmac()
        self._signer: Optional[HMACSigner] = None
        if self.use_hmac:
            if not self.project_id or not self._hmac_secret:
                given = {"project_id": self.project_id, "hmac_secret": self._hmac_secret}
                missing = " and ".join(name for name, value in given.items() if not value)
                raise ConfigurationError(
                    f"use_hmac=True requires {missing} (or WAYGPT_PROJECT_ID / WAYGPT_HMAC_SECRET)"
                )
            self._signer = HMACSigner(self.project_id, self._hmac_secret)
        self.timeout = check_timeout(timeout)
        self.total_timeout = check_total_timeout(total_timeout)
        self.max_retries = max_retries
        self._jwt_token: Optional[str] = None
        # The last Redactor made and the secrets it was made for: a call with event hooks
        # redacts every answer's headers, and making one costs more than using it.
        self._redaction: Optional[Tuple[Tuple[Optional[str], ...], Redactor]] = None
        self._closes_transport = True  # a copy (with_options) only borrows the connections
        self._event_hooks = check_event_hooks(event_hooks, transport.awaits_hooks)
        self._extra_headers: Dict[str, str] = {}
        self._tracer = tracer()  # OpenTelemetry's, when installed (looked up once per process)
        self._capture_content = capture_content() if self._tracer is not None else False
        python = ".".join(map(str, sys.version_info[:2]))
        self._base_headers = {
            "User-Agent": f"waygpt-python/{__version__} python/{python} {transport.library()}",
            "Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING,
        }
        self.api_url = read_setting("api_url", api_url) or DEFAULT_API_URL

    # -- settings ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The base URL; assigning a new one re-checks it and re-derives what depends on it."""
        return self._api_url

    @api_url.setter
    def api_url(self, value: str) -> None:
        url = check_api_url(value)
        self._base_url = self._transport.bind(url)  # as it is sent (IDNA host, quoted path)
        self._base_path = urlsplit(self._base_url).path  # sent (and signed) before each path
        parts = urlsplit(url)  # its host and port, for traces
        default_port = 443 if parts.scheme.lower() == "https" else 80
        self._server = (parts.hostname or "", parts.port or default_port)
        self._api_url = url

    @property
    def max_retries(self) -> Retry:
        """The retry policy as a urllib3 ``Retry`` (an int given is turned into one)."""
        return self._max_retries

    @max_retries.setter
    def max_retries(self, value: Union[int, Retry]) -> None:
        retry = build_retry(value)
        self._retry_policy = RetryPolicy(retry)
        self._max_retries = retry

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock is ahead of this machine's (negative: behind), as learned
        from a signature refused for its timestamp; 0 until then, and without HMAC."""
        return self._signer.offset if self._signer is not None else 0.0

    @property
    def jwt_token(self) -> Optional[str]:
        """The JWT remembered by the last ``client_login`` (or set here)."""
        return self._jwt_token

    @jwt_token.setter
    def jwt_token(self, value: Optional[str]) -> None:
        self._jwt_token = None if value is None else check_jwt(value)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(api_url={self.api_url!r}, project_id={self.project_id!r}, "
            f"project_key={'<set>' if self._project_key else None}, use_hmac={self.use_hmac})"
        )

    def _copy_with(
        self, timeout: Optional[Timeout], max_retries: Union[int, Retry, None],
        total_timeout: Optional[float], event_hooks: Optional[Mapping[str, Any]],
        extra_headers: Optional[Mapping[str, str]],
    ) -> Any:
        clone = copy.copy(self)
        clone._closes_transport = False
        if timeout is not None:
            clone.timeout = check_timeout(timeout)
        if max_retries is not None:
            clone.max_retries = max_retries
        if total_timeout is not None:
            clone.total_timeout = check_total_timeout(total_timeout)
        if event_hooks is not None:
            clone._event_hooks = check_event_hooks(event_hooks, self._transport.awaits_hooks)
        if extra_headers is not None:
            clone._extra_headers = {**self._extra_headers, **check_extra_headers(extra_headers)}
        return clone

    @staticmethod
    def _record(state: CallState, call: Call[Any]) -> None:
        """Note a finished call for ``with_raw_response``, when it is recording."""
        recording = RECORDING.get()
        if recording is not None:
            recording.append((state, call))

    def _raw_response(self, value: Any, state: CallState, call: Call[Any]) -> RawResponse[Any]:
        """``value`` with what came with it, for ``with_raw_response``."""
        answer, redact = state.answer, self._redactor(call, state)
        return RawResponse(
            value, status_code=answer.status, headers=Headers(answer.headers, redact),
            attempts=state.attempts, elapsed=time.monotonic() - state.started,
            client_request_id=state.client_request_id,
        )

    # -- the pipeline ------------------------------------------------------------------------

    def _build(self, call: Call[Any], state: CallState) -> Request:
        """The request of ``call``; a missing credential is refused here, before the network.
        Its ``X-Client-Request-ID`` is the caller's (``extra_headers``), else a new one, the
        same on every attempt of the call and of a stream started again."""
        headers = dict(self._base_headers)
        remembered = self._jwt_token  # read once: the token sent is the token redacted
        extra = self._extra_headers
        if extra:
            headers.update(extra)
        # (From the OS, not from `random`: workers that seed `random` alike must still send
        # different ids, and a call must not move the application's own sequence.)
        client_request_id = state.client_request_id or extra.get(CLIENT_REQUEST_ID) or token_hex(16)
        headers[CLIENT_REQUEST_ID] = client_request_id
        if call.auth == "project":
            if not self._project_key:
                raise ConfigurationError(
                    f"project_key is required for {call.path.split('?')[0]}: pass "
                    "project_key= or set WAYGPT_PROJECT_KEY"
                )
            headers["x-project-key"] = self._project_key
        elif call.auth == "jwt":
            token = call.jwt_token if call.jwt_token is not None else remembered
            if not token:
                raise ConfigurationError(
                    "the Client API needs a JWT: call client_login() first or pass jwt_token"
                )
            headers["Authorization"] = f"Bearer {check_jwt(token)}"
        body: Optional[bytes] = None
        if call.json is not NO_BODY or call.form is not None:
            body, headers["Content-Type"] = _encode_body(call)
        if call.stream:
            headers["Accept"] = "text/event-stream"
        state.client_request_id = client_request_id  # (once nothing refused the call)
        # A stream started again sends its request anew: what either request carried.
        state.secrets = tuple(dict.fromkeys((*state.secrets, *self._secrets(call, remembered))))
        return Request(
            call.method, self._base_url + call.path, self._base_path + call.path, headers, body
        )

    def _secrets(self, call: Call[Any], jwt_token: Optional[str]) -> Tuple[Optional[str], ...]:
        """What ``call`` sends that an answer must not repeat to a caller."""
        sent = (self._project_key, self._hmac_secret, jwt_token, call.jwt_token)
        return (*sent, *call.secrets)

    def _redactor(self, call: Call[Any], state: CallState) -> LazyRedactor:
        """The redaction of the secrets ``call``'s requests carried (``state.secrets``; what
        they would carry before one is built), made at its first use (an error, a hook, the
        end of a span)."""

        def make() -> Redactor:
            secrets = state.secrets or self._secrets(call, self._jwt_token)
            last = self._redaction
            if last is None or last[0] != secrets:
                last = self._redaction = (secrets, Redactor(secrets))  # safe between threads
            return last[1]

        return LazyRedactor(make)

    def _call_state(self, call: Call[Any]) -> CallState:
        return CallState(RetryState(self._retry_policy, call.method))

    def _steps(
        self, call: Call[Any], deadline: Deadline, state: Optional[CallState] = None
    ) -> Steps:
        """The pipeline of one call: build, sign, send, retry, map errors, decode. Returns the
        decoded answer; for a stream, its answer (headers read) and the parser of its body.
        ``state`` carries a call's attempts and retry budget on when a stream starts again."""
        if state is None:
            state = self._call_state(call)
        if not state.attempts and self._tracer is not None and tracing(self._tracer):
            # Started with the call's first pipeline (a restart carries it on), not before: a
            # call refused before its first step (another event loop's) leaves no span open.
            state.span = CallSpan(
                self._tracer, call.name, call.json, self._server[0], self._server[1],
                self._capture_content, self._redactor(call, state),
            )
        try:
            answer = yield from self._attempts(call, deadline, state)
            if call.stream:
                return (yield from self._stream_start(call, answer, deadline, state))
            body = yield from self._read_body(answer, deadline, SUCCESS_BODY_LIMIT, lenient=False)
            value = self._decode(call, answer, body, state)
        except BaseException as error:  # a hook's exception, a cancelled task too
            # Every error of this call says which call it was, and how many requests it took;
            # a hook's own (perhaps another call's, with its own) is left as it is.
            if isinstance(error, WayGPTError) and id(error) != state.hook_error_id:
                error.attempts = state.attempts
                error.client_request_id = state.client_request_id or None
            state.span.fail(error)
            raise
        state.span.succeed(value)
        return value

    def _attempts(self, call: Call[Any], deadline: Deadline, state: CallState) -> Steps:
        """Send until a 2xx answer arrives (returned with its body unread), or raise."""
        request = self._build(call, state)
        signer = self._signer if call.auth == "project" else None
        redact = self._redactor(call, state)
        hooks = self._event_hooks
        while True:
            if signer is not None:
                # A fresh timestamp, nonce and signature, written over the previous attempt's.
                body = request.body or b""
                request.headers.update(signer.sign(request.method, request.path, body))
            if deadline.expired():
                raise deadline.error()
            view = None  # (and no view made for a call that has no hooks)
            if hooks is not None:
                # The request's headers copied: the next attempt signs over them.
                view = RequestView(
                    request.method, request.url, state.attempts + 1, state.client_request_id,
                    Headers(dict(request.headers), redact, credentials=True),
                )
                if hooks["request"]:
                    yield from _notify(hooks["request"], view, state)
            send = self._send(call, request, deadline, state)
            started = time.monotonic()  # (after the request hooks: the attempt's own time)
            answer = yield send
            if isinstance(answer, TransportFailure):
                _log_attempt(request, None, started, state)
                yield Sleep(self._wait_after_failure(answer, request, deadline, state, redact))
                continue
            _log_attempt(request, answer.status, started, state)
            state.span.status(answer.status)
            if hooks is not None and hooks["response"] and view is not None:
                elapsed = time.monotonic() - started
                seen = ResponseView(view, answer.status, Headers(answer.headers, redact), elapsed)
                yield from _notify(hooks["response"], seen, state, answer)
            if 200 <= answer.status < 300:
                state.answer = answer
                return answer
            delay = yield from self._wait_after_status(
                answer, request, signer, deadline, state, redact
            )
            if delay is not None:  # (None: its clock corrected, it is sent again at once)
                yield Sleep(delay)

    def _send(
        self, call: Call[Any], request: Request, deadline: Deadline, state: CallState
    ) -> Send:
        """The attempt's ``Send``, counted as sent. Nothing is sent past the deadline (checked
        again after the request hooks, which may take their time), nor once the stream this
        call started was closed."""
        remaining = deadline.remaining()
        if remaining <= 0:
            raise deadline.error()
        if state.stopped:
            raise APIConnectionError("the stream was closed before it started again")
        state.attempts += 1
        connect_timeout, read_timeout = split_timeout(self.timeout)
        # A stream's read timeout also bounds each wait between events later on, so it is
        # not shortened; the wait for its headers is bounded by the deadline all the same.
        read = read_timeout if call.stream else min(read_timeout, remaining)
        return Send(request, min(connect_timeout, remaining), read, call.stream)

    def _wait_after_failure(
        self, failure: TransportFailure, request: Request, deadline: Deadline, state: CallState,
        redact: LazyRedactor,
    ) -> float:
        """Seconds to wait before sending again after a transport failure; else its error."""
        if deadline.expired():
            raise deadline.error()
        error: WayGPTError = redact_error(failure.to_error(), redact)
        delay = state.retry.delay_after_failure(failure.kind)
        if delay is None or not deadline.allows(delay):
            if state.attempts > 1:  # "... (3 attempts over 6.1 s)": the silence explained
                elapsed = time.monotonic() - state.started
                error.message += f" ({state.attempts} attempts over {elapsed:.1f} s)"
                error.args = (error.message,)
            raise error
        _log_retry(request, type(error).__name__, delay, state)
        return delay

    def _wait_after_status(
        self, answer: Any, request: Request, signer: Optional[HMACSigner], deadline: Deadline,
        state: CallState, redact: LazyRedactor,
    ) -> Generator[Step, Any, Optional[float]]:
        """Seconds to wait before sending again after a non-2xx answer (None: at once, its
        clock corrected); else the typed error of its status. The answer is closed."""
        status = answer.status
        if status < 200:
            answer.close()
            raise APIConnectionError(
                f"the server sent an informational answer ({status}) and no final answer"
            )
        if status in (401, 403) and signer is not None and not state.clock_corrected:
            # A signature refused by a server whose clock is minutes away from ours: sign
            # again with its time, once per call, outside the retry budget.
            offset = signer.correct_clock(answer.headers.get("date"), request.headers)
            if offset is not None:
                state.clock_corrected = True
                yield from self._read_body(answer, deadline, ERROR_READ_LIMIT, lenient=True)
                logger.info("%s %s -> %d: the server's clock is %+.0f s from this machine's; "
                            "signing with its time from now on", *_said(request), status, offset)
                state.span.clock_corrected(offset)
                return None
        delay = state.retry.delay_after_status(status, answer.headers)
        body = yield from self._read_body(answer, deadline, ERROR_READ_LIMIT, lenient=True)
        if delay is None or not deadline.allows(delay):
            hint = _setting_to_check(status, request, signer, body)
            raise error_from_response(status, answer.headers, body, redact, hint)
        _log_retry(request, f"HTTP {status}", delay, state)
        return delay

    def _stream_start(
        self, call: Call[Any], answer: Any, deadline: Deadline, state: CallState
    ) -> Generator[Step, Any, Tuple[Any, ChatEventParser]]:
        """A 2xx answer to a stream request: an event stream and its parser, or an error."""
        content_type = str(answer.headers.get("content-type", "")).lower()
        redact = self._redactor(call, state)
        if "event-stream" in content_type:
            encoding = answer.headers.get("content-encoding")
            try:  # (refused: a Content-Encoding it cannot decode)
                return answer, ChatEventParser(answer.status, encoding, redact)
            except APIResponseValidationError:
                answer.close()
                raise
        body = None
        if "json" in content_type:  # perhaps a gateway's error object, refusing the stream
            body = yield from self._read_body(answer, deadline, ERROR_BODY_LIMIT, lenient=True)
        answer.close()
        raise not_a_stream_error(answer.status, answer.headers, body, redact)

    def _read_body(
        self, answer: Any, deadline: Deadline, limit: int, *, lenient: bool
    ) -> Generator[Step, Any, bytes]:
        """The whole body of ``answer``, decoded and capped; the answer is closed after."""
        try:
            collector = BodyCollector(answer.status, answer.headers, limit, lenient=lenient)
            while not (lenient and collector.full):
                chunk = yield Read(answer)
                if isinstance(chunk, TransportFailure):
                    if deadline.expired():
                        raise deadline.error()
                    if lenient:  # an error body cut short: its status still says what failed
                        break
                    raise chunk.to_error()
                if not chunk:
                    if collector.short and deadline.expired():
                        raise deadline.error()  # the watchdog ended the read: no real end
                    break
                collector.feed(chunk)
            return collector.finish()
        finally:
            answer.close()

    def _decode(self, call: Call[Any], answer: Any, body: bytes, state: CallState) -> Any:
        """The JSON answer of a successful call, checked against the type the method returns."""
        parsed, data = parse_json(body) if body.strip() else (True, None)
        if parsed and isinstance(data, call.expect):
            return data
        redact = self._redactor(call, state)
        text = None
        if parsed:
            message = f"expected a JSON {call.expect.__name__}, got {type(data).__name__}"
        else:
            # A success body that is not JSON may echo what was sent (key, password, JWT):
            # its secrets are replaced before the snippet and the body are cut from it.
            text = error_body_text(body, redact)
            message = f"expected a JSON answer, got: {text[:200]!r}"
        error = APIResponseValidationError(
            message, answer.status, data, body=text, headers=answer.headers,
            request_id=request_id_of(answer.headers),
        )
        raise redact_error(error, redact)


class StreamRestart:
    """How a stream that failed before its first content starts again: a new attempt of the
    same call, freshly signed, within its deadline and retry budget. The failure is judged as
    an answer with its status would be: an in-stream error by its code, a connection cut after
    the headers as a 503 (the gateway failed before answering). A timeout, or an error with no
    code, is raised."""

    __slots__ = ("_call", "_core", "deadline", "state", "transport")

    def __init__(
        self, core: ClientCore, call: Call[Any], deadline: Deadline, state: CallState
    ) -> None:
        self._core = core
        self._call = call
        self.deadline = deadline
        self.state = state
        self.transport = core._transport

    def delay(self, error: WayGPTError) -> Optional[float]:
        """Seconds to wait before starting again after ``error``; None to raise it."""
        status = 503 if isinstance(error, APIConnectionError) else error.status_code
        if status is None or isinstance(error, APITimeoutError):
            return None
        retry_after = retry_after_in(error.response)
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        delay = self.state.retry.delay_after_status(status, headers)
        if delay is None or not self.deadline.allows(delay):
            return None
        self.state.span.retry(self.state.attempts, type(error).__name__, delay)
        logger.warning(
            "%s %s: the stream failed before its first content (%s); starting it again in "
            "%.2f s (attempt %d)", self._call.method, self._call.path.partition("?")[0],
            type(error).__name__, delay, self.state.attempts + 1,
        )
        return delay

    def steps(self) -> Steps:
        """The pipeline of the next attempt."""
        return self._core._steps(self._call, self.deadline, self.state)


def _encode_body(call: Call[Any]) -> Tuple[bytes, str]:
    """``call``'s body (compact UTF-8 JSON, or the login's form), signed and sent as it is,
    and its Content-Type. Raised outside the ``except``: no exception holding the text (a
    password) is chained to the error."""
    try:
        if call.form is not None:
            return urlencode(call.form).encode("ascii"), "application/x-www-form-urlencoded"
        text = json.dumps(call.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8"), "application/json"
    except UnicodeEncodeError:  # its message would quote the text, which may hold anything
        reason = "a string holds a lone surrogate (such as '\\udce9'), which has no UTF-8 form"
    except (TypeError, ValueError, RecursionError) as exc:
        reason = str(exc)
    what = "cannot be encoded" if call.form is not None else "is not JSON-serialisable"
    raise TypeError(f"request body {what}: {reason}")


def _notify(hooks: Tuple[Any, ...], view: Any, state: CallState, answer: Any = None) -> Steps:
    """The hooks told of ``view``; ``answer`` (when given) is closed if one raises."""
    try:
        yield Notify(hooks, view)
    except BaseException as raised:  # the hook raised (or the call was cancelled)
        state.hook_error_id = id(raised)
        if answer is not None:
            answer.close()
        raise


def _said(request: Request) -> Tuple[str, str]:
    """The method and path a log line names: the path as sent, base path included (a proxy's
    prefix or a wrong api_url shows), its query left out."""
    return request.method, request.path.partition("?")[0]


def _log_attempt(request: Request, status: Optional[int], started: float, state: CallState) -> None:
    logger.debug(
        "%s %s -> %s in %.1f ms (attempt %d, client request id %s)", *_said(request),
        "no answer" if status is None else status, (time.monotonic() - started) * 1000,
        state.attempts, state.client_request_id,
    )


def _setting_to_check(
    status: int, request: Request, signer: Optional[HMACSigner], body: bytes
) -> str:
    """For a refusal of the project key or of a missing signature, the setting behind it."""
    if "x-project-key" not in request.headers:  # a Client API call (JWT)
        return ""
    if status == 401:
        return " (check WAYGPT_PROJECT_KEY or the project_key argument)"
    if status == 403 and signer is None and re.search(rb"(?i)hmac|signature", body):
        return (" (this client does not sign its requests: use_hmac=True or WAYGPT_USE_HMAC=true,"
                " with project_id and hmac_secret)")
    return ""


def _log_retry(request: Request, reason: str, delay: float, state: CallState) -> None:
    """A retry, in the log and as an event of the call's span."""
    attempt = state.attempts
    state.span.retry(attempt, reason, delay)
    # `extra`: for a handler that tells a person (the CLI's line per retry), without parsing.
    logger.warning(
        "%s %s failed (%s); retrying in %.2f s (attempt %d, client request id %s)",
        *_said(request), reason, delay, attempt, state.client_request_id,
        extra={"waygpt_retry_delay": delay, "waygpt_retry_reason": reason,
               "waygpt_attempt": attempt, "waygpt_next_attempt": attempt + 1},
    )
