"""The requests transport: how the sync client's bytes go out and come in.

It runs the core's pipeline steps with blocking calls on one ``requests.Session``. The
client's own session uses urllib3 pools of its own (``ConnectionCls``, ``response_class``:
public extension points) whose connections note which call sent on them last and which
socket its answer is read from, so that a call's deadline ends that socket and no other, and
whose answers skip informational (1xx) heads and refuse a head cut short. No private
attribute of requests, urllib3 or ``http.client`` is used (docs/architecture.md).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.client import RemoteDisconnected
from typing import Any, Callable, Dict, List, Mapping, Optional

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ._body import READ_SIZE
from ._chat_events import ChatEventParser
from ._config import ca_bundle_from_environment
from ._core import Deadline, Notify, Read, Send, Step, Steps
from ._fork import fork_generation, keep_inherited
from ._observe import AnswerHeaders
from ._stream_loop import Restart
from ._stream_reader import StreamBodyReader
from ._watchdog import Watch, watchdog
from .errors import ConfigurationError, TransportFailure, WayGPTError, forget_internal_locals
from .retry import CONNECT_FAILURE, OTHER_FAILURE, STALE_CONNECTION
from .streaming import ChatStream

# The call each thread is making: the SDK's connections and answers note themselves on it.
_current = threading.local()
# Held while a connection changes hands and while a call's socket is shut, so that a call
# never ends a connection that went back to the pool and that another call has taken.
_claims = threading.Lock()

# -- connections that know their call ---------------------------------------------------------


class _CallWatch:
    """What ends a call's I/O at its deadline, or a stream's read blocked in another thread:
    the socket of the connection the call last sent on, while no other call has taken it."""

    __slots__ = ("conn", "raw", "response", "shut_down", "sock")

    def __init__(self) -> None:
        self.shut_down = False  # its socket was shut: the end of an answer is no real end
        self.conn: Any = None  # the SDK's pooled connection the call last sent on
        self.sock: Any = None  # the socket its answer came on (close-delimited: not conn's)
        self.response: Any = None  # that answer's http.client response
        self.raw: Any = None  # the urllib3 answer (a caller's session: the only way in)

    def socket(self) -> Optional[socket.socket]:
        """The call's socket, if it still is the call's (for a short drain)."""
        with _claims:
            sock = self._socket()
        return sock if isinstance(sock, socket.socket) else None

    def _socket(self) -> Any:
        conn = self.conn
        if conn is None:  # a caller's session: its own pools; the answer's connection
            return getattr(getattr(self.raw, "connection", None), "sock", None)
        if conn.waygpt_call is not self:
            return None  # handed back and taken by another call: not this call's to end
        return self.sock or conn.sock

    def shut(self) -> None:
        """Shut the call's socket down: a read or write blocked on it returns at once."""
        with _claims:
            if self.conn is None and hasattr(self.raw, "shutdown"):
                self.shut_down = True  # a caller's session on urllib3 2.3+: its answer's own
                try:
                    self.raw.shutdown()
                except Exception:  # noqa: BLE001, S110 - released already: nothing to end
                    pass
                return
            sock = self._socket()
            if self.conn is not None and sock is not None:
                self.conn.waygpt_shut = True  # whoever sends on it next connects again
            if isinstance(sock, socket.socket):
                self.shut_down = True
                try:
                    # socket.socket's own shutdown, not SSLSocket's (which also drops its
                    # TLS object while another thread may be reading through it).
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


def _claim(conn: Any) -> None:
    """``conn`` is about to send the request of the thread's current call."""
    watch = getattr(_current, "watch", None)
    with _claims:
        conn.waygpt_call = watch
        shut, conn.waygpt_shut = conn.waygpt_shut, False
        if watch is not None:
            watch.conn, watch.sock, watch.response = conn, None, None
    if shut:  # shut by the deadline of the call that used it before: a new socket
        conn.close()


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
    """An ``http.client`` response that skips every informational (1xx) answer, refuses a
    head cut short, and notes its socket on the thread's current call.

    ``http.client`` skips ``100 Continue`` only and would take a ``103 Early Hints`` for the
    final answer, leaving the real one unread on the connection. It also takes the end of
    the connection for the end of the headers: an answer cut in its head (by the server, or
    by the deadline watchdog shutting the socket) would pass for a complete, empty answer.
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
        _claim(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _Connection(_Claimed, HTTPConnection):
    response_class = _FinalResponse


class _HTTPSConnection(_Claimed, HTTPSConnection):
    response_class = _FinalResponse


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


def _use_own_pools(manager: Any) -> None:
    classes = getattr(manager, "pool_classes_by_scheme", None)
    # Only the standard pools are replaced (a SOCKS proxy manager has its own).
    if isinstance(classes, dict) and classes.get("http") is HTTPConnectionPool:
        manager.pool_classes_by_scheme = _POOLS


class _SDKAdapter(HTTPAdapter):
    """requests' adapter, with the SDK's pools."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_own_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _use_own_pools(manager)
        return manager


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
    """What a requests/urllib3/socket exception means for the call, without the exception.

    The message is built from the innermost OS error's text ("Connection refused") or an
    exception's type name, never from library messages, which repeat the URL.
    """
    chain = exception_chain(exc)
    connect = any(isinstance(e, (NewConnectionError, ConnectTimeoutError)) for e in chain)
    timed_out = any(
        isinstance(e, (TimeoutError, socket.timeout, requests.exceptions.Timeout))
        or type(e).__name__ in ("ReadTimeoutError", "ConnectTimeoutError")
        for e in chain
    )
    if any(isinstance(e, _HeadCutOff) for e in chain):
        return TransportFailure(OTHER_FAILURE, "connection closed in the middle of the headers")
    if connect:
        kind = CONNECT_FAILURE
    elif any(isinstance(e, RemoteDisconnected) for e in chain):
        kind = STALE_CONNECTION
    else:
        kind = OTHER_FAILURE
    if timed_out:
        return TransportFailure(kind, "request timed out", timed_out=True)
    # The innermost OS error says it best: its strerror ("Connection refused"), else its text
    # ("Tunnel connection failed: 407 Proxy Authentication Required"), cut short.
    # (requests' own exceptions are OSErrors too, but their text repeats the URL.)
    reasons = [
        e.strerror or str(e)[:200]
        for e in chain
        if isinstance(e, OSError) and type(e).__module__ in _OS_ERROR_MODULES
    ]
    reasons = [reason for reason in reasons if reason]
    reason = reasons[-1] if reasons else type(chain[-1]).__name__
    return TransportFailure(kind, f"connection failed: {reason}")


# -- requests ---------------------------------------------------------------------------------


def _prepare(
    method: str, url: str, headers: Dict[str, str], body: Optional[bytes]
) -> requests.PreparedRequest:
    """What ``requests.Request(...).prepare()`` builds for our requests, at a tenth of its cost.

    The URL is already prepared (base URL once, path segments and query percent-encoded by
    the core), the headers were checked when configured, the body is bytes or None, and
    there are no cookies, hooks or auth: only the method, URL, headers and Content-Length
    are left to set. tests/reliability/test_fast_prepare.py checks the result is identical.
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


class _KeepAuthorization(AuthBase):
    """Keeps the Client API's Bearer header: no session auth or netrc entry may replace it."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def prepared_base_url(api_url: str) -> str:
    """The base URL as requests prepares it (IDNA host, quoted path), computed once."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(api_url, None)
    except requests.exceptions.RequestException as exc:
        reason = type(exc).__name__
    else:
        url = prepared.url or api_url
        # requests writes an empty path as "/"; the endpoint paths bring their own.
        return url[:-1] if url.endswith("/") and not api_url.endswith("/") else url
    raise ConfigurationError(f"api_url is not a valid URL ({reason}): {api_url!r}")


def _answer_headers(response: requests.Response) -> Mapping[str, str]:
    """The answer's headers, read as the async client reads them (``AnswerHeaders``): from
    urllib3's, since requests' own mapping joins a repeated header's values into one."""
    headers = getattr(response.raw, "headers", None)
    values = getattr(headers, "getlist", None)
    if values is None:  # a caller's session whose adapter is not urllib3's
        return response.headers
    return AnswerHeaders(headers, values)


class RequestsAnswer:
    """An answer whose headers have been read; its body is read by the pipeline or a stream.

    Every read of a body goes through ``read``: a stream's answer reads through a
    :class:`StreamBodyReader` (bytes as soon as they arrive), any other in blocks.
    """

    __slots__ = ("_ended", "_source", "_watch", "headers", "raw", "response", "status")

    def __init__(self, response: requests.Response, stream: bool, watch: _CallWatch) -> None:
        self._watch = watch
        self.response = response
        self.raw = response.raw
        self.status = int(response.status_code)
        self.headers = _answer_headers(response)
        self._ended = False
        self._source = StreamBodyReader(self.raw, watch, transport_failure) if stream else None

    def read(self) -> bytes:
        """The next raw (still encoded) bytes of the body; b"" at its end."""
        if self._source is not None:
            return self._source.read()
        try:
            data: bytes = self.raw.read(READ_SIZE, decode_content=False)
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes typed
            failure = transport_failure(exc)
        else:
            if data or not self._watch.shut_down:
                self._ended = not data
                return data
            # The call's deadline shut the socket: a body without a Content-Length, which
            # ends with its connection, would seem complete.
            failure = TransportFailure(OTHER_FAILURE, "request timed out", timed_out=True)
        raise failure

    def drain(self) -> None:
        """After a stream's ``[DONE]``: read the rest of the body within small bounds."""
        if self._source is not None:
            self._source.drain()

    def interrupt(self) -> None:
        """Wake a read of a stream blocked in another thread."""
        if self._source is not None:
            self._source.interrupt()

    def close(self) -> None:
        """Release the connection: to the pool when the body was read to its end."""
        if self._source is not None:
            self._source.close()
            return
        if not self._ended:
            self.raw.close()  # a half-read body: the connection cannot be reused
        release = getattr(self.raw, "release_conn", None)
        if release is not None:
            release()


class RequestsTransport:
    """Sends the pipeline's requests on one ``requests.Session``.

    With a session the client made itself, requests are prepared by hand (the fast path)
    and environment proxy settings are read once per base URL. A caller's session is used as
    requests would use it: its headers, auth, cookies, proxies, ``verify``, ``cert`` and
    hooks apply (the SDK's own headers, and the Client API's Bearer token, win).
    """

    # Whether it awaits what an event hook returns (``async def`` hooks).
    awaits_hooks = False

    def __init__(self, session: Optional[requests.Session]) -> None:
        self.owns_session = session is None
        self.session = session if session is not None else self._new_session()
        self._generation = fork_generation()
        self._send_settings: Dict[str, Any] = {}

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # Retries run in the pipeline (every attempt is signed afresh), never in urllib3.
        adapter = _SDKAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @staticmethod
    def library() -> str:
        """The library's name and version, for the User-Agent."""
        return f"requests/{requests.__version__}"

    def bind(self, api_url: str) -> str:
        """The base URL as it goes on the wire; what depends on it is worked out now."""
        base = prepared_base_url(api_url)
        if self.owns_session:
            ca_bundle_from_environment(api_url)  # refused now, as the async client does
        self._send_settings = self._environment_settings(api_url)
        return base

    def _environment_settings(self, url: str) -> Dict[str, Any]:
        settings: Dict[str, Any] = dict(
            self.session.merge_environment_settings(url, {}, True, None, None)
        )
        settings["stream"] = True  # the pipeline reads every body itself, within its caps
        return settings

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections (only those of a session the client made)."""
        if self.owns_session:
            _close_idle_connections(self.session)
            self.session.close()

    def _after_fork(self) -> None:
        """In a forked child: never touch the parent's connections again.

        Each adapter gets new, empty pools with the same settings (requests' own pickling
        makes them); the parent's are set aside, neither used nor closed: closing them would
        take their locks, which a parent's thread may have held at the fork.
        """
        self._generation = fork_generation()
        for adapter in set(self.session.adapters.values()):
            if isinstance(adapter, HTTPAdapter):
                keep_inherited((adapter.poolmanager, adapter.proxy_manager))
                adapter.__setstate__(adapter.__getstate__())  # type: ignore[attr-defined]

    # -- what the client does besides running pipelines ---------------------------------------

    @staticmethod
    def open_stream(
        answer: RequestsAnswer,
        parser: ChatEventParser,
        redact: Callable[[str], str],
        read_timeout: float,
        restart: Restart,
    ) -> ChatStream:
        """The stream of chat chunks over an answer whose headers the pipeline read."""
        return ChatStream(
            answer, parser, redact=redact, read_timeout=read_timeout, restart=restart
        )

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @staticmethod
    def notify(callback: Callable[[Any], Any], value: Any) -> None:
        """Call a caller's callback (``on_update``)."""
        callback(value)

    # -- the driver ---------------------------------------------------------------------------

    def run(self, steps: Steps, deadline: Deadline) -> Any:
        """Run a pipeline to its end; every step's I/O ends by the call's deadline."""
        if self._generation != fork_generation():
            self._after_fork()
        call_watch = _CallWatch()
        watch = Watch(deadline.at, call_watch.shut)
        dog = watchdog()
        dog.arm(watch)
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
                    reply = self._perform(step, call_watch)
                except BaseException as stopped:  # a hook's exception, a KeyboardInterrupt
                    # Thrown into the pipeline, which closes what it holds and tells its
                    # trace span why, then raises it again, unchanged.
                    steps.throw(stopped)
                    raise
        finally:
            reply = None  # (the last body bytes read: kept out of tracebacks)
            _current.watch = outer
            dog.disarm(watch)
            steps.close()
        return result

    def _perform(self, step: Step, call_watch: _CallWatch) -> Any:
        try:
            if isinstance(step, Read):
                return step.answer.read()
            if isinstance(step, Send):
                return self._send(step, call_watch)
        except TransportFailure as failure:
            return failure
        if isinstance(step, Notify):
            for hook in step.hooks:  # what a hook raises goes to the caller as it is
                hook(step.view)
            return None
        time.sleep(step.seconds)
        return None

    def _send(self, step: Send, call_watch: _CallWatch) -> RequestsAnswer:
        request = step.request
        session = self.session
        if self.owns_session:
            prepared = _prepare(request.method, request.url, dict(request.headers), request.body)
            settings = self._send_settings
        else:
            auth = _KeepAuthorization() if "Authorization" in request.headers else None
            prepared = session.prepare_request(
                requests.Request(
                    request.method, request.url, headers=request.headers, data=request.body,
                    auth=auth,
                )
            )
            settings = self._environment_settings(request.url)
        try:
            response = session.send(
                prepared,
                timeout=(step.connect_timeout, step.read_timeout),
                allow_redirects=False,
                **settings,
            )
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes typed
            failure = transport_failure(exc)
        else:
            call_watch.raw = response.raw
            return RequestsAnswer(response, step.stream, call_watch)
        raise failure


def _close_idle_connections(session: requests.Session) -> None:
    """Close the session's pooled connections now.

    ``Session.close()`` only drops urllib3 2's pools (they are no longer closed when dropped),
    so their sockets stay open until the garbage collector frees the pools: much later when
    an exception's traceback holds a pool in a reference cycle. Connections in use are not
    in the pool; a closed pool closes them when they are handed back.
    """
    for adapter in set(session.adapters.values()):
        managers: List[Any] = [getattr(adapter, "poolmanager", None)]
        managers.extend(getattr(adapter, "proxy_manager", {}).values())
        for manager in managers:
            pools = getattr(manager, "pools", None)
            if pools is None:
                continue
            for key in pools.keys():
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
