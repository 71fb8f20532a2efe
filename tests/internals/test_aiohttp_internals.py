"""aiohttp's private attributes that the async client uses (``waygpt/_internals.py``) are
still there under their names: a release that renames one fails here, by name.

Each function of ``_internals.py`` falls back to aiohttp's public behaviour when its
attribute is missing, so a rename would otherwise show only as a lost guarantee: the
behaviour test that catches that is listed beside each attribute in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict

import pytest

pytest.importorskip("aiohttp")

import aiohttp
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from waygpt import _internals as internals


def test_a_session_still_has_the_attributes_set_for_one_request():
    async def main() -> Dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            return {name: getattr(session, name, "missing") for name in
                    (internals.REPLAY, internals.DEFAULT_AUTH, internals.TRUST_ENV)}

    assert asyncio.run(main()) == {
        "_retry_connection": True, "_default_auth": None, "_trust_env": False,
    }


def test_the_environment_proxy_of_a_url_is_still_looked_up(monkeypatch: pytest.MonkeyPatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")

    proxy, _ = internals.environment_proxy(aiohttp, URL("http://api.example/v1"))

    assert str(proxy) == "http://127.0.0.1:3128"


def test_a_stream_reader_still_hands_over_its_buffer_past_a_failure():
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        content = aiohttp.StreamReader(ResponseHandler(loop), 2**16, loop=loop)
        content.feed_data(b"data: {}\n\n")
        content.set_exception(aiohttp.ClientPayloadError("cut"))
        return internals.received_before_failure(content)

    assert asyncio.run(main()) == b"data: {}\n\n"


def test_a_connector_can_still_be_marked_closed():
    async def main() -> bool:
        connector = aiohttp.TCPConnector()
        internals.leave_connections_open(connector)
        closed: bool = connector.closed  # (the public property reads the private flag)
        return closed

    assert asyncio.run(main()) is True


def test_a_streamed_responses_connection_still_has_a_settable_read_timeout():
    async def main() -> Any:
        async def answer(reader: Any, writer: Any) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await reader.read()  # until the client goes

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with aiohttp.ClientSession() as session:
                timeout = aiohttp.ClientTimeout(sock_read=5)
                async with session.get(url, timeout=timeout) as response:
                    protocol = response.connection.protocol
                    before = protocol.read_timeout
                    internals.stop_socket_read_timer(response)
                    return before, protocol.read_timeout, await response.content.read(5)
        finally:
            server.close()

    assert asyncio.run(main()) == (5, None, b"hello")
