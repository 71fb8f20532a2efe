"""A small, fast HTTP/1.1 keep-alive server for the benchmarks, meant to run in its own process.

    python benchmarks/bench_server.py        # prints "PORT <n>" once listening on 127.0.0.1

Its CPU time never counts against the client being measured. It answers just enough of the
WayGPT API for the benchmarks, with raw sockets and one thread per connection:

- ``GET /api/v1/waygpt/models``: a small JSON list, Content-Length framed, kept alive;
- ``GET <anything else>/models``: the same models as the OpenAI API lists them
  (``{"object": "list", "data": [...]}``), for the ``openai`` SDK;
- ``POST <anything>/chat/completions`` (the SDK's ``/api/v1/waygpt/chat/completions``, the
  ``openai`` SDK's ``/v1/chat/completions``): with ``"stream": true`` in the JSON body, an SSE
  stream of chat chunks, whose number the body's ``bench_events`` sets (default 10) and whose
  framing ``bench_framing`` (``"chunked"``, the default, or ``"close"``); otherwise a small
  chat completion, Content-Length framed;
- ``GET /__stats``: ``{"connections": n}``, the TCP connections that have carried at least one
  request other than ``/__stats`` (so asking does not change the answer);
- ``POST /__quit``: stops the server.

Every connection ends when the client closes it, when a request is malformed, or after a
close-delimited answer; the server stops on ``/__quit`` or when its parent closes stdin.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from typing import BinaryIO, Dict, Optional, Tuple

MODEL_IDS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "auto")
MODELS_BODY = json.dumps(list(MODEL_IDS)).encode()
OPENAI_MODELS_BODY = json.dumps(
    {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "bench"}
            for name in MODEL_IDS
        ],
    },
    separators=(",", ":"),
).encode()
# A small non-streamed chat completion, as the OpenAI API answers one (about 400 bytes).
COMPLETION_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1718000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
        "system_fingerprint": "fp_44709d6fcb",
    },
    separators=(",", ":"),
).encode()
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024
_BATCH = 512  # events per socket write on a long stream

_lock = threading.Lock()
_connections = 0
_stop = threading.Event()


def chat_event(index: int) -> bytes:
    """One SSE event holding a chat completion chunk, as the server sends it."""
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": f"tok{index % 10} "}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


_EVENTS = [chat_event(i) for i in range(10)]
_EVENT_BATCH = b"".join(_EVENTS[i % 10] for i in range(_BATCH))
_DONE = b"data: [DONE]\n\n"


def _read_request(reader: BinaryIO) -> Optional[Tuple[str, str, Dict[str, str], bytes]]:
    """One request from the buffered reader, or None at end of input or on a bad request."""
    request_line = reader.readline(_MAX_HEAD)
    if not request_line:
        return None
    parts = request_line.decode("latin-1").split()
    if len(parts) != 3:
        return None
    method, target, _version = parts
    headers: Dict[str, str] = {}
    size = len(request_line)
    while True:
        line = reader.readline(_MAX_HEAD)
        size += len(line)
        if not line or size > _MAX_HEAD:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length < 0 or length > _MAX_BODY:
        return None
    body = reader.read(length) if length else b""
    if len(body) != length:
        return None
    return method, target, headers, body


def _head(status: str, headers: Dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json_answer(sock: socket.socket, body: bytes, status: str = "200 OK") -> None:
    sock.sendall(
        _head(status, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        + body
    )


def _stream(sock: socket.socket, events: int, framing: str) -> bool:
    """Send ``events`` chat events then [DONE]; returns whether the connection stays open."""
    chunked = framing != "close"
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Connection"] = "close"
    sock.sendall(_head("200 OK", headers))

    def write(data: bytes) -> None:
        if chunked:
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            sock.sendall(data)

    sent = 0
    while events - sent >= _BATCH:
        write(_EVENT_BATCH)
        sent += _BATCH
    if events > sent:
        write(b"".join(_EVENTS[i % 10] for i in range(sent, events)))
    write(_DONE)
    if chunked:
        sock.sendall(b"0\r\n\r\n")
    return chunked


def _serve_connection(sock: socket.socket) -> None:
    global _connections
    counted = False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    try:
        while not _stop.is_set():
            request = _read_request(reader)
            if request is None:
                return
            method, target, _headers, body = request
            path = target.split("?", 1)[0]
            if path == "/__stats":
                with _lock:
                    count = _connections
                _json_answer(sock, json.dumps({"connections": count}).encode())
                continue
            if path == "/__quit":
                _json_answer(sock, b"{}")
                _stop.set()
                return
            if not counted:
                counted = True
                with _lock:
                    _connections += 1
            if method == "GET" and path == "/api/v1/waygpt/models":
                _json_answer(sock, MODELS_BODY)
            elif method == "GET" and path.endswith("/models"):
                _json_answer(sock, OPENAI_MODELS_BODY)
            elif method == "POST" and path.endswith("/chat/completions"):
                try:
                    options = json.loads(body or b"{}")
                except ValueError:
                    options = {}
                if not isinstance(options, dict) or not options.get("stream"):
                    _json_answer(sock, COMPLETION_BODY)
                    continue
                events = int(options.get("bench_events", 10))
                framing = str(options.get("bench_framing", "chunked"))
                if not _stream(sock, events, framing):
                    return
            else:
                _json_answer(sock, b'{"detail":"Not Found"}', "404 Not Found")
    except OSError:
        return
    finally:
        reader.close()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def _watch_stdin() -> None:
    """Stop when the parent process goes away (its end of our stdin closes)."""
    try:
        while sys.stdin.buffer.read(1):
            pass
    except (OSError, ValueError):
        pass
    _stop.set()


def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.2)
    threading.Thread(target=_watch_stdin, daemon=True).start()
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    while not _stop.is_set():
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        sock.settimeout(300)
        threading.Thread(target=_serve_connection, args=(sock,), daemon=True).start()
    listener.close()


if __name__ == "__main__":
    main()
