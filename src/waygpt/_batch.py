"""``waygpt.batch``: thousands of requests from a JSONL file, bounded, throttled, resumable.

The decisions are made here once, for both drivers: which failures are retried and after
how long (:func:`_retry_delay`), the rate limit and the pause every request waits after a
429 (:class:`_Gate`), what is written (:meth:`_Run.settle`), when to stop. The drivers only
wait and call: threads for ``WayGPTClient`` (below), asyncio tasks for ``AsyncWayGPTClient``
(``_batch_async.py``, imported only for it). The runner makes its own retries, on a copy
of the client with ``max_retries=0``, so that every attempt goes through the rate limit and
a 429 holds back every worker, visibly.
"""

from __future__ import annotations

import collections
import functools
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Coroutine,
    Deque,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Protocol,
    TextIO,
    Union,
    overload,
)

from ._batch_files import (
    BatchInputError,
    BatchRequest,
    OutputFile,
    PathLike,
    RequestSource,
    Resume,
    check_requests,
    pending_requests,
)
from ._batch_progress import BatchDisplay, Snapshot, format_duration
from .client import WayGPTClient
from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
    WayGPTError,
    parse_retry_after,
)
from .retry import MAX_RETRY_AFTER, RetryPolicy, default_retry

if TYPE_CHECKING:
    from ._async_client import AsyncWayGPTClient

__all__ = ["BatchInputError", "BatchSummary", "batch"]

DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_RETRIES = 5
DEFAULT_GRACE = 10.0
# --rpm: at most that many attempts start in any window of this many seconds, as the server
# counts them; the window is taken 1% longer so that a request's trip to the server (which
# counts its arrival, not its departure) cannot make it one too many.
_RPM_WINDOW = 60.0
_RPM_SLACK = 1.01
# The statuses retried and the backoff are the client's defaults; only the budget
# (``max_retries``) is the batch's own.
_POLICY = RetryPolicy(default_retry())
# How often the driver looks at the stop event and redraws the progress.
_TICK = 0.1
# What a request's call may raise as its outcome (a ValueError: the client's own checks of
# the body); anything else (a hook's exception) stops the run.
CALL_ERRORS = (WayGPTError, ValueError)
_STATUS_CODES = {
    400: "bad_request", 401: "authentication_error", 403: "permission_denied",
    404: "not_found", 409: "conflict", 413: "request_too_large",
    422: "unprocessable_entity", 429: "rate_limited",
}


class _Stop(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class BatchSummary:
    """What one run of :func:`batch` did.

    ``total`` requests in the input; ``skipped`` already had a line in the output (of them
    ``skipped_failed`` an error line, kept because ``retry_failed`` was off); this run wrote
    ``succeeded`` answers and ``failed`` error lines (``errors``: how many of each error
    ``code``); ``not_run`` requests are left for the next run (the run was stopped).
    ``prompt_tokens``, ``completion_tokens`` and ``total_tokens`` add up the answers'
    ``usage``; ``retries`` attempts were repeated, ``rate_limited`` of them after a 429;
    ``elapsed`` is the run's wall time in seconds.
    """

    output: str
    total: int
    succeeded: int
    failed: int
    skipped: int
    skipped_failed: int
    not_run: int
    interrupted: bool
    elapsed: float
    errors: Mapping[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    retries: int = 0
    rate_limited: int = 0

    @property
    def ok(self) -> bool:
        """Every request of the input has an answer in the output (no error line)."""
        return not (self.failed or self.skipped_failed or self.not_run or self.interrupted)

    def as_dict(self) -> Dict[str, Any]:
        """The summary as a JSON-ready dict (``ok`` included)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["errors"] = dict(self.errors)
        fields["elapsed"] = round(self.elapsed, 3)
        fields["ok"] = self.ok
        return fields


# -- the decisions ----------------------------------------------------------------------------


def _header(error: WayGPTError, name: str) -> Optional[str]:
    for key, value in error.headers.items():
        if key.lower() == name:
            return value
    return None


def _retry_delay(error: BaseException, attempt: int) -> Optional[float]:
    """Seconds before attempt ``attempt + 1``, or None when ``error`` is final.

    Retried: a 429 (the caller pauses every request for the delay), the other statuses the
    client retries (``waygpt.retry.DEFAULT_STATUS_FORCELIST``; after their ``Retry-After``
    when it is at most ``MAX_RETRY_AFTER``), and a failed connection or a timeout (a chat
    completion or an image generation sent twice costs twice, nothing worse). Without a
    ``Retry-After``, the client's backoff. Everything else is final: another 4xx would fail
    the same way again.
    """
    if isinstance(error, RateLimitError):
        return error.retry_after if error.retry_after is not None else _POLICY.backoff(attempt)
    if isinstance(error, APIStatusError) and error.status_code in _POLICY.status_forcelist:
        hint = parse_retry_after(_header(error, "retry-after"))
        return hint if hint is not None and hint <= MAX_RETRY_AFTER else _POLICY.backoff(attempt)
    if isinstance(error, APIConnectionError):
        return _POLICY.backoff(attempt)
    return None


def _error_code(error: BaseException) -> str:
    """The ``code`` of an error line."""
    if isinstance(error, APITimeoutError):
        return "timeout"
    if isinstance(error, APIConnectionError):
        return "connection_error"
    if isinstance(error, APIStatusError):
        status = error.status_code
        return _STATUS_CODES.get(status) or ("server_error" if status >= 500 else f"http_{status}")
    if isinstance(error, APIResponseValidationError):
        return "invalid_response"
    if isinstance(error, ValueError):  # the client's own checks refused the body
        return "invalid_request"
    return "error"


class _Gate:
    """When the next attempt may start: after the pause a 429 set, within ``rpm``.

    ``rpm``: at most that many attempts in any ``_RPM_WINDOW`` seconds (a sliding window, as
    the server counts), so a burst of up to ``rpm`` goes at once and the rest follow as the
    window frees up. Thread-safe; it never blocks: :meth:`admit` says how long to wait.
    """

    def __init__(self, rpm: Optional[int]) -> None:
        self._lock = threading.Lock()
        self._limit = rpm or 0
        self._window = _RPM_WINDOW * _RPM_SLACK
        self._starts: Deque[float] = collections.deque(maxlen=self._limit or None)
        self.paused_until = 0.0

    def admit(self, now: float) -> float:
        """0 when an attempt may start now (it is counted), else the seconds to wait."""
        with self._lock:
            wait = self.paused_until - now
            if wait > 0:
                return wait
            if self._limit:
                if len(self._starts) == self._limit:
                    wait = self._starts[0] + self._window - now
                    if wait > 0:
                        return wait
                self._starts.append(now)
            return 0.0

    def pause(self, now: float, seconds: float) -> bool:
        """Hold every attempt back ``seconds`` from ``now``; True when a new pause begins."""
        with self._lock:
            began = self.paused_until <= now
            self.paused_until = max(self.paused_until, now + seconds)
            return began

    def throttled_for(self, now: float) -> float:
        """Seconds until ``rpm`` lets the next attempt start (0: it may now)."""
        with self._lock:
            if not self._limit or len(self._starts) < self._limit:
                return 0.0
            return max(0.0, self._starts[0] + self._window - now)


# -- one run ----------------------------------------------------------------------------------


class _Run:
    """The state of one run, shared by its workers: the feed, the gate, the writer, the
    counters, and the stop."""

    def __init__(
        self,
        client: Any,
        source: RequestSource,
        output: OutputFile,
        total: int,
        resume: Resume,
        *,
        concurrency: int,
        rpm: Optional[int],
        max_retries: int,
        grace: float,
        display: Optional[BatchDisplay],
    ) -> None:
        raw = client.with_options(max_retries=0).with_raw_response
        self.calls: Dict[str, Callable[..., Any]] = {
            "chat_completions": raw.chat_completions,
            "image_generations": raw.image_generations,
        }
        self.output = output
        self.gate = _Gate(rpm)
        self.concurrency = concurrency
        self.rpm = rpm
        self.max_retries = max_retries
        self.grace = grace
        self.display = display
        self.total = total
        self.skipped = len(resume.done)
        self.skipped_failed = resume.failed
        self.to_run = total - self.skipped
        self.halt = threading.Event()  # no new request, no new attempt
        self.stop_deadline: Optional[float] = None
        self.fatal: Optional[BaseException] = None
        self._feed = pending_requests(source, resume.done)
        self._feed_lock = threading.Lock()
        self._lock = threading.Lock()  # the counters, and the writer with them
        self.in_flight = self.waiting = 0
        self.succeeded = self.failed = self.retries = self.rate_limited = 0
        self.errors: Dict[str, int] = {}
        self.tokens = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self.started = time.monotonic()

    def take(self) -> Optional[BatchRequest]:
        """The next request to run, or None: none left, or the run is stopping."""
        if self.halt.is_set():
            return None
        with self._feed_lock:
            request = next(self._feed, None)
        if request is not None:
            with self._lock:
                self.in_flight += 1
        return request

    def settle(
        self, request: BatchRequest, attempt: int, raw: Any, error: Optional[BaseException]
    ) -> Optional[float]:
        """Record attempt ``attempt``'s outcome: None when the request is done (its line
        written, or abandoned as the run stops), else the seconds before the next attempt."""
        line: Dict[str, Any]
        if error is None:
            body = raw.parse()
            line = {"id": _line_id(), "custom_id": request.custom_id,
                    "response": {"status_code": raw.status_code, "request_id": raw.request_id,
                                 "body": body}, "error": None}
        else:
            if isinstance(error, RateLimitError):
                with self._lock:
                    self.rate_limited += 1
            delay = _retry_delay(error, attempt) if attempt <= self.max_retries else None
            if delay is not None:
                if self.halt.is_set():
                    self.abandon()
                    return None
                if isinstance(error, RateLimitError):
                    self._pause(delay)
                    delay = 0.0  # the gate holds it back, with every other request
                with self._lock:
                    self.retries += 1
                return delay
            line = {"id": _line_id(), "custom_id": request.custom_id, "response": None,
                    "error": {"code": _error_code(error),
                              "message": str(getattr(error, "message", None) or error),
                              "status_code": getattr(error, "status_code", None),
                              "request_id": getattr(error, "request_id", None)}}
        with self._lock:
            written = self.output.write(line)
            self.in_flight -= 1
            if not written:
                return None  # the run was abandoned: the request runs again next time
            if error is None:
                self.succeeded += 1
                _add_usage(self.tokens, line["response"]["body"])
            else:
                self.failed += 1
                code = line["error"]["code"]
                self.errors[code] = self.errors.get(code, 0) + 1
        return None

    def _pause(self, seconds: float) -> None:
        if self.gate.pause(time.monotonic(), seconds) and self.display is not None:
            self.display.note(f"rate limited (429): every request waits {format_duration(seconds)}")

    def abandon(self) -> None:
        """A request left without a line: it runs again next time."""
        with self._lock:
            self.in_flight -= 1

    def crash(self, error: BaseException) -> None:
        """Something other than a request's failure (a hook raised): stop, then raise it."""
        with self._lock:
            if self.fatal is None:
                self.fatal = error
        self.stop(time.monotonic(), f"stopping: {type(error).__name__}: {error}")

    def stop(self, now: float, reason: str = "stopping") -> None:
        """Take no new request and start no new attempt; those in flight get ``grace``."""
        if self.halt.is_set():
            return
        self.halt.set()
        self.stop_deadline = now + self.grace
        if self.display is not None:
            with self._lock:
                flying = self.in_flight
            if flying:
                reason += (f": waiting up to {format_duration(self.grace)} for {flying} request"
                           f"{'s' if flying > 1 else ''} in flight")
            self.display.note(reason)

    def watch(self, stop: Optional[_Stop]) -> bool:
        """The driver's tick: honour ``stop``, redraw; True when the grace has run out."""
        now = time.monotonic()
        if stop is not None and not self.halt.is_set() and stop.is_set():
            self.stop(now)
        if self.display is not None:
            self.display.tick(self.snapshot(now))
        return self.stop_deadline is not None and now >= self.stop_deadline

    def snapshot(self, now: float) -> Snapshot:
        with self._lock:
            finished, failed = self.succeeded + self.failed, self.failed
            in_flight, waiting = self.in_flight, self.waiting
        reason: Optional[str] = None
        paused = self.gate.paused_until - now
        if paused > 0:
            reason = f"rate limited, resuming in {format_duration(paused)}"
        elif waiting and self.rpm:
            throttled = self.gate.throttled_for(now)
            if throttled > 0:
                reason = f"at --rpm {self.rpm}, next request in {format_duration(throttled)}"
        return Snapshot(self.to_run, finished, failed, in_flight, now - self.started, reason)

    def wait_mark(self, delta: int) -> None:
        with self._lock:
            self.waiting += delta

    def finish(self, interrupted: bool) -> BatchSummary:
        """Close the output (a late answer writes nothing) and sum up; show the summary."""
        with self._lock:
            self.output.close()
            not_run = self.to_run - self.succeeded - self.failed
            summary = BatchSummary(
                output=self.output.path, total=self.total, succeeded=self.succeeded,
                failed=self.failed, skipped=self.skipped, skipped_failed=self.skipped_failed,
                not_run=not_run, interrupted=interrupted or not_run > 0,
                elapsed=time.monotonic() - self.started, errors=dict(self.errors),
                retries=self.retries, rate_limited=self.rate_limited, **self.tokens,
            )
        if self.display is not None:
            self.display.finish(summary)
        return summary


def _line_id() -> str:
    return "batch_req_" + uuid.uuid4().hex


def _add_usage(tokens: Dict[str, int], body: Any) -> None:
    usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(usage, dict):
        for name in tokens:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                tokens[name] += value


# -- the thread driver ------------------------------------------------------------------------


def _worker(run: _Run, finished: Callable[[], None]) -> None:
    request: Optional[BatchRequest] = None
    try:
        while True:
            request = run.take()
            if request is None:
                return
            call = run.calls[request.method]
            attempt = 0
            while True:
                wait = run.gate.admit(time.monotonic())
                if wait > 0:
                    run.wait_mark(1)
                    halted = run.halt.wait(wait)
                    run.wait_mark(-1)
                    if halted:
                        run.abandon()
                        break
                    continue
                if run.halt.is_set():
                    run.abandon()
                    break
                attempt += 1
                try:
                    raw, error = call(**request.body), None
                except CALL_ERRORS as exc:
                    raw, error = None, exc
                delay = run.settle(request, attempt, raw, error)
                if delay is None:
                    break
                if delay > 0 and run.halt.wait(delay):
                    run.abandon()
                    break
            request = None
    except BaseException as exc:  # noqa: BLE001 - a hook's, or the input's: stop, raise it
        if request is not None:
            run.abandon()
        run.crash(exc)
    finally:
        finished()


def _drive_threads(run: _Run, stop: Optional[_Stop]) -> BatchSummary:
    run.watch(stop)  # a stop asked for during the checks: nothing starts
    count = min(run.concurrency, run.to_run) if not run.halt.is_set() else 0
    done = threading.Event()
    live = [count]
    live_lock = threading.Lock()

    def finished() -> None:
        with live_lock:
            live[0] -= 1
            if live[0] == 0:
                done.set()

    if count == 0:
        done.set()
    # Daemon threads: a request abandoned after the grace must not keep the process alive.
    for index in range(count):
        threading.Thread(target=_worker, args=(run, finished), daemon=True,
                         name=f"waygpt-batch-{index}").start()
    try:
        while not done.wait(_TICK):
            if run.watch(stop):
                break
    except KeyboardInterrupt:
        run.halt.set()
        run.finish(interrupted=True)
        raise
    summary = run.finish(interrupted=False)
    if run.fatal is not None:
        raise run.fatal
    return summary


# -- the entry point --------------------------------------------------------------------------


def _prepare(
    client: Any,
    requests: Union[PathLike, Iterable[Mapping[str, Any]]],
    output: PathLike,
    *,
    concurrency: int,
    rpm: Optional[int],
    max_retries: int,
    retry_failed: bool,
    progress: Optional[TextIO],
    grace: float,
) -> _Run:
    """Check the input and the output file, before anything is sent; the run, ready."""
    source = RequestSource(requests)
    out = OutputFile(output)
    if source.path is not None and _same_file(source.path, out.path):
        raise BatchInputError(f"the output file {out.path} is the input file")
    ids = check_requests(source)
    resume = out.resume(ids, retry_failed)
    out.open()
    display = BatchDisplay(progress) if progress is not None else None
    run = _Run(client, source, out, len(ids), resume, concurrency=concurrency, rpm=rpm,
               max_retries=max_retries, grace=grace, display=display)
    if display is not None:
        display.start(source.name, run.total, run.skipped, resume, concurrency, rpm, out.path)
    return run


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # the output does not exist yet
        return False


def _checked(name: str, value: Any, low: float, integer: bool = True) -> None:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or (integer and not isinstance(number, int)) or not number >= low:
        kind = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {kind} of at least {low:g}, not {value!r}")


@overload
def batch(
    client: WayGPTClient,
    requests: Union[PathLike, Iterable[Mapping[str, Any]]],
    output: PathLike,
    *,
    concurrency: int = ...,
    rpm: Optional[int] = ...,
    max_retries: int = ...,
    retry_failed: bool = ...,
    progress: Optional[TextIO] = ...,
    stop: Optional[_Stop] = ...,
    grace: float = ...,
) -> BatchSummary: ...


@overload
def batch(
    client: AsyncWayGPTClient,
    requests: Union[PathLike, Iterable[Mapping[str, Any]]],
    output: PathLike,
    *,
    concurrency: int = ...,
    rpm: Optional[int] = ...,
    max_retries: int = ...,
    retry_failed: bool = ...,
    progress: Optional[TextIO] = ...,
    stop: Optional[_Stop] = ...,
    grace: float = ...,
) -> Coroutine[Any, Any, BatchSummary]: ...


def batch(
    client: Union[WayGPTClient, AsyncWayGPTClient],
    requests: Union[PathLike, Iterable[Mapping[str, Any]]],
    output: PathLike,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    rpm: Optional[int] = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_failed: bool = False,
    progress: Optional[TextIO] = None,
    stop: Optional[_Stop] = None,
    grace: float = DEFAULT_GRACE,
) -> Union[BatchSummary, Coroutine[Any, Any, BatchSummary]]:
    """Run many chat completions and image generations; write each answer to ``output``.

    ``requests`` is the path of a JSONL file in the OpenAI Batch API's format (one
    ``{"custom_id", "method", "url", "body"}`` object a line; read twice, never whole) or an
    iterable of such dicts. Every request is checked before the first is sent. Each answer
    is appended to ``output`` as one line of the Batch API's output format as soon as it
    arrives: ``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
    "error": null}``, or ``"response": null`` and ``"error": {"code", "message", ...}`` for
    a request that failed for good. Run it again with the same ``output`` and the requests
    that have a line are skipped; ``retry_failed=True`` runs the error lines' requests again.

    With a ``WayGPTClient`` it runs in threads and returns the summary; with an
    ``AsyncWayGPTClient`` it returns a coroutine to await, which runs in tasks.

    Args:
        concurrency: requests in flight at once (``WayGPTClient`` pools 32 connections).
        rpm: at most this many attempts (retries included) start in any 60 s.
        max_retries: retries of a request after a status the client retries (429 and
            5xx: ``waygpt.retry.DEFAULT_STATUS_FORCELIST``), a failed connection or a
            timeout; a 429 pauses every request for its ``Retry-After``.
            Any other error is final at once.
        retry_failed: run again the requests whose line in ``output`` is an error line.
        progress: a stream to show progress on (a bar on a terminal, else a line every
            10% or 30 s) and the summary.
        stop: an event (``threading.Event``, ``asyncio.Event``): once set, no new request
            starts, and those in flight have ``grace`` seconds to finish. A
            ``KeyboardInterrupt`` (or the coroutine's cancellation) abandons them at once;
            it is raised again once ``output`` is closed.

    Raises:
        BatchInputError: (a ``ValueError``) a request is malformed, its ``url`` unknown or
            its ``custom_id`` repeated (with line numbers), or ``output`` holds lines that
            are not batch output; raised before anything is sent.
        OSError: a file cannot be read or written.
    """
    _checked("concurrency", concurrency, 1)
    if rpm is not None:
        _checked("rpm", rpm, 1)
    _checked("max_retries", max_retries, 0)
    _checked("grace", grace, 0, integer=False)
    prepare = functools.partial(
        _prepare, client, requests, output, concurrency=concurrency, rpm=rpm,
        max_retries=max_retries, retry_failed=retry_failed, progress=progress, grace=grace,
    )
    if isinstance(client, WayGPTClient):
        return _drive_threads(prepare(), stop)
    from ._async_client import AsyncWayGPTClient

    if isinstance(client, AsyncWayGPTClient):
        from ._batch_async import run_batch

        return run_batch(prepare, stop)
    raise TypeError(f"batch needs a WayGPTClient or an AsyncWayGPTClient, not {client!r}")
