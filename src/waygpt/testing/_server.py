"""The public ``WayGPTTestServer``: configuration, lifecycle and test-facing helpers."""

import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Sequence, Type

from ._clock import ServerClock, checked_offset
from ._dispatch import Dispatcher
from ._faults import ScriptBook, ScriptedResponse, StreamFault, StreamFaultBook
from ._http import HTTPServer
from ._records import RecordedRequest, RequestLog
from ._state import ServerState

# Deliberately fake credentials: they only ever open this local test server.
DEFAULT_PROJECT_KEY = "sk_live_test_0000000000000000000000000000000000000000"
DEFAULT_PROJECT_ID = "00000000-0000-4000-8000-000000000001"
DEFAULT_HMAC_SECRET = "test-hmac-secret-not-for-production"  # noqa: S105
DEFAULT_USER_EMAIL = "you@example.com"
DEFAULT_USER_PASSWORD = "password"  # noqa: S105
# Far above any real request (a chat with a few base64 images runs to a few MiB), and a
# bound on what one connection can make the server hold.
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024

_STOP_TIMEOUT = 5.0


def _string_list(name: str, value: Optional[Sequence[str]]) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{name} must be a list of strings")
    return list(value)


class WayGPTTestServer:
    """A stateful local WayGPT server for tests, on a background thread.

    It implements every endpoint of the WayGPT protocol with in-memory state
    (projects, use cases, video jobs, tokens, seen nonces), checks project keys,
    JWTs and HMAC signatures as the real server does, enforces each project's
    policy (active, allowed models and domains, rate limits), records every
    request, and can be scripted to fail in specific ways (see
    :class:`ScriptedResponse`, and :class:`StreamFault` for faults inside a stream).

    The keyword-only options set the default project's policy: ``allowed_models``
    and ``allowed_domains`` (None or empty: no restriction), ``rate_limit_rpm`` and
    ``rate_limit_rpd`` (0, the default: not throttled). ``rate_limit_clock`` is the
    clock the rate-limit windows are measured on (``time.monotonic`` by default);
    pass a fake one to test a window freeing up without waiting for it.

    ``clock_offset`` (seconds; negative: behind) sets the server's clock ahead of the
    machine's: the ``Date`` header and the HMAC timestamp window follow it, so a client's
    handling of clock skew can be tested. The ``clock_offset`` property changes it later.

    ``max_body_size`` (bytes, 16 MiB by default) bounds a request body: a larger one is
    refused with 413 before it is read, whatever ``Content-Length`` or chunks announce it.

    A streamed chat whose request asks ``stream_options: {"include_usage": true}`` ends with
    a usage-only chunk (no choices) before ``[DONE]``, as OpenAI's does; with
    ``always_include_usage=True`` every streamed chat does, asked or not, so a test sees
    what a loop meets on a server that always sends one.

    Use it as a context manager::

        with WayGPTTestServer() as server:
            requests.get(server.url + "/api/v1/waygpt/models",
                         headers={"x-project-key": server.project_key})
    """

    def __init__(
        self,
        project_key: str = DEFAULT_PROJECT_KEY,
        project_id: str = DEFAULT_PROJECT_ID,
        hmac_secret: str = DEFAULT_HMAC_SECRET,
        require_hmac: bool = False,
        user_email: str = DEFAULT_USER_EMAIL,
        user_password: str = DEFAULT_USER_PASSWORD,
        token_expires_in: Optional[int] = None,
        job_steps: int = 3,
        timestamp_window: int = 300,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allowed_models: Optional[Sequence[str]] = None,
        allowed_domains: Optional[Sequence[str]] = None,
        rate_limit_rpm: int = 0,
        rate_limit_rpd: int = 0,
        rate_limit_clock: Optional[Callable[[], float]] = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        clock_offset: float = 0.0,
        always_include_usage: bool = False,
    ) -> None:
        if job_steps < 1:
            raise ValueError("job_steps must be at least 1")
        if timestamp_window < 0:
            raise ValueError("timestamp_window cannot be negative")
        models = _string_list("allowed_models", allowed_models)
        domains = _string_list("allowed_domains", allowed_domains)
        for name, limit in (("rate_limit_rpm", rate_limit_rpm), ("rate_limit_rpd", rate_limit_rpd)):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"{name} must be a non-negative int (0: no limit)")
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int):
            raise TypeError("max_body_size must be an int (bytes)")
        if max_body_size < 0:
            raise ValueError("max_body_size cannot be negative")
        if not isinstance(always_include_usage, bool):
            raise TypeError("always_include_usage must be True or False")
        self._always_include_usage = always_include_usage
        self._max_body_size = max_body_size
        self._project_key = project_key
        self._project_id = project_id
        self._hmac_secret = hmac_secret
        self._user_email = user_email
        self._user_password = user_password
        self._host = host
        self._port = port
        self._clock = ServerClock(clock_offset)
        self._state = ServerState(token_expires_in=token_expires_in, clock=self._clock)
        self._state.users[user_email] = user_password
        project = self._state.add_project(
            owner=user_email,
            name="Default project",
            project_id=project_id,
            api_key=project_key,
            hmac_secret=hmac_secret,
            hmac_required=require_hmac,
            allowed_models=models,
            allowed_domains=domains,
            # Unlike a project created through the Client API (60 and 10000), the default
            # project is not throttled unless asked: no test meets a 429 it did not ask for.
            rate_limit_rpm=rate_limit_rpm,
            rate_limit_rpd=rate_limit_rpd,
        )
        self._state.seed_default_use_cases(project)
        self._scripts = ScriptBook()
        self._stream_faults = StreamFaultBook()
        self._log = RequestLog()
        self._dispatcher = Dispatcher(
            self._state,
            self._scripts,
            self._stream_faults,
            job_steps=job_steps,
            timestamp_window=timestamp_window,
            rate_limit_clock=rate_limit_clock or time.monotonic,
            always_include_usage=always_include_usage,
        )
        self._lifecycle = threading.Lock()
        self._count_lock = threading.Lock()
        self._connections = 0
        self._httpd: Optional[HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "WayGPTTestServer":
        """Bind and serve on a background thread; returns self."""
        with self._lifecycle:
            if self._httpd is not None:
                raise RuntimeError("the server is already running")
            httpd = HTTPServer(
                (self._host, self._port),
                dispatcher=self._dispatcher,
                log=self._log,
                on_connection=self._count_connection,
                max_body_size=self._max_body_size,
                clock=self._clock,
            )
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="waygpt-test-server",
                daemon=True,
            )
            self._httpd, self._thread = httpd, thread
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the threads (idempotent)."""
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None or thread is None:
            return
        httpd.close(_STOP_TIMEOUT)
        thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> "WayGPTTestServer":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._httpd.base_url if self._httpd is not None else "stopped"
        return f"<WayGPTTestServer {where}>"

    # -- where and who -------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("the server is not running: call start() or use `with`")
        return httpd.base_url

    @property
    def project_key(self) -> str:
        return self._project_key

    @property
    def project_id(self) -> str:
        return self._project_id

    @property
    def hmac_secret(self) -> str:
        return self._hmac_secret

    @property
    def require_hmac(self) -> bool:
        """Whether the default project demands HMAC signatures (the Client API may change it)."""
        with self._state.lock:
            project = self._state.projects.get(self._project_id)
            return project is not None and project.hmac_required

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock is ahead of this machine's (negative: behind).

        It moves the ``Date`` header of every answer, the HMAC timestamp window, JWT times
        and ``created`` fields. Assign it to move the clock of a running server.
        """
        return self._clock.offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        self._clock.offset = checked_offset(seconds)

    @property
    def max_body_size(self) -> int:
        """The largest request body accepted, in bytes; a larger one is refused with 413."""
        return self._max_body_size

    @property
    def always_include_usage(self) -> bool:
        """Whether every streamed chat ends with a usage-only chunk, asked for or not."""
        return self._always_include_usage

    @property
    def user_email(self) -> str:
        return self._user_email

    @property
    def user_password(self) -> str:
        return self._user_password

    # -- what happened -------------------------------------------------------
    @property
    def requests(self) -> List[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        return self._log.snapshot()

    @property
    def last_request(self) -> Optional[RecordedRequest]:
        return self._log.last()

    def clear_requests(self) -> None:
        self._log.clear()

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (keep-alive reuse keeps this low)."""
        with self._count_lock:
            return self._connections

    @property
    def open_connections(self) -> int:
        """TCP connections open right now (the server closes its end soon after a client does)."""
        httpd = self._httpd
        return 0 if httpd is None else httpd.live_connections

    def wait_for_open_connections(self, count: int, timeout: float = 5.0) -> int:
        """Wait until exactly ``count`` connections are open (or ``timeout``); the last count."""
        deadline = time.monotonic() + timeout
        while self.open_connections != count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open_connections

    def _count_connection(self) -> None:
        with self._count_lock:
            self._connections += 1

    # -- scripting -----------------------------------------------------------
    def script(
        self, response: Optional[ScriptedResponse] = None, **fields: Any
    ) -> ScriptedResponse:
        """Queue a scripted answer, given as a ScriptedResponse or as its fields."""
        if response is None:
            response = ScriptedResponse(**fields)
        elif fields:
            raise TypeError("pass either a ScriptedResponse or keyword fields, not both")
        self._scripts.add(response)
        return response

    def script_stream_fault(
        self, fault: Optional[StreamFault] = None, **fields: Any
    ) -> StreamFault:
        """Queue a fault in the next streamed chat completion(s), given as a StreamFault or
        as its fields: ``after_events`` normal events, then ``cut="close"`` or ``"reset"``,
        or an in-stream error event with ``error_code`` (and ``error_message``); ``times``.

        ``server.script_stream_fault(after_events=2, cut="reset", times=3)`` resets the
        next three streams after two content chunks each.
        """
        if fault is None:
            fault = StreamFault(**fields)
        elif fields:
            raise TypeError("pass either a StreamFault or keyword fields, not both")
        self._stream_faults.add(fault)
        return fault

    def clear_scripts(self) -> None:
        """Drop every queued script and stream fault."""
        self._scripts.clear()
        self._stream_faults.clear()

    @property
    def pending_scripts(self) -> List[ScriptedResponse]:
        """Scripts that still have uses left, in matching order."""
        return self._scripts.pending()

    @property
    def pending_stream_faults(self) -> List[StreamFault]:
        """Stream faults that still have uses left, in order."""
        return self._stream_faults.pending()

    # -- state ---------------------------------------------------------------
    @property
    def jobs(self) -> Dict[str, Dict[str, Any]]:
        """A snapshot of every media job (reading it does not advance them)."""
        with self._state.lock:
            return {job_id: job.public() for job_id, job in self._state.jobs.items()}

    def fail_job(self, job_id: str, error: str = "Video generation failed") -> None:
        """Make a media job fail; its next poll reports ``status: failed``."""
        with self._state.lock:
            job = self._state.jobs.get(job_id)
            if job is None:
                raise KeyError(f"no media job {job_id!r}")
            job.status = "failed"
            job.error = error

    def issue_token(self) -> str:
        """A valid Client API token for the default user, without a login request."""
        return self._state.issue_token(self._user_email)

    def add_user(self, email: str, password: str) -> None:
        """Add another Client API account (it owns no project at first)."""
        with self._state.lock:
            self._state.users[email] = password
