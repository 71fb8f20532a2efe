"""The async client against a bare ``aiohttp.ClientSession`` and ``openai.AsyncOpenAI``.

    python benchmarks/bench_async.py            # prints a table (about a minute)
    python benchmarks/bench_async.py --quick    # fewer rounds
    python benchmarks/bench_async.py --json async.json

``benchmarks/run.py`` runs it too and puts its rows in its table. An asyncio server
(``bench_aioserver.py``) runs in a child process, so none of its work counts as client CPU
time; its own CPU time is read before and after every measurement, to show it is not the
bottleneck (it should stay well under one core). Measured, for ``AsyncWayGPTClient``, for the
hand-written aiohttp code that does the same work, and for the ``openai`` SDK's async client
(default transport) pointed at the same server:

1. client CPU time (``time.process_time``) per small request, sequentially and with 64
   concurrent tasks: ``get_models()`` (``session.get(url)`` + ``await resp.json()``;
   ``models.list()``) and a small non-streamed ``chat_completions()``
   (``session.post(url, json=...)`` + ``await resp.json()``; ``chat.completions.create()``).
   The bare calls run twice: with aiohttp's default timeout (``total=300`` only: the goal's
   reference) and with the timeout the SDK passes on every request,
   ``ClientTimeout(total=60, sock_connect=60, sock_read=60)`` for ``timeout=60``
   ("bare + read timeout"): ``sock_read`` bounds the wait between two reads, the SDK's
   documented read timeout, and makes aiohttp cancel and re-arm a timer at every read;
2. streamed chat events per client CPU second with 16 concurrent streams, against the line
   loop of hand-written aiohttp code::

       async for line in resp.content:
           if line.startswith(b"data: "):
               ... json.loads(line[6:]) ...          # until data: [DONE]

   and ``AsyncOpenAI``'s ``chat.completions.create(..., stream=True)`` (on streams a fifth
   as long: it reads some 20 times fewer events per CPU second).

The clients run interleaved, one round each in turn (their order rotating), and the
figure is the median round. ``run()`` returns the figures as a dict; ``table_rows()`` makes
the rows of ``run.py``'s table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import statistics
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from server_process import ServerProcess  # noqa: E402

PROJECT_KEY = "sk_live_bench_0000000000000000"
MODELS_PATH = "/api/v1/waygpt/models"
CHAT_PATH = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "benchmark"}]
CONCURRENCY = 64
STREAMS = 16
TIMEOUT = 60.0  # the SDK's timeout; "bare + read timeout" passes the same ClientTimeout
OPENAI_SHARE = 5  # openai's streams have a fifth as many events (it is 20 times slower)

GOAL_VS_BARE = 1.15  # SDK CPU per request over bare aiohttp's, at most
GOAL_VS_OPENAI = 0.40  # SDK CPU per request over AsyncOpenAI's, at most
GOAL_STREAM = 1.2  # SDK stream events per CPU second over the bare line loop's, at least

PROFILES = {
    # calls per round, sequentially and 64-way; rounds; events per stream; stream rounds
    "full": {"sequential": 400, "concurrent": 1280, "rounds": 9, "events": 4000,
             "stream_rounds": 7},
    "quick": {"sequential": 200, "concurrent": 640, "rounds": 5, "events": 2000,
              "stream_rounds": 3},
}

Call = Callable[[], Awaitable[Any]]


# -- the server process ----------------------------------------------------------------------


class AioServer(ServerProcess):
    """``bench_aioserver.py`` in a child process."""

    def __init__(self) -> None:
        super().__init__([os.path.join(HERE, "bench_aioserver.py")], "async benchmark server")

    def stats(self) -> Dict[str, float]:
        """The server's CPU seconds so far, and the requests and connections it served."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/__stats")
            return dict(json.loads(conn.getresponse().read()))
        finally:
            conn.close()


# -- the clients -----------------------------------------------------------------------------


class Clients:
    """The clients under test, made (and closed) inside the running event loop."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Clients:
        import aiohttp

        import waygpt

        self.sdk = waygpt.AsyncWayGPTClient(
            api_url=self.url, project_key=PROJECT_KEY, timeout=TIMEOUT
        )
        self.session = aiohttp.ClientSession()
        # What the SDK passes on each request (total: what is left of the call's deadline).
        self.read_timeout = aiohttp.ClientTimeout(
            total=TIMEOUT, sock_connect=TIMEOUT, sock_read=TIMEOUT
        )
        try:
            import openai
        except ImportError:  # the bench extra is not installed: no openai figures
            self.openai: Any = None
        else:
            self.openai = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="sk-bench")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sdk.close()
        await self.session.close()
        if self.openai is not None:
            await self.openai.close()

    # -- small requests

    def models(self) -> Dict[str, Call]:
        session, url, timeout = self.session, self.url + MODELS_PATH, self.read_timeout
        headers = {"x-project-key": PROJECT_KEY, "Accept": "application/json"}

        async def bare() -> Any:
            async with session.get(url, headers=headers) as resp:
                return await resp.json()

        async def bare_timeout() -> Any:
            async with session.get(url, headers=headers, timeout=timeout) as resp:
                return await resp.json()

        calls: Dict[str, Call] = {"bare": bare, "bare_timeout": bare_timeout,
                                  "sdk": self.sdk.get_models}
        if self.openai is not None:
            calls["openai"] = self.openai.models.list
        return calls

    def chat(self) -> Dict[str, Call]:
        session, url, sdk, oai = self.session, self.url + CHAT_PATH, self.sdk, self.openai
        timeout = self.read_timeout
        headers = {"x-project-key": PROJECT_KEY, "Accept": "application/json"}
        body = {"model": "auto", "messages": MESSAGES}

        async def bare() -> Any:
            async with session.post(url, json=body, headers=headers) as resp:
                return await resp.json()

        async def bare_timeout() -> Any:
            async with session.post(url, json=body, headers=headers, timeout=timeout) as resp:
                return await resp.json()

        async def sdk_call() -> Any:
            return await sdk.chat_completions(messages=MESSAGES)

        calls: Dict[str, Call] = {"bare": bare, "bare_timeout": bare_timeout, "sdk": sdk_call}
        if oai is not None:

            async def openai_call() -> Any:
                return await oai.chat.completions.create(model="auto", messages=MESSAGES)

            calls["openai"] = openai_call
        return calls

    # -- streams: each returns the number of events read

    def streams(self, events: int, openai_events: int) -> Dict[str, Callable[[], Awaitable[int]]]:
        """Loops reading one stream each (openai's stream has ``openai_events`` events)."""
        session, url, sdk, oai = self.session, self.url + CHAT_PATH, self.sdk, self.openai
        headers = {"x-project-key": PROJECT_KEY, "Accept": "text/event-stream"}
        body = {"model": "auto", "messages": MESSAGES, "stream": True, "bench_events": events}

        async def bare() -> int:
            count = 0
            async with session.post(url, json=body, headers=headers) as resp:
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        data = line[6:]
                        if data.startswith(b"[DONE]"):
                            break
                        json.loads(data)
                        count += 1
            return count

        async def sdk_stream() -> int:
            count = 0
            stream = await sdk.chat_completions_stream(messages=MESSAGES, bench_events=events)
            async with stream:
                async for _chunk in stream:
                    count += 1
            return count

        loops: Dict[str, Callable[[], Awaitable[int]]] = {"bare": bare, "sdk": sdk_stream}
        if oai is not None:

            async def openai_stream() -> int:
                count = 0
                stream = await oai.chat.completions.create(
                    model="auto", messages=MESSAGES, stream=True,
                    extra_body={"bench_events": openai_events},
                )
                async with stream:
                    async for _chunk in stream:
                        count += 1
                return count

            loops["openai"] = openai_stream
        return loops


# -- measuring -------------------------------------------------------------------------------


class Meter:
    """Client CPU, wall time and the server's CPU over one measurement."""

    def __init__(self, server: AioServer) -> None:
        self.server = server
        self.server_cores: List[float] = []  # server CPU seconds per wall second, each round

    async def measure(self, work: Callable[[], Awaitable[int]]) -> Tuple[float, int]:
        """Client CPU seconds spent by ``work`` and the units of work it reports."""
        gc.collect()
        before = self.server.stats()["cpu"]  # a blocking call, outside the timed part
        wall = time.perf_counter()
        started = time.process_time()
        units = await work()
        cpu = time.process_time() - started
        wall = time.perf_counter() - wall
        self.server_cores.append((self.server.stats()["cpu"] - before) / wall)
        return cpu, units


def _spread(fn: Call, calls: int, concurrency: int) -> Callable[[], Awaitable[int]]:
    """``calls`` calls of ``fn`` by ``concurrency`` tasks, each making its share in turn."""
    share = calls // concurrency

    async def worker() -> None:
        for _ in range(share):
            await fn()

    async def work() -> int:
        if concurrency == 1:
            await worker()
        else:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return share * concurrency

    return work


def _parallel_streams(loop: Callable[[], Awaitable[int]], streams: int,
                      events: int) -> Callable[[], Awaitable[int]]:
    async def work() -> int:
        counts = await asyncio.gather(*(loop() for _ in range(streams)))
        if any(count != events for count in counts):
            raise RuntimeError(f"expected {events} events per stream, got {counts}")
        return sum(counts)

    return work


async def _rounds(meter: Meter, works: Dict[str, Callable[[], Awaitable[int]]],
                  rounds: int) -> Dict[str, List[float]]:
    """CPU seconds per unit of work, each round, for each client (their order rotating)."""
    names = list(works)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names[index % len(names):] + names[: index % len(names)]:
            cpu, units = await meter.measure(works[name])
            samples[name].append(cpu / units)
    return samples


def _summary(samples: Dict[str, List[float]], scale: float) -> Dict[str, Any]:
    """Medians (times ``scale``), the SDK's ratios to each peer, and the rounds' spread."""
    median = {name: statistics.median(values) for name, values in samples.items()}
    out: Dict[str, Any] = {name: round(value * scale, 3) for name, value in median.items()}
    rounds = len(samples["sdk"])
    for peer in ("bare", "bare_timeout", "openai"):
        if peer in median:
            out[f"sdk_over_{peer}"] = round(median["sdk"] / median[peer], 3)
            per_round = [samples["sdk"][i] / samples[peer][i] for i in range(rounds)]
            out[f"sdk_over_{peer}_range"] = [round(min(per_round), 3), round(max(per_round), 3)]
    out["samples"] = {name: [round(v * scale, 3) for v in values]
                      for name, values in samples.items()}
    return out


async def _small_requests(results: Dict[str, Any], meter: Meter, clients: Clients,
                          mode: str, concurrency: int, count: int, rounds: int) -> None:
    for kind, calls in (("models", clients.models()), ("chat", clients.chat())):
        for fn in calls.values():  # warm-up: the connections open, caches filled
            await _spread(fn, max(100, 3 * concurrency), concurrency)()
        print(f"async {kind}, {mode} ...", file=sys.stderr, flush=True)
        works = {name: _spread(fn, count, concurrency) for name, fn in calls.items()}
        samples = await _rounds(meter, works, rounds)
        results[f"{kind}_{mode}"] = figures = dict(
            _summary(samples, 1e6), calls_per_round=count, rounds=rounds,
            concurrency=concurrency,
        )
        if "bare_timeout" in samples:  # what sock_read costs bare aiohttp, per call
            extra = [t - b for t, b in zip(samples["bare_timeout"], samples["bare"])]
            figures["read_timeout_us"] = round(statistics.median(extra) * 1e6, 1)


async def _run(url: str, server: AioServer, profile: Dict[str, int]) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    meter = Meter(server)
    rounds = profile["rounds"]
    # Sequential calls first, on clients that never had more than one connection open:
    # httpx (under openai) scans its whole pool on every request, so after 64-way calls
    # its sequential calls would cost it twice as much.
    async with Clients(url) as clients:
        await _small_requests(results, meter, clients, "sequential", 1,
                              profile["sequential"], rounds)
    async with Clients(url) as clients:
        await _small_requests(results, meter, clients, f"{CONCURRENCY}_tasks", CONCURRENCY,
                              profile["concurrent"], rounds)
        print(f"async streams, {STREAMS} at once ...", file=sys.stderr, flush=True)
        events = profile["events"]
        # openai reads a few thousand events per CPU second: a shorter stream keeps the run
        # short and changes its rate by well under 1 % (one request per stream).
        openai_events = events // OPENAI_SHARE
        expected = {"bare": events, "sdk": events, "openai": openai_events}
        for loop in clients.streams(200, 200).values():  # warm-up
            await _parallel_streams(loop, STREAMS, 200)()
        works = {name: _parallel_streams(loop, STREAMS, expected[name])
                 for name, loop in clients.streams(events, openai_events).items()}
        samples = await _rounds(meter, works, profile["stream_rounds"])
        rates = {name: [1 / value for value in values] for name, values in samples.items()}
        stream = _summary(rates, 1.0)  # events per CPU second: SDK over peer, as rates
        stream.update(streams=STREAMS, events_per_stream=events,
                      openai_events_per_stream=openai_events, rounds=profile["stream_rounds"])
        for name in rates:
            stream[name] = round(statistics.median(rates[name]))
        results["stream"] = stream
    results["server_cores_max"] = round(max(meter.server_cores), 3)
    results["server_cores_median"] = round(statistics.median(meter.server_cores), 3)
    return results


def run(quick: bool = False) -> Dict[str, Any]:
    """Run the async benchmark; return its figures."""
    import aiohttp

    import waygpt

    profile = PROFILES["quick" if quick else "full"]
    results: Dict[str, Any] = {"profile": "quick" if quick else "full"}
    versions = {"aiohttp": aiohttp.__version__, "waygpt": waygpt.__version__}
    try:
        import openai
    except ImportError:
        versions["openai"] = "not installed"
    else:
        versions["openai"] = openai.__version__
    results["versions"] = versions
    started = time.monotonic()
    with AioServer() as server:
        results.update(asyncio.run(_run(server.url, server, profile)))
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


# -- report ----------------------------------------------------------------------------------

Row = Tuple[str, str, str, str, str, str, str, str]


def _num(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10000 or (digits == 0 and abs(value) >= 1000):
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_rows(results: Dict[str, Any]) -> List[Row]:
    """(metric, SDK, bare, SDK / bare, openai, SDK / openai, goal, result) rows."""
    rows: List[Row] = []
    labels = {"models": "get_models()", "chat": "chat_completions()"}
    for kind in ("models", "chat"):
        for mode, label in (("sequential", "sequential"), (f"{CONCURRENCY}_tasks",
                                                           f"{CONCURRENCY} tasks")):
            fig = results[f"{kind}_{mode}"]
            vs_bare, vs_openai = fig["sdk_over_bare"], fig.get("sdk_over_openai")
            missed = []
            if vs_bare > GOAL_VS_BARE:
                missed.append("bare")
            if vs_openai is not None and vs_openai > GOAL_VS_OPENAI:
                missed.append("openai")
            rows.append((
                f"async CPU per {labels[kind]} (us), {label}",
                _num(fig["sdk"]), _num(fig["bare"]), _ratio(vs_bare),
                _num(fig.get("openai")), _ratio(vs_openai),
                f"<= {GOAL_VS_BARE:.2f}x bare, <= {GOAL_VS_OPENAI:.2f}x openai",
                "pass" if not missed else "FAIL (" + ", ".join(missed) + ")",
            ))
            if "bare_timeout" in fig:  # a reference: bare aiohttp with the same guarantee
                rows.append((
                    f"  same, bare + read timeout ({fig['read_timeout_us']:+.1f} us for bare)",
                    _num(fig["sdk"]), _num(fig["bare_timeout"]),
                    _ratio(fig["sdk_over_bare_timeout"]), "-", "-", "-", "-",
                ))
    stream = results["stream"]
    rows.append((
        f"async stream events per CPU s, {stream['streams']} streams",
        _num(stream["sdk"], 0), _num(stream["bare"], 0), _ratio(stream["sdk_over_bare"]),
        _num(stream.get("openai"), 0), _ratio(stream.get("sdk_over_openai")),
        f">= {GOAL_STREAM:.2f}x bare",
        "pass" if stream["sdk_over_bare"] >= GOAL_STREAM else "FAIL",
    ))
    cores = results["server_cores_max"]
    rows.append((
        "async server CPU while measuring (cores, max)",
        _num(cores, 2), "-", "-", "-", "-", "< 1 core", "pass" if cores < 1 else "FAIL",
    ))
    return rows


def render(rows: List[Row]) -> str:
    header: Row = ("metric", "SDK", "bare aiohttp", "SDK / bare", "openai", "SDK / openai",
                   "goal", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    results = run(args.quick)
    rows = table_rows(results)
    v = results["versions"]
    print(f"waygpt {v['waygpt']}, aiohttp {v['aiohttp']}, openai {v['openai']}, "
          f"{results['profile']} run in {results['seconds']} s")
    print(render(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
    return 0 if all(not row[7].startswith("FAIL") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
