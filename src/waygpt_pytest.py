"""The waygpt pytest plugin: ``waygpt_server``, ``waygpt_client`` and ``async_waygpt_client``.

Installing waygpt registers this module through the ``pytest11`` entry point, so pytest loads
it at the start of every run in that environment, whether a test uses its fixtures or not.
It therefore imports nothing but pytest at module level: ``waygpt`` (and ``requests`` with it)
and ``waygpt.testing`` are imported inside the fixtures, by the tests that use them.

Disable it with ``-p no:waygpt``; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, load it with
``-p waygpt_pytest``. See docs/testing.md, "pytest fixtures".
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, Dict, Iterator

import pytest

if TYPE_CHECKING:  # for the annotations only; never imported at run time from here
    from waygpt import WayGPTClient
    from waygpt.testing import WayGPTTestServer

MARKER = "waygpt_server"
# Seconds a fixture client waits for the server; the server is local, so this only bounds
# a test that scripts a delay and forgets to give its own timeout.
_TIMEOUT = 10.0
# An async client left open by the test is closed within this many seconds, or left alone.
_ASYNC_CLOSE_TIMEOUT = 5.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): WayGPTTestServer options for this test's waygpt_server "
        "(require_hmac=True, allowed_models=[...], rate_limit_rpm=2, ...)",
    )


def _server_options(request: pytest.FixtureRequest) -> Dict[str, Any]:
    """The ``waygpt_server`` markers' keyword arguments; the closest marker wins."""
    options: Dict[str, Any] = {}
    markers = list(request.node.iter_markers(MARKER))  # closest first: test, class, module
    for marker in reversed(markers):
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keyword arguments only, got {marker.args!r}"
            )
        options.update(marker.kwargs)
    return options


@pytest.fixture
def waygpt_server(request: pytest.FixtureRequest) -> Iterator[WayGPTTestServer]:
    """A started ``WayGPTTestServer`` on 127.0.0.1 and a free port, stopped after the test.

    ``@pytest.mark.waygpt_server(**options)`` passes options to ``WayGPTTestServer``.
    """
    from waygpt.testing import WayGPTTestServer

    with WayGPTTestServer(**_server_options(request)) as server:
        yield server


def _no_sleep_retry() -> Any:
    """The default retry policy (3 retries of 429/5xx for GET/POST/PUT) without any sleep.

    ``respect_retry_after_header=False``: a test must not wait out a real rate-limit window.
    """
    from waygpt.retry import default_retry

    return default_retry(3, backoff_factor=0).new(respect_retry_after_header=False)


def _client_options(server: WayGPTTestServer) -> Dict[str, Any]:
    """Constructor arguments that point a client at ``server`` with its default project."""
    return {
        "api_url": server.url,
        "project_key": server.project_key,
        "project_id": server.project_id,
        "hmac_secret": server.hmac_secret,
        "use_hmac": server.require_hmac,
        "timeout": _TIMEOUT,
        "max_retries": _no_sleep_retry(),
    }


@pytest.fixture
def waygpt_client(waygpt_server: WayGPTTestServer) -> Iterator[WayGPTClient]:
    """A ``WayGPTClient`` for ``waygpt_server``'s default project, closed after the test.

    It signs its requests when the server requires HMAC, and retries like the default client
    but never sleeps between attempts.
    """
    from waygpt import WayGPTClient

    with WayGPTClient(**_client_options(waygpt_server)) as client:
        yield client


@pytest.fixture
def async_waygpt_client(waygpt_server: WayGPTTestServer) -> Iterator[Any]:
    """A ``waygpt.AsyncWayGPTClient`` for ``waygpt_server``, like ``waygpt_client``.

    The fixture itself is synchronous (no async plugin needed): it builds the client, and
    after the test closes it, unless the test already did (``async with``, ``await
    client.close()``), by running ``client.close()`` in a fresh event loop. Skipped when
    aiohttp or ``waygpt.AsyncWayGPTClient`` is not available.
    """
    if importlib.util.find_spec("aiohttp") is None:
        pytest.skip("async_waygpt_client needs aiohttp, which is not installed")
    try:
        client_class = getattr(importlib.import_module("waygpt"), "AsyncWayGPTClient", None)
    except ImportError as error:
        pytest.skip(f"async_waygpt_client: waygpt.AsyncWayGPTClient cannot be imported: {error}")
    if client_class is None:
        pytest.skip("async_waygpt_client needs waygpt.AsyncWayGPTClient, which this waygpt lacks")
    client = client_class(**_client_options(waygpt_server))
    yield client
    _close_if_open(client)


def _close_if_open(client: Any) -> None:
    """Run ``client.close()`` in a fresh event loop unless the client says it is closed."""
    if getattr(client, "closed", False):
        return
    import asyncio
    import inspect
    import warnings

    # A fresh loop, never made the thread's current one, so a loop an async test plugin
    # manages is left as it is.
    loop = asyncio.new_event_loop()
    try:
        closing = client.close()
        if inspect.isawaitable(closing):
            loop.run_until_complete(asyncio.wait_for(closing, _ASYNC_CLOSE_TIMEOUT))
    except Exception as error:  # noqa: BLE001 - a failed clean-up must not fail the test
        warnings.warn(
            f"async_waygpt_client was left open and could not be closed after the test "
            f"({error!r}); close it in the test: `async with async_waygpt_client as client:` "
            f"or `await async_waygpt_client.close()`",
            pytest.PytestWarning,
            stacklevel=1,
        )
    finally:
        loop.close()
