"""``WayGPTClient``: configuration, the one request pipeline, and a short method per endpoint."""

from __future__ import annotations

import copy
import json
import os
import platform
import time
import uuid
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
    overload,
)
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from urllib3.util.retry import Retry

from ._logging import configure_logging_from_env, logger
from ._version import __version__
from .errors import (
    ERROR_BODY_LIMIT,
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    ConfigurationError,
    MediaJobFailedError,
    MediaJobTimeoutError,
    NotFoundError,
    error_from_response,
    redact_error,
)
from .retry import RetryState, build_retry, exception_chain
from .signing import HMACSigner
from .streaming import ChatStream

__all__ = ["WayGPTClient", "DEFAULT_API_URL"]

DEFAULT_API_URL = "https://app.waygpt.ru"

Timeout = Union[float, Tuple[float, float]]
Messages = Sequence[Mapping[str, Any]]
_Auth = Literal["project", "jwt", "none"]
_UNSET: Any = object()

_ENV = {
    "api_url": "WAYGPT_API_URL",
    "project_key": "WAYGPT_PROJECT_KEY",
    "project_id": "WAYGPT_PROJECT_ID",
    "hmac_secret": "WAYGPT_HMAC_SECRET",
}
_FINAL_JOB_FAILURES = ("failed", "cancelled", "canceled", "error")
_PROJECT_FIELDS = (
    "name",
    "is_active",
    "allowed_models",
    "allowed_domains",
    "hmac_required",
    "rate_limit_rpm",
    "rate_limit_rpd",
)
_USE_CASE_FIELDS = ("key", "name", "kind", "config", "is_active")


def _user_agent() -> str:
    py = ".".join(platform.python_version_tuple()[:2])
    return f"waygpt-python/{__version__} python/{py} requests/{requests.__version__}"


def _setting(name: str, value: Optional[str]) -> Optional[str]:
    """An argument, else its environment variable; checked so it can go into a header."""
    if value is None:
        value = os.environ.get(_ENV[name])
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    # Checked before any stripping: a CR or LF anywhere is refused, never silently trimmed.
    if "\r" in value or "\n" in value:
        raise ConfigurationError(f"{name} must not contain CR or LF characters")
    if name != "hmac_secret":  # a secret is used byte for byte, spaces included
        value = value.strip()
    if name != "hmac_secret" and not value.isascii():
        raise ConfigurationError(f"{name} must contain ASCII characters only")
    return value or None


def _check_api_url(api_url: str) -> str:
    url = api_url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigurationError(f"api_url must start with http:// or https://, got {api_url!r}")
    if not parts.netloc or parts.query or parts.fragment or any(c.isspace() for c in url):
        raise ConfigurationError(f"api_url is not a valid base URL: {api_url!r}")
    return url


def _check_timeout(timeout: Any) -> Timeout:
    def positive(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0

    if positive(timeout):
        return float(timeout)
    if isinstance(timeout, (tuple, list)) and len(timeout) == 2 and all(map(positive, timeout)):
        return (float(timeout[0]), float(timeout[1]))
    raise ConfigurationError(
        f"timeout must be a positive number or a (connect, read) pair, got {timeout!r}"
    )


def _segment(name: str, value: Any) -> str:
    """One path segment: percent-encoded so it can never reach another endpoint."""
    if isinstance(value, bool) or not isinstance(value, (str, int, uuid.UUID)):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    text = str(value)
    if text in ("", ".", ".."):
        raise ValueError(f"{name} must be a non-empty id, got {text!r}")
    return quote(text, safe="")


def _require_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")


def _encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON: the one serialisation that is both signed and sent."""
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"request body is not JSON-serialisable: {exc}") from None
    return text.encode("utf-8")


def _only_given(fields: Sequence[str], values: Mapping[str, Any]) -> Dict[str, Any]:
    return {name: values[name] for name in fields if values[name] is not None}


def _transport_error(exc: BaseException) -> APIConnectionError:
    """Turn any requests/urllib3/socket failure into the SDK's connection error types."""
    chain = exception_chain(exc)
    if any(
        isinstance(e, (TimeoutError, requests.exceptions.Timeout))
        or type(e).__name__ in ("ReadTimeoutError", "ConnectTimeoutError")
        for e in chain
    ):
        return APITimeoutError("request timed out")
    # The innermost OS error says it best ("Connection refused"); urllib3's text repeats the URL.
    reasons = [e.strerror for e in chain if isinstance(e, OSError) and e.strerror]
    reason = reasons[-1] if reasons else None
    return APIConnectionError(f"connection failed: {reason or type(chain[-1]).__name__}")


def _prepared_base_url(api_url: str) -> Optional[str]:
    """The base URL as ``requests`` prepares it (IDNA host, quoted path), computed once.

    None when the URL carries credentials (``user:pass@host``): requests turns those into an
    ``Authorization`` header, so such a client keeps requests' full preparation per call.
    """
    if "@" in urlsplit(api_url).netloc:
        return None
    prepared = requests.PreparedRequest()
    prepared.prepare_url(api_url, None)
    url = prepared.url or api_url
    # requests writes an empty path as "/"; the endpoint paths bring their own.
    return url[:-1] if url.endswith("/") and not api_url.endswith("/") else url


def _prepare(
    method: str, url: str, headers: Dict[str, str], body: Optional[bytes]
) -> requests.PreparedRequest:
    """What ``requests.Request(...).prepare()`` builds for our requests, at a tenth of its cost.

    The URL is already prepared (base URL once, path segments and query percent-encoded by
    the caller), the headers were checked when configured, the body is bytes or None, and
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
    # Session.send inspects a 3xx answer's redirect target through the request's cookie jar.
    prepared._cookies = RequestsCookieJar()  # type: ignore[attr-defined]
    return prepared


def _close_idle_connections(session: requests.Session) -> None:
    """Close the session's pooled connections now.

    ``Session.close()`` only drops urllib3 2's pools (they are no longer closed when dropped),
    so their sockets stay open until the garbage collector frees the pools: much later when
    an exception's traceback holds a pool in a reference cycle. Connections in use are not
    in the pool; a closed pool closes them when they are handed back.
    """
    adapters = {id(adapter): adapter for adapter in session.adapters.values()}
    for adapter in adapters.values():
        managers = [getattr(adapter, "poolmanager", None)]
        managers.extend(getattr(adapter, "proxy_manager", {}).values())
        for manager in managers:
            pools = getattr(manager, "pools", None)
            if pools is None:
                continue
            for key in pools.keys():
                pool = pools.get(key)
                if pool is not None:
                    pool.close()


def _urllib3_reason(exc: BaseException) -> BaseException:
    """The urllib3 error inside a requests ``ConnectionError`` (it wraps a ``MaxRetryError``)."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, BaseException):
        return getattr(inner, "reason", None) or inner
    return exc


class WayGPTClient:
    """A synchronous client for the WayGPT AI Server.

    Every setting may come from the environment (``WAYGPT_API_URL``, ``WAYGPT_PROJECT_KEY``,
    ``WAYGPT_PROJECT_ID``, ``WAYGPT_HMAC_SECRET``, ``WAYGPT_USE_HMAC=true``); an argument wins.

    Args:
        api_url: base URL, default ``https://app.waygpt.ru``.
        project_key: the ``sk_live_...`` key; needed only for project-key endpoints.
        project_id: the project's UUID; needed with ``use_hmac``.
        hmac_secret: the HMAC secret; needed with ``use_hmac``.
        use_hmac: sign project-key requests (``X-MB-*`` headers).
        timeout: seconds, or a ``(connect, read)`` pair. For streams, the read timeout is the
            longest wait between two reads.
        max_retries: retries for 429/5xx and connect failures: an int (0 = off) or a urllib3
            ``Retry``.

    Raises:
        ConfigurationError: (a ``ValueError``) for an invalid setting.
    """

    def __init__(
        self,
        api_url: Optional[str] = None,
        project_key: Optional[str] = None,
        project_id: Optional[str] = None,
        hmac_secret: Optional[str] = None,
        use_hmac: bool = False,
        timeout: Timeout = 60,
        max_retries: Union[int, Retry] = 3,
        *,
        session: Optional[requests.Session] = None,
    ) -> None:
        configure_logging_from_env()
        self.api_url = _check_api_url(_setting("api_url", api_url) or DEFAULT_API_URL)
        self._project_key = _setting("project_key", project_key)
        self.project_id = _setting("project_id", project_id)
        self._hmac_secret = _setting("hmac_secret", hmac_secret)
        self.use_hmac = bool(use_hmac) or os.environ.get("WAYGPT_USE_HMAC", "").lower() == "true"
        self._signer: Optional[HMACSigner] = None
        if self.use_hmac:
            given = {"project_id": self.project_id, "hmac_secret": self._hmac_secret}
            missing = [name for name, value in given.items() if not value]
            if missing:
                raise ConfigurationError(
                    "use_hmac=True requires " + " and ".join(missing)
                    + " (or WAYGPT_PROJECT_ID / WAYGPT_HMAC_SECRET)"
                )
            assert self.project_id is not None and self._hmac_secret is not None
            self._signer = HMACSigner(self.project_id, self._hmac_secret)
        self.timeout = _check_timeout(timeout)
        self.max_retries = build_retry(max_retries)
        self._jwt_token: Optional[str] = None
        self._owns_session = session is None
        self._session = session or self._new_session()
        self._base_headers = {
            "User-Agent": _user_agent(),
            "Accept": "application/json",
        }
        self._bind_api_url()

    def _bind_api_url(self) -> None:
        """Work out once what depends only on the base URL; redone if ``api_url`` is reassigned.

        Environment proxies and CA settings, and the prepared (IDNA, quoted) base URL, would
        otherwise be recomputed on every call, as ``Session.request`` does, for nothing.
        """
        self.api_url = _check_api_url(self.api_url)
        self._bound_url = self.api_url
        self._prepared_base = _prepared_base_url(self.api_url)
        self._send_settings = self._session.merge_environment_settings(
            self.api_url, {}, True, None, None
        )

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # Retries run in the client loop (every attempt is signed afresh), never in urllib3.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    # -- lifecycle ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"WayGPTClient(api_url={self.api_url!r}, project_id={self.project_id!r}, "
            f"project_key={'<set>' if self._project_key else None}, use_hmac={self.use_hmac})"
        )

    def __enter__(self) -> WayGPTClient:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections (only when the client created its own session)."""
        if self._owns_session:
            _close_idle_connections(self._session)
            self._session.close()

    def with_options(
        self,
        *,
        timeout: Optional[Timeout] = None,
        max_retries: Union[int, Retry, None] = None,
    ) -> WayGPTClient:
        """A copy with other ``timeout``/``max_retries`` that shares this client's connections."""
        clone = copy.copy(self)
        clone._owns_session = False
        if timeout is not None:
            clone.timeout = _check_timeout(timeout)
        if max_retries is not None:
            clone.max_retries = build_retry(max_retries)
        return clone

    @property
    def jwt_token(self) -> Optional[str]:
        """The JWT remembered by the last ``client_login`` (or set here)."""
        return self._jwt_token

    @jwt_token.setter
    def jwt_token(self, value: Optional[str]) -> None:
        self._jwt_token = value

    # -- the pipeline ------------------------------------------------------------------------

    def _redact(self, text: str, extra: Sequence[Optional[str]] = ()) -> str:
        for secret in (self._project_key, self._hmac_secret, self._jwt_token, *extra):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "[REDACTED]")
        return text

    def _auth_headers(self, auth: _Auth, path: str, jwt_token: Optional[str]) -> Dict[str, str]:
        if auth == "project":
            if not self._project_key:
                raise ConfigurationError(
                    f"project_key is required for {path}: pass project_key= "
                    "or set WAYGPT_PROJECT_KEY"
                )
            return {"x-project-key": self._project_key}
        if auth == "jwt":
            token = jwt_token or self._jwt_token
            if not token:
                raise ConfigurationError(
                    "the Client API needs a JWT: call client_login() first or pass jwt_token"
                )
            if "\r" in token or "\n" in token:
                raise ValueError("jwt_token must not contain CR or LF characters")
            return {"Authorization": f"Bearer {token}"}
        return {}

    def _request(
        self,
        method: str,
        path: str,
        *,
        auth: _Auth = "project",
        json_body: Any = _UNSET,
        form: Optional[Mapping[str, str]] = None,
        params: Optional[Mapping[str, str]] = None,
        jwt_token: Optional[str] = None,
        expect: Optional[type] = None,
        stream: bool = False,
        secrets: Sequence[Optional[str]] = (),
    ) -> Any:
        """Build, sign, send, retry, map errors, decode: the path every endpoint takes."""
        headers = dict(self._base_headers)
        headers.update(self._auth_headers(auth, path, jwt_token))
        body: Optional[bytes] = None
        if json_body is not _UNSET:
            body = _encode_json(json_body)
            headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if stream:
            headers["Accept"] = "text/event-stream"
        target = path + ("?" + urlencode(params) if params else "")
        if self._bound_url != self.api_url:
            self._bind_api_url()
        url = self.api_url + target
        base = self._prepared_base
        if base is None:
            prepared = requests.Request(method, url, headers=headers, data=body).prepare()
        else:
            prepared = _prepare(method, base + target, headers, body)
        signer = self._signer if auth == "project" else None
        redact_secrets = (*secrets, jwt_token)

        retry = RetryState(self.max_retries, method, url)
        while True:
            if signer is not None:
                # A fresh timestamp, nonce and signature, written over the previous attempt's.
                signer(prepared)
            attempt_number = retry.attempt
            started = time.monotonic()
            try:
                response = self._session.send(
                    prepared,
                    timeout=self.timeout,
                    allow_redirects=False,
                    **self._send_settings,
                )
            except Exception as exc:  # noqa: BLE001 - transport failures become typed errors
                delay = retry.delay_after_error(_urllib3_reason(exc))
                error = _transport_error(exc)
                error.message = self._redact(error.message, redact_secrets)
                self._log_attempt(method, path, None, started, attempt_number)
                if delay is None:
                    raise error from None
                self._log_retry(method, path, type(error).__name__, delay, attempt_number)
                time.sleep(delay)
                continue
            status = response.status_code
            self._log_attempt(method, path, status, started, attempt_number)
            if status < 300:
                break
            delay = retry.delay_after_status(status, response.headers, response.raw)
            error_body = self._read_bounded(response)
            if delay is None:
                raise error_from_response(
                    status,
                    response.headers,
                    error_body,
                    redact=lambda text: self._redact(text, redact_secrets),
                ) from None
            self._log_retry(method, path, f"HTTP {status}", delay, attempt_number)
            time.sleep(delay)

        if stream:
            return ChatStream(
                response,
                wrap_transport_error=_transport_error,
                redact=lambda text: self._redact(text, redact_secrets),
            )
        try:
            return self._decode(response, expect)
        except APIResponseValidationError as error:
            # A success body that is not JSON may echo what was sent (key, password, JWT).
            raise redact_error(error, lambda text: self._redact(text, redact_secrets)) from None

    @staticmethod
    def _read_bounded(response: requests.Response) -> bytes:
        """At most ERROR_BODY_LIMIT bytes of an error body; the rest is never read."""
        buffer = bytearray()
        # read1 (urllib3 2) returns what has arrived: the start of a body cut short is kept,
        # where iter_content's filling reads lose it when the connection drops mid-body.
        read1 = getattr(response.raw, "read1", None)
        try:
            chunks: Iterable[bytes] = (
                response.iter_content(64 * 1024)
                if read1 is None
                else iter(lambda: read1(64 * 1024, decode_content=True), b"")
            )
            for chunk in chunks:
                buffer += chunk
                if len(buffer) > ERROR_BODY_LIMIT:
                    break
        except Exception:  # noqa: BLE001, S110 - a broken error body still yields its status
            pass
        finally:
            response.close()
        return bytes(buffer[:ERROR_BODY_LIMIT])

    @staticmethod
    def _decode(response: requests.Response, expect: Optional[type]) -> Any:
        try:
            content = response.content
        except Exception as exc:  # noqa: BLE001
            raise _transport_error(exc) from None
        finally:
            response.close()
        status = response.status_code
        if not content.strip():
            data: Any = None
        else:
            try:
                data = json.loads(content)
            except (ValueError, RecursionError):  # RecursionError: nested past json's limit
                snippet = content[:200].decode("utf-8", errors="replace")
                raise APIResponseValidationError(
                    f"expected a JSON answer, got: {snippet!r}",
                    status,
                    body=content[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace"),
                    headers=response.headers,
                    request_id=response.headers.get("x-request-id"),
                ) from None
        if expect is not None and not isinstance(data, expect):
            raise APIResponseValidationError(
                f"expected a JSON {expect.__name__}, got {type(data).__name__}",
                status,
                data,
                headers=response.headers,
                request_id=response.headers.get("x-request-id"),
            )
        return data

    @staticmethod
    def _log_attempt(
        method: str, path: str, status: Optional[int], started: float, attempt: int
    ) -> None:
        logger.debug(
            "%s %s -> %s in %.1f ms (attempt %d)",
            method,
            path,
            status if status is not None else "no answer",
            (time.monotonic() - started) * 1000,
            attempt,
        )

    @staticmethod
    def _log_retry(method: str, path: str, reason: str, delay: float, attempt: int) -> None:
        logger.warning(
            "%s %s failed (%s); retrying in %.2f s (attempt %d)",
            method,
            path,
            reason,
            delay,
            attempt,
        )

    # -- chat ---------------------------------------------------------------------------------

    @overload
    def chat_completions(
        self,
        model: str = ...,
        messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ...,
        use_case: Optional[str] = ...,
        temperature: Optional[float] = ...,
        max_tokens: Optional[int] = ...,
        stream: Literal[False] = ...,
        **kwargs: Any,
    ) -> Dict[str, Any]: ...

    @overload
    def chat_completions(
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
    ) -> ChatStream: ...

    @overload
    def chat_completions(
        self,
        model: str = ...,
        messages: Optional[Messages] = ...,
        use_case_id: Optional[str] = ...,
        use_case: Optional[str] = ...,
        temperature: Optional[float] = ...,
        max_tokens: Optional[int] = ...,
        stream: bool = ...,
        **kwargs: Any,
    ) -> Union[Dict[str, Any], ChatStream]: ...

    def chat_completions(
        self,
        model: str = "auto",
        messages: Optional[Messages] = None,
        use_case_id: Optional[str] = None,
        use_case: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> Union[Dict[str, Any], ChatStream]:
        """Create a chat completion (OpenAI shape).

        Args:
            model: a model id, or ``"auto"`` to let the server choose.
            messages: ``[{"role": "user", "content": "..."}]``; required.
            use_case: a use-case key (``use_case_id`` is its deprecated alias).
            temperature, max_tokens: sent only when given.
            stream: return a :class:`ChatStream` of chunk dicts instead of one dict.
            **kwargs: extra fields, sent in the body as they are.

        Raises:
            ValueError: bad ``messages``; ``APIStatusError`` subclasses for HTTP errors;
            ``APIConnectionError``/``APITimeoutError`` when no answer arrives.
        """
        if isinstance(messages, (str, bytes)) or not messages or not all(
            isinstance(m, Mapping) for m in messages
        ):
            raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
        _require_text("model", model)
        body: Dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        key = use_case if use_case is not None else use_case_id
        if key is not None:
            body["use_case"] = key
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
        body.update(kwargs)
        path = "/api/v1/waygpt/chat/completions"
        if stream:
            return self._request("POST", path, json_body=body, stream=True)  # type: ignore[no-any-return]
        return self._request("POST", path, json_body=body, expect=dict)  # type: ignore[no-any-return]

    def chat_completions_stream(
        self,
        model: str = "auto",
        messages: Optional[Messages] = None,
        use_case_id: Optional[str] = None,
        use_case: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        **kwargs: Any,
    ) -> ChatStream:
        """Stream a chat completion; iterate the result for chunk dicts (see chat_completions)."""
        return self.chat_completions(
            model, messages, use_case_id, use_case, temperature, max_tokens, stream=True, **kwargs
        )

    # -- media --------------------------------------------------------------------------------

    def image_generations(
        self,
        prompt: str,
        model: Optional[str] = None,
        size: str = "1024x1024",
        n: int = 1,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """Generate images; the answer's ``data`` holds ``[{"url": ...}]``."""
        _require_text("prompt", prompt)
        _require_text("size", size)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        body: Dict[str, Any] = {"prompt": prompt, "size": size, "n": n}
        if model is not None:
            body["model"] = model
        body.update(kwargs)
        return self._request(  # type: ignore[no-any-return]
            "POST", "/api/v1/waygpt/images/generations", json_body=body, expect=dict
        )

    def video_generations(
        self,
        prompt: str,
        model: Optional[str] = None,
        duration: Optional[int] = None,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """Start a video job; returns ``{"job_id": ..., "status": "pending"}``."""
        _require_text("prompt", prompt)
        body: Dict[str, Any] = {"prompt": prompt}
        if model is not None:
            body["model"] = model
        if duration is not None:
            body["duration"] = duration
        body.update(kwargs)
        return self._request(  # type: ignore[no-any-return]
            "POST", "/api/v1/waygpt/videos/generations", json_body=body, expect=dict
        )

    def get_media_job(self, job_id: str) -> Dict[str, Any]:
        """A media job's dict; ``status`` is pending, processing, completed, failed or cancelled."""
        path = f"/api/v1/waygpt/media/jobs/{_segment('job_id', job_id)}"
        return self._request("GET", path, expect=dict)  # type: ignore[no-any-return]

    def cancel_media_job(self, job_id: str) -> Dict[str, Any]:
        """Cancel a pending or running media job."""
        path = f"/api/v1/waygpt/media/jobs/{_segment('job_id', job_id)}/cancel"
        return self._request("POST", path, expect=dict)  # type: ignore[no-any-return]

    def wait_for_media_job(
        self,
        job_id: str,
        poll_interval: float = 2.0,
        timeout: float = 600.0,
        on_update: Optional[Callable[[Dict[str, Any]], None]] = None,
    ) -> Dict[str, Any]:
        """Poll a media job until it is completed, and return the final job dict.

        ``on_update(job)`` is called whenever the status or progress changes.

        Raises:
            MediaJobFailedError: the job ended ``failed`` or ``cancelled`` (``.job`` holds it).
            MediaJobTimeoutError: still not finished after ``timeout`` seconds.
        """
        if not poll_interval > 0 or not timeout > 0:
            raise ValueError("poll_interval and timeout must be positive")
        deadline = time.monotonic() + timeout
        last_seen: Any = None
        while True:
            job = self.get_media_job(job_id)
            status = str(job.get("status", "")).lower()
            seen = (status, job.get("progress"))
            if seen != last_seen:
                last_seen = seen
                if on_update is not None:
                    on_update(job)
            if status == "completed":
                return job
            if status in _FINAL_JOB_FAILURES:
                reason = job.get("error") or job.get("message")
                if isinstance(reason, dict):  # {"message": ..., "code": ...}
                    reason = reason.get("message") or reason.get("detail") or reason
                detail = f": {reason}" if reason else ""
                raise MediaJobFailedError(f"media job {job_id} {status}{detail}", job)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MediaJobTimeoutError(
                    f"media job {job_id} not finished after {timeout:g} s (status {status})", job
                )
            time.sleep(min(poll_interval, remaining))

    # -- catalogue ----------------------------------------------------------------------------

    def get_models(self) -> List[str]:
        """The model ids this project may use."""
        return self._request("GET", "/api/v1/waygpt/models", expect=list)  # type: ignore[no-any-return]

    def get_models_full(self) -> List[Dict[str, Any]]:
        """The models with their details (``id``, ``name``, ``provider``, ...)."""
        return self._request(  # type: ignore[no-any-return]
            "GET", "/api/v1/waygpt/models/full", expect=list
        )

    def get_use_cases(self, detailed: bool = False) -> List[Dict[str, Any]]:
        """The project's use cases (``key``, ``name``, ``kind``; ``config`` when ``detailed``)."""
        params = {"detailed": "true"} if detailed else None
        return self._request(  # type: ignore[no-any-return]
            "GET", "/api/v1/waygpt/use-cases", params=params, expect=list
        )

    def create_widget_token(
        self, ttl_seconds: int = 600, site_domain: Optional[str] = None
    ) -> Dict[str, Any]:
        """A short-lived token for the browser widget."""
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be a positive int, got {ttl_seconds!r}")
        body: Dict[str, Any] = {"ttl_seconds": ttl_seconds}
        if site_domain is not None:
            body["site_domain"] = site_domain
        return self._request(  # type: ignore[no-any-return]
            "POST", "/api/v1/widget/token", json_body=body, expect=dict
        )

    # -- Client API (JWT) ---------------------------------------------------------------------

    def client_login(self, email: str, password: str) -> Dict[str, Any]:
        """Log in to the Client API; the token is returned and remembered on this client.

        Returns the server's answer plus ``token`` (= ``access_token``), ``expires_in`` (the
        server's, else 3600) and ``token_type`` (default ``bearer``).
        """
        _require_text("email", email)
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        data: Dict[str, Any] = self._request(
            "POST",
            "/api/v1/auth/login/access-token",
            auth="none",
            form={"username": email, "password": password},
            expect=dict,
            secrets=(password,),
        )
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise APIResponseValidationError("login answer has no access_token", 200)
        data["token"] = token
        data.setdefault("expires_in", 3600)
        if data.get("expires_in") is None:
            data["expires_in"] = 3600
        data.setdefault("token_type", "bearer")
        self._jwt_token = token
        return data

    def _client_api(self, method: str, path: str, jwt_token: Optional[str], **kwargs: Any) -> Any:
        return self._request(
            method, "/api/v1/client" + path, auth="jwt", jwt_token=jwt_token, **kwargs
        )

    def client_list_projects(self, jwt_token: Optional[str] = None) -> List[Dict[str, Any]]:
        """The projects of the logged-in account."""
        return self._client_api("GET", "/projects", jwt_token, expect=list)  # type: ignore[no-any-return]

    def client_get_project(
        self, project_id: str, jwt_token: Optional[str] = None
    ) -> Dict[str, Any]:
        """A project's settings (``api_key``, ``allowed_models``, ``hmac_required``, ...)."""
        path = f"/projects/{_segment('project_id', project_id)}/settings"
        return self._client_api("GET", path, jwt_token, expect=dict)  # type: ignore[no-any-return]

    def client_create_project(self, name: str, jwt_token: Optional[str] = None) -> Dict[str, Any]:
        """Create a project."""
        _require_text("name", name)
        return self._client_api(  # type: ignore[no-any-return]
            "POST", "/projects", jwt_token, json_body={"name": name}, expect=dict
        )

    def client_update_project(
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
    ) -> Dict[str, Any]:
        """Update a project; only the fields given are sent."""
        path = f"/projects/{_segment('project_id', project_id)}"
        body = _only_given(_PROJECT_FIELDS, locals())
        return self._client_api("PUT", path, jwt_token, json_body=body, expect=dict)  # type: ignore[no-any-return]

    def client_delete_project(
        self, project_id: str, jwt_token: Optional[str] = None
    ) -> Any:
        """Delete a project."""
        path = f"/projects/{_segment('project_id', project_id)}"
        return self._client_api("DELETE", path, jwt_token)

    def client_list_use_cases(
        self, project_id: str, jwt_token: Optional[str] = None
    ) -> List[Dict[str, Any]]:
        """The use cases of a project."""
        path = f"/projects/{_segment('project_id', project_id)}/use-cases"
        return self._client_api("GET", path, jwt_token, expect=list)  # type: ignore[no-any-return]

    def client_get_use_case(
        self, project_id: str, use_case_id: str, jwt_token: Optional[str] = None
    ) -> Dict[str, Any]:
        """One use case by id (or key). The server has no single GET: this lists and picks.

        Raises:
            NotFoundError: no use case with that id in the project.
        """
        _segment("use_case_id", use_case_id)
        for item in self.client_list_use_cases(project_id, jwt_token):
            if isinstance(item, dict) and use_case_id in (item.get("id"), item.get("key")):
                return item
        raise NotFoundError(f"use case {use_case_id!r} not found", 404)

    def client_create_use_case(
        self,
        project_id: str,
        jwt_token: Optional[str] = None,
        key: Optional[str] = None,
        name: Optional[str] = None,
        kind: str = "chat",
        config: Optional[Dict[str, Any]] = None,
        is_active: bool = True,
    ) -> Dict[str, Any]:
        """Create a use case in a project (``key`` and ``name`` are required)."""
        _require_text("key", key)
        _require_text("name", name)
        _require_text("kind", kind)
        path = f"/projects/{_segment('project_id', project_id)}/use-cases"
        body: Dict[str, Any] = {"key": key, "name": name, "kind": kind, "is_active": is_active}
        if config is not None:
            body["config"] = config
        return self._client_api("POST", path, jwt_token, json_body=body, expect=dict)  # type: ignore[no-any-return]

    def client_update_use_case(
        self,
        project_id: str,
        use_case_id: str,
        jwt_token: Optional[str] = None,
        key: Optional[str] = None,
        name: Optional[str] = None,
        kind: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        is_active: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Update a use case; only the fields given are sent."""
        path = (
            f"/projects/{_segment('project_id', project_id)}"
            f"/use-cases/{_segment('use_case_id', use_case_id)}"
        )
        body = _only_given(_USE_CASE_FIELDS, locals())
        return self._client_api("PUT", path, jwt_token, json_body=body, expect=dict)  # type: ignore[no-any-return]

    def client_delete_use_case(
        self, project_id: str, use_case_id: str, jwt_token: Optional[str] = None
    ) -> Any:
        """Delete a use case."""
        path = (
            f"/projects/{_segment('project_id', project_id)}"
            f"/use-cases/{_segment('use_case_id', use_case_id)}"
        )
        return self._client_api("DELETE", path, jwt_token)

