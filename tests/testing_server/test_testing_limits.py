"""The test server against hostile clients: bodies too large, lengths malformed, JSON too deep.

Over real sockets: a raw one where a well-behaved HTTP library would refuse to send the
request, plain requests elsewhere. The last test runs ``python -m waygpt.testing`` as a
user runs it, to read its memory and its stderr.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from waygpt.testing import WayGPTTestServer

TIMEOUT = 5
CHAT = "/api/v1/waygpt/chat/completions"
LIMIT = 1000
MIB = 1024 * 1024


@pytest.fixture
def server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer(max_body_size=LIMIT) as srv:
        yield srv


def address(server: WayGPTTestServer) -> Tuple[str, int]:
    host, port = server.url.rsplit("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def head(server: WayGPTTestServer, *lines: str) -> bytes:
    """A POST to the chat endpoint with the project key and ``lines`` as further headers."""
    fields = ["Host: test", f"x-project-key: {server.project_key}", *lines]
    return (f"POST {CHAT} HTTP/1.1\r\n" + "".join(f"{f}\r\n" for f in fields) + "\r\n").encode()


def answer_to(server: WayGPTTestServer, request: bytes) -> Tuple[int, Dict[str, str], bytes]:
    """Send ``request`` (and nothing more), read the answer until the server closes."""
    with socket.create_connection(address(server), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        received = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
    status_line, _, rest = received.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def chat_body(size: int) -> bytes:
    """A valid chat request of exactly ``size`` bytes."""
    start = b'{"messages":[{"role":"user","content":"'
    end = b'"}]}'
    return start + b"a" * (size - len(start) - len(end)) + end


# -- bodies too large ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [LIMIT + 1, 10**15, int("9" * 40)])
def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(
    server: WayGPTTestServer, length: int
) -> None:
    # Not a byte of the body is sent: an answer proves the server did not wait for it.
    status, headers, body = answer_to(server, head(server, f"Content-Length: {length}"))
    assert status == 413
    assert json.loads(body) == {"detail": f"Request body larger than {LIMIT} bytes"}
    assert headers["connection"] == "close"
    assert server.requests == []  # refused before it became a request


def test_a_chunked_body_over_the_limit_is_refused_on_the_chunk_size_line(
    server: WayGPTTestServer,
) -> None:
    chunked = head(server, "Transfer-Encoding: chunked")
    status, _, _ = answer_to(server, chunked + b"ffffffffffff\r\n")  # no chunk data follows
    assert status == 413
    # Chunks that are small one by one but add up to more than the limit.
    pieces = b"".join(b"%x\r\n%s\r\n" % (400, b"a" * 400) for _ in range(2)) + b"190\r\n"
    status, _, _ = answer_to(server, chunked + pieces)
    assert status == 413


def test_bodies_up_to_the_limit_are_served_and_the_limit_is_configurable(
    server: WayGPTTestServer,
) -> None:
    headers = {"x-project-key": server.project_key, "Content-Type": "application/json"}
    at_limit = requests.post(server.url + CHAT, data=chat_body(LIMIT), headers=headers, timeout=5)
    assert at_limit.status_code == 200, at_limit.text
    over = requests.post(server.url + CHAT, data=chat_body(LIMIT + 1), headers=headers, timeout=5)
    assert over.status_code == 413
    assert server.max_body_size == LIMIT
    assert WayGPTTestServer().max_body_size == 16 * MIB
    with pytest.raises(ValueError):
        WayGPTTestServer(max_body_size=-1)
    with pytest.raises(TypeError):
        WayGPTTestServer(max_body_size=1.5)  # type: ignore[arg-type]


def test_a_client_that_sends_the_refused_body_anyway_still_reads_the_413() -> None:
    # requests sends the whole body before it reads: the server must not reset the
    # connection under it, or the answer is lost.
    with WayGPTTestServer(max_body_size=MIB) as srv:
        headers = {"x-project-key": srv.project_key, "Content-Type": "application/json"}
        answer = requests.post(
            srv.url + CHAT, data=chat_body(8 * MIB), headers=headers, timeout=TIMEOUT
        )
        assert answer.status_code == 413
        assert answer.json() == {"detail": f"Request body larger than {MIB} bytes"}


def test_expect_100_continue_gets_the_413_instead_of_the_go_ahead(
    server: WayGPTTestServer,
) -> None:
    request = head(server, f"Content-Length: {LIMIT + 1}", "Expect: 100-continue")
    status, _, _ = answer_to(server, request)
    assert status == 413


# -- malformed lengths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        ["Content-Length: abc"],
        ["Content-Length: +5"],
        ["Content-Length: -1"],
        ["Content-Length: 0x10"],
        ["Content-Length: 1_0"],
        ["Content-Length: 5 5"],
        ["Content-Length: 5, 6"],
        ["Content-Length: 5", "Content-Length: 6"],
    ],
    ids=lambda lines: " / ".join(lines),
)
def test_a_malformed_content_length_is_400(server: WayGPTTestServer, lines: List[str]) -> None:
    status, headers, body = answer_to(server, head(server, *lines) + b"{}")
    assert status == 400
    assert json.loads(body) == {"detail": "Invalid Content-Length"}
    assert headers["connection"] == "close"


def test_a_repeated_identical_content_length_is_one_length(server: WayGPTTestServer) -> None:
    body = chat_body(100)
    request = head(server, "Content-Length: 100", "Content-Length: 100", "Connection: close")
    status, _, _ = answer_to(server, request + body)
    assert status == 200


@pytest.mark.parametrize("size_line", [b"+10", b"0x10", b"zz", b""])
def test_a_malformed_chunk_size_is_400(server: WayGPTTestServer, size_line: bytes) -> None:
    request = head(server, "Transfer-Encoding: chunked") + size_line + b"\r\n" + b"a" * 16
    status, _, body = answer_to(server, request + b"\r\n0\r\n\r\n")
    assert status == 400
    assert json.loads(body) == {"detail": "Invalid chunk size"}


# -- JSON nested too deep --------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [257, 200_000])
def test_json_nested_too_deep_is_422(depth: int) -> None:
    with WayGPTTestServer() as srv:
        body = '{"messages":[{"role":"user","content":"hi"}],"extra":' + nested(depth) + "}"
        answer = requests.post(
            srv.url + CHAT,
            data=body.encode(),
            headers={"x-project-key": srv.project_key, "Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 422, answer.text
        assert answer.json() == {
            "detail": [
                {"loc": ["body"], "msg": "JSON nested deeper than 256 levels",
                 "type": "json_too_deep"}
            ]
        }


def test_json_nested_256_levels_is_accepted(server: WayGPTTestServer) -> None:
    # The body's object is the first level, so the extra field holds 255 more.
    body = '{"messages":[{"role":"user","content":"hi"}],"extra":' + nested(255) + "}"
    answer = requests.post(
        server.url + CHAT,
        data=body.encode(),
        headers={"x-project-key": server.project_key, "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text


# -- the shell server: memory and stderr -----------------------------------------------------


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match, f"no VmRSS for {pid}"
    return int(match.group(1)) * 1024


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
        return received


def _unfinished_body(url: str, key: str, size: int) -> Tuple[socket.socket, bytes]:
    """Announce ``size`` bytes, send all but the last one, keep the connection open."""
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    sock.sendall(
        f"POST {CHAT} HTTP/1.1\r\nHost: test\r\nx-project-key: {key}\r\n"
        f"Content-Length: {size}\r\n\r\n".encode()
    )
    piece = b"a" * MIB
    sent = 0
    answer = b""
    try:
        while sent < size - 1:
            sent += sock.send(piece[: min(MIB, size - 1 - sent)])
    except OSError:
        pass  # the server refused and, later, closed: what it answered is still readable
    try:
        sock.settimeout(0.5)
        answer = sock.recv(4096)
    except OSError:
        pass
    return sock, answer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
def test_hostile_requests_cost_the_shell_server_no_memory_and_print_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYGPT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "waygpt.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        url: Optional[str] = None
        deadline = time.monotonic() + 20
        while url is None and time.monotonic() < deadline:
            found = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
            url = found.group(0) if found else None
        assert url, "the server printed no URL"
        key = WayGPTTestServer().project_key

        def post(extra: str, body: bytes = b"") -> bytes:
            return _raw(url, (
                f"POST {CHAT} HTTP/1.1\r\nHost: test\r\nx-project-key: {key}\r\n{extra}\r\n\r\n"
            ).encode() + body)

        assert post(f"Content-Length: {10**15}").startswith(b"HTTP/1.1 413 ")
        assert post("Content-Length: nope").startswith(b"HTTP/1.1 400 ")
        deep = nested(200_000).encode()
        assert post(f"Content-Length: {len(deep)}", deep).startswith(b"HTTP/1.1 422 ")

        before = _rss_bytes(process.pid)
        sock, answer = _unfinished_body(url, key, 150 * MIB)
        try:
            time.sleep(0.2)
            grown = _rss_bytes(process.pid) - before
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert grown < 40 * MIB, f"the server grew by {grown / MIB:.0f} MiB"

        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(20)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
