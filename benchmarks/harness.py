"""What ``run.py`` uses beside its measurements: the server process, the SDK's loops, timing,
tables."""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_KEY = "sk_live_bench_0000000000000000"
PROJECT_ID = "00000000-0000-4000-8000-0000000000be"
HMAC_SECRET = "bench-secret"  # the benchmark server checks nothing
MODELS_PATH = "/api/v1/waygpt/models"
CHAT_PATH = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "benchmark"}]
TIMEOUT = 60.0

Work = Callable[[], int]  # does some work, returns how many units (calls, events) it did


class Server:
    """``with Server() as server:`` ``server.py`` in a child process, so that none of its
    work counts as client CPU time. It stops when its stdin closes (here, or at our death)."""

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.cores: List[float] = []  # server CPU s per wall s, one per timed measurement
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stats(self) -> Dict[str, float]:
        """The server's CPU seconds so far and the requests and connections it served."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/__stats")
            return dict(json.loads(conn.getresponse().read()))
        finally:
            conn.close()


def rotate(
    works: Dict[str, Work],
    rounds: int,
    server: Optional[Server] = None,
    settle: Optional[Callable[[], Any]] = None,
    clock: Callable[[], float] = time.process_time,
) -> Dict[str, List[float]]:
    """Client CPU seconds (``time.process_time``) per unit of each work, each round
    (``clock=time.perf_counter``: wall seconds).

    One untimed round warms every work up (connections opened, caches filled); then each
    work runs once a round, in an order that rotates, so that a disturbance of the machine
    hits all of them alike. ``settle`` runs untimed before each measurement. With ``server``,
    its CPU per wall second over each measurement goes to ``server.cores``.
    """
    names = list(works)
    for name in names:
        works[name]()
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if settle is not None:
                settle()
            gc.collect()
            before = server.stats()["cpu"] if server is not None else 0.0
            wall = time.perf_counter()
            started = clock()
            units = works[name]()
            cpu = clock() - started
            wall = time.perf_counter() - wall
            if server is not None:
                server.cores.append((server.stats()["cpu"] - before) / wall)
            samples[name].append(cpu / units)
    return samples


def repeat(fn: Callable[[], Any], calls: int) -> Work:
    """A work making ``calls`` calls of ``fn``, one after the other."""

    def work() -> int:
        for _ in range(calls):
            fn()
        return calls

    return work


def expect(fn: Callable[[], int], expected: int) -> Work:
    """A work that checks it did ``expected`` units (a stream read to its end)."""

    def work() -> int:
        count = fn()
        if count != expected:
            raise RuntimeError(f"expected {expected} events, got {count}")
        return count

    return work


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- the SDK's clients and loops -----------------------------------------------------------------


def sdk_client(url: str, **options: Any) -> Any:
    import waygpt

    return waygpt.WayGPTClient(api_url=url, project_key=PROJECT_KEY, project_id=PROJECT_ID,
                               hmac_secret=HMAC_SECRET, timeout=TIMEOUT, max_retries=0,
                               **options)


def async_sdk_client(url: str) -> Any:
    import waygpt

    return waygpt.AsyncWayGPTClient(api_url=url, project_key=PROJECT_KEY, timeout=TIMEOUT,
                                    max_retries=0)


def bench(events: int, framing: str = "chunked", interval: float = 0.0,
          pacing: str = "blocking") -> Dict[str, Any]:
    """The body's ``"bench"`` object: what stream ``server.py`` sends."""
    return {"events": events, "framing": framing, "interval": interval, "pacing": pacing}


def sdk_stream(client: Any, options: Dict[str, Any],
               on_event: Optional[Callable[[Any], None]] = None) -> int:
    """Read one chat stream with the sync SDK, calling ``on_event(chunk)`` if given."""
    count = 0
    with client.chat_completions_stream(messages=MESSAGES, bench=options) as stream:
        for chunk in stream:
            if on_event is not None:
                on_event(chunk)
            count += 1
    return count


async def async_sdk_stream(client: Any, options: Dict[str, Any]) -> int:
    count = 0
    stream = await client.chat_completions_stream(messages=MESSAGES, bench=options)
    async with stream:
        async for _chunk in stream:
            count += 1
    return count


def in_tasks(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[Any]], calls: int,
             tasks: int = 1) -> Work:
    """A work of ``calls`` calls of ``fn`` in ``loop`` by ``tasks`` tasks, each making its
    share one after the other."""
    share = calls // tasks

    async def worker() -> None:
        for _ in range(share):
            await fn()

    async def workers() -> None:
        await asyncio.gather(*(worker() for _ in range(tasks)))

    def work() -> int:
        loop.run_until_complete(workers())
        return share * tasks

    return work


async def count_sse_events(resp: Any) -> int:
    """The bare aiohttp loop over a chat stream: each ``data:`` line parsed as JSON, up to
    ``[DONE]``; how many there were."""
    count = 0
    async for line in resp.content:
        if line.startswith(b"data: "):
            data = line[6:]
            if data.startswith(b"[DONE]"):
                break
            json.loads(data)
            count += 1
    return count


def streams_at_once(loop: asyncio.AbstractEventLoop, read: Callable[[], Awaitable[int]],
                    streams: int, events: int) -> Work:
    """A work reading ``streams`` streams of ``events`` events at once in ``loop``."""

    async def all_of_them() -> int:
        return sum(await asyncio.gather(*(read() for _ in range(streams))))

    return expect(lambda: loop.run_until_complete(all_of_them()), streams * events)


# -- tables -------------------------------------------------------------------------------------


def render(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
    print(f"figures written to {path}")
