"""Shared fixtures: the SDK under test, a local WayGPT server, and clients pointed at it.

The client suite (``tests/client/``) reaches the SDK only through the ``sdk`` fixture, so CI
can run the same tests against the one-file build (set ``WAYGPT_SDK_FILE`` to the path of a
generated ``waygpt_client.py``) and against ``AsyncWayGPTClient`` (set ``WAYGPT_SDK=async``:
``tests/async_adapter.py`` runs the async client behind the sync client's surface).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Iterator

import pytest
from hypothesis import settings

from waygpt.testing import WayGPTTestServer


def _load_sdk() -> ModuleType:
    if os.environ.get("WAYGPT_SDK") == "async":
        import async_adapter

        return async_adapter.module()
    path = os.environ.get("WAYGPT_SDK_FILE")
    if not path:
        import waygpt

        return waygpt
    spec = importlib.util.spec_from_file_location("waygpt_client", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules["waygpt_client"] = module
    spec.loader.exec_module(module)
    return module


SDK = _load_sdk()

# In CI the property tests replay a fixed set of examples, so a run's verdict depends on the
# code alone; a developer's run (no CI variable) keeps exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    # LangChain's standard unit suite times the model's construction with pytest-benchmark
    # (which langchain-tests brings): run once, as a test, not as a benchmark.
    if hasattr(config.option, "benchmark_disable"):
        config.option.benchmark_disable = True


@pytest.fixture(autouse=True)
def _clean_waygpt_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own WAYGPT_* variables must not leak into the tests."""
    for name in list(os.environ):
        if name.startswith("WAYGPT_") and name not in ("WAYGPT_SDK_FILE", "WAYGPT_SDK"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def sdk() -> ModuleType:
    """The SDK under test: the ``waygpt`` package, or the one-file build (WAYGPT_SDK_FILE)."""
    return SDK


# The server's default password is "password", the docs' one; the secret-leak tests look for
# the password in every error text, and the word "password" is in many of them by right.
TEST_PASSWORD = "s3cret-Пароль-7f3a"


@pytest.fixture
def server() -> Iterator[WayGPTTestServer]:
    """A fresh local WayGPT server on 127.0.0.1 and a free port."""
    with WayGPTTestServer(user_password=TEST_PASSWORD) as running:
        yield running


@pytest.fixture
def hmac_server() -> Iterator[WayGPTTestServer]:
    """A local server whose default project requires HMAC signatures."""
    with WayGPTTestServer(require_hmac=True, user_password=TEST_PASSWORD) as running:
        yield running


def fast_retry(total: int = 3) -> Any:
    """The default retry policy without its backoff sleeps."""
    from waygpt.retry import default_retry

    return default_retry(total, backoff_factor=0)


@pytest.fixture
def client(sdk: ModuleType, server: WayGPTTestServer) -> Iterator[Any]:
    """A client with the server's project key and backoff-free retries."""
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=fast_retry(), timeout=5
    ) as created:
        yield created


def signed_client(sdk: ModuleType, server: WayGPTTestServer, **options: Any) -> Any:
    """A client that signs every project-key request with ``server``'s project credentials."""
    return sdk.WayGPTClient(
        api_url=server.url,
        project_key=server.project_key,
        project_id=server.project_id,
        hmac_secret=server.hmac_secret,
        use_hmac=True,
        **options,
    )


@pytest.fixture
def make_signed_client(sdk: ModuleType) -> Any:
    """``make_signed_client(server, **options)``: a signing client for that server."""
    return lambda server, **options: signed_client(sdk, server, **options)


@pytest.fixture
def hmac_client(sdk: ModuleType, hmac_server: WayGPTTestServer) -> Iterator[Any]:
    """A client that signs every project-key request for ``hmac_server``."""
    with signed_client(sdk, hmac_server, max_retries=fast_retry(), timeout=5) as created:
        yield created


@pytest.fixture
def make_retry() -> Any:
    """``make_retry(total)``: a backoff-free retry policy for tests that count attempts."""
    return fast_retry
