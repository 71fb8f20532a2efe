"""A forked child never ends its parent's TLS session: no close_notify, no shutdown.

A TLS connection pooled by the parent is shared, as a file descriptor, with a forked child.
Closing the descriptor in the child is harmless; sending a TLS close_notify or shutting the
socket down is not: the server ends the session and the parent's next call fails. The child
here drops everything it inherited and runs the garbage collector (what happens at its
exit); the server (which ends a connection on a close_notify) must then still serve the
parent's next call on the parent's connection.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

import waygpt

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a certificate"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

BODY = b'["gpt-4o"]'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(BODY), BODY)
)


class TLSServer:
    """Answers every request with ANSWER on kept-alive TLS connections; a close_notify (or
    any other end) ends the connection, as a real server's TLS layer does."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self.stop = threading.Event()
        self.threads: List[threading.Thread] = []

    def __enter__(self) -> TLSServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                continue
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(0.2)
        try:
            conn = self.context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        except OSError:
            return
        buffer = b""
        while not self.stop.is_set():
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:  # with suppress_ragged_eofs=False: closed without close_notify
                return
            if not data:  # a close_notify: the TLS session is over
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                _, _, buffer = buffer.partition(b"\r\n\r\n")
                conn.sendall(ANSWER)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    yield folder


def child_then_drop_everything(call: object) -> None:
    """In the child: one call on its own connection, then everything inherited is dropped
    and collected, as at the child's exit; never returns."""
    code = 1
    try:
        call()  # type: ignore[operator]
        from waygpt import _fork

        _fork._inherited.clear()
        gc.collect()
        code = 0
    finally:
        os._exit(code)


def test_a_sync_child_sends_no_close_notify_on_the_parents_tls_connection(
    certificate: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate / "cert.pem"))
    with TLSServer(certificate / "cert.pem", certificate / "key.pem") as server:
        client = waygpt.WayGPTClient(api_url=server.url, project_key="sk_live_x", max_retries=0)
        assert client.get_models() == ["gpt-4o"]  # the parent's pooled TLS connection
        pid = os.fork()
        if pid == 0:
            child_then_drop_everything(client.get_models)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

        assert client.get_models() == ["gpt-4o"]  # on the parent's connection, still open
        # The parent's and the child's: had the child ended the parent's TLS session, the
        # parent's second call would have needed a third. (How the child's own connection
        # ended is the child's business.)
        assert server.accepted == 2
        client.close()


def test_an_async_child_sends_no_close_notify_on_the_parents_tls_connection(
    certificate: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("aiohttp")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate / "cert.pem"))
    with TLSServer(certificate / "cert.pem", certificate / "key.pem") as server:
        client = waygpt.AsyncWayGPTClient(api_url=server.url, project_key="sk_live_x")

        async def child_call() -> None:
            assert await client.get_models() == ["gpt-4o"]  # on a connection of its own
            await client.close()

        async def main() -> None:
            assert await client.get_models() == ["gpt-4o"]  # the parent's pooled connection
            pid = os.fork()
            if pid == 0:
                asyncio._set_running_loop(None)  # the child leaves the parent's loop
                child_then_drop_everything(lambda: asyncio.run(child_call()))
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert await client.get_models() == ["gpt-4o"]  # still on the parent's connection
            await client.close()

        asyncio.run(main())
        # The parent's and the child's: had the child ended the parent's TLS session, the
        # parent's second call would have needed a third.
        assert server.accepted == 2
