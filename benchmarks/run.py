"""The SDK against a bare ``requests.Session``, side by side, in one run.

    python benchmarks/run.py                  # the full run (a few minutes at most)
    python benchmarks/run.py --quick          # fewer rounds, under a minute
    python benchmarks/run.py --json out.json  # default: benchmarks/results.json

A raw-socket HTTP/1.1 server (``bench_server.py``) runs in a child process, so none of its
work counts as client CPU time. Measured against it, for the SDK and for the hand-written
``requests`` code that does the same work:

1. client CPU time (``time.process_time``) per small request on a kept-alive connection:
   ``client.get_models()`` against ``session.get(url, headers=..., timeout=...).json()``;
2. the extra CPU time of HMAC signing (the same SDK call with ``use_hmac=True``);
3. streamed chat events per CPU second, and the time from the server's write to the loop
   receiving the event on chunked and on close-delimited bodies: ``bench_stream.run()``
   (it starts its own server process);
4. peak memory while streaming 200 000 events: Python allocations (``tracemalloc``) and,
   in a second pass without tracing, the growth of the resident set size;
5. TCP connections the server accepted for 1000 sequential calls.

Every figure is printed in one table (metric, SDK, bare, ratio, goal, pass/fail) and written
to a JSON file. The method is described in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests
import urllib3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import waygpt  # noqa: E402

try:  # the streaming figures come from the sibling benchmark, found through HERE
    import bench_stream
except ImportError:  # pragma: no cover - reported as "missing" in the table
    bench_stream = None  # type: ignore[assignment]

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
    "full": {"calls": 1000, "rounds": 15, "stream_events": 30_000, "stream_rounds": 5},
    "quick": {"calls": 300, "rounds": 7, "stream_events": 10_000, "stream_rounds": 3},
}


# -- the server process ----------------------------------------------------------------------


class BenchServer:
    """``bench_server.py`` in a child process; it stops when we close its stdin."""

    def __enter__(self) -> BenchServer:
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "bench_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

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


def bench_small_requests(url: str, calls: int, rounds: int) -> Dict[str, Any]:
    """CPU per ``get_models()`` for the bare session, the SDK, and the SDK with HMAC."""
    with requests.Session() as session, _sdk_client(url) as sdk, _sdk_client(
        url, use_hmac=True
    ) as signed:
        paths: Dict[str, Callable[[], Any]] = {
            "bare": _bare_get(session, url),
            "sdk": sdk.get_models,
            "sdk_hmac": signed.get_models,
        }
        for fn in paths.values():  # warm-up: connections open, caches filled
            for _ in range(200):
                fn()
        samples: Dict[str, List[float]] = {name: [] for name in paths}
        for _ in range(rounds):  # interleaved, so a disturbance hits every path alike
            for name, fn in paths.items():
                samples[name].append(_cpu_per_call(fn, calls))
    median = {name: statistics.median(values) for name, values in samples.items()}
    hmac_extra = statistics.median(
        h - s for h, s in zip(samples["sdk_hmac"], samples["sdk"])
    )
    return {
        "calls_per_round": calls,
        "rounds": rounds,
        "bare_us": round(median["bare"] * 1e6, 1),
        "sdk_us": round(median["sdk"] * 1e6, 1),
        "sdk_hmac_us": round(median["sdk_hmac"] * 1e6, 1),
        "ratio": round(median["sdk"] / median["bare"], 3),
        "hmac_extra_us": round(hmac_extra * 1e6, 1),
        "samples_us": {k: [round(v * 1e6, 1) for v in vs] for k, vs in samples.items()},
    }


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

Row = Tuple[str, str, str, str, str, str]


def _fmt(value: Optional[float], digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 10000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table_rows(results: Dict[str, Any]) -> List[Row]:
    rows: List[Row] = []

    def verdict(ok: Optional[bool]) -> str:
        return "-" if ok is None else ("pass" if ok else "FAIL")

    small = results["small_request"]
    rows.append((
        "CPU per small request (us)",
        _fmt(small["sdk_us"]), _fmt(small["bare_us"]), f"{small['ratio']:.2f}x",
        "<= 0.90x", verdict(small["ratio"] <= 0.90),
    ))
    rows.append((
        "HMAC signing, extra CPU per request (us)",
        _fmt(small["hmac_extra_us"]), "-", "-", "< 50 us",
        verdict(small["hmac_extra_us"] < 50),
    ))
    stream = results.get("stream")
    if stream:
        for framing in ("chunked", "close"):
            t = stream[f"throughput_{framing}"]
            rows.append((
                f"stream events per CPU s ({framing})",
                _fmt(t["sdk_events_per_cpu_s"], 0), _fmt(t["bare_events_per_cpu_s"], 0),
                f"{t['ratio']:.2f}x", ">= 1.15x", verdict(t["ratio"] >= 1.15),
            ))
        for framing in ("chunked", "close"):
            lat = stream[f"latency_{framing}"]
            sdk_p95, bare_p95 = lat["sdk"]["p95_ms"], lat["bare"]["p95_ms"]
            rows.append((
                f"write -> yield p95 latency, ms ({framing})",
                _fmt(sdk_p95, 2), _fmt(bare_p95, 2), "-", "< 10 ms", verdict(sdk_p95 < 10),
            ))
    else:
        rows.append(("streaming (bench_stream.run)", "missing", "-", "-", "-", "-"))
    mem = results["memory"]
    sdk_peak, bare_peak = mem["sdk"]["tracemalloc_peak_mb"], mem["bare"]["tracemalloc_peak_mb"]
    rows.append((
        f"peak traced memory, {mem['sdk']['events']:,} events (MB)",
        _fmt(sdk_peak, 2), _fmt(bare_peak, 2), "-", "< 10 MB", verdict(sdk_peak < 10),
    ))
    sdk_rss, bare_rss = mem["sdk"]["rss_growth_mb"], mem["bare"]["rss_growth_mb"]
    rows.append((
        f"RSS growth, {mem['sdk']['events']:,} events (MB)",
        _fmt(sdk_rss, 2), _fmt(bare_rss, 2), "-", "< 10 MB",
        verdict(None if sdk_rss is None else sdk_rss < 10),
    ))
    conns = results["connections"]
    rows.append((
        f"TCP connections for {conns['calls']} sequential calls",
        str(conns["sdk"]), str(conns["bare"]), "-", "1", verdict(conns["sdk"] == 1),
    ))
    return rows


def render(rows: List[Row], markdown: bool = False) -> str:
    header: Row = ("metric", "SDK", "bare requests", "SDK / bare", "goal", "result")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def run(quick: bool = False) -> Dict[str, Any]:
    profile = PROFILES["quick" if quick else "full"]
    results: Dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "profile": "quick" if quick else "full",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "waygpt": waygpt.__version__,
            "requests": requests.__version__,
            "urllib3": getattr(urllib3, "__version__", "?"),
        },
    }
    started = time.monotonic()
    with BenchServer() as server:
        print("small requests ...", file=sys.stderr, flush=True)
        results["small_request"] = bench_small_requests(
            server.url, profile["calls"], profile["rounds"]
        )
        print("connections ...", file=sys.stderr, flush=True)
        results["connections"] = bench_connections(server, SEQUENTIAL_CALLS)
        print("memory ...", file=sys.stderr, flush=True)
        results["memory"] = bench_memory(server.url, MEMORY_EVENTS)
    if bench_stream is not None:
        print("streaming (bench_stream.run) ...", file=sys.stderr, flush=True)
        results["stream"] = bench_stream.run(profile["stream_events"], profile["stream_rounds"])
    else:
        results["stream"] = None
    results["seconds"] = round(time.monotonic() - started, 1)
    results["table"] = [
        dict(zip(("metric", "sdk", "bare", "ratio", "goal", "result"), row))
        for row in table_rows(results)
    ]
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=os.path.join(HERE, "results.json"),
        help="where to write the figures (default: benchmarks/results.json)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown too"
    )
    args = parser.parse_args(argv)
    results = run(args.quick)
    rows = table_rows(results)
    env = results["environment"]
    print(
        f"waygpt {env['waygpt']}, Python {env['python']}, requests {env['requests']}, "
        f"urllib3 {env['urllib3']}, {env['cpus']} CPUs, {results['profile']} run "
        f"in {results['seconds']} s"
    )
    print(render(rows))
    if args.markdown:
        print()
        print(render(rows, markdown=True))
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    print(f"figures written to {args.json}")
    return 0 if all(row[5] != "FAIL" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
