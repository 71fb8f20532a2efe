"""The aiohttp transport: runs the pipeline's steps with ``await`` on one
``aiohttp.ClientSession``. aiohttp is an optional extra: this module imports without it.

* The client's own session is made on first use, in the running event loop, with no cookie
  jar, no decompression (the core decodes bodies within its caps) and no ``trust_env`` (a
  ``~/.netrc`` read per request); like the sync client, it reads proxies and a CA bundle
  from the environment when the base URL is set.
* A call is bounded by aiohttp's ``total`` timeout, set to what is left of its deadline; a
  stream's headers by ``asyncio.wait_for``, the body before its events by ``end_reads_at``,
  each read by ``sock_read``, and a stream's, once its events begin, by a timer of ours
  instead (``bound_each_read``).
* After a fork the parent's session is set aside, never closed. A client is used from one
  event loop at a time: a call from another loop while the session's own loop runs is
  refused; once that loop has ended, its session is set aside and a new one is made.
* aiohttp's replay of a failed idempotent request is turned off (it would re-send the same
  nonce); on a caller's session, the Client API's Bearer token wins over its ``auth`` and
  netrc (``_first_step_with``). The private attributes this takes: ``_internals.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
import types
from typing import Any, Callable, Dict, Generator, Optional, Tuple

from requests.utils import get_environ_proxies, prepend_scheme_if_needed

from ._chat_events import ChatEventParser
from ._config import ca_bundle_from_environment, check_max_connections
from ._core import Deadline, Notify, Read, Send, Steps
from ._fork import fork_generation, keep_inherited
from ._internals import (
    TRUST_ENV,
    environment_proxy,
    leave_connections_open,
    never_replay,
    received_before_failure,
    request_overrides,
    stop_socket_read_timer,
)
from ._observe import AnswerHeaders
from ._stream_loop import Restart
from .errors import ConfigurationError, TransportFailure, WayGPTError, forget_internal_locals
from .retry import CONNECT_FAILURE, OTHER_FAILURE, STALE_CONNECTION
from .streaming import AsyncChatStream

try:
    import aiohttp
    from yarl import URL
except ImportError:  # the optional extra is not installed: AiohttpTransport says so
    aiohttp = None  # type: ignore[assignment]

_STREAM_READ_SIZE = 16 * 1024  # see AiohttpAnswer.read
# After [DONE], how long and how much the stream waits for the end of the body so that the
# connection can be reused (as the sync client's stream does).
_DRAIN_SECONDS = 0.1
_DRAIN_BYTES = 64 * 1024

INSTALL_HINT = 'AsyncWayGPTClient needs aiohttp, an optional extra: pip install "waygpt[aiohttp]"'
_OTHER_LOOP = (
    "this AsyncWayGPTClient's connections belong to another event loop, which is still "
    "running: use one AsyncWayGPTClient per event loop (make one in each loop or thread, "
    "or use WayGPTClient from threads)"
)

# Held while a transport checks which loop its session belongs to and makes one: two loops
# in two threads must never both make (or one use the other's) session. A new lock in a
# forked child, where a parent's thread may have held it at the fork.
_binding = threading.Lock()


def _new_binding_lock() -> None:
    global _binding
    _binding = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_binding_lock)


def transport_failure(exc: BaseException) -> TransportFailure:
    """What an aiohttp/asyncio exception means for the call, without the exception."""
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unresolved, TLS handshake
        reason = getattr(exc.os_error, "strerror", None) or type(exc.os_error).__name__
        return TransportFailure(CONNECT_FAILURE, f"connection failed: {reason}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # (an asyncio.TimeoutError too)
        return TransportFailure(CONNECT_FAILURE, "request timed out", timed_out=True)
    if isinstance(exc, asyncio.TimeoutError):  # sock_read, total, wait_for, our timers
        return TransportFailure(OTHER_FAILURE, "request timed out", timed_out=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportFailure(STALE_CONNECTION, "connection failed: the server disconnected")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportFailure(OTHER_FAILURE, "connection closed before the whole body arrived")
    if isinstance(exc, OSError) and exc.strerror:
        return TransportFailure(OTHER_FAILURE, f"connection failed: {exc.strerror}")
    return TransportFailure(OTHER_FAILURE, f"connection failed: {type(exc).__name__}")


async def _read_to_end(content: Any) -> None:
    total = 0
    while total <= _DRAIN_BYTES:
        data = await content.readany()
        if not data:
            return
        total += len(data)


async def _send_on_callers_session(
    session: Any, method: str, url: Any, options: Dict[str, Any], overrides: Dict[str, Any]
) -> Any:
    """Send one request on a caller's session, with ``overrides`` for its first step."""
    if overrides.get(TRUST_ENV) is False:
        # trust_env is off for this request (no netrc auth over the Bearer token), so the
        # environment's proxy, which it also governs, is looked up here, as aiohttp would
        # (on a thread: it reads the netrc file for the proxy's credentials).
        loop = asyncio.get_running_loop()
        proxy, proxy_auth = await loop.run_in_executor(None, environment_proxy, aiohttp, url)
        if proxy is not None:
            if proxy_auth is not None:  # in the URL: aiohttp 3.14 deprecates proxy_auth=
                proxy = proxy.with_user(proxy_auth.login).with_password(proxy_auth.password)
            options = dict(options, proxy=proxy)
    return await _first_step_with(session, overrides, session.request(method, url, **options))


@types.coroutine
def _first_step_with(
    session: Any, overrides: Dict[str, Any], request: Any
) -> Generator[Any, Any, Any]:
    """Await ``request`` with ``overrides`` set on ``session`` during its first step only.

    aiohttp reads those attributes before the request first waits, and the event loop runs
    nothing else in between; restored right after, they never affect the caller's other
    requests, even concurrent ones. (A trace config whose ``on_request_start`` really waits
    would make aiohttp read them later, unchanged: its own behaviour then.)
    """
    steps = request.__await__()
    saved = {name: getattr(session, name) for name in overrides}
    for name, value in overrides.items():
        setattr(session, name, value)
    try:
        signal = steps.send(None)
    except StopIteration as done:
        return done.value
    finally:
        for name, value in saved.items():
            setattr(session, name, value)
    while True:  # the rest, as `await` would run it
        try:
            try:
                sent = yield signal
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - a cancellation, passed on as await does
                signal = steps.throw(exc)
            else:
                signal = steps.send(sent)
        except StopIteration as done:
            return done.value


class AiohttpAnswer:
    """An answer whose headers have been read; the body is read by the pipeline or a stream."""

    __slots__ = ("_deadline_timer", "_idle_timeout", "_idle_timer", "_loop", "_read_since",
                 "headers", "response", "status")

    def __init__(self, response: Any) -> None:
        self.response = response
        self.status = int(response.status)
        headers = response.headers
        self.headers = AnswerHeaders(headers, lambda name: headers.getall(name, ()))
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # set once a stream's events come
        self._idle_timeout: Optional[float] = None
        self._idle_timer: Optional[asyncio.TimerHandle] = None
        self._read_since: Optional[float] = None
        self._deadline_timer: Optional[asyncio.TimerHandle] = None

    def end_reads_at(self, deadline: Deadline) -> None:
        """Make every read fail once ``deadline`` passes (a stream's answer, until its events):
        a stream has no aiohttp ``total`` timeout, but an error body dribbled a byte per read
        timeout must still end with the call's deadline."""
        self._deadline_timer = asyncio.get_running_loop().call_later(
            max(deadline.remaining(), 0.0),
            self.response.content.set_exception, asyncio.TimeoutError(),
        )

    def bound_each_read(self, timeout: float) -> None:
        """Make every later read of a stream end within ``timeout`` seconds; the call's
        deadline no longer applies (a stream's events may last longer).

        aiohttp's ``sock_read`` should do it, but a stream whose chunked framing breaks and
        whose connection then closes leaves aiohttp's read waiting for ever (aiohttp 3.14),
        timer and all. A timer of ours, armed at most once per ``timeout`` and only while a
        read waits, costs a clock reading per read; aiohttp's, made again at every piece of
        data, is stopped for the body (it still bounded the wait for the headers)."""
        self._cancel_deadline()
        self._idle_timeout = timeout
        self._loop = asyncio.get_running_loop()
        stop_socket_read_timer(self.response)

    async def read(self) -> bytes:
        """The next raw (still encoded) bytes of the body as soon as some arrive; b"" at its end."""
        content = self.response.content
        loop = self._loop
        if loop is not None:  # a stream
            self._read_since = loop.time()
            if self._idle_timer is None:
                self._arm(self._read_since)
        try:
            # A stream is read in small blocks: with many busy streams, readany() hands over
            # a quarter MiB at once, and the thousand chunk dicts made of it at a time keep
            # the garbage collector busy (45 % of the CPU in the benchmark, 16 streams).
            data: bytes = await (content.read(_STREAM_READ_SIZE) if loop else content.readany())
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes typed
            leftover = received_before_failure(content)
            if leftover:
                return leftover  # the failure is raised again by the next read
            failure = transport_failure(exc)
        else:
            return data
        finally:
            self._read_since = None
        raise failure

    async def drain(self) -> None:
        """After ``[DONE]``: wait a little for the end of the body, so that the connection
        goes back to the pool (the last chunk of the framing often comes a moment later)."""
        content = self.response.content
        if not content.at_eof():
            with contextlib.suppress(Exception):  # a body that does not end: closed instead
                await asyncio.wait_for(_read_to_end(content), _DRAIN_SECONDS)

    def _arm(self, since: float) -> None:
        assert self._loop is not None and self._idle_timeout is not None
        self._idle_timer = self._loop.call_at(since + self._idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        since = self._read_since
        if since is None or self._idle_timeout is None or self._loop is None:
            return  # no read is waiting: the next one arms the timer again
        if self._loop.time() - since >= self._idle_timeout:
            self.response.content.set_exception(asyncio.TimeoutError())
        else:
            self._arm(since)

    def _cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read to its end."""
        self._cancel_deadline()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._idle_timeout = None
        if not self.response.closed:  # (a body read to its end has released its connection)
            self.response.close()


class AiohttpTransport:
    """Sends the pipeline's requests on one ``aiohttp.ClientSession``."""

    awaits_hooks = True  # it awaits what an event hook returns (``async def`` hooks)

    def __init__(self, session: Any = None, max_connections: Optional[int] = None) -> None:
        if aiohttp is None:
            raise ImportError(INSTALL_HINT)
        # aiohttp's own default, 100, would queue a bot's 101st stream until one ends.
        self._limit = check_max_connections(max_connections, session) or 0  # 0: no limit
        self.owns_session = session is None
        self._session: Any = session
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._generation = fork_generation()
        self._proxy: Optional[str] = None
        self._ssl: Any = True  # aiohttp's default verification, unless a CA bundle is set

    @staticmethod
    def library() -> str:
        """The library's name and version, for the User-Agent."""
        return f"aiohttp/{aiohttp.__version__}"

    def bind(self, api_url: str) -> str:
        """The base URL as it goes on the wire; environment proxies are read now."""
        try:
            base = str(URL(api_url))
        except (ValueError, TypeError) as exc:
            reason = type(exc).__name__
        else:
            if self.owns_session:  # a caller's session has its own (trust_env, connector)
                # The proxy requests would use (HTTP_PROXY, NO_PROXY, ...); one without a
                # scheme is an http:// one, as requests takes it (aiohttp would refuse it).
                proxies = get_environ_proxies(api_url)
                proxy = proxies.get(api_url.split(":", 1)[0].lower()) or proxies.get("all")
                if proxy:
                    self._proxy = prepend_scheme_if_needed(proxy, "http")  # type: ignore[no-untyped-call]
                bundle = ca_bundle_from_environment(api_url)  # a bad one is refused now
                self._ssl = True if bundle is None else bundle[1]
            return base
        raise ConfigurationError(f"api_url is not a valid URL ({reason}): {api_url!r}")

    def _current_session(self) -> Any:
        """The session to send on, made now if need be, in the running loop.

        Raises:
            ConfigurationError: the session belongs to another event loop, still running.
        """
        loop = asyncio.get_running_loop()
        with _binding:
            self._leave_parent()
            if self.owns_session and self._session is not None and self._loop is not loop:
                self._leave_loop()  # made in another event loop: refused, or set aside
            if self._session is None:
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl),
                    cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False,
                )
                never_replay(session)
                self._session, self._loop = session, loop
            return self._session

    def _leave_parent(self) -> None:
        """In a forked child: never the parent's session (nor its loop, which may look as if
        it still ran, when the fork was made from inside it)."""
        if self._generation != fork_generation():
            if self.owns_session and self._session is not None:
                self._set_aside()
            self._generation = fork_generation()

    def _leave_loop(self) -> None:
        """Set aside the session of an event loop that has ended; refuse one whose loop still
        runs in another thread: closing it from here would cut the calls under way there,
        sharing it would run one loop's connections from another."""
        loop = self._loop
        if loop is not None and loop.is_running():
            raise ConfigurationError(_OTHER_LOOP)
        self._set_aside()

    def _set_aside(self) -> None:
        """Stop using the session of an ended loop, or of the parent process, without closing
        it: a child must not close its parent's connections, an ended loop cannot."""
        session, self._session = self._session, None
        leave_connections_open(getattr(session, "connector", None))
        if self._generation != fork_generation():
            keep_inherited(session)  # not even that while the child lives

    async def close(self) -> None:
        """Close the pooled connections (only those of a session the client made)."""
        loop = asyncio.get_running_loop()
        with _binding:
            self._leave_parent()
            if not self.owns_session or self._session is None:
                return
            if self._loop is not loop:
                self._leave_loop()
                return
            session, self._session = self._session, None
        await session.close()

    @staticmethod
    def open_stream(
        answer: AiohttpAnswer, parser: ChatEventParser, redact: Callable[[str], str],
        read_timeout: float, restart: Restart,
    ) -> AsyncChatStream:
        """The stream of chat chunks over an answer whose headers the pipeline read."""
        answer.bound_each_read(read_timeout)
        return AsyncChatStream(
            answer, parser, redact=redact, read_timeout=read_timeout, restart=restart
        )

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @staticmethod
    async def notify(callback: Callable[[Any], Any], value: Any) -> None:
        """Call a caller's callback (``on_update``): a plain function or a coroutine function."""
        outcome = callback(value)
        if inspect.isawaitable(outcome):
            await outcome

    async def run(self, steps: Steps, deadline: Deadline) -> Any:
        """Run a pipeline to its end; every step's I/O ends by the call's deadline."""
        session = self._current_session()
        reply: Any = None
        try:
            while True:
                try:
                    step = steps.send(reply)
                except StopIteration as done:
                    return done.value
                except WayGPTError as error:
                    forget_internal_locals(error)
                    raise
                if isinstance(step, Notify):  # what a hook raises goes to the caller as it is
                    try:
                        for hook in step.hooks:
                            await self.notify(hook, step.view)
                    except BaseException as stopped:
                        # Thrown into the pipeline, which closes what it holds and tells its
                        # trace span why, then raises it again, unchanged.
                        steps.throw(stopped)
                        raise
                    reply = None
                    continue
                try:
                    if isinstance(step, Read):
                        reply = await step.answer.read()
                    elif isinstance(step, Send):
                        # (Awaited here rather than in a coroutine of its own: one frame less
                        # per request, in the loop every call goes through.)
                        sending, remaining = self._request(session, step, deadline)
                        if step.stream:  # its headers within the deadline; its events, not
                            response = await asyncio.wait_for(sending, remaining)
                            reply = AiohttpAnswer(response)
                            reply.end_reads_at(deadline)
                        else:
                            reply = AiohttpAnswer(await sending)
                    else:
                        await asyncio.sleep(step.seconds)  # (a Sleep)
                        reply = None
                except TransportFailure as failure:
                    reply = failure
                except Exception as exc:  # noqa: BLE001 - every transport failure becomes typed
                    reply = transport_failure(exc)
        finally:
            # The last body bytes read, the last response: kept out of tracebacks.
            reply = response = sending = None
            steps.close()  # a cancelled call: the pipeline closes the answer it holds

    def _request(self, session: Any, step: Send, deadline: Deadline) -> Tuple[Any, float]:
        """The aiohttp request of a Send step (not awaited yet), and the time left for it."""
        request = step.request
        remaining = max(deadline.remaining(), 0.001)
        timeout = aiohttp.ClientTimeout(
            total=None if step.stream else remaining, sock_connect=step.connect_timeout,
            sock_read=step.read_timeout,
        )
        url = URL(request.url, encoded=True)  # sent as it was signed, never re-quoted
        options: Dict[str, Any] = {
            "headers": request.headers, "data": request.body, "allow_redirects": False,
            "timeout": timeout, "auto_decompress": False,
            "raise_for_status": False,  # a caller's session may say otherwise: errors are ours
        }
        if self.owns_session:
            return session.request(request.method, url, proxy=self._proxy, **options), remaining
        overrides = request_overrides(session, request.headers)
        if not overrides:
            return session.request(request.method, url, **options), remaining
        sending = _send_on_callers_session(session, request.method, url, options, overrides)
        return sending, remaining
