"""Helpers for the client suite: sleep recording, a closed port, JWT-only clients.

The SDK is reached only through the ``sdk`` fixture (see ``tests/conftest.py``).
"""

from __future__ import annotations

import socket
import threading
import time
from types import ModuleType
from typing import Any, Iterator, List

import pytest

from waygpt.testing import WayGPTTestServer


@pytest.fixture
def sleeps(sdk: ModuleType, monkeypatch: pytest.MonkeyPatch) -> List[float]:
    """Every wait the client asks for between attempts, recorded instead of slept.

    The sync client's ``time.sleep`` in the test's own thread, and its waits on a
    ``threading.Event`` there (before a stream starts again, a wait that ``close()`` ends):
    other threads, such as the test server's slow answers, still really wait. For the async
    client, the ``asyncio.sleep`` of its transport (between attempts, before a stream starts
    again, and in ``wait_for_media_job``).
    """
    recorded: List[float] = []
    if getattr(sdk, "is_async_facade", False):
        import asyncio
        from types import SimpleNamespace

        from waygpt import _aiohttp_transport

        real_async_sleep = asyncio.sleep

        async def record_async(seconds: float) -> None:
            recorded.append(seconds)
            await real_async_sleep(0)

        patched = SimpleNamespace(**{**vars(asyncio), "sleep": record_async})
        monkeypatch.setattr(_aiohttp_transport, "asyncio", patched)
        return recorded
    real_sleep = time.sleep
    test_thread = threading.current_thread()

    def record(seconds: float) -> None:
        if threading.current_thread() is test_thread:
            recorded.append(seconds)
        else:
            real_sleep(seconds)

    real_wait = threading.Event.wait

    def record_wait(event: threading.Event, timeout: Any = None) -> bool:
        if timeout is None or threading.current_thread() is not test_thread:
            return real_wait(event, timeout)
        recorded.append(timeout)
        return event.is_set()

    monkeypatch.setattr(time, "sleep", record)
    monkeypatch.setattr(threading.Event, "wait", record_wait)
    return recorded


@pytest.fixture
def http_library(sdk: ModuleType) -> str:
    """The HTTP library and version the client names in its User-Agent (``requests/2.32.3``)."""
    library = getattr(sdk, "http_library", None)
    if library is None:
        import requests

        library = f"requests/{requests.__version__}"
    return str(library)


@pytest.fixture
def caller_session(sdk: ModuleType) -> Iterator[Any]:
    """A session of the caller's own, of the kind the client takes as ``session=``."""
    factory = getattr(sdk, "CallerSession", None)
    if factory is None:
        import requests

        factory = requests.Session
    session = factory()
    yield session
    session.close()


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def api_client(sdk: ModuleType, server: WayGPTTestServer, make_retry: Any) -> Iterator[Any]:
    """A client built with only ``api_url``: no project key, for the JWT Client API."""
    with sdk.WayGPTClient(api_url=server.url, max_retries=make_retry(), timeout=5) as created:
        yield created


@pytest.fixture
def token(server: WayGPTTestServer) -> str:
    """A valid Client API token for the server's default user (no login request made)."""
    return server.issue_token()


@pytest.fixture
def no_retry_client(sdk: ModuleType, server: WayGPTTestServer) -> Iterator[Any]:
    """A client that sends every request exactly once."""
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=5
    ) as created:
        yield created
