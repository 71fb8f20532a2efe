"""The client suite against ``AsyncWayGPTClient``: a blocking facade over the async client.

With ``WAYGPT_SDK=async``, ``tests/conftest.py`` hands the client suite this module instead of
``waygpt``: the same names, but ``WayGPTClient`` is a facade that runs every method of a real
``AsyncWayGPTClient`` on one event loop in a background thread and waits for the result, and
streams come back as blocking iterators over the real ``AsyncChatStream``. Every behaviour
the suite pins for the sync client is thereby pinned for the async one, over the same HTTP.
Errors are the async client's own objects, raised unchanged in the test's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from types import ModuleType, SimpleNamespace
from typing import Any, Awaitable, Callable, Coroutine, Dict, Iterator, Optional, TypeVar

import waygpt

T = TypeVar("T")
_CALL_LIMIT = 120.0  # seconds: a hung call fails its test instead of hanging the run


class _LoopThread:
    """One event loop, on a daemon thread, shared by every facade of the test run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="async-adapter-loop")
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(_CALL_LIMIT)


_loop_thread: Optional[_LoopThread] = None
_loop_thread_lock = threading.Lock()  # threads making their first calls at once share one


def loop_thread() -> _LoopThread:
    global _loop_thread
    with _loop_thread_lock:
        if _loop_thread is None:
            _loop_thread = _LoopThread()
    return _loop_thread


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class StreamFacade:
    """A blocking iterator over an ``AsyncChatStream``, shaped like ``ChatStream``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        try:
            return loop_thread().run(_await(self._stream.__anext__()))
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> StreamFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        loop_thread().run(self._stream.close())

    def collect(self) -> Any:
        return loop_thread().run(self._stream.collect())

    def text(self) -> Iterator[str]:
        return _blocking_iterator(self._stream.text())

    def text_snapshots(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        return _blocking_iterator(self._stream.text_snapshots(*args, **kwargs))

    def sse(self) -> Iterator[bytes]:
        return _blocking_iterator(self._stream.sse())


def _blocking_iterator(iterator: Any) -> Iterator[Any]:
    """A blocking iterator over an async one, on the adapter's loop; closed when left."""
    try:
        while True:
            try:
                yield loop_thread().run(_await(iterator.__anext__()))
            except StopAsyncIteration:
                return
    finally:
        loop_thread().run(iterator.aclose())


class RawResponsesFacade:
    """``client.with_raw_response`` of the async client, its methods blocking."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return _blocking(getattr(self._raw, name))


class RawResponseFacade:
    """A ``RawResponse`` of the async client whose ``parse()`` gives a blocking stream."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def parse(self) -> Any:
        return _wrap(self._raw.parse())


def _wrap(value: Any) -> Any:
    from waygpt._observe import RawResponse, RawResponses

    if isinstance(value, waygpt.AsyncChatStream):
        return StreamFacade(value)
    if isinstance(value, waygpt.AsyncWayGPTClient):
        return ClientFacade._wrapping(value)
    if isinstance(value, RawResponses):
        return RawResponsesFacade(value)
    if isinstance(value, RawResponse):
        return RawResponseFacade(value)
    return value


class ClientFacade:
    """``WayGPTClient(...)`` as the client suite uses it, backed by ``AsyncWayGPTClient``."""

    is_async_facade = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("session"), CallerSession):
            kwargs["session"] = kwargs["session"].session
        object.__setattr__(self, "_client", waygpt.AsyncWayGPTClient(*args, **kwargs))

    @classmethod
    def _wrapping(cls, client: Any) -> ClientFacade:
        facade = cls.__new__(cls)
        object.__setattr__(facade, "_client", client)
        return facade

    @property
    def async_client(self) -> Any:
        return self._client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        return _blocking(attribute) if callable(attribute) else _wrap(attribute)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)

    def __repr__(self) -> str:
        return repr(self._client)

    def __enter__(self) -> ClientFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _blocking(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        if inspect.isawaitable(result):
            result = loop_thread().run(_await(result))
        return _wrap(result)

    call.__name__ = getattr(method, "__name__", "call")
    call.__signature__ = inspect.signature(method)  # type: ignore[attr-defined]
    return call


class CallerSession:
    """A caller's own ``aiohttp.ClientSession``, made on the adapter's loop, for ``session=``.

    ``get`` and ``close`` block, as a ``requests.Session``'s do, so a test can use the
    session itself before and after handing it to a client.
    """

    def __init__(self) -> None:
        import aiohttp

        async def make() -> Any:
            return aiohttp.ClientSession()

        self.session = loop_thread().run(make())

    def get(self, url: str, headers: Optional[Dict[str, str]] = None) -> SimpleNamespace:
        async def get() -> SimpleNamespace:
            async with self.session.get(url, headers=headers) as response:
                await response.read()
                return SimpleNamespace(ok=response.status < 400, status_code=response.status)

        return loop_thread().run(get())

    def close(self) -> None:
        loop_thread().run(self.session.close())


class _FacadeMeta(type):
    """Lets ``inspect.signature(sdk.WayGPTClient.method)`` see the async client's signature."""

    def __getattr__(cls, name: str) -> Any:
        return getattr(waygpt.AsyncWayGPTClient, name)


def module() -> ModuleType:
    """``waygpt`` with ``WayGPTClient`` replaced by the facade over ``AsyncWayGPTClient``."""
    facade_class = _FacadeMeta(
        "WayGPTClient",
        (ClientFacade,),
        {"__signature__": inspect.signature(waygpt.AsyncWayGPTClient)},
    )
    adapted = ModuleType("waygpt_async_facade")
    adapted.__dict__.update({name: getattr(waygpt, name) for name in waygpt.__all__})
    adapted.__dict__["__all__"] = list(waygpt.__all__)
    adapted.WayGPTClient = facade_class  # type: ignore[attr-defined]
    adapted.ChatStream = StreamFacade  # type: ignore[attr-defined]
    adapted.is_async_facade = True  # type: ignore[attr-defined]
    adapted.CallerSession = CallerSession  # type: ignore[attr-defined]
    import aiohttp

    adapted.http_library = f"aiohttp/{aiohttp.__version__}"  # type: ignore[attr-defined]
    return adapted
