"""``AsyncWayGPTClient``: the asyncio client, one short method per endpoint, on aiohttp.

The one hand-written client: ``client.py`` is generated from it by ``tools/unasync.py``.
What each method sends is in ``_endpoints.py``, the pipeline that sends it in ``_core.py``.
"""

from __future__ import annotations

import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Literal,
    Mapping,
    Optional,
    Union,
    overload,
)

from urllib3.util.retry import Retry

from ._aiohttp_transport import AiohttpTransport
from ._config import DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, Timeout, split_timeout
from ._core import RECORDING, ClientCore, Deadline, StreamRestart
from ._endpoints import Call, Endpoints, Messages, T, check_use_case_id, login_result
from ._observe import RawResponse, RawResponses
from ._structured import StructuredAnswer
from .errors import MediaJobFailedError, MediaJobTimeoutError, NotFoundError
from .streaming import AsyncChatStream

if TYPE_CHECKING:
    from aiohttp import ClientSession

    from .types import (
        ChatCompletion,
        ImageGeneration,
        LoginResult,
        MediaJob,
        ModelInfo,
        Project,
        UseCase,
        WidgetToken,
    )

__all__ = ["AsyncWayGPTClient"]


class AsyncWayGPTClient(ClientCore):
    """An asyncio client for the WayGPT AI Server, on aiohttp (``pip install "waygpt[aiohttp]"``).

    Every setting may come from the environment (``WAYGPT_API_URL``, ``WAYGPT_PROJECT_KEY``,
    ``WAYGPT_PROJECT_ID``, ``WAYGPT_HMAC_SECRET``, ``WAYGPT_USE_HMAC=true``); an argument wins.
    The aiohttp session is made at the first call, in the running event loop: use the client
    from one event loop, and close it there (a call from another loop while that one still
    runs raises ``ConfigurationError``).

    Args:
        api_url: base URL, default ``https://app.waygpt.ru``.
        project_key: the ``sk_live_...`` key; needed only for project-key endpoints.
        project_id: the project's UUID; needed with ``use_hmac``.
        hmac_secret: the HMAC secret; needed with ``use_hmac``.
        use_hmac: sign project-key requests (``X-MB-*`` headers).
        timeout: seconds, or a ``(connect, read)`` pair: the longest wait for a connection
            and between two reads. For streams, also the longest wait for a complete line.
        max_retries: retries for 429/5xx and connect failures: an int (0 = off) or a urllib3
            ``Retry``.
        total_timeout: the wall-clock bound, in seconds, of one call that is not a stream:
            connecting, every read, every retry and its wait (default 600). For a stream it
            bounds everything before its events.
        session: an ``aiohttp.ClientSession`` to send on; its headers, auth, cookies and
            connector apply. By default the client makes its own.
        event_hooks: ``{"request": [hook, ...], "response": [hook, ...]}``: each hook is
            called once per attempt, with a ``RequestView`` before it is sent and a
            ``ResponseView`` when its answer's headers arrive. What a hook raises reaches
            the caller unchanged, and the call stops there. A hook may be a coroutine
            function.
        max_connections: the most connections the client opens to the server at once; a
            call beyond them waits for one to be free, within its ``total_timeout``. None
            (the default): no limit, every concurrent call and stream has a connection (a
            file descriptor) of its own at once.

    Raises:
        ConfigurationError: (a ``ValueError``) for an invalid setting.
        ImportError: aiohttp is not installed.
    """

    def __init__(
        self, api_url: Optional[str] = None, project_key: Optional[str] = None,
        project_id: Optional[str] = None, hmac_secret: Optional[str] = None,
        use_hmac: bool = False, timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: Union[int, Retry] = 3, *, total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
        session: Optional[ClientSession] = None, event_hooks: Optional[Mapping[str, Any]] = None,
        max_connections: Optional[int] = None,
    ) -> None:
        super().__init__(
            AiohttpTransport(session, max_connections), api_url, project_key, project_id,
            hmac_secret, use_hmac, timeout, max_retries, total_timeout, event_hooks,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncWayGPTClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections (only when the client created its own session).

        The client stays usable: a later call opens a new connection.
        """
        if self._closes_transport:
            await self._transport.close()

    def with_options(
        self, *, timeout: Optional[Timeout] = None, max_retries: Union[int, Retry, None] = None,
        total_timeout: Optional[float] = None, event_hooks: Optional[Mapping[str, Any]] = None,
        extra_headers: Optional[Mapping[str, str]] = None,
    ) -> AsyncWayGPTClient:
        """A copy with other settings that shares this client's connections (closing the
        copy leaves them open).

        ``client.with_options(max_retries=0).video_generations(...)`` sends one request only.
        ``event_hooks`` replaces the hooks; ``extra_headers`` are added to every request (an
        ``X-Client-Request-ID`` among them is sent as the call's id instead of a new one).
        """
        clone: AsyncWayGPTClient = self._copy_with(
            timeout, max_retries, total_timeout, event_hooks, extra_headers
        )
        return clone

    @property
    def with_raw_response(self) -> RawResponses:
        """Every method, returning a :class:`RawResponse` (status, headers, request id,
        attempts, elapsed, ``parse()``) instead of the plain value:
        ``await client.with_raw_response.get_models()``."""
        return RawResponses(self)

    async def _raw_call(self, name: str, *args: Any, **kwargs: Any) -> RawResponse[Any]:
        recording: List[Any] = []  # the calls the method makes; the last one is described
        token = RECORDING.set(recording)
        try:
            value = await getattr(self, name)(*args, **kwargs)
        finally:
            RECORDING.reset(token)
        return self._raw_response(value, *recording[-1])

    # -- the pipeline ------------------------------------------------------------------------

    async def _call(self, call: Call[T]) -> T:
        deadline = Deadline(self.total_timeout)
        state = self._call_state(call)
        result: T = await self._transport.run(self._steps(call, deadline, state), deadline)
        self._record(state, call)
        return result

    async def _stream(self, call: Call[Any]) -> AsyncChatStream:
        deadline = Deadline(self.total_timeout)
        state = self._call_state(call)
        answer, parser = await self._transport.run(self._steps(call, deadline, state), deadline)
        self._record(state, call)
        stream: AsyncChatStream = self._transport.open_stream(
            answer, parser, self._redactor(call, state), split_timeout(self.timeout)[1],
            StreamRestart(self, call, deadline, state),
        )
        return stream

    # -- chat ---------------------------------------------------------------------------------

    @overload
    async def chat_completions(
        self, model: str = ..., messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ..., use_case: Optional[str] = ...,
        temperature: Optional[float] = ..., max_tokens: Optional[int] = ...,
        stream: Literal[False] = ..., **kwargs: Any,
    ) -> ChatCompletion: ...

    @overload
    async def chat_completions(
        self, model: str = ..., messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ..., use_case: Optional[str] = ...,
        temperature: Optional[float] = ..., max_tokens: Optional[int] = ...,
        *, stream: Literal[True], **kwargs: Any,
    ) -> AsyncChatStream: ...

    @overload
    async def chat_completions(
        self, model: str = ..., messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ..., use_case: Optional[str] = ...,
        temperature: Optional[float] = ..., max_tokens: Optional[int] = ...,
        stream: bool = ..., **kwargs: Any,
    ) -> Union[ChatCompletion, AsyncChatStream]: ...

    async def chat_completions(
        self, model: str = "auto", messages: Optional[Messages] = None,
        use_case_id: Optional[str] = None, use_case: Optional[str] = None,
        temperature: Optional[float] = None, max_tokens: Optional[int] = None,
        stream: bool = False, **kwargs: Any,
    ) -> Union[ChatCompletion, AsyncChatStream]:
        """Create a chat completion (OpenAI shape).

        Args:
            model: a model id, or ``"auto"`` to let the server choose.
            messages: ``[{"role": "user", "content": "..."}]`` (any iterable of dicts,
                read once); required.
            use_case: a use-case key, stripped of surrounding spaces, not sent when empty
                (``use_case_id`` is its deprecated alias).
            temperature, max_tokens: sent only when given.
            stream: return an :class:`AsyncChatStream` of chunk dicts, once the stream's
                headers arrived, instead of one dict.
            **kwargs: extra fields, sent in the body as they are.

        Raises:
            ValueError: bad ``messages``; ``APIStatusError`` subclasses for HTTP errors
            (before a stream starts, here); ``APIConnectionError``/``APITimeoutError`` when no
            answer arrives.
        """
        call = Endpoints.chat_completions(
            model, messages, use_case_id, use_case, temperature, max_tokens, stream, kwargs
        )
        if stream:
            return await self._stream(call)
        return await self._call(call)

    async def chat_completions_stream(
        self, model: str = "auto", messages: Optional[Messages] = None,
        use_case_id: Optional[str] = None, use_case: Optional[str] = None,
        temperature: Optional[float] = None, max_tokens: Optional[int] = None, **kwargs: Any,
    ) -> AsyncChatStream:
        """Stream a chat completion; iterate the result for chunk dicts (see chat_completions).

        An HTTP error before the stream starts raises here; errors during it, while iterating.
        """
        call = Endpoints.chat_completions(
            model, messages, use_case_id, use_case, temperature, max_tokens, True, kwargs
        )
        return await self._stream(call)

    async def chat_completions_parse(
        self,
        model: str = "auto",
        messages: Optional[Messages] = None,
        use_case_id: Optional[str] = None,
        use_case: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        *,
        response_format: Any,
        **kwargs: Any,
    ) -> ChatCompletion:
        """A chat completion whose answer is JSON for a schema, read back into each choice's
        ``message["parsed"]``.

        Args:
            response_format: a pydantic model class (``parsed`` is an instance of it), a
                ``TypedDict`` or a JSON schema dict (``parsed`` is a dict checked against
                it). Sent as OpenAI's ``response_format`` (``json_schema``), ``strict`` when
                every object lists all its properties as required and allows no others.
            model, messages, use_case, ...: as for :meth:`chat_completions` (no ``stream``).

        Raises:
            StructuredOutputError: the model refused, was cut at ``max_tokens``, wrote no
            JSON or JSON that does not match (``reason``; ``raw_text`` holds the answer,
            redacted). TypeError: a ``response_format`` that is none of these. The errors of
            :meth:`chat_completions`.
        """
        answer = StructuredAnswer(response_format)
        call = Endpoints.chat_completions(
            model, messages, use_case_id, use_case, temperature, max_tokens, False,
            answer.request_fields(kwargs),
        )
        redact = self._redactor(call, self._call_state(call))  # chat secrets do not change mid-call
        parsed: ChatCompletion = answer.parse(await self._call(call), redact)
        return parsed

    # -- media --------------------------------------------------------------------------------

    async def image_generations(
        self, prompt: str, model: Optional[str] = None, size: str = "1024x1024", n: int = 1,
        **kwargs: Any,
    ) -> ImageGeneration:
        """Generate images; the answer's ``data`` holds ``[{"url": ...}]``."""
        return await self._call(Endpoints.image_generations(prompt, model, size, n, kwargs))

    async def video_generations(
        self, prompt: str, model: Optional[str] = None, duration: Optional[int] = None,
        **kwargs: Any,
    ) -> MediaJob:
        """Start a video job; returns ``{"job_id": ..., "status": "pending"}``.

        A POST that fails with 500/502/504 is retried by default and may then run twice on
        the server: pass ``with_options(max_retries=0)`` to send it once.
        """
        return await self._call(Endpoints.video_generations(prompt, model, duration, kwargs))

    async def get_media_job(self, job_id: str) -> MediaJob:
        """A media job's dict; ``status`` is pending, processing, completed, failed or cancelled."""
        return await self._call(Endpoints.get_media_job(job_id))

    async def cancel_media_job(self, job_id: str) -> Dict[str, Any]:
        """Cancel a pending or running media job."""
        return await self._call(Endpoints.cancel_media_job(job_id))

    async def wait_for_media_job(
        self, job_id: str, poll_interval: float = 2.0, timeout: float = 600.0,
        on_update: Optional[Callable[[MediaJob], Any]] = None,
    ) -> MediaJob:
        """Poll a media job until it is completed, and return the final job dict.

        ``on_update(job)`` (a plain function or a coroutine function) is called whenever the
        status or progress changes.

        Raises:
            MediaJobFailedError: the job ended ``failed`` or ``cancelled`` (``.job`` holds it).
            MediaJobTimeoutError: still not finished after ``timeout`` seconds.
        """
        for value in (poll_interval, timeout):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError("poll_interval and timeout must be positive numbers")
        deadline = time.monotonic() + timeout
        seen: Any = None  # the status and progress on_update was last called for
        while True:
            job = await self.get_media_job(job_id)
            status = str(job.get("status", "")).lower()
            if on_update is not None and (status, job.get("progress")) != seen:
                seen = (status, job.get("progress"))
                paused = RECORDING.set(None)  # with_raw_response describes the last poll
                try:
                    await self._transport.notify(on_update, job)
                finally:
                    RECORDING.reset(paused)
            if status == "completed":
                return job
            if status in ("failed", "cancelled", "canceled", "error"):
                reason: Any = job.get("error") or job.get("message")
                if isinstance(reason, dict):  # {"message": ..., "code": ...}
                    reason = reason.get("message") or reason.get("detail") or reason
                detail = f": {reason}" if reason else ""
                raise MediaJobFailedError(f"media job {job_id} {status}{detail}", dict(job))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                message = f"media job {job_id} not finished after {timeout:g} s (status {status})"
                raise MediaJobTimeoutError(message, dict(job))
            await self._transport.sleep(min(poll_interval, remaining))

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
        """Log in to the Client API; the token is returned and remembered on this client.

        Returns the server's answer plus ``token`` (= ``access_token``), ``expires_in`` (the
        server's, else 3600) and ``token_type`` (default ``bearer``).
        """
        result = login_result(await self._call(Endpoints.client_login(email, password)))
        self._jwt_token = result["token"]
        return result

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
        self, project_id: str, jwt_token: Optional[str] = None, name: Optional[str] = None,
        is_active: Optional[bool] = None, allowed_models: Optional[List[str]] = None,
        allowed_domains: Optional[List[str]] = None, hmac_required: Optional[bool] = None,
        rate_limit_rpm: Optional[int] = None, rate_limit_rpd: Optional[int] = None,
    ) -> Project:
        """Update a project; only the fields given are sent."""
        call = Endpoints.client_update_project(
            project_id, jwt_token, name=name, is_active=is_active, allowed_models=allowed_models,
            allowed_domains=allowed_domains, hmac_required=hmac_required,
            rate_limit_rpm=rate_limit_rpm, rate_limit_rpd=rate_limit_rpd,
        )
        return await self._call(call)

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
        """One use case by id (or key). The server has no single GET: this lists and picks.

        Raises:
            NotFoundError: no use case with that id in the project.
        """
        wanted = check_use_case_id(use_case_id)
        for item in await self.client_list_use_cases(project_id, jwt_token):
            if isinstance(item, dict) and wanted in (item.get("id"), item.get("key")):
                return item
        raise NotFoundError(f"use case {wanted!r} not found", 404)

    async def client_create_use_case(
        self, project_id: str, jwt_token: Optional[str] = None, key: Optional[str] = None,
        name: Optional[str] = None, kind: str = "chat", config: Optional[Dict[str, Any]] = None,
        is_active: bool = True,
    ) -> UseCase:
        """Create a use case in a project (``key`` and ``name`` are required)."""
        call = Endpoints.client_create_use_case(
            project_id, jwt_token, key, name, kind, config, is_active
        )
        return await self._call(call)

    async def client_update_use_case(
        self, project_id: str, use_case_id: str, jwt_token: Optional[str] = None,
        key: Optional[str] = None, name: Optional[str] = None, kind: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None, is_active: Optional[bool] = None,
    ) -> UseCase:
        """Update a use case; only the fields given are sent."""
        call = Endpoints.client_update_use_case(
            project_id, use_case_id, jwt_token, key=key, name=name, kind=kind, config=config,
            is_active=is_active,
        )
        return await self._call(call)

    async def client_delete_use_case(
        self, project_id: str, use_case_id: str, jwt_token: Optional[str] = None
    ) -> Any:
        """Delete a use case."""
        call = Endpoints.client_delete_use_case(project_id, use_case_id, jwt_token)
        return await self._call(call)
