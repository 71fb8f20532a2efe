"""The requests transport: runs the pipeline's steps with blocking calls on one
``requests.Session``, and reads its answers' bodies.

The client's own session makes connections and answers of the SDK's classes (urllib3's
``ConnectionCls``, ``http.client``'s ``response_class``): a connection knows the call that
sent on it last, so that a call's deadline ends its socket and no other; an answer skips 1xx
heads and refuses a head cut short. The why of each, fork safety and the deadline watchdog:
docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import threading
import time
from http.client import RemoteDisconnected
from typing import Any, Callable, Dict, Iterator, List, Optional

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, EmptyPoolError, NewConnectionError

from ._body import READ_SIZE
from ._chat_events import ChatEventParser
from ._config import ca_bundle_from_environment, check_max_connections
from ._core import Deadline, Notify, Read, Send, Steps
from ._fork import fork_generation, keep_inherited
from ._observe import AnswerHeaders
from ._stream_loop import Restart
from ._watchdog import WATCHDOG
from .errors import ConfigurationError, TransportFailure, WayGPTError, forget_internal_locals
from .retry import CONNECT_FAILURE, OTHER_FAILURE, STALE_CONNECTION
from .streaming import ChatStream

# The call each thread is making: the SDK's connections and answers note themselves on it.
_current = threading.local()
# Held while a connection changes hands and while a call's socket is shut, so that a call
# never ends a connection that went back to the pool and that another call has taken.
_claims = threading.Lock()
# After a stream's [DONE], how long and how much it waits for the end of the body so that
# the connection can be reused; past either bound the connection is closed.
_DRAIN_SECONDS = 0.1
_DRAIN_BYTES = 64 * 1024
# With no max_connections, the connections kept for reuse per host: one per thread of any
# likely thread pool (past it, a connection is closed after its call, urllib3 logs a
# warning, and the next call connects again). urllib3 fills a pool's queue when it makes
# it: 1000 would add a millisecond to a client's first call, 256 a tenth of one.
_KEPT_CONNECTIONS = 256

# -- connections that know their call ---------------------------------------------------------


class _CallWatch:
    """What ends a call's I/O at its deadline, or a stream's read blocked in another thread:
    the socket of the connection the call last sent on, while no other call has taken it."""

    __slots__ = ("at", "conn", "raw", "response", "shut_down", "sock")

    def __init__(self, at: float) -> None:
        self.at = at  # the call's deadline (time.monotonic())
        self.shut_down = False  # its socket was shut: the end of an answer is no real end
        self.conn: Any = None  # the SDK's pooled connection the call last sent on
        self.sock: Any = None  # the socket its answer came on (close-delimited: not conn's)
        self.response: Any = None  # that answer's http.client response
        self.raw: Any = None  # the urllib3 answer (a caller's session: the only way in)

    def socket(self) -> Any:
        """The call's socket, while it is the call's (read under ``_claims``)."""
        conn = self.conn
        if conn is None:  # a caller's session: its own pools; the answer's connection
            return getattr(getattr(self.raw, "connection", None), "sock", None)
        if conn.waygpt_call is not self:
            return None  # handed back and taken by another call: not this call's to end
        return self.sock or conn.sock

    def shut(self) -> None:
        """Shut the call's socket down: a read or write blocked on it returns at once."""
        with _claims:
            if self.conn is None and hasattr(self.raw, "shutdown"):  # a caller's, urllib3 2.3+
                self.shut_down = True
                with contextlib.suppress(Exception):  # released already: nothing to end
                    self.raw.shutdown()
                return
            sock = self.socket()
            if self.conn is not None and sock is not None:
                self.conn.waygpt_shut = True  # whoever sends on it next connects again
            if isinstance(sock, socket.socket):
                self.shut_down = True
                # socket.socket's own shutdown, not SSLSocket's (which also drops its TLS
                # object while another thread may be reading through it).
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _HeadCutOff(http.client.HTTPException):
    """The connection closed before the blank line that ends an answer's headers."""


class _HeadReader:
    """The connection's reader while an answer's head is read: remembers its last line."""

    __slots__ = ("_fp", "last_line")

    def __init__(self, fp: Any) -> None:
        self._fp = fp
        self.last_line = b"\n"

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self._fp.readline(limit)
        self.last_line = line
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _FinalResponse(http.client.HTTPResponse):
    """An ``http.client`` response that notes its socket on the thread's current call,
    skips every informational (1xx) answer (``http.client`` would take a ``103 Early Hints``
    for the final one) and refuses a head cut short (which ``http.client`` would take for a
    complete answer without a body).
    """

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        watch = getattr(_current, "watch", None)
        if watch is not None:  # (a close-delimited answer takes the socket from its connection)
            watch.sock, watch.response = sock, self

    def begin(self) -> None:
        reader: Any = self.fp
        watched: Any = _HeadReader(reader)
        self.fp = watched
        try:
            super().begin()
            while 100 < self.status < 200 and self.status != 101:  # the final answer follows
                self.headers = None  # type: ignore[assignment] # begin() reads a head into none
                super().begin()
        finally:
            if self.fp is watched:  # (None when begin closed an answer without a body)
                self.fp = reader
        if watched.last_line not in (b"\r\n", b"\n"):
            self.close()
            raise _HeadCutOff("the answer's head ended without its blank line")


class _Claimed:
    """A connection that knows the call that sent on it last (see ``_CallWatch``)."""

    waygpt_call: Any = None
    waygpt_shut = False  # a call's deadline shut its socket

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = getattr(_current, "watch", None)
        with _claims:
            self.waygpt_call = watch
            shut, self.waygpt_shut = self.waygpt_shut, False
            if watch is not None:
                watch.conn, watch.sock, watch.response = self, None, None
        if shut:  # shut by the deadline of the call that used it before: a new socket
            self.close()  # type: ignore[attr-defined]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _Connection(_Claimed, HTTPConnection):
    response_class = _FinalResponse


class _HTTPSConnection(_Claimed, HTTPSConnection):
    response_class = _FinalResponse


class _Pool:
    """A pool whose wait for a free connection (``max_connections``: a blocking pool) ends
    at the deadline of the call that waits; urllib3's own wait has no end."""

    block: bool

    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        watch = getattr(_current, "watch", None)
        if self.block and timeout is None and watch is not None:
            timeout = max(watch.at - time.monotonic(), 0.0)
        return super()._get_conn(timeout)  # type: ignore[misc]


class _HTTPPool(_Pool, HTTPConnectionPool):
    ConnectionCls = _Connection


class _HTTPSPool(_Pool, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def _use_own_pools(manager: Any) -> Any:
    classes = getattr(manager, "pool_classes_by_scheme", None)
    # Only the standard pools are replaced (a SOCKS proxy manager has its own).
    if isinstance(classes, dict) and classes.get("http") is HTTPConnectionPool:
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


class _SDKAdapter(HTTPAdapter):
    """requests' adapter, with the SDK's pools."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_own_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _use_own_pools(super().proxy_manager_for(proxy, **proxy_kwargs))


# -- failures -------------------------------------------------------------------------------


_OS_ERROR_MODULES = ("builtins", "socket", "ssl", "http.client")


def exception_chain(exc: BaseException) -> List[BaseException]:
    """The exception and what it wraps (requests wraps urllib3, which wraps the socket error)."""
    chain: List[BaseException] = []
    pending: List[Any] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        pending.extend(current.args)
    return chain


def transport_failure(exc: BaseException) -> TransportFailure:
    """What a requests/urllib3/socket exception means for the call, without the exception."""
    chain = exception_chain(exc)
    if any(isinstance(e, _HeadCutOff) for e in chain):
        return TransportFailure(OTHER_FAILURE, "connection closed in the middle of the headers")
    if any(isinstance(e, EmptyPoolError) for e in chain):  # (max_connections, all busy)
        return TransportFailure(OTHER_FAILURE, "no connection became free in time", timed_out=True)
    if any(isinstance(e, (NewConnectionError, ConnectTimeoutError)) for e in chain):
        kind = CONNECT_FAILURE
    elif any(isinstance(e, RemoteDisconnected) for e in chain):
        kind = STALE_CONNECTION
    else:
        kind = OTHER_FAILURE
    if any(
        isinstance(e, (TimeoutError, socket.timeout, requests.exceptions.Timeout))
        # (by name: urllib3's NewConnectionError is a ConnectTimeoutError too)
        or type(e).__name__ in ("ReadTimeoutError", "ConnectTimeoutError")
        for e in chain
    ):
        return TransportFailure(kind, "request timed out", timed_out=True)
    # The innermost OS error says it best: its strerror ("Connection refused"), else its text
    # ("Tunnel connection failed: 407 Proxy Authentication Required"), cut short; never the
    # text of requests' own exceptions (OSErrors too), which repeats the URL.
    reasons = [e.strerror or str(e)[:200] for e in chain
               if isinstance(e, OSError) and type(e).__module__ in _OS_ERROR_MODULES]
    reason = next((text for text in reversed(reasons) if text), type(chain[-1]).__name__)
    return TransportFailure(kind, f"connection failed: {reason}")


# -- requests ---------------------------------------------------------------------------------


def _prepare(
    method: str, url: str, headers: Dict[str, str], body: Optional[bytes]
) -> requests.PreparedRequest:
    """What ``requests.Request(...).prepare()`` builds for our requests, at a tenth of its cost.

    The URL is already prepared (base URL once, path segments and query percent-encoded by
    the core), the headers were checked when configured, the body is bytes or None, and
    there are no cookies, hooks or auth. tests/reliability/test_fast_prepare.py checks that
    the result is identical.
    """
    prepared = requests.PreparedRequest()
    prepared.method = method
    prepared.url = url
    if body:
        headers["Content-Length"] = str(len(body))
    else:
        body = None  # as requests: an empty body is no body
        if method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
    prepared.headers = CaseInsensitiveDict(headers)
    prepared.body = body
    # An empty jar (no Cookie header): Session.send reads it when an answer is a redirect.
    prepared.prepare_cookies(RequestsCookieJar())
    return prepared


def _keep_authorization(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An auth that keeps the Client API's Bearer header over a session's auth or netrc."""
    return request


class RequestsAnswer:
    """An answer whose headers have been read; its body is read by the pipeline or a stream.

    A stream's body is read as soon as bytes arrive, so that an event is handed out as soon
    as its last byte is in: with ``http.client``'s ``read1`` on the client's own answer
    (16 % more events per CPU second than urllib3's, docs/performance.md), with urllib3's on
    a caller's session. Any other body is read in blocks.
    """

    __slots__ = ("_ended", "_left", "_plain", "_read", "_watch", "headers", "raw", "response",
                 "status")

    def __init__(self, response: requests.Response, stream: bool, watch: _CallWatch) -> None:
        self._watch = watch
        self.response = response
        self.raw = raw = response.raw
        self.status = int(response.status_code)
        # Read as the async client reads them (AnswerHeaders): from urllib3's headers, since
        # requests' own mapping joins a repeated header's values into one.
        values = getattr(getattr(raw, "headers", None), "getlist", None)
        self.headers = response.headers if values is None else AnswerHeaders(raw.headers, values)
        self._ended = False  # read() returned the end of the body
        self._plain: Any = watch.response if stream else None  # the http.client answer
        # A stream's body still to come, when a Content-Length says so: http.client ends a
        # short body without a word.
        self._left: Optional[int] = None
        self._read: Optional[Callable[[], bytes]] = None  # None: not a stream, read in blocks
        if not stream:
            return
        if self._plain is not None:
            self._left = getattr(raw, "length_remaining", None)
            self._read = functools.partial(self._plain.read1, READ_SIZE)
        elif hasattr(raw, "read1"):  # a caller's session (urllib3 2.1+)
            self._read = functools.partial(raw.read1, READ_SIZE, decode_content=False)
        elif hasattr(raw, "stream"):  # a caller's session on urllib3 < 2.1: chunk by chunk
            chunks: Iterator[bytes] = raw.stream(READ_SIZE, decode_content=False)
            self._read = lambda: next(chunks, b"")
        else:  # a caller's adapter that is not urllib3's
            self._read = lambda: raw.read(READ_SIZE) or b""

    def read(self) -> bytes:
        """The next raw (still encoded) bytes of the body; b"" at its end."""
        try:
            if self._read is None:
                data: bytes = self.raw.read(READ_SIZE, decode_content=False)
            else:
                data = self._read()
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes typed
            failure = transport_failure(exc)
        else:
            if data:
                if self._left is not None:
                    self._left -= len(data)
                return data
            if self._left:
                failure = TransportFailure(
                    OTHER_FAILURE,
                    "connection closed mid-stream (the body is shorter than its Content-Length)",
                )
            elif self._read is None and self._watch.shut_down:
                # The call's deadline shut the socket: a body without a Content-Length, which
                # ends with its connection, would seem complete.
                failure = TransportFailure(OTHER_FAILURE, "request timed out", timed_out=True)
            else:
                self._ended = True
                return data
        raise failure

    def drain(self) -> None:
        """After a stream's ``[DONE]``: read the (normally empty) rest of the body within small
        bounds, so that ``close()`` gives the connection back to the pool."""
        raw = self.raw
        if not getattr(raw, "chunked", False) and getattr(raw, "length_remaining", None) is None:
            return  # close-delimited: this connection cannot be reused anyway
        with _claims:
            sock = self._watch.socket()
        if not isinstance(sock, socket.socket):
            return
        previous = sock.gettimeout()
        try:
            sock.settimeout(_DRAIN_SECONDS if previous is None else min(previous, _DRAIN_SECONDS))
            total = 0
            while not self._ended and total <= _DRAIN_BYTES:
                total += len(self.read())
        except Exception:  # noqa: BLE001, S110 - any trouble here: the connection is closed
            pass
        finally:
            try:
                sock.settimeout(previous)  # before the pool can hand the socket to anyone
            except OSError:
                self._ended = False

    def interrupt(self) -> None:
        """Wake a read of a stream blocked in another thread (see ``_CallWatch.shut``)."""
        self._watch.shut()

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read to its end, else
        closed."""
        release = getattr(self.raw, "release_conn", None)
        if self._ended:
            if self._plain is not None:
                self._plain.close()  # (its reader, not the socket; urllib3 knows nothing of it)
            if release is not None:
                release()
        self.raw.close()  # (once released, it no longer holds the connection)
        if release is not None:
            release()


class RequestsTransport:
    """Sends the pipeline's requests on one ``requests.Session``: on the client's own,
    prepared by hand (the fast path), with environment settings read once; on a caller's, as
    requests would (its headers, auth, cookies, proxies, ``verify``, ``cert`` and hooks apply;
    the SDK's own headers, and the Client API's Bearer token, win)."""

    awaits_hooks = False  # (the async transport awaits what an event hook returns)

    def __init__(
        self, session: Optional[requests.Session], max_connections: Optional[int] = None
    ) -> None:
        limit = check_max_connections(max_connections, session)
        self.owns_session = session is None
        if session is None:
            session = requests.Session()
            # Retries run in the pipeline (every attempt is signed afresh), never in urllib3.
            # A limit makes the pools block: a thread past it waits for a free connection.
            adapter = _SDKAdapter(
                pool_connections=4, pool_maxsize=limit or _KEPT_CONNECTIONS,
                pool_block=limit is not None, max_retries=0,
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self._generation = fork_generation()
        self._send_settings: Any = {}  # what requests takes from the environment (bind)

    @staticmethod
    def library() -> str:
        """The library's name and version, for the User-Agent."""
        return f"requests/{requests.__version__}"

    def bind(self, api_url: str) -> str:
        """The base URL as requests prepares it (IDNA host, quoted path), once; what depends
        on it is worked out now."""
        prepared = requests.PreparedRequest()
        try:
            prepared.prepare_url(api_url, None)
        except requests.exceptions.RequestException as exc:
            reason = type(exc).__name__
        else:
            if self.owns_session:
                ca_bundle_from_environment(api_url)  # refused now, as the async client does
            # (stream=True: the pipeline reads every body itself, within its caps)
            settings = self.session.merge_environment_settings(api_url, {}, True, None, None)
            self._send_settings = settings
            url = prepared.url or api_url
            # requests writes an empty path as "/"; the endpoint paths bring their own.
            return url[:-1] if url.endswith("/") and not api_url.endswith("/") else url
        raise ConfigurationError(f"api_url is not a valid URL ({reason}): {api_url!r}")

    def close(self) -> None:
        """Close the pooled connections (only those of a session the client made)."""
        if not self.owns_session:
            return
        # Session.close() only drops urllib3 2's pools, whose sockets then wait for the garbage
        # collector: closed now (one in use, when it is handed back to its closed pool).
        for adapter in set(self.session.adapters.values()):
            if isinstance(adapter, HTTPAdapter):
                for manager in [adapter.poolmanager, *adapter.proxy_manager.values()]:
                    for key in manager.pools.keys():
                        pool = manager.pools.get(key)
                        if pool is not None:
                            pool.close()
        self.session.close()

    def _after_fork(self) -> None:
        """In a forked child: each adapter gets new, empty pools with the same settings
        (requests' own pickling), the parent's are kept, never used nor closed (why:
        docs/architecture.md)."""
        self._generation = fork_generation()
        for adapter in set(self.session.adapters.values()):
            if isinstance(adapter, HTTPAdapter):
                keep_inherited((adapter.poolmanager, adapter.proxy_manager))
                adapter.__setstate__(adapter.__getstate__())  # type: ignore[attr-defined]

    @staticmethod
    def open_stream(
        answer: RequestsAnswer, parser: ChatEventParser, redact: Callable[[str], str],
        read_timeout: float, restart: Restart,
    ) -> ChatStream:
        """The stream of chat chunks over an answer whose headers the pipeline read."""
        return ChatStream(answer, parser, redact=redact, read_timeout=read_timeout, restart=restart)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @staticmethod
    def notify(callback: Callable[[Any], Any], value: Any) -> None:
        """Call a caller's callback (``on_update``)."""
        callback(value)

    def run(self, steps: Steps, deadline: Deadline) -> Any:
        """Run a pipeline to its end; every step's I/O ends by the call's deadline."""
        if self._generation != fork_generation():
            self._after_fork()
        call_watch = _CallWatch(deadline.at)
        expire = call_watch.shut
        WATCHDOG.arm(expire, deadline.at)
        outer = getattr(_current, "watch", None)
        _current.watch = call_watch
        reply: Any = None
        try:
            while True:
                try:
                    step = steps.send(reply)
                except StopIteration as done:
                    result = done.value
                    break
                except WayGPTError as error:
                    forget_internal_locals(error)
                    raise
                try:
                    if isinstance(step, Read):
                        reply = step.answer.read()
                    elif isinstance(step, Send):
                        reply = self._send(step, call_watch)
                    elif isinstance(step, Notify):
                        reply = None
                        for hook in step.hooks:  # what a hook raises goes to the caller as it is
                            hook(step.view)
                    else:
                        reply = None
                        time.sleep(step.seconds)  # (a Sleep)
                except TransportFailure as failure:
                    reply = failure
                except BaseException as stopped:  # a hook's exception, a KeyboardInterrupt
                    # Thrown into the pipeline, which closes what it holds and tells its
                    # trace span why, then raises it again, unchanged.
                    steps.throw(stopped)
                    raise
        finally:
            reply = None  # (the last body bytes read: kept out of tracebacks)
            _current.watch = outer
            WATCHDOG.disarm(expire)
            steps.close()
        return result

    def _send(self, step: Send, call_watch: _CallWatch) -> RequestsAnswer:
        request = step.request
        session = self.session
        if self.owns_session:
            prepared = _prepare(request.method, request.url, dict(request.headers), request.body)
            settings = self._send_settings
        else:
            auth = _keep_authorization if "Authorization" in request.headers else None
            prepared = session.prepare_request(requests.Request(
                request.method, request.url, headers=request.headers, data=request.body, auth=auth
            ))
            settings = session.merge_environment_settings(request.url, {}, True, None, None)
        try:
            response = session.send(
                prepared, timeout=(step.connect_timeout, step.read_timeout),
                allow_redirects=False, **settings,
            )
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes typed
            failure = transport_failure(exc)
        else:
            call_watch.raw = response.raw
            return RequestsAnswer(response, step.stream, call_watch)
        raise failure
