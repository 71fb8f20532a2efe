"""The SDK against bare ``requests``/``aiohttp`` code and the ``openai`` SDK, in one run.

    python benchmarks/run.py                  # the full run (about four minutes)
    python benchmarks/run.py --quick          # fewer rounds, about two minutes
    python benchmarks/run.py --only sync      # or: --only async, --only batch
    python benchmarks/run.py --json out.json  # default: benchmarks/results.json
    python benchmarks/run.py --markdown       # the table as Markdown too

One server (``server.py``) runs in a child process on 127.0.0.1. Each measurement times,
in the same rounds (``harness.rotate``), the SDK's call, the hand-written ``requests`` or
``aiohttp`` code doing the same work ("bare") and the ``openai`` SDK's call (``pip install
-e ".[bench]"``; without it its columns show "-"), as client CPU time per call or per event.
Each measurement is a *group* of named *samples* (``groups[name]["samples"][sample]``, one
figure per round); each line of the table is a ``Row`` naming its group, the sample shown
as the SDK's, the samples it is compared with, and its goals. The run exits with status 1
when a goal is missed. docs/performance.md says what each row means.

Adding a row takes a few lines. "A call with one event hook", for instance:

1. in ``measure_sync``, make the client and add its call to the group it is compared in,
   so that it is timed in the same rounds::

       hooked = stack.enter_context(sdk_client(url, event_hooks=...))
       small["sdk_hook"] = hooked.get_models

2. add its line to ``ROWS``, against the bare session and openai like the SDK's own row, or
   against the SDK without the hook by a derived sample as ``hmac_extra`` is made::

       Row("CPU per get_models(), one event hook (us)", "get_models()", "sdk_hook",
           goals=(("bare", "<=", 0.60),)),

"A call with OpenTelemetry on" is the same, with a client whose session is instrumented.
The row's figures, ratios, goal check and JSON come with it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
import tracemalloc
from functools import partial
from typing import Any, Awaitable, Callable, Dict, List, NamedTuple, Optional, Tuple

import harness
import requests
import urllib3
from harness import (
    CHAT_PATH,
    MESSAGES,
    MODELS_PATH,
    PROJECT_KEY,
    TIMEOUT,
    bench,
    count_sse_events,
    expect,
    median,
    repeat,
    rotate,
    sdk_client,
    sdk_stream,
)

import waygpt

try:  # the peer a user would pick instead (the bench extra); without it, "-"
    import openai
except ImportError:
    openai = None  # type: ignore[assignment]

PROFILES = {
    "full": {"calls": 1000, "rounds": 11, "stream_events": 2000, "stream_rounds": 7,
             "async_sequential": 400, "async_concurrent": 1280, "async_rounds": 9,
             "async_events": 800, "async_stream_rounds": 7, "batch_rounds": 5},
    "quick": {"calls": 300, "rounds": 7, "stream_events": 1000, "stream_rounds": 5,
              "async_sequential": 200, "async_concurrent": 640, "async_rounds": 5,
              "async_events": 500, "async_stream_rounds": 5, "batch_rounds": 3},
}
OPENAI_SHARE = 4  # openai makes a quarter of the calls and reads streams a quarter as long
# The streams whose CPU per event is measured come at model speed: one event per write and a
# pause after it longer than the client takes to read it, so that each read returns one
# event. One sync stream at a time: 0.2 ms (the server's loop blocked meanwhile). 16 async
# streams at once: 1 ms, each waiting on the server's loop (which cannot time less than 1 ms).
PACE = 0.0002
ASYNC_PACE = 0.001
MEMORY_EVENTS = 200_000
SEQUENTIAL_CALLS = 1000
LATENCY_EVENTS = 200
LATENCY_INTERVAL = 0.005  # seconds between two timed events
CONCURRENCY = 64
STREAMS = 16
BATCH_CHATS = 2000  # waygpt.batch against a ThreadPoolExecutor loop: chats per run ...
BATCH_CONCURRENCY = 32  # ... and threads
BATCH_MEMORY_LINES = 100_000  # the memory run: lines of input ...
BATCH_MEMORY_TEXT = 1000  # ... each with a message of this many characters (about 110 MB)
HEADERS = {"x-project-key": PROJECT_KEY, "Accept": "application/json"}
STREAM_HEADERS = {"x-project-key": PROJECT_KEY, "Accept": "text/event-stream"}


def _in(groups: Dict[str, Any], name: str, unit: str, samples: Dict[str, List[float]]) -> None:
    groups[name] = {"unit": unit, "samples": {k: [round(v, 3) for v in vs]
                                              for k, vs in samples.items()}}


def _per_call(samples: Dict[str, List[float]]) -> Dict[str, List[float]]:
    return {name: [v * 1e6 for v in values] for name, values in samples.items()}


def _per_second(samples: Dict[str, List[float]]) -> Dict[str, List[float]]:
    return {name: [1 / v for v in values] for name, values in samples.items()}


def _difference(samples: Dict[str, List[float]], more: str, less: str) -> List[float]:
    return [a - b for a, b in zip(samples[more], samples[less])]


# -- the sync client: requests ------------------------------------------------------------------


def _bare_stream(session: requests.Session, url: str, options: Dict[str, Any],
                 on_event: Optional[Callable[[Any], None]] = None) -> int:
    count = 0
    body = {"model": "auto", "messages": MESSAGES, "stream": True, "bench": options}
    with session.post(url + CHAT_PATH, json=body, headers=STREAM_HEADERS, stream=True,
                      timeout=TIMEOUT) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if on_event is not None:
                    on_event(chunk)
                count += 1
    return count


def _openai_stream(client: Any, options: Dict[str, Any]) -> int:
    count = 0
    with client.chat.completions.create(model="auto", messages=MESSAGES, stream=True,
                                        extra_body={"bench": options}) as stream:
        for _chunk in stream:
            count += 1
    return count


def _rss() -> int:
    """The resident set size in bytes (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _memory(read: Callable[[Optional[Callable[[Any], None]]], int]) -> Tuple[float, float]:
    """MB: peak traced allocations over one stream, then RSS growth over another (untraced,
    as tracing costs memory, and sampled every 5000 events)."""
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    expect(lambda: read(None), MEMORY_EVENTS)()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    gc.collect()
    start = highest = _rss()
    seen = 0

    def on_event(_chunk: Any) -> None:
        nonlocal seen, highest
        seen += 1
        if seen % 5000 == 0:
            highest = max(highest, _rss())

    expect(lambda: read(on_event), MEMORY_EVENTS)()
    return (peak - baseline) / 2**20, (max(highest, _rss()) - start) / 2**20


def _p95_ms(read: Callable[[Callable[[Any], None]], int]) -> float:
    """The 95th percentile of the time from the server's write of an event to the loop."""
    latencies: List[float] = []
    read(lambda chunk: latencies.append(time.time() - chunk["t"]))
    latencies.sort()
    return latencies[int(0.95 * (len(latencies) - 1))] * 1000


def _no_hook(view: Any) -> None:
    """An event hook that does nothing: what the hook machinery itself costs."""


def _traced_client(stack: contextlib.ExitStack, url: str) -> Any:
    """A client whose calls are recorded as spans by an SDK TracerProvider (finished spans
    go to an exporter that drops them), or None without opentelemetry-sdk."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
    except ImportError:
        return None

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> Any:
            from opentelemetry.sdk.trace.export import SpanExportResult

            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Dropped()))
    client = stack.enter_context(sdk_client(url))
    client._tracer = provider.get_tracer("waygpt")  # as the global provider would give
    return client


def measure_sync(server: harness.Server, profile: Dict[str, int],
                 groups: Dict[str, Any]) -> None:
    url, rounds = server.url, profile["rounds"]
    with contextlib.ExitStack() as stack:
        session = stack.enter_context(requests.Session())
        sdk = stack.enter_context(sdk_client(url))
        signed = stack.enter_context(sdk_client(url, use_hmac=True))
        oai = openai.OpenAI(base_url=url + "/v1", api_key="sk-bench") if openai else None
        if oai is not None:
            stack.callback(oai.close)

        print("get_models() ...", file=sys.stderr, flush=True)
        calls = profile["calls"]
        small: Dict[str, Callable[[], Any]] = {
            "bare": lambda: session.get(url + MODELS_PATH, headers=HEADERS,
                                        timeout=TIMEOUT).json(),
            "sdk": sdk.get_models,
            "sdk_hmac": signed.get_models,
        }
        if oai is not None:
            small["openai"] = oai.models.list
        samples = _per_call(rotate({k: repeat(fn, calls if k != "openai" else
                                              calls // OPENAI_SHARE)
                                    for k, fn in small.items()}, rounds, server))
        samples["hmac_extra"] = _difference(samples, "sdk_hmac", "sdk")
        _in(groups, "get_models()", "us", samples)

        print("chat_completions() ...", file=sys.stderr, flush=True)
        calls = profile["calls"] // 2
        body = {"model": "auto", "messages": MESSAGES}
        chat: Dict[str, Callable[[], Any]] = {
            "bare": lambda: session.post(url + CHAT_PATH, json=body, headers=HEADERS,
                                         timeout=TIMEOUT).json(),
            "sdk": lambda: sdk.chat_completions(messages=MESSAGES),
        }
        if oai is not None:
            chat["openai"] = lambda: oai.chat.completions.create(model="auto",
                                                                 messages=MESSAGES)
        # The same call with one (empty) request and response hook, and with OpenTelemetry
        # spans recorded by the SDK's own TracerProvider (when opentelemetry-sdk is here).
        hooked = stack.enter_context(sdk_client(
            url, event_hooks={"request": [_no_hook], "response": [_no_hook]}))
        chat["sdk_hook"] = lambda: hooked.chat_completions(messages=MESSAGES)
        traced = _traced_client(stack, url)
        if traced is not None:
            chat["sdk_otel"] = lambda: traced.chat_completions(messages=MESSAGES)
        samples = _per_call(rotate({k: repeat(fn, calls if k != "openai" else
                                              calls // OPENAI_SHARE)
                                    for k, fn in chat.items()}, rounds, server))
        samples["hook_extra"] = _difference(samples, "sdk_hook", "sdk")
        if traced is not None:
            samples["otel_extra"] = _difference(samples, "sdk_otel", "sdk")
        _in(groups, "chat_completions()", "us", samples)

        print("connections ...", file=sys.stderr, flush=True)
        counts: Dict[str, List[float]] = {}
        for name, make in (("sdk", lambda: sdk_client(url)), ("bare", requests.Session)):
            before = server.stats()["connections"]
            with make() as client:
                repeat(client.get_models if name == "sdk" else lambda: client.get(
                    url + MODELS_PATH, headers=HEADERS, timeout=TIMEOUT).json(),
                    SEQUENTIAL_CALLS)()
            counts[name] = [server.stats()["connections"] - before]
        _in(groups, "connections", "count", counts)

        print("memory ...", file=sys.stderr, flush=True)
        long = bench(MEMORY_EVENTS)
        traced, rss = {}, {}
        for name, read in (("sdk", lambda each: sdk_stream(sdk, long, each)),
                           ("bare", lambda each: _bare_stream(session, url, long, each))):
            peak, growth = _memory(read)
            traced[name], rss[name] = [peak], [growth]
        _in(groups, "memory traced", "MB", traced)
        _in(groups, "memory rss", "MB", rss)

        events = profile["stream_events"]
        for framing in ("chunked", "close"):
            print(f"paced streams ({framing}) ...", file=sys.stderr, flush=True)
            options = bench(events, framing, PACE)
            short = bench(events // OPENAI_SHARE, framing, PACE)
            streams = {"sdk": expect(partial(sdk_stream, sdk, options), events),
                       "bare": expect(partial(_bare_stream, session, url, options), events)}
            if oai is not None:
                streams["openai"] = expect(partial(_openai_stream, oai, short),
                                           events // OPENAI_SHARE)
            samples = rotate(streams, profile["stream_rounds"], server)
            _in(groups, f"paced stream {framing}", "events/s", _per_second(samples))

            timed = bench(LATENCY_EVENTS, framing, LATENCY_INTERVAL)
            p95 = {name: [_p95_ms(read)] for name, read in (
                ("sdk", partial(sdk_stream, sdk, timed)),
                ("bare", partial(_bare_stream, session, url, timed)))}
            _in(groups, f"latency {framing}", "ms", p95)


# -- the async client: aiohttp ------------------------------------------------------------------


class AsyncClients:
    """The SDK, a bare ``aiohttp.ClientSession`` and ``AsyncOpenAI``, made in the loop."""

    async def open(self, url: str) -> AsyncClients:
        import aiohttp

        self.url = url
        self.sdk = harness.async_sdk_client(url)
        self.session = aiohttp.ClientSession()
        # What the SDK passes on each request (total: what is left of the call's deadline).
        self.read_timeout = aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=TIMEOUT,
                                                  sock_read=TIMEOUT)
        self.openai = (openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-bench")
                       if openai else None)
        return self

    async def close(self) -> None:
        await self.sdk.close()
        await self.session.close()
        if self.openai is not None:
            await self.openai.close()

    def calls(self, kind: str) -> Dict[str, Callable[[], Any]]:
        session, sdk, oai = self.session, self.sdk, self.openai
        method = "GET" if kind == "get_models()" else "POST"
        url = self.url + (MODELS_PATH if method == "GET" else CHAT_PATH)
        body = None if method == "GET" else {"model": "auto", "messages": MESSAGES}

        def bare(**timeout: Any) -> Callable[[], Any]:
            async def call() -> Any:
                async with session.request(method, url, json=body, headers=HEADERS,
                                           **timeout) as resp:
                    return await resp.json()

            return call

        calls: Dict[str, Callable[[], Any]] = {"bare": bare(),
                                               "bare_timeout": bare(timeout=self.read_timeout)}
        if method == "GET":
            calls["sdk"] = sdk.get_models
            if oai is not None:
                calls["openai"] = oai.models.list
        else:
            calls["sdk"] = lambda: sdk.chat_completions(messages=MESSAGES)
            if oai is not None:
                calls["openai"] = lambda: oai.chat.completions.create(model="auto",
                                                                      messages=MESSAGES)
        return calls

    def streams(self, events: int) -> Dict[str, Callable[[], Any]]:
        """Loops reading one paced stream each (openai's a quarter as long); the bare loop
        twice, as for the calls: with aiohttp's default timeout and with the SDK's."""
        session, url = self.session, self.url + CHAT_PATH
        options = bench(events, "chunked", ASYNC_PACE, "async")
        body = {"model": "auto", "messages": MESSAGES, "stream": True, "bench": options}

        def bare(**timeout: Any) -> Callable[[], Awaitable[int]]:
            async def read() -> int:
                async with session.post(url, json=body, headers=STREAM_HEADERS,
                                        **timeout) as resp:
                    return await count_sse_events(resp)

            return read

        async def openai_stream() -> int:
            count = 0
            short = bench(events // OPENAI_SHARE, "chunked", ASYNC_PACE, "async")
            stream = await self.openai.chat.completions.create(
                model="auto", messages=MESSAGES, stream=True, extra_body={"bench": short})
            async with stream:
                async for _chunk in stream:
                    count += 1
            return count

        loops = {"bare": bare(), "bare_timeout": bare(timeout=self.read_timeout),
                 "sdk": lambda: harness.async_sdk_stream(self.sdk, options)}
        if self.openai is not None:
            loops["openai"] = openai_stream
        return loops


def measure_async(server: harness.Server, profile: Dict[str, int],
                  groups: Dict[str, Any]) -> None:
    loop = asyncio.new_event_loop()
    try:
        # Sequential calls first, on clients that never had more than one connection open:
        # httpx (under openai) scans its whole pool on every request, so after 64-way calls
        # its sequential calls would cost it twice as much.
        for mode, tasks, calls in (("sequential", 1, profile["async_sequential"]),
                                   (f"{CONCURRENCY} tasks", CONCURRENCY,
                                    profile["async_concurrent"])):
            clients = loop.run_until_complete(AsyncClients().open(server.url))
            try:
                for kind in ("get_models()", "chat_completions()"):
                    print(f"async {kind}, {mode} ...", file=sys.stderr, flush=True)
                    works = {name: harness.in_tasks(loop, fn, calls, tasks)
                             for name, fn in clients.calls(kind).items()}
                    samples = _per_call(rotate(works, profile["async_rounds"], server))
                    samples["read_timeout"] = _difference(samples, "bare_timeout", "bare")
                    _in(groups, f"async {kind}, {mode}", "us", samples)
                if tasks > 1:
                    print(f"async paced streams, {STREAMS} at once ...", file=sys.stderr,
                          flush=True)
                    events = profile["async_events"]
                    works = {name: harness.streams_at_once(
                        loop, read, STREAMS, events // OPENAI_SHARE if name == "openai"
                        else events) for name, read in clients.streams(events).items()}
                    samples = rotate(works, profile["async_stream_rounds"], server)
                    per_second = _per_second(samples)
                    # what the read timeout costs bare aiohttp, in CPU us per event
                    per_second["read_timeout"] = _difference(_per_call(samples),
                                                             "bare_timeout", "bare")
                    _in(groups, "async paced streams", "events/s", per_second)
            finally:
                loop.run_until_complete(clients.close())
    finally:
        loop.close()


# -- waygpt.batch ------------------------------------------------------------------------------


def _batch_input(path: str, count: int, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({
                "custom_id": f"request-{index}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "auto", "messages": [{"role": "user", "content": text}]},
            }) + "\n")


def _bare_batch(client: Any, source: str, output: str) -> int:
    """What a user writes by hand: the requests read, a ThreadPoolExecutor calling the same
    client, a line written per answer."""
    with open(source, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    with concurrent.futures.ThreadPoolExecutor(BATCH_CONCURRENCY) as pool, \
            open(output, "w", encoding="utf-8") as out:
        answers = pool.map(lambda line: client.chat_completions(**line["body"]), lines)
        for line, answer in zip(lines, answers):
            out.write(json.dumps({"custom_id": line["custom_id"], "body": answer}) + "\n")
    return 1


def _sdk_batch(client: Any, source: str, output: str, count: int) -> int:
    summary = waygpt.batch(client, source, output, concurrency=BATCH_CONCURRENCY)
    if summary.succeeded != count:
        raise RuntimeError(f"the batch answered {summary.succeeded} of {count}: {summary}")
    return 1


def _peak_rss_growth(work: Callable[[], Any]) -> float:
    """MB: the highest RSS (sampled every 50 ms) during ``work``, over the RSS before it."""
    gc.collect()
    start = highest = _rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal highest
        while not done.wait(0.05):
            highest = max(highest, _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return (max(highest, _rss()) - start) / 2**20


def measure_batch(server: harness.Server, profile: Dict[str, int],
                  groups: Dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp, sdk_client(server.url) as client:
        source = os.path.join(tmp, "in.jsonl")
        outputs = {"sdk": os.path.join(tmp, "sdk.jsonl"), "bare": os.path.join(tmp, "bare.jsonl")}
        _batch_input(source, BATCH_CHATS, "benchmark")

        def clean() -> None:  # untimed, before each run: a batch resumes an existing output
            for path in outputs.values():
                if os.path.exists(path):
                    os.remove(path)

        print(f"batch of {BATCH_CHATS} ...", file=sys.stderr, flush=True)
        works: Dict[str, harness.Work] = {
            "sdk": partial(_sdk_batch, client, source, outputs["sdk"], BATCH_CHATS),
            "bare": partial(_bare_batch, client, source, outputs["bare"]),
        }
        samples = rotate(works, profile["batch_rounds"], server, settle=clean,
                         clock=time.perf_counter)
        _in(groups, "batch", "s", samples)

        print(f"batch memory, {BATCH_MEMORY_LINES:,} lines ...", file=sys.stderr, flush=True)
        big, out = os.path.join(tmp, "big.jsonl"), os.path.join(tmp, "big-out.jsonl")
        _batch_input(big, BATCH_MEMORY_LINES, "x" * BATCH_MEMORY_TEXT)
        rss = _peak_rss_growth(lambda: _sdk_batch(client, big, out, BATCH_MEMORY_LINES))
        # A rerun reads both files whole (the check, the output's answers) and sends nothing.
        gc.collect()
        tracemalloc.start()
        try:
            waygpt.batch(client, big, out)
            traced = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        _in(groups, "batch memory rss", "MB", {"sdk": [rss],
                                               "input": [os.path.getsize(big) / 2**20]})
        _in(groups, "batch memory traced", "MB", {"sdk": [traced / 2**20]})


# -- the table ----------------------------------------------------------------------------------

Goal = Tuple[Optional[str], str, float]  # (compared with: a sample or None, op, limit)


class Row(NamedTuple):
    """A line of the table: the ``sdk`` sample of ``group``, its ratios to ``bare`` and
    ``openai`` (None: no column), its goals on those ratios or, with None, on its value."""

    label: str
    group: str
    sdk: str = "sdk"
    bare: Optional[str] = "bare"
    openai: Optional[str] = "openai"
    goals: Tuple[Goal, ...] = ()
    note: Optional[str] = None  # a sample of the group whose median the label shows
    note_unit: Optional[str] = None  # its unit, when not the group's


SYNC_GOALS: Tuple[Goal, ...] = (("bare", "<=", 0.60), ("openai", "<=", 0.50))
ASYNC_GOALS: Tuple[Goal, ...] = (("bare", "<=", 1.15), ("openai", "<=", 0.40))
# On a paced stream the SDK costs about what the bare loop costs per event, and at most a
# third of what openai costs
STREAM_GOALS: Tuple[Goal, ...] = (("bare", ">=", 0.90), ("openai", ">=", 3.0))
ROWS: List[Row] = [
    Row("CPU per get_models() (us)", "get_models()", goals=SYNC_GOALS),
    Row("CPU per chat_completions() (us)", "chat_completions()", goals=SYNC_GOALS),
    Row("HMAC signing, extra CPU per request (us)", "get_models()", "hmac_extra", None, None,
        ((None, "<", 50),)),
    Row("one event hook (request, response), extra CPU per chat call (us)",
        "chat_completions()", "hook_extra", None, None, ((None, "<", 20),)),
    Row("OpenTelemetry spans on, extra CPU per chat call (us)", "chat_completions()",
        "otel_extra", None, None),
    Row("paced stream events per CPU s (chunked)", "paced stream chunked",
        goals=STREAM_GOALS),
    Row("paced stream events per CPU s (close)", "paced stream close", goals=STREAM_GOALS),
    Row("write -> yield p95 latency, ms (chunked)", "latency chunked", openai=None,
        goals=((None, "<", 10),)),
    Row("write -> yield p95 latency, ms (close)", "latency close", openai=None,
        goals=((None, "<", 10),)),
    Row(f"peak traced memory, {MEMORY_EVENTS:,} events (MB)", "memory traced", openai=None,
        goals=((None, "<", 10),)),
    Row(f"RSS growth, {MEMORY_EVENTS:,} events (MB)", "memory rss", openai=None,
        goals=((None, "<", 10),)),
    Row(f"TCP connections for {SEQUENTIAL_CALLS} sequential calls", "connections",
        openai=None, goals=((None, "==", 1),)),
]
for _kind in ("get_models()", "chat_completions()"):
    for _mode in ("sequential", f"{CONCURRENCY} tasks"):
        ROWS += [
            Row(f"async CPU per {_kind} (us), {_mode}", f"async {_kind}, {_mode}",
                goals=ASYNC_GOALS),
            Row("  same, bare + read timeout", f"async {_kind}, {_mode}", bare="bare_timeout",
                openai=None, note="read_timeout"),
        ]
ROWS += [
    Row(f"async paced stream events per CPU s, {STREAMS} streams", "async paced streams",
        goals=STREAM_GOALS),
    Row("  same, bare + read timeout", "async paced streams", bare="bare_timeout",
        openai=None, note="read_timeout", note_unit="us per event"),
    Row(f"waygpt.batch, {BATCH_CHATS:,} chats, {BATCH_CONCURRENCY} threads: wall s "
        "(bare: ThreadPoolExecutor)", "batch", openai=None, goals=(("bare", "<=", 1.20),)),
    Row(f"waygpt.batch, {BATCH_MEMORY_LINES:,} lines of 1 KB: RSS growth (MB)",
        "batch memory rss", bare=None, openai=None, goals=((None, "<", 40),)),
    Row(f"waygpt.batch, rerun over {BATCH_MEMORY_LINES:,} answered lines: peak traced (MB)",
        "batch memory traced", bare=None, openai=None, goals=((None, "<", 40),)),
    Row("server CPU while measuring (cores, max)", "server", "max", None, None,
        ((None, "<", 1),)),
]
HEADER = ("metric", "SDK", "bare", "SDK / bare", "openai", "SDK / openai", "goal", "result")
_DIGITS = {"us": 1, "events/s": 0, "ms": 2, "MB": 2, "count": 0, "core": 2, "s": 3}
_RATIOS = ("us", "events/s", "s")  # CPU and wall times; the others are compared by value
_OPS: Dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


def _num(value: Optional[float], digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if digits == 0 or value >= 1e4 else f"{value:.{digits}f}"


def table(groups: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The rows whose group was measured, as dicts: HEADER's cells, and each ratio's range
    over the rounds."""
    out = []
    for row in ROWS:
        if row.sdk not in groups.get(row.group, {}).get("samples", {}):
            continue
        unit, samples = groups[row.group]["unit"], groups[row.group]["samples"]
        value = median(samples[row.sdk])
        cells: Dict[str, Any] = {"metric": row.label, "SDK": _num(value, _DIGITS[unit])}
        if row.note:
            cells["metric"] += (f" ({median(samples[row.note]):+.1f} "
                                f"{row.note_unit or unit} for bare)")
        ratios: Dict[str, float] = {}
        for column, peer in (("bare", row.bare), ("openai", row.openai)):
            cells[column] = cells[f"SDK / {column}"] = "-"
            if peer is not None and peer in samples:
                cells[column] = _num(median(samples[peer]), _DIGITS[unit])
            if peer is not None and peer in samples and unit in _RATIOS:
                ratios[column] = value / median(samples[peer])
                cells[f"SDK / {column}"] = f"{ratios[column]:.2f}x"
                rounds = [a / b for a, b in zip(samples[row.sdk], samples[peer])]
                cells[f"SDK / {column} range"] = [round(min(rounds), 3), round(max(rounds), 3)]
        goals, missed, checked = [], [], False
        for against, op, limit in row.goals:
            if against is None:
                goals.append(f"{limit:g}" if op == "==" else f"{op} {limit:g} {unit}")
                checked = True
                if not _OPS[op](value, limit):
                    missed.append("")
            else:
                goals.append(f"{op} {limit:.2f}x {against}")
                if against in ratios:
                    checked = True
                    if not _OPS[op](ratios[against], limit):
                        missed.append(against)
        named = ", ".join(m for m in missed if m)
        cells["goal"] = ", ".join(goals) or "-"
        cells["result"] = ("-" if not checked else "FAIL" + (f" ({named})" if named else "")
                           if missed else "pass")
        out.append(cells)
    return out


def _environment() -> Dict[str, Any]:
    versions = {"python": platform.python_version(), "platform": platform.platform(),
                "cpus": os.cpu_count(), "waygpt": waygpt.__version__,
                "requests": requests.__version__, "urllib3": urllib3.__version__,
                "openai": getattr(openai, "__version__", "not installed")}
    try:
        import aiohttp
    except ImportError:
        versions["aiohttp"] = "not installed"
    else:
        versions["aiohttp"] = aiohttp.__version__
    return versions


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about two minutes)")
    parser.add_argument("--only", choices=("sync", "async", "batch"),
                        help="run only the sync or the async client's rows, or waygpt.batch's")
    parser.add_argument("--json", metavar="FILE", help="where to write the figures (default: "
                        "benchmarks/results.json)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown too")
    args = parser.parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    env = _environment()
    groups: Dict[str, Any] = {}
    started = time.monotonic()
    with harness.Server() as server:
        if args.only in (None, "sync"):
            measure_sync(server, profile, groups)
        if args.only in (None, "async"):
            measure_async(server, profile, groups)
        if args.only in (None, "batch"):
            measure_batch(server, profile, groups)
        _in(groups, "server", "core", {"max": [max(server.cores)]})
    seconds = round(time.monotonic() - started, 1)
    rows = table(groups)
    print(f"waygpt {env['waygpt']}, Python {env['python']}, requests {env['requests']}, "
          f"urllib3 {env['urllib3']}, aiohttp {env['aiohttp']}, openai {env['openai']}, "
          f"{env['cpus']} CPUs, {'quick' if args.quick else 'full'} run in {seconds} s")
    print("bare: requests.Session for the sync rows, aiohttp.ClientSession for the async rows; "
          "bare + read timeout: the same aiohttp calls with the SDK's ClientTimeout")
    cells = [[row[c] for c in HEADER] for row in rows]
    print(harness.render(HEADER, cells))
    if args.markdown:
        print("\n" + harness.render(HEADER, cells, markdown=True))
    harness.write_json(args.json or os.path.join(harness.HERE, "results.json"), {
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "profile": "quick" if args.quick else "full", "seconds": seconds,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"), "environment": env,
        "table": rows, "groups": groups,
    })
    return 1 if any(row["result"].startswith("FAIL") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
