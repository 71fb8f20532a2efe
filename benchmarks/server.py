"""The benchmarks' HTTP/1.1 server, run by ``harness.Server`` in a child process.

    python benchmarks/server.py     # prints "PORT <n>" once listening on 127.0.0.1

An ``asyncio.Protocol`` over raw sockets (no HTTP library), so that one process serves the
sync clients and 64 concurrent kept-alive async connections with a fraction of a core: the
client being measured, not the server, sets the pace (``/__stats`` gives its CPU time, which
``harness.rotate`` reads around every measurement). It answers just enough for the SDK,
bare ``requests``/``aiohttp`` code and the ``openai`` SDK:

- ``GET /api/v1/waygpt/models``: the WayGPT answer, a small JSON list of model ids;
- ``GET <anything else>/models``: the OpenAI answer, ``{"object": "list", "data": [...]}``;
- ``POST <anything>/chat/completions``: a small chat completion, or, with ``"stream": true``
  in the body, an SSE stream shaped by the body's ``"bench"`` object: ``events`` chat chunk
  events (default 10), one HTTP chunk each, then ``data: [DONE]``; ``framing`` ``"chunked"``
  (default) or ``"close"`` (no Transfer-Encoding, the connection closed at the end); with
  ``interval`` > 0 the stream is *paced*: one write per event, each event carrying ``"t"``,
  the wall time of its write, and ``interval`` seconds between two events. ``pacing``
  says how the server waits: ``"blocking"`` (default) by ``time.sleep``, which blocks its
  loop (for one stream read by a sync client: ``asyncio.sleep`` would round 0.2 ms up to
  a millisecond); ``"async"`` by ``asyncio.sleep``, so that concurrent streams are paced
  side by side (at least about a millisecond apart);
- ``GET /__stats``: ``{"cpu": <process CPU s>, "requests": n, "connections": n}``, the
  connections being those that carried a request other than ``/__stats``.

The server stops when its parent closes its stdin, and after ``LIFETIME`` seconds whatever
happens.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple

LIFETIME = 1800.0  # seconds; a full run takes a few minutes
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024
_WRITE_SLICE = 64 * 1024
_WORDS = ("Hello", " there", ",", " how", " can", " I", " help", " you", " today", "?")
_MODEL_IDS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "auto")


def chunk_json(index: int, stamp: Optional[float] = None) -> bytes:
    """One chat completion chunk as the OpenAI API streams it (about 230 bytes)."""
    chunk: Dict[str, Any] = {
        "id": "chatcmpl-9bench0000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": {"content": _WORDS[index % len(_WORDS)]},
                     "logprobs": None, "finish_reason": None}],
    }
    if stamp is not None:
        chunk["t"] = stamp
    return json.dumps(chunk, separators=(",", ":")).encode()


def _json_answer(value: Any, status: bytes = b"200 OK") -> bytes:
    body = json.dumps(value, separators=(",", ":")).encode()
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


_WAYGPT_MODELS = _json_answer(list(_MODEL_IDS))
_OPENAI_MODELS = _json_answer({"object": "list", "data": [
    {"id": name, "object": "model", "created": 1700000000, "owned_by": "bench"}
    for name in _MODEL_IDS
]})
_COMPLETION = _json_answer({  # a small non-streamed chat completion (about 400 bytes)
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1718000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant",
                                         "content": "Hello! How can I help you today?"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    "system_fingerprint": "fp_44709d6fcb",
})
_NOT_FOUND = _json_answer({"detail": "Not Found"}, b"404 Not Found")
_DONE = b"data: [DONE]\n\n"
_stats = {"requests": 0, "connections": 0}
_bodies: Dict[Tuple[int, bool], bytes] = {}


def _frame(data: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data


def _stream_head(chunked: bool) -> bytes:
    framing = b"Transfer-Encoding: chunked" if chunked else b"Connection: close"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            + framing + b"\r\n\r\n")


def _stream_end(chunked: bool) -> bytes:
    return _frame(_DONE, chunked) + (b"0\r\n\r\n" if chunked else b"")


def _stream_body(events: int, chunked: bool) -> bytes:
    """A whole stream of ``events`` unstamped events, built once per size and framing."""
    body = _bodies.get((events, chunked))
    if body is None:
        frames = [_frame(b"data: " + chunk_json(i) + b"\n\n", chunked) for i in range(10)]
        body = b"".join([_stream_head(chunked)] + [frames[i % 10] for i in range(events)]
                        + [_stream_end(chunked)])
        _bodies[(events, chunked)] = body
    return body


class _Connection(asyncio.Protocol):
    """One connection: requests parsed from the buffer as they complete, answered in order."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = b""
        self.counted = False
        self.streaming: Optional[asyncio.Task[None]] = None
        self.can_write: Optional[asyncio.Future[None]] = None  # set while writing is paused

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.streaming is not None:
            self.streaming.cancel()

    def pause_writing(self) -> None:
        self.can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.can_write is not None and not self.can_write.done():
            self.can_write.set_result(None)
        self.can_write = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.streaming is None:  # otherwise it waits until the stream has been written
            self._handle()

    def _handle(self) -> None:
        while self.streaming is None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self.transport.close()
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if len(parts) != 3 or not 0 <= length <= _MAX_BODY:
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return  # the body is still coming
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(parts[0], parts[1].split("?", 1)[0], body)

    def _answer(self, method: str, path: str, body: bytes) -> None:
        if path == "/__stats":
            self.transport.write(_json_answer(dict(_stats, cpu=time.process_time())))
            return
        _stats["requests"] += 1
        if not self.counted:
            self.counted = True
            _stats["connections"] += 1
        if method == "GET" and path == "/api/v1/waygpt/models":
            self.transport.write(_WAYGPT_MODELS)
        elif method == "GET" and path.endswith("/models"):
            self.transport.write(_OPENAI_MODELS)
        elif method == "POST" and path.endswith("/chat/completions"):
            try:
                options = json.loads(body or b"{}")
            except ValueError:
                options = {}
            if not isinstance(options, dict) or not options.get("stream"):
                self.transport.write(_COMPLETION)
                return
            bench = options.get("bench") or {}
            self.streaming = asyncio.ensure_future(self._stream(
                int(bench.get("events", 10)), bench.get("framing", "chunked") != "close",
                float(bench.get("interval", 0.0)), bench.get("pacing", "blocking") == "async",
            ))
        else:
            self.transport.write(_NOT_FOUND)

    async def _stream(self, events: int, chunked: bool, interval: float,
                      concurrent: bool) -> None:
        try:
            if interval > 0:  # one write per event, stamped when written
                self.transport.write(_stream_head(chunked))
                for index in range(events):
                    event = b"data: " + chunk_json(index, time.time()) + b"\n\n"
                    self.transport.write(_frame(event, chunked))
                    if concurrent:
                        await asyncio.sleep(interval)
                    else:
                        time.sleep(interval)
                self.transport.write(_stream_end(chunked))
            else:  # as fast as the client reads, in slices, waiting whenever it is behind
                body = memoryview(_stream_body(events, chunked))
                for start in range(0, len(body), _WRITE_SLICE):
                    if self.can_write is not None:
                        await self.can_write
                    self.transport.write(body[start : start + _WRITE_SLICE])
        except (asyncio.CancelledError, ConnectionError):
            return
        finally:
            self.streaming = None
        if chunked:
            self._handle()  # a request that arrived meanwhile
        else:
            self.transport.close()  # the end of a close-delimited body


async def _serve(stopping: asyncio.Future[None]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, "127.0.0.1", 0, backlog=256)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.wait_for(stopping, LIFETIME)
    except asyncio.TimeoutError:
        pass
    server.close()


def main() -> None:
    loop = asyncio.new_event_loop()
    stopping: asyncio.Future[None] = loop.create_future()

    def watch_stdin() -> None:  # the parent closes our stdin (or exits): stop
        try:
            while sys.stdin.buffer.read(1):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(lambda: stopping.done() or stopping.set_result(None))

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        loop.run_until_complete(_serve(stopping))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
