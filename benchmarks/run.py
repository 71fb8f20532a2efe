"""The SDK against bare ``requests``/``aiohttp`` code and the ``openai`` SDK, in one run.

    python benchmarks/run.py                  # the full run (a few minutes at most)
    python benchmarks/run.py --quick          # fewer rounds, about a minute
    python benchmarks/run.py --only sync      # or: --only async
    python benchmarks/run.py --audit          # what each optimisation buys (audit.py)
    python benchmarks/run.py --json out.json  # default: benchmarks/results.json

A raw-socket HTTP/1.1 server (``bench_server.py``) runs in a child process, so none of its
work counts as client CPU time. Measured against it, for the sync SDK, for the hand-written
``requests`` code that does the same work and, where it applies, for the ``openai`` SDK's
sync client (default transport, ``base_url`` on the same server):

1. client CPU time (``time.process_time``) per small request on a kept-alive connection:
   ``client.get_models()`` against ``session.get(url, headers=..., timeout=...).json()``
   and ``openai.models.list()``; a small ``client.chat_completions()`` against
   ``session.post(url, json=..., ...).json()`` and ``chat.completions.create()``;
2. the extra CPU time of HMAC signing (the same SDK call with ``use_hmac=True``);
3. streamed chat events per CPU second, and the time from the server's write to the loop
   receiving the event on chunked and on close-delimited bodies: ``bench_stream.run()``
   (it starts its own server process);
4. peak memory while streaming 200 000 events: Python allocations (``tracemalloc``) and,
   in a second pass without tracing, the growth of the resident set size;
5. TCP connections the server accepted for 1000 sequential calls;
6. the async client against a bare ``aiohttp.ClientSession`` and ``openai.AsyncOpenAI``:
   ``bench_async.run()`` (it starts its own asyncio server process); per request, bare
   aiohttp is measured with its default timeout (the goal's reference) and, as a reference
   row, with the ``ClientTimeout(sock_read=...)`` the SDK passes ("bare + read timeout").

Every figure is printed in one table (metric, SDK, bare, ratio, openai, ratio, goal,
pass/fail) and written to a JSON file. The method is described in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests
import urllib3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from server_process import ServerProcess  # noqa: E402

import waygpt  # noqa: E402

try:  # the streaming figures come from the sibling benchmark, found through HERE
    import bench_stream
except ImportError:  # pragma: no cover - reported as "missing" in the table
    bench_stream = None  # type: ignore[assignment]

import bench_async  # noqa: E402 - found through HERE

try:  # the openai SDK, the peer a user would pick instead (the bench extra)
    import openai
except ImportError:  # its columns show "-"
    openai = None  # type: ignore[assignment]

PROJECT_KEY = "sk_live_bench_0000000000000000"
PROJECT_ID = "00000000-0000-4000-8000-0000000000be"
HMAC_SECRET = "bench-secret"  # a local benchmark server checks nothing
MODELS_PATH = "/api/v1/waygpt/models"
CHAT_PATH = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "benchmark"}]
MEMORY_EVENTS = 200_000
SEQUENTIAL_CALLS = 1000
MB = 1024 * 1024

# (small-request calls per round, rounds, stream events, stream rounds)
PROFILES = {
    "full": {"calls": 1000, "rounds": 11, "stream_events": 30_000, "stream_rounds": 5},
    "quick": {"calls": 300, "rounds": 7, "stream_events": 10_000, "stream_rounds": 3},
}
OPENAI_SHARE = 4  # openai makes calls / OPENAI_SHARE calls per round (it is 3 times slower)
GOAL_SMALL = 0.60  # SDK CPU per get_models() over the bare session's, at most
GOAL_HMAC_US = 50.0
GOAL_LATENCY_MS = 10.0
GOAL_MEMORY_MB = 10.0


# -- the server process ----------------------------------------------------------------------


class BenchServer(ServerProcess):
    """``bench_server.py`` in a child process."""

    def __init__(self) -> None:
        super().__init__([os.path.join(HERE, "bench_server.py")])

    def connections(self) -> int:
        """TCP connections that carried API requests so far (asking is not counted)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/__stats")
            return int(json.loads(conn.getresponse().read())["connections"])
        finally:
            conn.close()


# -- helpers -----------------------------------------------------------------------------------


def _sdk_client(url: str, use_hmac: bool = False) -> waygpt.WayGPTClient:
    return waygpt.WayGPTClient(
        api_url=url,
        project_key=PROJECT_KEY,
        project_id=PROJECT_ID,
        hmac_secret=HMAC_SECRET,
        use_hmac=use_hmac,
        timeout=60,
        max_retries=0,
    )


def _bare_get(session: requests.Session, url: str) -> Callable[[], Any]:
    headers = {"x-project-key": PROJECT_KEY, "Accept": "application/json"}
    target = url + MODELS_PATH

    def call() -> Any:
        return session.get(target, headers=headers, timeout=60).json()

    return call


def _cpu_per_call(fn: Callable[[], Any], calls: int) -> float:
    """Client CPU seconds per call over ``calls`` calls."""
    gc.collect()
    started = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - started) / calls


def _rss() -> Optional[int]:
    """The resident set size in bytes (Linux), or None where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# -- 1 and 2: small requests -----------------------------------------------------------------


def _bare_post(session: requests.Session, url: str) -> Callable[[], Any]:
    headers = {"x-project-key": PROJECT_KEY, "Accept": "application/json"}
    target = url + CHAT_PATH
    body = {"model": "auto", "messages": MESSAGES}

    def call() -> Any:
        return session.post(target, json=body, headers=headers, timeout=60).json()

    return call


def _openai_client(url: str) -> Any:
    """The ``openai`` SDK's sync client on the benchmark server (None if not installed)."""
    if openai is None:
        return None
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-bench")


def _interleaved(
    paths: Dict[str, Callable[[], Any]], calls: Dict[str, int], rounds: int
) -> Dict[str, List[float]]:
    """CPU seconds per call of each path, one round each in turn, ``rounds`` times."""
    for fn in paths.values():  # warm-up: connections open, caches filled
        for _ in range(200):
            fn()
    samples: Dict[str, List[float]] = {name: [] for name in paths}
    for _ in range(rounds):  # interleaved, so a disturbance hits every path alike
        for name, fn in paths.items():
            samples[name].append(_cpu_per_call(fn, calls[name]))
    return samples


def _figures(samples: Dict[str, List[float]], calls: Dict[str, int],
             rounds: int) -> Dict[str, Any]:
    median = {name: statistics.median(values) for name, values in samples.items()}
    out: Dict[str, Any] = {"calls_per_round": calls, "rounds": rounds}
    for name, value in median.items():
        out[f"{name}_us"] = round(value * 1e6, 1)
    out["ratio"] = round(median["sdk"] / median["bare"], 3)
    per_round = [s / b for s, b in zip(samples["sdk"], samples["bare"])]
    out["ratio_range"] = [round(min(per_round), 3), round(max(per_round), 3)]
    out["openai_us"] = round(median["openai"] * 1e6, 1) if "openai" in median else None
    out["sdk_over_openai"] = (
        round(median["sdk"] / median["openai"], 3) if "openai" in median else None
    )
    out["samples_us"] = {k: [round(v * 1e6, 1) for v in vs] for k, vs in samples.items()}
    return out


def bench_small_requests(url: str, calls: int, rounds: int) -> Dict[str, Any]:
    """CPU per ``get_models()`` for the bare session, the SDK, the SDK with HMAC and openai."""
    oai = _openai_client(url)
    try:
        with requests.Session() as session, _sdk_client(url) as sdk, _sdk_client(
            url, use_hmac=True
        ) as signed:
            paths: Dict[str, Callable[[], Any]] = {
                "bare": _bare_get(session, url),
                "sdk": sdk.get_models,
                "sdk_hmac": signed.get_models,
            }
            if oai is not None:
                paths["openai"] = oai.models.list
            counts = {name: calls for name in paths}
            counts["openai"] = max(1, calls // OPENAI_SHARE)
            samples = _interleaved(paths, counts, rounds)
    finally:
        if oai is not None:
            oai.close()
    result = _figures(samples, counts, rounds)
    hmac_extra = statistics.median(
        h - s for h, s in zip(samples["sdk_hmac"], samples["sdk"])
    )
    result["hmac_extra_us"] = round(hmac_extra * 1e6, 1)
    return result


def bench_small_chat(url: str, calls: int, rounds: int) -> Dict[str, Any]:
    """CPU per small non-streamed chat completion: bare session, SDK, openai."""
    oai = _openai_client(url)
    try:
        with requests.Session() as session, _sdk_client(url) as sdk:
            paths: Dict[str, Callable[[], Any]] = {
                "bare": _bare_post(session, url),
                "sdk": lambda: sdk.chat_completions(messages=MESSAGES),
            }
            if oai is not None:
                paths["openai"] = lambda: oai.chat.completions.create(
                    model="auto", messages=MESSAGES
                )
            counts = {name: calls for name in paths}
            counts["openai"] = max(1, calls // OPENAI_SHARE)
            samples = _interleaved(paths, counts, rounds)
    finally:
        if oai is not None:
            oai.close()
    return _figures(samples, counts, rounds)


# -- 4: memory while streaming ----------------------------------------------------------------


def _sdk_stream(client: waygpt.WayGPTClient, events: int, tick: Callable[[], None]) -> int:
    count = 0
    with client.chat_completions_stream(messages=MESSAGES, bench_events=events) as stream:
        for _chunk in stream:
            count += 1
            if count % 5000 == 0:
                tick()
    return count


def _bare_stream(session: requests.Session, url: str, events: int, tick: Callable[[], None]) -> int:
    count = 0
    body = {"model": "auto", "messages": MESSAGES, "stream": True, "bench_events": events}
    headers = {"x-project-key": PROJECT_KEY, "Accept": "text/event-stream"}
    with session.post(url + CHAT_PATH, json=body, headers=headers, stream=True, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                json.loads(data)
                count += 1
                if count % 5000 == 0:
                    tick()
    return count


def _measure_memory(consume: Callable[[Callable[[], None]], int], events: int) -> Dict[str, Any]:
    """Peak traced allocations in one pass, RSS growth in another (tracing costs memory)."""
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    count = consume(lambda: None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if count != events:
        raise RuntimeError(f"expected {events} events, got {count}")

    gc.collect()
    start_rss = _rss()
    highest = [start_rss or 0]

    def sample() -> None:
        highest[0] = max(highest[0], _rss() or 0)

    count = consume(sample)
    sample()
    if count != events:
        raise RuntimeError(f"expected {events} events, got {count}")
    return {
        "events": events,
        "tracemalloc_peak_mb": round((peak - baseline) / MB, 3),
        "rss_growth_mb": None if start_rss is None else round((highest[0] - start_rss) / MB, 3),
    }


def bench_memory(url: str, events: int) -> Dict[str, Any]:
    with requests.Session() as session, _sdk_client(url) as client:
        _sdk_stream(client, 1000, lambda: None)  # warm-up
        _bare_stream(session, url, 1000, lambda: None)
        return {
            "sdk": _measure_memory(lambda tick: _sdk_stream(client, events, tick), events),
            "bare": _measure_memory(lambda tick: _bare_stream(session, url, events, tick), events),
        }


# -- 5: connections ----------------------------------------------------------------------------


def bench_connections(server: BenchServer, calls: int) -> Dict[str, int]:
    result: Dict[str, int] = {"calls": calls}
    before = server.connections()
    with _sdk_client(server.url) as client:
        for _ in range(calls):
            client.get_models()
    after = server.connections()
    result["sdk"] = after - before
    with requests.Session() as session:
        call = _bare_get(session, server.url)
        for _ in range(calls):
            call()
    result["bare"] = server.connections() - after
    return result


# -- report ------------------------------------------------------------------------------------

# metric, SDK, bare, SDK / bare, openai, SDK / openai, goal, result
Row = Tuple[str, str, str, str, str, str, str, str]
HEADER: Row = ("metric", "SDK", "bare", "SDK / bare", "openai", "SDK / openai", "goal", "result")


def _fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10000 or (digits == 0 and abs(value) >= 1000):
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _x(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _verdict(ok: Optional[bool]) -> str:
    return "-" if ok is None else ("pass" if ok else "FAIL")


def sync_rows(results: Dict[str, Any]) -> List[Row]:
    rows: List[Row] = []
    small = results["small_request"]
    rows.append((
        "CPU per get_models() (us)",
        _fmt(small["sdk_us"]), _fmt(small["bare_us"]), _x(small["ratio"]),
        _fmt(small["openai_us"]), _x(small["sdk_over_openai"]),
        f"<= {GOAL_SMALL:.2f}x bare", _verdict(small["ratio"] <= GOAL_SMALL),
    ))
    chat = results.get("small_chat")
    if chat:
        rows.append((
            "CPU per chat_completions() (us)",
            _fmt(chat["sdk_us"]), _fmt(chat["bare_us"]), _x(chat["ratio"]),
            _fmt(chat["openai_us"]), _x(chat["sdk_over_openai"]), "-", "-",
        ))
    rows.append((
        "HMAC signing, extra CPU per request (us)",
        _fmt(small["hmac_extra_us"]), "-", "-", "-", "-", f"< {GOAL_HMAC_US:g} us",
        _verdict(small["hmac_extra_us"] < GOAL_HMAC_US),
    ))
    stream = results.get("stream")
    if stream:
        goal = bench_stream.GOAL_RATIO
        for framing in ("chunked", "close"):
            t = stream[f"throughput_{framing}"]
            rows.append((
                f"stream events per CPU s ({framing})",
                _fmt(t["sdk_events_per_cpu_s"], 0), _fmt(t["bare_events_per_cpu_s"], 0),
                _x(t["ratio"]), _fmt(t.get("openai_events_per_cpu_s"), 0),
                _x(t.get("sdk_over_openai")), f">= {goal:.2f}x bare",
                _verdict(t["ratio"] >= goal),
            ))
        for framing in ("chunked", "close"):
            lat = stream[f"latency_{framing}"]
            sdk_p95, bare_p95 = lat["sdk"]["p95_ms"], lat["bare"]["p95_ms"]
            rows.append((
                f"write -> yield p95 latency, ms ({framing})",
                _fmt(sdk_p95, 2), _fmt(bare_p95, 2), "-", "-", "-",
                f"< {GOAL_LATENCY_MS:g} ms", _verdict(sdk_p95 < GOAL_LATENCY_MS),
            ))
    else:
        rows.append(("streaming (bench_stream.run)", "missing", "-", "-", "-", "-", "-", "-"))
    mem = results["memory"]
    sdk_peak, bare_peak = mem["sdk"]["tracemalloc_peak_mb"], mem["bare"]["tracemalloc_peak_mb"]
    rows.append((
        f"peak traced memory, {mem['sdk']['events']:,} events (MB)",
        _fmt(sdk_peak, 2), _fmt(bare_peak, 2), "-", "-", "-", f"< {GOAL_MEMORY_MB:g} MB",
        _verdict(sdk_peak < GOAL_MEMORY_MB),
    ))
    sdk_rss, bare_rss = mem["sdk"]["rss_growth_mb"], mem["bare"]["rss_growth_mb"]
    rows.append((
        f"RSS growth, {mem['sdk']['events']:,} events (MB)",
        _fmt(sdk_rss, 2), _fmt(bare_rss, 2), "-", "-", "-", f"< {GOAL_MEMORY_MB:g} MB",
        _verdict(None if sdk_rss is None else sdk_rss < GOAL_MEMORY_MB),
    ))
    conns = results["connections"]
    rows.append((
        f"TCP connections for {conns['calls']} sequential calls",
        str(conns["sdk"]), str(conns["bare"]), "-", "-", "-", "1",
        _verdict(conns["sdk"] == 1),
    ))
    return rows


def table_rows(results: Dict[str, Any]) -> List[Row]:
    """Every row: the sync client's (bare = requests), then the async client's (bare = aiohttp)."""
    rows: List[Row] = []
    if results.get("small_request"):
        rows += sync_rows(results)
    if results.get("async"):
        rows += bench_async.table_rows(results["async"])
    return rows


def render(rows: List[Row], markdown: bool = False) -> str:
    header = HEADER
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _environment() -> Dict[str, Any]:
    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "waygpt": waygpt.__version__,
        "requests": requests.__version__,
        "urllib3": getattr(urllib3, "__version__", "?"),
        "openai": getattr(openai, "__version__", "not installed"),
    }
    try:
        import aiohttp
    except ImportError:
        env["aiohttp"] = "not installed"
    else:
        env["aiohttp"] = aiohttp.__version__
    return env


def run(quick: bool = False, only: Optional[str] = None) -> Dict[str, Any]:
    profile = PROFILES["quick" if quick else "full"]
    results: Dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "profile": "quick" if quick else "full",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "environment": _environment(),
    }
    started = time.monotonic()
    if only != "async":
        with BenchServer() as server:
            print("small requests ...", file=sys.stderr, flush=True)
            results["small_request"] = bench_small_requests(
                server.url, profile["calls"], profile["rounds"]
            )
            print("small chat completions ...", file=sys.stderr, flush=True)
            results["small_chat"] = bench_small_chat(
                server.url, profile["calls"] // 2, profile["rounds"]
            )
            print("connections ...", file=sys.stderr, flush=True)
            results["connections"] = bench_connections(server, SEQUENTIAL_CALLS)
            print("memory ...", file=sys.stderr, flush=True)
            results["memory"] = bench_memory(server.url, MEMORY_EVENTS)
        if bench_stream is not None:
            print("streaming (bench_stream.run) ...", file=sys.stderr, flush=True)
            results["stream"] = bench_stream.run(
                profile["stream_events"], profile["stream_rounds"]
            )
        else:
            results["stream"] = None
    if only != "sync":
        print("async client (bench_async.run) ...", file=sys.stderr, flush=True)
        results["async"] = bench_async.run(quick)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["table"] = [dict(zip(HEADER, row)) for row in table_rows(results)]
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument(
        "--only", choices=("sync", "async"), help="run only the sync or the async client's part"
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="measure what each optimisation buys instead (benchmarks/audit.py)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="where to write the figures (default: benchmarks/results.json, "
        "or benchmarks/results-audit.json with --audit)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown too"
    )
    args = parser.parse_args(argv)
    if args.audit:
        import audit

        return audit.main(
            (["--quick"] if args.quick else [])
            + ["--json", args.json or os.path.join(HERE, "results-audit.json")]
            + (["--markdown"] if args.markdown else [])
        )
    results = run(args.quick, args.only)
    rows = table_rows(results)
    env = results["environment"]
    print(
        f"waygpt {env['waygpt']}, Python {env['python']}, requests {env['requests']}, "
        f"urllib3 {env['urllib3']}, aiohttp {env['aiohttp']}, openai {env['openai']}, "
        f"{env['cpus']} CPUs, {results['profile']} run in {results['seconds']} s"
    )
    print("bare: requests.Session for the sync rows, aiohttp.ClientSession for the async rows; "
          "bare + read timeout: the same aiohttp calls with the SDK's ClientTimeout "
          "(total, sock_connect, sock_read)")
    print(render(rows))
    if args.markdown:
        print()
        print(render(rows, markdown=True))
    path = args.json or os.path.join(HERE, "results.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    print(f"figures written to {path}")
    return 0 if all(not row[7].startswith("FAIL") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
