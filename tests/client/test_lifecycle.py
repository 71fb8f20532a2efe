"""Client lifecycle and identity: User-Agent, context manager, close(), with_options()."""

from __future__ import annotations

import platform
import re
from types import ModuleType
from typing import Any

import pytest

from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"


def make(sdk: ModuleType, server: WayGPTTestServer, **kwargs: Any) -> Any:
    return sdk.WayGPTClient(api_url=server.url, project_key=server.project_key, **kwargs)


def test_user_agent_as_the_server_receives_it(client: Any, server: WayGPTTestServer,
                                               sdk: ModuleType, http_library: str) -> None:
    client.get_models()
    client.client_login(server.user_email, server.user_password)
    python = ".".join(platform.python_version_tuple()[:2])
    expected = f"waygpt-python/{sdk.__version__} python/{python} {http_library}"
    agents = {r.headers["user-agent"] for r in server.requests}
    assert agents == {expected}
    assert re.fullmatch(r"waygpt-python/\S+ python/\d+\.\d+ (requests|aiohttp)/\S+", expected)


def test_requests_share_one_connection(client: Any, server: WayGPTTestServer) -> None:
    for _ in range(3):
        client.get_models()
    assert server.connections_opened == 1


def test_context_manager_closes_the_pool(sdk: ModuleType, server: WayGPTTestServer) -> None:
    with make(sdk, server) as client:
        client.get_models()
        client.get_models()
        assert server.connections_opened == 1
    # The pooled connection was closed: the next request needs a new one.
    client.get_models()
    assert server.connections_opened == 2


def test_close_is_idempotent(sdk: ModuleType, server: WayGPTTestServer) -> None:
    client = make(sdk, server)
    client.get_models()
    client.close()
    client.close()
    client.get_models()
    assert server.connections_opened == 2


def test_a_given_session_is_left_open(
    sdk: ModuleType, server: WayGPTTestServer, caller_session: Any
) -> None:
    with make(sdk, server, session=caller_session) as client:
        client.get_models()
    # The caller's session still holds its pooled connection.
    answer = caller_session.get(server.url + MODELS, headers={"x-project-key": server.project_key})
    assert answer.ok
    assert server.connections_opened == 1


def test_with_options_is_a_copy_sharing_the_pool(sdk: ModuleType, server: WayGPTTestServer) -> None:
    with make(sdk, server, timeout=30, max_retries=3) as client:
        quick = client.with_options(timeout=2.5, max_retries=0)
        assert quick is not client
        assert quick.timeout == 2.5 and client.timeout == 30.0
        assert quick.max_retries.total == 0 and client.max_retries.total == 3
        client.get_models()
        quick.get_models()
        assert server.connections_opened == 1  # one pool, one kept-alive connection

        # The copy's retry setting is its own: no retry there, a retry on the original.
        server.script(status=429, headers={"Retry-After": "0"}, path=MODELS)
        with pytest.raises(sdk.RateLimitError):
            quick.get_models()
        server.script(status=429, headers={"Retry-After": "0"}, path=MODELS)
        assert client.get_models()
        assert [r.path for r in server.requests].count(MODELS) == 5

        # Closing the copy leaves the shared pool open for the original.
        quick.close()
        client.get_models()
        assert server.connections_opened == 1

        # Only what is given changes.
        same = client.with_options()
        assert same.timeout == client.timeout and same.max_retries is client.max_retries
        assert same.api_url == client.api_url


def test_with_options_checks_its_values(client: Any, sdk: ModuleType) -> None:
    with pytest.raises(sdk.ConfigurationError):
        client.with_options(timeout=0)
    with pytest.raises(sdk.ConfigurationError):
        client.with_options(max_retries=-1)


def test_repr_hides_the_key(client: Any, server: WayGPTTestServer) -> None:
    assert server.project_key not in repr(client)
