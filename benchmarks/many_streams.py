"""Thousands of chat streams at model speed at once: ``AsyncWayGPTClient`` with its default
settings against bare aiohttp and ``AsyncOpenAI``, on one event loop each.

    python benchmarks/many_streams.py                  # 3,000 streams, three runs
    python benchmarks/many_streams.py --quick          # 1,000 streams, one run
    python benchmarks/many_streams.py --streams 1000 --runs 1
    python benchmarks/many_streams.py --json out.json  # default: results-many-streams.json
    python benchmarks/many_streams.py --tracemalloc    # also Python's allocations per stream
    python benchmarks/many_streams.py --max-connections 100 --only sdk bare  # a pool's queue
    python benchmarks/many_streams.py --openai-default --only openai  # openai's own pool

Each stream is what a chat bot waits on: ``EVENTS`` chat chunk events ``INTERVAL`` seconds
apart, then ``[DONE]``. Every stream is started at once; a client that queues streams
behind a pool of connections takes several times as long.

One server (this file, ``--serve``) runs in a child process on 127.0.0.1 and paces each
stream with ``asyncio.sleep`` (its own clock: event *i* goes out ``i * INTERVAL`` seconds
after the stream's head). Each client runs in a fresh process of its own (this file,
``--client``), so that none inherits another's memory: it makes its client, reads one
short stream to warm up (imports, the first connection), then starts all the streams and
waits for them. It reports:

- wall time, from the start of the first stream to the end of the last;
- client CPU time (``time.process_time``) per event, connecting and requests included;
- the resident set's peak growth over the run, per stream (``ru_maxrss`` against the
  resident set before it); with ``--tracemalloc``, in another process, the peak of
  Python's traced allocations per stream too (tracing slows everything: it has no timing);
- from the server: the most streams it was sending at once, and its CPU per wall second.

The clients, with their connection limits: the SDK as ``AsyncWayGPTClient(api_url,
project_key)``, defaults only; bare aiohttp, ``aiohttp.ClientSession`` on a
``TCPConnector(limit=0)`` (no limit) with its default timeout, reading lines and parsing
each event's JSON; ``AsyncOpenAI`` (``pip install -e ".[bench]"``; skipped without it)
with its ``http_client`` given a connection limit of the number of streams (its default,
1000 connections, would queue the rest: ``--openai-default`` measures that), and a connect
timeout of 60 s (its default, 5 s, runs out for some of 3,000 connections). With
``--max-connections N`` the SDK's client gets ``max_connections=N``.

The order of the clients rotates from run to run; the figures shown are the medians over
the runs, and so are the ratios. The run exits with status 1 when the SDK misses a goal:
wall time at most 1.2x bare aiohttp's, memory per stream at most 1.5x, CPU per event at
most 1.2x.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (  # noqa: E402
    CHAT_PATH,
    MESSAGES,
    PROJECT_KEY,
    count_sse_events,
    median,
    render,
    write_json,
)

EVENTS = 40
INTERVAL = 0.05  # seconds between two events of a stream: a model's pace
PROFILES = {"full": {"streams": 3000, "runs": 3}, "quick": {"streams": 1000, "runs": 1}}
GOALS = {"wall": 1.2, "memory": 1.5, "cpu": 1.2}  # SDK / bare, at most
CLIENTS = ("sdk", "bare", "openai")
CLIENT_LIMIT = 600.0  # seconds: a client process that takes longer has failed
STREAM_HEADERS = {"x-project-key": PROJECT_KEY, "Accept": "text/event-stream"}


def _raise_fd_limit(needed: int) -> None:
    """One descriptor per connection, on both sides: raise the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        if top < wanted:
            sys.exit(f"the open-file limit ({hard}) is too low for {needed} connections: "
                     "raise it (ulimit -n)")


# -- the server ------------------------------------------------------------------------------


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_WORDS = ("Hello", " there", ",", " how", " can", " I", " help", " you", " today", "?")
_EVENT_FRAMES = [_frame(b"data: " + json.dumps({
    "id": "chatcmpl-9bench0000000000000000000", "object": "chat.completion.chunk",
    "created": 1718000000, "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_44709d6fcb",
    "choices": [{"index": 0, "delta": {"content": word}, "logprobs": None,
                 "finish_reason": None}],
}, separators=(",", ":")).encode() + b"\n\n") for word in _WORDS]
_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
_STREAM_END = _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
_NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
              b"Content-Length: 2\r\n\r\n{}")


class _Stats:
    """What the server saw: connections and streams open now and at most since the last reset."""

    connections = 0
    streams = 0
    most_connections = 0
    most_streams = 0

    @classmethod
    def answer(cls, reset: bool) -> bytes:
        body = json.dumps({"cpu": time.process_time(), "connections": cls.connections,
                           "streams": cls.streams, "most_connections": cls.most_connections,
                           "most_streams": cls.most_streams}).encode()
        if reset:
            cls.most_connections, cls.most_streams = cls.connections, cls.streams
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Connection(asyncio.Protocol):
    """One kept-alive connection: requests answered in turn, a stream paced by a task."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = b""
        self.streaming: Optional[asyncio.Task[None]] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        _Stats.connections += 1
        _Stats.most_connections = max(_Stats.most_connections, _Stats.connections)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        _Stats.connections -= 1
        if self.streaming is not None:
            self.streaming.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.streaming is None:
            self._handle()

    def _handle(self) -> None:
        while self.streaming is None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self.transport.close()
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still coming
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            method, path = [*head[0].split(" "), "", ""][:2]
            if path.startswith("/__stats"):
                self.transport.write(_Stats.answer(reset=path.endswith("?reset")))
            elif method == "POST" and path.endswith("/chat/completions"):
                bench = (json.loads(body or b"{}").get("bench") or {})
                self.streaming = asyncio.ensure_future(self._stream(
                    int(bench.get("events", EVENTS)), float(bench.get("interval", INTERVAL))))
            else:
                self.transport.write(_NOT_FOUND)

    async def _stream(self, events: int, interval: float) -> None:
        loop = asyncio.get_running_loop()
        _Stats.streams += 1
        _Stats.most_streams = max(_Stats.most_streams, _Stats.streams)
        try:
            self.transport.write(_STREAM_HEAD)
            started = loop.time()
            for index in range(events):
                if index:  # on the stream's own clock: no drift from the loop's delays
                    await asyncio.sleep(max(started + index * interval - loop.time(), 0.0))
                self.transport.write(_EVENT_FRAMES[index % len(_EVENT_FRAMES)])
            self.transport.write(_STREAM_END)
        except (asyncio.CancelledError, ConnectionError):
            return
        finally:
            _Stats.streams -= 1
            self.streaming = None
        self._handle()  # a request that arrived meanwhile


async def _serve(streams: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, "127.0.0.1", 0, backlog=max(streams, 128))
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stopping = loop.create_future()

    def watch_stdin() -> None:  # the parent closes our stdin (or dies): stop
        try:
            while sys.stdin.buffer.read(1):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(lambda: stopping.done() or stopping.set_result(None))

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:  # a run takes minutes; an hour ends it whatever happens
        await asyncio.wait_for(stopping, 3600)
    except asyncio.TimeoutError:
        pass
    server.close()


class Server:
    """``with Server(streams) as server:`` the paced server in a child process."""

    def __init__(self, streams: int) -> None:
        self.streams = streams

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--streams", str(self.streams)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stats(self, reset: bool = False) -> Dict[str, Any]:
        import http.client

        conn = http.client.HTTPConnection(self.url[len("http://"):], timeout=10)
        try:
            conn.request("GET", "/__stats?reset" if reset else "/__stats")
            return dict(json.loads(conn.getresponse().read()))
        finally:
            conn.close()

    def wait_idle(self) -> None:
        """Until the last client's connections are gone (its process has exited)."""
        deadline = time.monotonic() + 30
        while self.stats()["connections"] > 1 and time.monotonic() < deadline:
            time.sleep(0.1)


# -- the clients (each in a process of its own) ------------------------------------------------

Read = Callable[[int], Awaitable[int]]  # reads one stream of n events, returns how many came
Closer = Callable[[], Awaitable[None]]


async def _sdk(url: str, streams: int, limit: Optional[int]) -> Tuple[Read, Closer]:
    import waygpt

    client = waygpt.AsyncWayGPTClient(api_url=url, project_key=PROJECT_KEY, max_connections=limit)

    async def read(events: int) -> int:
        count = 0
        stream = await client.chat_completions(
            messages=MESSAGES, stream=True, bench={"events": events, "interval": INTERVAL})
        async with stream:
            async for _chunk in stream:
                count += 1
        return count

    return read, client.close


async def _bare(url: str, streams: int, limit: Optional[int]) -> Tuple[Read, Closer]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def read(events: int) -> int:
        body = {"model": "auto", "messages": MESSAGES, "stream": True,
                "bench": {"events": events, "interval": INTERVAL}}
        async with session.post(url + CHAT_PATH, json=body, headers=STREAM_HEADERS) as resp:
            return await count_sse_events(resp)

    return read, session.close


async def _openai(url: str, streams: int, limit: Optional[int]) -> Tuple[Read, Closer]:
    import openai

    try:  # the HTTP library under openai: httpx, or its fork httpx2
        import httpx2 as httpx  # type: ignore[import-not-found]
    except ImportError:
        import httpx
    options: Dict[str, Any] = {}
    if limit is None:  # (0: openai's own default pool)
        limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
        options["http_client"] = openai.DefaultAsyncHttpxClient(limits=limits)
    # Its default connect timeout, 5 s, runs out for some of 3,000 connections while its
    # loop is busy with the first streams' events: the run would fail, not measure.
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-bench",
                                timeout=httpx.Timeout(600, connect=60), **options)

    async def read(events: int) -> int:
        count = 0
        stream = await client.chat.completions.create(
            model="auto", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
            extra_body={"bench": {"events": events, "interval": INTERVAL}})
        async with stream:
            async for _chunk in stream:
                count += 1
        return count

    return read, client.close


MAKERS = {"sdk": _sdk, "bare": _bare, "openai": _openai}


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


async def _measure(
    name: str, url: str, streams: int, limit: Optional[int], traced: bool
) -> Dict[str, Any]:
    read, close = await MAKERS[name](url, streams, limit)
    try:
        if await read(3) != 3:  # warm up: imports, lazy modules, the first connection
            raise RuntimeError("the warm-up stream came short")
        gc.collect()
        rss = _rss_kib()
        if traced:
            import tracemalloc

            tracemalloc.start()
        cpu, wall = time.process_time(), time.perf_counter()
        counts = await asyncio.gather(*(read(EVENTS) for _ in range(streams)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        figures: Dict[str, Any] = {"wall": wall, "cpu": cpu, "events": sum(counts),
                                   "rss_growth_kib": max(peak - rss, 0)}
        if traced:
            figures["traced_peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if sum(counts) != streams * EVENTS:
            raise RuntimeError(f"{name}: {sum(counts)} events, expected {streams * EVENTS}")
        return figures
    finally:
        await close()


def _client_main(name: str, url: str, streams: int, limit: Optional[int], traced: bool) -> None:
    _raise_fd_limit(streams)
    print(json.dumps(asyncio.run(_measure(name, url, streams, limit, traced))), flush=True)


def _run_client(
    server: Server, name: str, streams: int, limit: Optional[int], traced: bool
) -> Dict[str, Any]:
    """One client's measurement, in a fresh process, with what the server saw meanwhile."""
    server.wait_idle()
    before = server.stats(reset=True)
    wall = time.perf_counter()
    command = [sys.executable, __file__, "--client", name, "--url", server.url,
               "--streams", str(streams)] + (["--tracemalloc"] if traced else [])
    if limit is not None:
        command += ["--max-connections", str(limit)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CLIENT_LIMIT,
                          check=False)
    wall = time.perf_counter() - wall
    after = server.stats()
    if done.returncode != 0:
        raise RuntimeError(f"the {name} client failed:\n{done.stderr[-3000:]}")
    figures = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    figures["server_streams"] = after["most_streams"]
    figures["server_cores"] = (after["cpu"] - before["cpu"]) / wall
    return figures


# -- the table ---------------------------------------------------------------------------------

def _figure(key: str, figures: Dict[str, Any], streams: int) -> float:
    if key == "wall":
        return float(figures["wall"])
    if key == "memory":
        return float(figures["rss_growth_kib"]) / streams
    if key == "traced":
        return float(figures["traced_peak"]) / 1024 / streams
    return float(figures["cpu"]) / float(figures["events"]) * 1e6


LABELS = {"wall": "wall time (s)", "memory": "RSS growth per stream (KiB)",
          "cpu": "CPU per event (us)", "traced": "traced peak per stream (KiB)"}


def _table(runs: List[Dict[str, Dict[str, Any]]], streams: int,
           keys: Tuple[str, ...]) -> List[Dict[str, Any]]:
    rows = []
    for key in keys:
        values = {name: [_figure(key, run[name], streams) for run in runs if name in run]
                  for name in CLIENTS}
        ratios = {other: [_figure(key, run["sdk"], streams) / _figure(key, run[other], streams)
                          for run in runs if other in run and "sdk" in run]
                  for other in ("bare", "openai")}
        goal = GOALS.get(key)
        result = "-"
        if goal is not None and ratios["bare"]:
            result = "pass" if median(ratios["bare"]) <= goal else "FAIL"
            each = ["pass" if ratio <= goal else "FAIL" for ratio in ratios["bare"]]
            if len(set(each)) > 1:
                result += f" (runs: {', '.join(each)})"
        rows.append({
            "metric": LABELS[key], "values": values, "ratios": ratios,
            "goal": f"<= {goal:.1f}x bare" if goal is not None else "-", "result": result,
        })
    return rows


def _cell(values: List[float], digits: int = 1, unit: str = "") -> str:
    return f"{median(values):,.{digits}f}{unit}" if values else "-"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 streams, one run")
    parser.add_argument("--streams", type=int, help="streams at once (full: 3000)")
    parser.add_argument("--runs", type=int, help="runs, each client once a run (full: 3)")
    parser.add_argument("--only", nargs="+", choices=CLIENTS, help="these clients only")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also Python's traced allocations per stream (another process)")
    parser.add_argument("--max-connections", type=int, metavar="N",
                        help="the SDK's client with max_connections=N (default: its default)")
    parser.add_argument("--openai-default", action="store_true",
                        help="AsyncOpenAI with its default pool (1000 connections)")
    parser.add_argument("--json", metavar="FILE", help="where to write the figures")
    parser.add_argument("--markdown", action="store_true", help="the table as Markdown too")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    streams = args.streams or profile["streams"]
    _raise_fd_limit(streams)
    if args.serve:
        asyncio.run(_serve(streams))
        return 0
    if args.client:
        _client_main(args.client, args.url, streams, args.max_connections, args.tracemalloc)
        return 0

    names = [name for name in CLIENTS if name in (args.only or CLIENTS)]
    try:
        import openai
    except ImportError:
        openai = None  # type: ignore[assignment]
        names = [name for name in names if name != "openai"]
    import aiohttp

    import waygpt

    runs: List[Dict[str, Dict[str, Any]]] = []
    started = time.monotonic()
    with Server(streams) as server:
        for index in range(args.runs or profile["runs"]):
            order = names[index % len(names):] + names[:index % len(names)]
            run: Dict[str, Dict[str, Any]] = {}
            for name in order:
                print(f"run {index + 1}: {name}, {streams} streams ...", file=sys.stderr,
                      flush=True)
                limit = {"sdk": args.max_connections,
                         "openai": 0 if args.openai_default else None}.get(name)
                run[name] = _run_client(server, name, streams, limit, traced=False)
                if args.tracemalloc:
                    traced = _run_client(server, name, streams, limit, traced=True)
                    run[name]["traced_peak"] = traced["traced_peak"]
            runs.append(run)
    seconds = round(time.monotonic() - started, 1)

    keys = ("wall", "memory", "cpu") + (("traced",) if args.tracemalloc else ())
    rows = _table(runs, streams, keys)
    header = ["metric", "SDK", "bare", "SDK / bare", "openai", "SDK / openai", "goal", "result"]
    digits = {LABELS["wall"]: 2}
    cells = [[row["metric"], *(_cell(row["values"][name], digits.get(row["metric"], 1))
                               for name in ("sdk", "bare")),
              _cell(row["ratios"]["bare"], 2, "x"),
              _cell(row["values"]["openai"], digits.get(row["metric"], 1)),
              _cell(row["ratios"]["openai"], 2, "x"), row["goal"], row["result"]]
             for row in rows]
    server_rows = [[name, _cell([run[name]["server_streams"] for run in runs if name in run], 0),
                    _cell([run[name]["server_cores"] for run in runs if name in run], 2)]
                   for name in names]
    env = {"python": sys.version.split()[0], "waygpt": waygpt.__version__,
           "aiohttp": aiohttp.__version__,
           "openai": getattr(openai, "__version__", "not installed"), "cpus": os.cpu_count()}
    settings = {"sdk_max_connections": args.max_connections or "default (no limit)",
                "openai_pool": "its default" if args.openai_default else f"{streams} connections"}
    print(f"{streams} streams of {EVENTS} events {INTERVAL * 1000:g} ms apart, "
          f"{len(runs)} run(s) in {seconds} s; waygpt {env['waygpt']}, Python {env['python']}, "
          f"aiohttp {env['aiohttp']}, openai {env['openai']}, {env['cpus']} CPUs; medians; "
          f"SDK max_connections: {settings['sdk_max_connections']}; openai's pool: "
          f"{settings['openai_pool']}")
    print(render(header, cells))
    print()
    print(render(["client", "streams open at once (server)", "server CPU (cores)"], server_rows))
    if len(runs) > 1:
        print()
        print(render(["ratio"] + [f"run {i + 1}" for i in range(len(runs))],
                     [[f"{row['metric']}, SDK / {other}"]
                      + [f"{ratio:.2f}" for ratio in row["ratios"][other]]
                      for row in rows for other in ("bare", "openai") if row["ratios"][other]]))
    if args.markdown:
        print("\n" + render(header, cells, markdown=True))
    write_json(args.json or os.path.join(HERE, "results-many-streams.json"), {
        "command": " ".join(["python", "benchmarks/many_streams.py", *sys.argv[1:]]),
        "streams": streams, "events": EVENTS, "interval": INTERVAL, "seconds": seconds,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"), "environment": env,
        "settings": settings, "table": rows, "runs": runs,
    })
    return 1 if any(row["result"].startswith("FAIL") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
