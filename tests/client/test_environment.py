"""What the client takes from the environment besides ``WAYGPT_*``: proxies and CA bundles.

Both clients read them as requests does, when the client is made: a proxy written without a
scheme is an ``http://`` one, and a CA bundle variable that names no usable bundle is a
``ConfigurationError`` naming the variable, not a failure at every call.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Iterator, List
from urllib.parse import urlsplit

import pytest

from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _no_proxy_or_ca_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class _Relay(BaseHTTPRequestHandler):
    """A forward proxy for plain HTTP: records each absolute URL, relays it to 127.0.0.1."""

    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        target = urlsplit(self.path)
        assert target.hostname == "127.0.0.1", self.path  # never anywhere else
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
        upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = _relay

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def relay() -> Iterator[ThreadingHTTPServer]:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Relay)
    proxy.daemon_threads = True
    proxy.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)


# -- proxies ----------------------------------------------------------------------------------


def test_a_proxy_without_a_scheme_is_an_http_proxy(
    sdk: ModuleType, server: WayGPTTestServer, relay: ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{relay.server_address[1]}")

    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=10
    ) as client:
        assert client.get_models()
        assert client.get_models()

    seen: List[str] = relay.seen  # type: ignore[attr-defined]
    assert seen == [server.url + MODELS] * 2  # through the proxy, in absolute form
    assert [r.path for r in server.requests] == [MODELS] * 2  # and relayed


# -- CA bundles -------------------------------------------------------------------------------


def make(sdk: ModuleType, api_url: str = "https://127.0.0.1:9") -> object:
    return sdk.WayGPTClient(api_url=api_url, project_key="sk_live_ca", max_retries=0)


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_a_ca_bundle_variable_naming_no_file_is_a_configuration_error(
    sdk: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "missing.pem"))

    with pytest.raises(sdk.ConfigurationError) as refused:
        make(sdk)

    assert variable in str(refused.value) and "missing.pem" in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__context__ is None


@pytest.mark.parametrize("variable", CA_VARIABLES)
def test_a_ca_bundle_that_is_not_pem_is_a_configuration_error(
    sdk: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv(variable, str(bad))

    with pytest.raises(sdk.ConfigurationError) as refused:
        make(sdk)

    assert variable in str(refused.value) and "PEM" in str(refused.value)


def test_a_ca_bundle_is_checked_again_when_api_url_is_assigned(
    sdk: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make(sdk, api_url="http://127.0.0.1:9")  # requests uses a bundle for https only
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(sdk.ConfigurationError, match="REQUESTS_CA_BUNDLE"):
        client.api_url = "https://127.0.0.1:9"
    client.close()


def test_a_usable_ca_bundle_or_directory_is_accepted(
    sdk: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    make(sdk).close()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))  # a c_rehash-style directory
    make(sdk).close()
