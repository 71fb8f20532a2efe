"""Proxies from the environment still apply, though the client looks them up only once.

``requests.Session.request`` reads ``HTTP_PROXY``/``NO_PROXY`` on every call; the client
reads them when it is built (its base URL never changes) and passes them to every send.
The local test server plays the proxy: a proxied request reaches it in absolute form.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from waygpt.testing import WayGPTTestServer

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def closed_url() -> str:
    """A local URL nothing listens on: a direct connection is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _client(sdk: Any, api_url: str) -> Any:
    return sdk.WayGPTClient(api_url=api_url, project_key="sk_live_proxy", max_retries=0, timeout=5)


def test_http_proxy_from_the_environment_carries_the_request(
    sdk, typed, server: WayGPTTestServer, closed_url, monkeypatch
):
    monkeypatch.setenv("HTTP_PROXY", server.url)

    with _client(sdk, closed_url) as client:
        for _ in range(3):
            result = typed(client.get_models)
            assert isinstance(result, sdk.NotFoundError)  # the "proxy" knows no such path

    targets = [r.path for r in server.requests]
    assert targets == [closed_url + "/api/v1/waygpt/models"] * 3  # absolute form: proxied
    assert server.requests[0].headers["x-project-key"] == "sk_live_proxy"


def test_no_proxy_from_the_environment_is_honoured(
    sdk, typed, server: WayGPTTestServer, closed_url, monkeypatch
):
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    with _client(sdk, closed_url) as client:
        result = typed(client.get_models)

    assert type(result) is sdk.APIConnectionError  # went direct, to the closed port
    assert server.requests == []


def test_the_environment_is_read_when_the_client_is_built(
    sdk, typed, server: WayGPTTestServer, closed_url, monkeypatch
):
    with _client(sdk, closed_url) as client:
        monkeypatch.setenv("HTTP_PROXY", server.url)  # too late for this client
        assert type(typed(client.get_models)) is sdk.APIConnectionError
    assert server.requests == []

    with _client(sdk, closed_url) as rebuilt:  # a new client sees it
        assert isinstance(typed(rebuilt.get_models), sdk.NotFoundError)
    assert len(server.requests) == 1
