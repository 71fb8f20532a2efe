"""``AsyncWayGPTClient``: the same surface as ``WayGPTClient``, each method ``async``.

What each method sends is defined once in ``_endpoints.py``, the pipeline that sends it once
in ``_core.py``; this client runs that pipeline on aiohttp (``_aiohttp_transport.py``), the
sync client on requests. Install the extra: ``pip install "waygpt[aiohttp]"``.
"""

from __future__ import annotations

import asyncio
import inspect
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Literal,
    Optional,
    Type,
    Union,
    overload,
)

from urllib3.util.retry import Retry

from ._aiohttp_transport import AiohttpAnswer, AiohttpTransport
from ._config import DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, Timeout, split_timeout
from ._core import ClientCore, Deadline, MediaJobWaiter
from ._endpoints import Call, Endpoints, Messages, T, check_use_case_id, pick_use_case
from .errors import TransportFailure, WayGPTError, forget_internal_locals, redact_error
from .streaming import ChatEventParser, LineWait, stream_failure_error

if TYPE_CHECKING:
    from ._chat_result import ChatStreamResult
    from .types import (
        ChatCompletion,
        ChatCompletionChunk,
        ImageGeneration,
        LoginResult,
        MediaJob,
        ModelInfo,
        Project,
        UseCase,
        WidgetToken,
    )

__all__ = ["AsyncChatStream", "AsyncWayGPTClient"]


class AsyncChatStream:
    """An async iterator of chat chunk dicts over one streamed HTTP response.

    ``async for chunk in stream``; ``async with stream`` (or ``await stream.close()``)
    releases the connection however the block is left; ``await stream.collect()`` reads the
    rest into a :class:`ChatStreamResult`. A task cancelled while it waits for the next chunk
    releases the connection and gets its ``CancelledError`` unchanged.

    Raises (while iterating): a ``WayGPTError`` subclass for an ``error`` object in the
    stream, ``APIConnectionError``/``APITimeoutError`` when the connection drops, or when the
    read timeout runs out between two reads or since the last complete line (an event or a
    keep-alive comment), ``APIResponseValidationError`` for data that is not JSON, or a line
    or event over 16 MiB.
    """

    def __init__(
        self,
        answer: AiohttpAnswer,
        parser: ChatEventParser,
        redact: Callable[[str], str],
        read_timeout: float,
    ) -> None:
        self.response = answer.response
        self.status_code = answer.status
        self.headers = answer.headers
        self._answer = answer
        self._parser = parser
        self._redact = redact
        self._wait = LineWait(read_timeout)
        self._ready: List[ChatCompletionChunk] = []  # chunks read but not yet handed out
        self._next = 0
        self._closed = False

    @property
    def request_id(self) -> Optional[str]:
        value: Optional[str] = self.headers.get("x-request-id")
        return value

    @property
    def closed(self) -> bool:
        """True once the stream was closed, ended, or failed."""
        return self._closed

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        ready = self._ready
        if self._next < len(ready):
            chunk = ready[self._next]
            self._next += 1
            return chunk
        try:
            return await self._read_more()
        except WayGPTError as error:
            forget_internal_locals(error)  # the raw blocks the stream's frames read
            raise

    async def _read_more(self) -> ChatCompletionChunk:
        parser = self._parser
        while True:
            chunks = parser.pull()  # the next batch of what was read, if any is left
            if chunks:
                self._ready, self._next = chunks, 1
                return chunks[0]
            pending = parser.take_error()  # the failure that followed the chunks handed out
            if pending is not None:
                self._finish()
                raise redact_error(pending, self._redact)
            if self._closed or parser.done:
                try:
                    if not self._closed:
                        await self._answer.drain()  # so that the connection can be reused
                finally:  # cancelled while draining: released all the same
                    self._finish()
                raise StopAsyncIteration
            error: Optional[WayGPTError] = self._wait.overdue(parser)
            if error is None:
                self._wait.reading()
                try:
                    block = await self._answer.read()
                except TransportFailure as failure:
                    if self._closed:  # closed by another task while this one waited: end quietly
                        raise StopAsyncIteration from None
                    error = stream_failure_error(failure)
                except BaseException:  # cancelled: release the connection, let it propagate as is
                    self._finish()
                    raise
                else:
                    if not block:
                        self._finish()
                        parser.end()
                        raise StopAsyncIteration
                    parser.push(block)
                    continue
            self._finish()
            raise error

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._ready, self._next = [], 0
            self._answer.close()

    async def close(self) -> None:
        """Release the connection; iterating afterwards ends at once. Safe to call twice."""
        self._finish()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._finish()

    def __del__(self) -> None:
        # A stream abandoned half-read must not pin its connection.
        if not getattr(self, "_closed", True):
            try:
                self._finish()
            except Exception:  # noqa: BLE001, S110 - nothing can be raised from __del__
                pass

    async def collect(self) -> ChatStreamResult:
        """Read the rest of the stream into a :class:`ChatStreamResult`, then close it."""
        from ._chat_result import ChatStreamCollector

        collector = ChatStreamCollector()
        try:
            async for chunk in self:
                collector.add(chunk)
        finally:
            self._finish()
        return collector.result()


class AsyncWayGPTClient(ClientCore):
    """An asyncio client for the WayGPT AI Server, on aiohttp (``pip install "waygpt[aiohttp]"``).

    The same constructor, settings, ``WAYGPT_*`` environment, methods, parameters, defaults
    and return values as :class:`WayGPTClient`; every method is ``async``. The aiohttp
    session is made at the first call, in the running event loop; use the client from one
    event loop, and close it there (``async with`` or ``await client.close()``).

    Args:
        session: an ``aiohttp.ClientSession`` to send on (its headers, auth, cookies and
            connector apply); by default the client makes its own.

    Raises:
        ConfigurationError: (a ``ValueError``) for an invalid setting.
        ImportError: aiohttp is not installed.
    """

    def __init__(
        self,
        api_url: Optional[str] = None,
        project_key: Optional[str] = None,
        project_id: Optional[str] = None,
        hmac_secret: Optional[str] = None,
        use_hmac: bool = False,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: Union[int, Retry] = 3,
        *,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
        session: Any = None,
    ) -> None:
        self._transport = AiohttpTransport(session)
        self._library = self._transport.library()
        super().__init__(
            api_url, project_key, project_id, hmac_secret, use_hmac, timeout, max_retries,
            total_timeout,
        )

    def _bind_base_url(self, api_url: str) -> str:
        return self._transport.bind(api_url)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncWayGPTClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections (only when the client created its own session).

        The client stays usable: a later call opens a new connection.
        """
        if self._closes_transport:
            await self._transport.close()

    def with_options(
        self,
        *,
        timeout: Optional[Timeout] = None,
        max_retries: Union[int, Retry, None] = None,
        total_timeout: Optional[float] = None,
    ) -> AsyncWayGPTClient:
        """A copy with other ``timeout``/``max_retries``/``total_timeout`` that shares this
        client's connections (closing the copy leaves them open)."""
        clone: AsyncWayGPTClient = self._copy_with(timeout, max_retries, total_timeout)
        return clone

    # -- the pipeline ------------------------------------------------------------------------

    async def _call(self, call: Call[T]) -> T:
        deadline = Deadline(self.total_timeout)
        result: T = await self._transport.run(self._steps(call, deadline), deadline)
        return result

    async def _stream(self, call: Call[Any]) -> AsyncChatStream:
        deadline = Deadline(self.total_timeout)
        answer, parser = await self._transport.run(self._steps(call, deadline), deadline)
        read_timeout = split_timeout(self.timeout)[1]
        answer.bound_each_read(read_timeout)
        return AsyncChatStream(answer, parser, lambda text: self._redact(call, text), read_timeout)

    # -- chat ---------------------------------------------------------------------------------

    @overload
    async def chat_completions(
        self,
        model: str = ...,
        messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ...,
        use_case: Optional[str] = ...,
        temperature: Optional[float] = ...,
        max_tokens: Optional[int] = ...,
        stream: Literal[False] = ...,
        **kwargs: Any,
    ) -> ChatCompletion: ...

    @overload
    async def chat_completions(
        self,
        model: str = ...,
        messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ...,
        use_case: Optional[str] = ...,
        temperature: Optional[float] = ...,
        max_tokens: Optional[int] = ...,
        *,
        stream: Literal[True],
        **kwargs: Any,
    ) -> AsyncChatStream: ...

    @overload
    async def chat_completions(
        self,
        model: str = ...,
        messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ...,
        use_case: Optional[str] = ...,
        temperature: Optional[float] = ...,
        max_tokens: Optional[int] = ...,
        stream: bool = ...,
        **kwargs: Any,
    ) -> Union[ChatCompletion, AsyncChatStream]: ...

    async def chat_completions(
        self,
        model: str = "auto",
        messages: Optional[Messages] = None,
        use_case_id: Optional[str] = None,
        use_case: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> Union[ChatCompletion, AsyncChatStream]:
        """Create a chat completion (OpenAI shape); see ``WayGPTClient.chat_completions``.

        With ``stream=True`` it returns an :class:`AsyncChatStream` once the stream's headers
        arrived; an HTTP error before the stream starts raises here.
        """
        call = Endpoints.chat_completions(
            model, messages, use_case_id, use_case, temperature, max_tokens, stream, kwargs
        )
        if stream:
            return await self._stream(call)
        return await self._call(call)

    async def chat_completions_stream(
        self,
        model: str = "auto",
        messages: Optional[Messages] = None,
        use_case_id: Optional[str] = None,
        use_case: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        **kwargs: Any,
    ) -> AsyncChatStream:
        """Stream a chat completion (see ``chat_completions``); iterate it with ``async for``."""
        return await self._stream(
            Endpoints.chat_completions(
                model, messages, use_case_id, use_case, temperature, max_tokens, True, kwargs
            )
        )

    # -- media --------------------------------------------------------------------------------

    async def image_generations(
        self,
        prompt: str,
        model: Optional[str] = None,
        size: str = "1024x1024",
        n: int = 1,
        **kwargs: Any,
    ) -> ImageGeneration:
        """Generate images; the answer's ``data`` holds ``[{"url": ...}]``."""
        return await self._call(Endpoints.image_generations(prompt, model, size, n, kwargs))

    async def video_generations(
        self,
        prompt: str,
        model: Optional[str] = None,
        duration: Optional[int] = None,
        **kwargs: Any,
    ) -> MediaJob:
        """Start a video job; returns ``{"job_id": ..., "status": "pending"}``."""
        return await self._call(Endpoints.video_generations(prompt, model, duration, kwargs))

    async def get_media_job(self, job_id: str) -> MediaJob:
        """A media job's dict; ``status`` is pending, processing, completed, failed or cancelled."""
        return await self._call(Endpoints.get_media_job(job_id))

    async def cancel_media_job(self, job_id: str) -> Dict[str, Any]:
        """Cancel a pending or running media job."""
        return await self._call(Endpoints.cancel_media_job(job_id))

    async def wait_for_media_job(
        self,
        job_id: str,
        poll_interval: float = 2.0,
        timeout: float = 600.0,
        on_update: Optional[Callable[[MediaJob], Any]] = None,
    ) -> MediaJob:
        """Poll a media job until it is completed (sleeping with ``asyncio.sleep``).

        ``on_update(job)``, a plain function or a coroutine function, is called whenever
        the status or progress changes.

        Raises:
            MediaJobFailedError: the job ended ``failed`` or ``cancelled`` (``.job`` holds it).
            MediaJobTimeoutError: still not finished after ``timeout`` seconds.
        """
        waiter = MediaJobWaiter(job_id, poll_interval, timeout)
        while True:
            job = await self.get_media_job(job_id)
            if on_update is not None and waiter.is_news(job):
                outcome = on_update(job)
                if inspect.isawaitable(outcome):
                    await outcome
            delay = waiter.delay_after(job)
            if delay is None:
                return job
            await asyncio.sleep(delay)

    # -- catalogue ----------------------------------------------------------------------------

    async def get_models(self) -> List[str]:
        """The model ids this project may use."""
        return await self._call(Endpoints.get_models())

    async def get_models_full(self) -> List[ModelInfo]:
        """The models with their details (``id``, ``name``, ``provider``, ...)."""
        return await self._call(Endpoints.get_models_full())

    async def get_use_cases(self, detailed: bool = False) -> List[UseCase]:
        """The project's use cases (``key``, ``name``, ``kind``, ``config``; more if detailed)."""
        return await self._call(Endpoints.get_use_cases(detailed))

    async def create_widget_token(
        self, ttl_seconds: int = 600, site_domain: Optional[str] = None
    ) -> WidgetToken:
        """A short-lived token for the browser widget."""
        return await self._call(Endpoints.create_widget_token(ttl_seconds, site_domain))

    # -- Client API (JWT) ---------------------------------------------------------------------

    async def client_login(self, email: str, password: str) -> LoginResult:
        """Log in to the Client API; the token is returned and remembered on this client."""
        return self._remember_login(await self._call(Endpoints.client_login(email, password)))

    async def client_list_projects(self, jwt_token: Optional[str] = None) -> List[Project]:
        """The projects of the logged-in account."""
        return await self._call(Endpoints.client_list_projects(jwt_token))

    async def client_get_project(
        self, project_id: str, jwt_token: Optional[str] = None
    ) -> Project:
        """A project's settings (``api_key``, ``allowed_models``, ``hmac_required``, ...)."""
        return await self._call(Endpoints.client_get_project(project_id, jwt_token))

    async def client_create_project(self, name: str, jwt_token: Optional[str] = None) -> Project:
        """Create a project."""
        return await self._call(Endpoints.client_create_project(name, jwt_token))

    async def client_update_project(
        self,
        project_id: str,
        jwt_token: Optional[str] = None,
        name: Optional[str] = None,
        is_active: Optional[bool] = None,
        allowed_models: Optional[List[str]] = None,
        allowed_domains: Optional[List[str]] = None,
        hmac_required: Optional[bool] = None,
        rate_limit_rpm: Optional[int] = None,
        rate_limit_rpd: Optional[int] = None,
    ) -> Project:
        """Update a project; only the fields given are sent."""
        return await self._call(Endpoints.client_update_project(project_id, jwt_token, locals()))

    async def client_delete_project(self, project_id: str, jwt_token: Optional[str] = None) -> Any:
        """Delete a project."""
        return await self._call(Endpoints.client_delete_project(project_id, jwt_token))

    async def client_list_use_cases(
        self, project_id: str, jwt_token: Optional[str] = None
    ) -> List[UseCase]:
        """The use cases of a project."""
        return await self._call(Endpoints.client_list_use_cases(project_id, jwt_token))

    async def client_get_use_case(
        self, project_id: str, use_case_id: str, jwt_token: Optional[str] = None
    ) -> UseCase:
        """One use case by id (or key); the server has no single GET, so this lists and picks.

        Raises:
            NotFoundError: no use case with that id in the project.
        """
        wanted = check_use_case_id(use_case_id)
        return pick_use_case(await self.client_list_use_cases(project_id, jwt_token), wanted)

    async def client_create_use_case(
        self,
        project_id: str,
        jwt_token: Optional[str] = None,
        key: Optional[str] = None,
        name: Optional[str] = None,
        kind: str = "chat",
        config: Optional[Dict[str, Any]] = None,
        is_active: bool = True,
    ) -> UseCase:
        """Create a use case in a project (``key`` and ``name`` are required)."""
        return await self._call(
            Endpoints.client_create_use_case(
                project_id, jwt_token, key, name, kind, config, is_active
            )
        )

    async def client_update_use_case(
        self,
        project_id: str,
        use_case_id: str,
        jwt_token: Optional[str] = None,
        key: Optional[str] = None,
        name: Optional[str] = None,
        kind: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        is_active: Optional[bool] = None,
    ) -> UseCase:
        """Update a use case; only the fields given are sent."""
        return await self._call(
            Endpoints.client_update_use_case(project_id, use_case_id, jwt_token, locals())
        )

    async def client_delete_use_case(
        self, project_id: str, use_case_id: str, jwt_token: Optional[str] = None
    ) -> Any:
        """Delete a use case."""
        return await self._call(
            Endpoints.client_delete_use_case(project_id, use_case_id, jwt_token)
        )
