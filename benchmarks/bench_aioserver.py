"""An asyncio HTTP/1.1 server for the async benchmarks, meant to run in its own process.

    python benchmarks/bench_aioserver.py     # prints "PORT <n>" once listening on 127.0.0.1

It is an ``asyncio.Protocol`` over raw sockets (no HTTP library), so that one process serves
64 concurrent kept-alive connections with a small fraction of a core: the client being
measured, not the server, is the bottleneck (``/__stats`` lets the benchmark check it). It
answers just enough for the SDK, a bare aiohttp session and the ``openai`` SDK:

- ``GET /api/v1/waygpt/models``: the WayGPT answer, a small JSON list of model ids;
- ``GET <anything else>/models``: the OpenAI answer, ``{"object": "list", "data": [...]}``;
- ``POST <anything>/chat/completions``: with ``"stream": true`` in the JSON body, an SSE
  stream of ``bench_events`` (default 10) OpenAI chat chunk events, one HTTP chunk per
  event, then ``data: [DONE]``; otherwise a small chat completion;
- ``GET /__stats``: ``{"cpu": <process CPU seconds>, "requests": n, "connections": n}``
  (asking is not counted).

Every connection is kept alive until the client closes it. The server stops when its
parent closes its stdin, and after ``LIFETIME`` seconds whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# The same answers as the sync benchmarks' server, and the same chat chunk as bench_stream's.
from bench_server import COMPLETION_BODY, MODELS_BODY, OPENAI_MODELS_BODY  # noqa: E402
from bench_stream import chunk_json  # noqa: E402

LIFETIME = 900.0  # seconds
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024
_WRITE_SLICE = 64 * 1024

_EVENT_FRAMES = [
    b"%x\r\n%s\r\n" % (len(event), event)
    for event in (b"data: " + chunk_json(i) + b"\n\n" for i in range(10))
]
_DONE_FRAME = b"%x\r\n%s\r\n0\r\n\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n")
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_stream_bodies: Dict[int, bytes] = {}


def _stream_body(events: int) -> bytes:
    """The whole chunked body of a stream of ``events`` events (built once per size)."""
    body = _stream_bodies.get(events)
    if body is None:
        frames = [_EVENT_FRAMES[i % len(_EVENT_FRAMES)] for i in range(events)]
        body = _stream_bodies[events] = b"".join(frames) + _DONE_FRAME
    return body


def _json_answer(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )


_ANSWERS = {
    "waygpt_models": _json_answer(MODELS_BODY),
    "openai_models": _json_answer(OPENAI_MODELS_BODY),
    "completion": _json_answer(COMPLETION_BODY),
    "not_found": _json_answer(b'{"detail":"Not Found"}', b"404 Not Found"),
}

_stats = {"requests": 0, "connections": 0}


class HTTPProtocol(asyncio.Protocol):
    """One connection: requests parsed from the buffer as they complete, answered in order."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = b""
        self.counted = False
        self.streaming: Optional[asyncio.Task[None]] = None  # a stream being written
        self.queued: List[bytes] = []  # input that arrived while a stream was written
        self.can_write: Optional[asyncio.Future[None]] = None  # set while writing is paused

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.streaming is not None:
            self.streaming.cancel()
        if self.can_write is not None and not self.can_write.done():
            self.can_write.cancel()

    def pause_writing(self) -> None:
        self.can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.can_write is not None and not self.can_write.done():
            self.can_write.set_result(None)
        self.can_write = None

    def data_received(self, data: bytes) -> None:
        if self.streaming is not None:
            self.queued.append(data)
            return
        self.buffer += data
        self._handle()

    def _handle(self) -> None:
        while True:
            buffer = self.buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self.transport.close()
                return
            head = buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self.transport.close()
                return
            method, target = parts[0], parts[1]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if length < 0 or length > _MAX_BODY:
                self.transport.close()
                return
            if len(buffer) < end + 4 + length:
                return  # the body is still coming
            body = buffer[end + 4 : end + 4 + length]
            self.buffer = buffer[end + 4 + length :]
            self._answer(method, target.split("?", 1)[0], body)
            if self.streaming is not None:
                return  # the rest waits until the stream has been written

    def _answer(self, method: str, path: str, body: bytes) -> None:
        if path == "/__stats":
            stats = dict(_stats, cpu=time.process_time())
            self.transport.write(_json_answer(json.dumps(stats).encode()))
            return
        _stats["requests"] += 1
        if not self.counted:
            self.counted = True
            _stats["connections"] += 1
        if method == "GET" and path == "/api/v1/waygpt/models":
            self.transport.write(_ANSWERS["waygpt_models"])
        elif method == "GET" and path.endswith("/models"):
            self.transport.write(_ANSWERS["openai_models"])
        elif method == "POST" and path.endswith("/chat/completions"):
            try:
                options = json.loads(body or b"{}")
            except ValueError:
                options = {}
            if not isinstance(options, dict) or not options.get("stream"):
                self.transport.write(_ANSWERS["completion"])
                return
            events = int(options.get("bench_events", 10))
            self.streaming = asyncio.ensure_future(self._stream(_stream_body(events)))
        else:
            self.transport.write(_ANSWERS["not_found"])

    async def _stream(self, body: bytes) -> None:
        """Write a stream's body in slices, waiting whenever the client is behind."""
        try:
            self.transport.write(_STREAM_HEAD)
            view = memoryview(body)
            for start in range(0, len(body), _WRITE_SLICE):
                if self.can_write is not None:
                    await self.can_write
                self.transport.write(view[start : start + _WRITE_SLICE])
        except (asyncio.CancelledError, ConnectionError):
            return
        finally:
            self.streaming = None
        queued, self.queued = self.queued, []
        if queued:
            self.buffer += b"".join(queued)
            self._handle()


async def serve(stopping: asyncio.Future[None]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HTTPProtocol, "127.0.0.1", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    try:
        await asyncio.wait_for(stopping, LIFETIME)
    except asyncio.TimeoutError:
        pass
    server.close()


def main() -> None:
    loop = asyncio.new_event_loop()
    stopping: asyncio.Future[None] = loop.create_future()

    def stop() -> None:
        if not stopping.done():
            stopping.set_result(None)

    def watch_stdin() -> None:  # the parent closes our stdin (or exits): stop
        try:
            while sys.stdin.buffer.read(1):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stop)

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        loop.run_until_complete(serve(stopping))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
