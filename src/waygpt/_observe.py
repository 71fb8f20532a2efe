"""What a call lets its caller see of itself: raw responses and event hooks (nothing built
for a call that asks for none of it)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Generic, Iterator, Mapping, Optional, Tuple, TypeVar

from ._config import is_header_safe
from .errors import ConfigurationError, request_id_of

_V = TypeVar("_V")
Hook = Callable[[Any], Any]

CLIENT_REQUEST_ID = "X-Client-Request-ID"
# Headers a caller's extra_headers may not replace: the SDK's credentials, signature and
# framing (a wrong Content-Length, a second key, a forged signature would only fail).
_OWN_HEADERS = frozenset((
    "x-project-key", "authorization", "x-mb-timestamp", "x-mb-nonce", "x-mb-signature",
    "content-type", "content-length", "transfer-encoding", "host",
))
_MASKED = {"x-project-key": "[REDACTED]", "authorization": "Bearer [REDACTED]"}
# A request header whose name holds one of these (any case) carries a credential: a caller's
# extra_headers such as Proxy-Authorization, Cookie, X-Api-Key. Views mask its value. (The
# X-MB-* signature headers match none: a signature is good for one nonce, and stays visible.)
_CREDENTIAL_NAMES = (
    "auth", "cookie", "credential", "key", "passwd", "password", "secret", "session", "token",
)


EventHooks = Dict[str, Tuple[Hook, ...]]  # "request": before each attempt; "response": after


def check_event_hooks(value: Any, awaits: bool) -> Optional[EventHooks]:
    """``{"request": (...), "response": (...)}`` (None for no hooks). Unless ``awaits`` (the
    async client), a coroutine function is refused: it would be called and never run."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            'event_hooks must be a dict such as {"request": [hook], "response": [hook]}'
        )
    unknown = sorted(str(name) for name in value if name not in ("request", "response"))
    if unknown:
        raise ConfigurationError(f"event_hooks takes 'request' and 'response' only, not {unknown}")
    lists: EventHooks = {}
    for name in ("request", "response"):
        hooks = value.get(name) or ()
        if callable(hooks):
            hooks = (hooks,)
        if not isinstance(hooks, (list, tuple)) or not all(callable(h) for h in hooks):
            raise ConfigurationError(f"event_hooks[{name!r}] must be a list of callables")
        if not awaits and any(_is_async_hook(h) for h in hooks):
            raise ConfigurationError(
                f"event_hooks[{name!r}]: an async def hook needs AsyncWayGPTClient; "
                "WayGPTClient calls plain functions"
            )
        lists[name] = tuple(hooks)
    return lists if any(lists.values()) else None


def _is_async_hook(hook: Any) -> bool:
    """Whether calling ``hook`` (a function, a callable object, a partial) makes a coroutine."""
    import inspect  # only when hooks are given: `import waygpt` need not pay for it

    while isinstance(hook, functools.partial):
        hook = hook.func
    if inspect.iscoroutinefunction(hook):
        return True
    # (The type's __call__, not the object's: a class is called to make an instance.)
    return inspect.iscoroutinefunction(type(hook).__call__)


def check_extra_headers(value: Any) -> Dict[str, str]:
    """Headers a caller adds to every request of a client (``with_options(extra_headers=)``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError("extra_headers must be a dict of header names and values")
    headers: Dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise ConfigurationError("extra_headers names and values must be strings")
        if not name or not name.isascii() or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigurationError(f"extra_headers: {name!r} is not a header name")
        if not is_header_safe(text):
            raise ConfigurationError(
                f"extra_headers[{name!r}] must be printable ASCII (no CR or LF)"
            )
        if name.lower() in _OWN_HEADERS:
            raise ConfigurationError(f"extra_headers cannot set {name}: the client sets it")
        if name.lower() == CLIENT_REQUEST_ID.lower():
            name = CLIENT_REQUEST_ID  # one spelling, so the client finds it
        headers[name] = text
    return headers


class Headers(Mapping[str, str]):
    """Read-only headers, as hook views and raw responses show them: names in any case (the
    first value counts), credentials masked (with ``credentials``, every header whose name
    says it carries one), ``redact`` applied to a value only when it is read."""

    __slots__ = ("_credentials", "_lower", "_redact", "_source")

    def __init__(
        self, source: Mapping[str, str], redact: Optional[Callable[[str], str]] = None,
        credentials: bool = False,
    ) -> None:
        self._source = source  # read when first looked at: an answer's headers do not change
        self._redact = redact
        self._credentials = credentials
        self._lower: Optional[Dict[str, Tuple[str, str]]] = None

    def _by_name(self) -> Dict[str, Tuple[str, str]]:
        # Each name, lowered, to its first spelling and value (names are redacted too).
        lower = self._lower
        if lower is None:
            lower = self._lower = {}
            for name, value in self._source.items():
                name = str(name) if self._redact is None else self._redact(str(name))
                lower.setdefault(name.lower(), (name, str(value)))
        return lower

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        value = self._by_name()[key][1]
        if key in _MASKED:
            return _MASKED[key]
        if self._credentials and any(word in key for word in _CREDENTIAL_NAMES):
            return "[REDACTED]"
        return value if self._redact is None else self._redact(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name()

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._by_name().values())

    def __len__(self) -> int:
        return len(self._by_name())

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"

    def __reduce__(self) -> Tuple[Any, Tuple[Dict[str, str]]]:
        # Pickled as they read: the raw values (a secret a server echoed) stay behind.
        return (Headers, (dict(self),))


class AnswerHeaders(Mapping[str, str]):
    """An answer's headers as the pipeline reads them, either library: names in any case, the
    first value counts. A view through ``values`` (one name's values): nothing is copied."""

    __slots__ = ("_headers", "_values")

    def __init__(self, headers: Any, values: Callable[[str], Any]) -> None:
        self._headers = headers
        self._values = values  # a name's values, in the order they came; empty when none

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def get(self, name: str, default: Any = None) -> Any:  # (faster than Mapping's)
        values = self._values(name) if isinstance(name, str) else ()
        return values[0] if values else default

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for name in self._headers:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"AnswerHeaders({dict(self)!r})"


class RequestView:
    """What a ``request`` hook is given: one attempt about to be sent.

    ``method``, ``url`` (as sent), ``attempt`` (1 for the first), ``client_request_id`` (the
    same on every attempt of a call) and ``headers`` (credentials and secrets redacted).
    """

    __slots__ = ("attempt", "client_request_id", "headers", "method", "url")

    def __init__(
        self, method: str, url: str, attempt: int, client_request_id: str, headers: Headers
    ) -> None:
        self.method = method
        self.url = url
        self.attempt = attempt
        self.client_request_id = client_request_id
        self.headers = headers

    def __repr__(self) -> str:
        return f"<RequestView {self.method} {self.url} attempt={self.attempt}>"


class ResponseView(RequestView):
    """What a ``response`` hook is given: an attempt whose answer's headers arrived.

    The request's fields (its headers as ``request_headers``), plus ``status_code``,
    ``headers`` (the answer's, secrets redacted), ``elapsed`` (this attempt, seconds) and
    ``request_id`` (the server's ``X-Request-ID``).
    """

    __slots__ = ("elapsed", "request_headers", "status_code")

    def __init__(
        self, request: RequestView, status_code: int, headers: Headers, elapsed: float
    ) -> None:
        super().__init__(
            request.method, request.url, request.attempt, request.client_request_id, headers
        )
        self.request_headers = request.headers
        self.status_code = status_code
        self.elapsed = elapsed

    @property
    def request_id(self) -> Optional[str]:
        """The server's ``X-Request-ID`` (read when asked: a hook may never look)."""
        return request_id_of(self.headers)

    def __repr__(self) -> str:
        return (
            f"<ResponseView {self.method} {self.url} -> {self.status_code} "
            f"attempt={self.attempt} in {self.elapsed * 1000:.1f} ms>"
        )


class RawResponse(Generic[_V]):
    """A call's answer with what came with it: ``status_code``, ``headers`` (any case,
    secrets redacted), ``request_id`` (the server's ``X-Request-ID``), ``attempts`` (HTTP
    requests the call sent), ``elapsed`` (seconds, the whole call; for a stream, until its
    headers), ``client_request_id``, and ``parse()``: what the plain method returns.

    For a method that makes several requests (``wait_for_media_job``) it describes the last
    one (not the calls its ``on_update`` makes).
    """

    __slots__ = (
        "_value", "attempts", "client_request_id", "elapsed", "headers", "request_id", "status_code"
    )

    def __init__(
        self, value: _V, *, status_code: int, headers: Headers, attempts: int, elapsed: float,
        client_request_id: str,
    ) -> None:
        self._value = value
        self.status_code = status_code
        self.headers = headers
        self.request_id = request_id_of(headers)
        self.attempts = attempts
        self.elapsed = elapsed
        self.client_request_id = client_request_id

    def parse(self) -> _V:
        """The value the plain method returns (for a stream, the stream)."""
        return self._value

    def __repr__(self) -> str:
        return (
            f"<RawResponse [{self.status_code}] request_id={self.request_id!r} "
            f"attempts={self.attempts} elapsed={self.elapsed:.3f}s>"
        )


class RawResponses:
    """``client.with_raw_response``: every method of the client, returning a
    :class:`RawResponse` (awaited on the async client) instead of the plain value."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def _is_call(self, name: str) -> bool:
        if name.startswith("_") or name in ("close", "with_options"):  # (no call of the API)
            return False
        return callable(getattr(type(self._client), name, None))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if not self._is_call(name):
            raise AttributeError(f"with_raw_response has no method {name!r}")
        return functools.partial(self._client._raw_call, name)

    def __dir__(self) -> Iterator[str]:
        return (name for name in dir(type(self._client)) if self._is_call(name))

    def __repr__(self) -> str:
        return f"<with_raw_response of {self._client!r}>"
