"""Streaming benchmark: the SDK's chat stream against a bare ``requests`` loop and ``openai``.

Run it from the repository (the SDK must be importable, e.g. ``pip install -e .``)::

    python benchmarks/bench_stream.py                 # 30 000 events, prints a table
    python benchmarks/bench_stream.py --events 50000 --json stream.json

A small raw-socket server runs in a child process (so its work never counts as client CPU)
and streams OpenAI-like chat chunk events. Two things are measured:

* **Throughput**: client CPU time (``time.process_time``) to read the whole stream, for the
  SDK's ``chat_completions_stream`` loop and for the loop most hand-written clients use::

      for line in resp.iter_lines():
          if line.startswith(b"data: "):
              ... json.loads(line[6:]) ...

  reported as events per CPU second, best of a few rounds, and their ratio. The ``openai``
  SDK's sync client (its default transport), streaming from the same server, is measured
  the same way when it is installed (``pip install -e ".[bench]"``), on streams a fifth as
  long (it is some 30 times slower).
* **Latency**: the server stamps each event with the wall time of its write and sleeps a
  little between events; the client notes the wall time at which its loop receives the
  event. Measured on chunked and on close-delimited bodies (the latter is where a reader of
  fixed 512-byte blocks holds small events back).

``run(events)`` returns the same figures as a dict, for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from server_process import ServerProcess

DEFAULT_EVENTS = 30_000
LATENCY_EVENTS = 200
LATENCY_INTERVAL = 0.005  # seconds between two timed events
SERVER_LIFETIME = 600.0  # the child server exits after this long whatever happens
_PATH = "/api/v1/waygpt/chat/completions"

# -- the server (child process) ---------------------------------------------------------------

_WORDS = ("Hello", " there", ",", " how", " can", " I", " help", " you", " today", "?")


def chunk_json(index: int, stamp: Optional[float] = None) -> bytes:
    chunk: Dict[str, Any] = {
        "id": "chatcmpl-9bench0000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [
            {
                "index": 0,
                "delta": {"content": _WORDS[index % len(_WORDS)]},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    if stamp is not None:
        chunk["t"] = stamp
    return json.dumps(chunk, separators=(",", ":")).encode()


def _event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _read_request(reader: Any) -> Optional[Dict[str, Any]]:
    """The JSON body of the next request on a connection (None at EOF)."""
    line = reader.readline(65536)
    if not line:
        return None
    length = 0
    while True:
        header = reader.readline(65536)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = reader.read(length) if length else b"{}"
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    return parsed if isinstance(parsed, dict) else {}


def _serve_connection(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = conn.makefile("rb")
    try:
        while True:
            body = _read_request(reader)
            if body is None:
                return
            options = body.get("bench") or {}
            events = int(options.get("events", 10))
            framing = options.get("framing", "chunked")
            interval = float(options.get("interval", 0.0))
            chunked = framing == "chunked"
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\n"
                + (b"Transfer-Encoding: chunked\r\n" if chunked else b"Connection: close\r\n")
                + b"\r\n"
            )
            frame: Callable[[bytes], bytes] = _http_chunk if chunked else (lambda data: data)
            if interval > 0:  # timed events, one write each, stamped at the write
                conn.sendall(head)
                for index in range(events):
                    conn.sendall(frame(_event(chunk_json(index, time.time()))))
                    time.sleep(interval)
            else:  # as fast as possible: the body is built first, one HTTP chunk per event
                payloads = [chunk_json(i) for i in range(len(_WORDS))]
                parts = [head]
                parts.extend(frame(_event(payloads[i % len(payloads)])) for i in range(events))
                data = b"".join(parts)
                for start in range(0, len(data), 256 * 1024):
                    conn.sendall(data[start : start + 256 * 1024])
            conn.sendall(frame(b"data: [DONE]\n\n") + (b"0\r\n\r\n" if chunked else b""))
            if not chunked:
                return
    except OSError:
        return
    finally:
        reader.close()
        conn.close()


def serve(ready: Any = None) -> None:
    """Serve benchmark streams on 127.0.0.1; print the port, stop when stdin closes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"PORT {listener.getsockname()[1]}", flush=True)

    def accept_loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_serve_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    deadline = time.monotonic() + SERVER_LIFETIME
    # The parent holds our stdin open; when it exits or closes it, we stop.
    watcher = threading.Thread(target=sys.stdin.read, daemon=True)
    watcher.start()
    while watcher.is_alive() and time.monotonic() < deadline:
        watcher.join(0.5)
    listener.close()


def _server() -> ServerProcess:
    """The child server process (this file with ``--serve``), around a benchmark run."""
    return ServerProcess([os.path.abspath(__file__), "--serve"], "stream benchmark server")


# -- the clients ------------------------------------------------------------------------------

_MESSAGES = [{"role": "user", "content": "benchmark"}]


def _body(events: int, framing: str, interval: float = 0.0) -> Dict[str, Any]:
    bench = {"events": events, "framing": framing, "interval": interval}
    return {"model": "auto", "messages": _MESSAGES, "stream": True, "bench": bench}


def _sdk_loop(client: Any, body: Dict[str, Any], stamps: Optional[List[float]]) -> int:
    count = 0
    options = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
    with client.chat_completions_stream(model="auto", messages=_MESSAGES, **options) as stream:
        for chunk in stream:
            if stamps is not None:
                stamps.append(time.time() - chunk["t"])
            count += 1
    return count


def _bare_loop(session: Any, url: str, body: Dict[str, Any], stamps: Optional[List[float]]) -> int:
    count = 0
    headers = {"x-project-key": "sk_live_bench", "Accept": "text/event-stream"}
    with session.post(url + _PATH, json=body, headers=headers, stream=True, timeout=60) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                data = line[6:]
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if stamps is not None:
                    stamps.append(time.time() - chunk["t"])
                count += 1
    return count


def _openai_loop(client: Any, body: Dict[str, Any]) -> int:
    count = 0
    stream = client.chat.completions.create(
        model="auto", messages=_MESSAGES, stream=True, extra_body={"bench": body["bench"]}
    )
    with stream:
        for _chunk in stream:
            count += 1
    return count


def _openai_client(url: str) -> Any:
    """``openai.OpenAI`` on the benchmark server, or None when openai is not installed."""
    try:
        import openai
    except ImportError:
        return None
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-bench")


def _cpu(fn: Callable[[], int], expected: int) -> float:
    started = time.process_time()
    count = fn()
    spent = time.process_time() - started
    if count != expected:
        raise RuntimeError(f"expected {expected} events, got {count}")
    return spent


def _summary(latencies: List[float]) -> Dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3),
        "max_ms": round(ms[-1], 3),
    }


OPENAI_SHARE = 5  # the openai client reads streams of events / OPENAI_SHARE events
GOAL_RATIO = 1.3  # SDK events per CPU second over the bare loop's, at least
GOAL_LATENCY_MS = 10.0  # server write -> SDK yield, at most (p95)


def run(events: int = DEFAULT_EVENTS, rounds: int = 5) -> Dict[str, Any]:
    """Run the benchmark; return events per CPU second, their ratio, and latencies."""
    import requests

    import waygpt

    results: Dict[str, Any] = {"events": events, "rounds": rounds, "python": sys.version.split()[0]}
    with _server() as server, requests.Session() as session:
        with waygpt.WayGPTClient(
            api_url=server.url, project_key="sk_live_bench", max_retries=0, timeout=60
        ) as client:
            oai = _openai_client(server.url)
            try:
                _measure(results, server.url, session, client, events, rounds, oai)
            finally:
                if oai is not None:
                    oai.close()
    ratios = [results[f"throughput_{f}"]["ratio"] for f in ("chunked", "close")]
    latencies = [results[f"latency_{f}"]["sdk"]["p95_ms"] for f in ("chunked", "close")]
    results["goals"] = {
        "ratio_at_least": GOAL_RATIO,
        "sdk_p95_latency_ms_at_most": GOAL_LATENCY_MS,
        "met": min(ratios) >= GOAL_RATIO and max(latencies) <= GOAL_LATENCY_MS,
    }
    return results


def _measure(
    results: Dict[str, Any], url: str, session: Any, client: Any, events: int, rounds: int,
    oai: Any = None,
) -> None:
    for framing in ("chunked", "close"):
        body = _body(events, framing)
        # openai reads a few thousand events per CPU second: a shorter stream keeps the run
        # short and changes its rate by well under 1 % (one request per stream).
        openai_events = max(1, events // OPENAI_SHARE)
        openai_body = _body(openai_events, framing)
        _sdk_loop(client, _body(500, framing), None)  # warm-up
        _bare_loop(session, url, _body(500, framing), None)
        if oai is not None:
            _openai_loop(oai, _body(500, framing))
        sdk_times: List[float] = []
        bare_times: List[float] = []
        openai_times: List[float] = []
        for _ in range(rounds):  # interleaved, best of each: the least disturbed run
            sdk_times.append(_cpu(functools.partial(_sdk_loop, client, body, None), events))
            bare_times.append(_cpu(functools.partial(_bare_loop, session, url, body, None), events))
            if oai is not None:
                openai_times.append(
                    _cpu(functools.partial(_openai_loop, oai, openai_body), openai_events)
                )
        sdk_rate = events / min(sdk_times)
        bare_rate = events / min(bare_times)
        figures: Dict[str, Any] = {
            "sdk_events_per_cpu_s": round(sdk_rate),
            "bare_events_per_cpu_s": round(bare_rate),
            "ratio": round(sdk_rate / bare_rate, 3),
            "openai_events_per_cpu_s": None,
            "sdk_over_openai": None,
            "samples_cpu_s": {"sdk": sdk_times, "bare": bare_times, "openai": openai_times},
        }
        if openai_times:
            openai_rate = openai_events / min(openai_times)
            figures["openai_events"] = openai_events
            figures["openai_events_per_cpu_s"] = round(openai_rate)
            figures["sdk_over_openai"] = round(sdk_rate / openai_rate, 3)
        results[f"throughput_{framing}"] = figures
    for framing in ("chunked", "close"):
        body = _body(LATENCY_EVENTS, framing, LATENCY_INTERVAL)
        sdk_lat: List[float] = []
        bare_lat: List[float] = []
        _sdk_loop(client, body, sdk_lat)
        _bare_loop(session, url, body, bare_lat)
        results[f"latency_{framing}"] = {"sdk": _summary(sdk_lat), "bare": _summary(bare_lat)}


def _table(results: Dict[str, Any]) -> str:
    rows: List[Tuple[str, ...]] = [
        ("measure", "framing", "SDK", "bare requests", "SDK / bare", "openai", "SDK / openai")
    ]
    for framing in ("chunked", "close"):
        t = results[f"throughput_{framing}"]
        openai_rate, over_openai = t["openai_events_per_cpu_s"], t["sdk_over_openai"]
        rows.append(
            (
                "events per CPU second",
                framing,
                f"{t['sdk_events_per_cpu_s']:,}",
                f"{t['bare_events_per_cpu_s']:,}",
                f"{t['ratio']:.2f}x",
                "-" if openai_rate is None else f"{openai_rate:,}",
                "-" if over_openai is None else f"{over_openai:.2f}x",
            )
        )
    for framing in ("chunked", "close"):
        lat = results[f"latency_{framing}"]
        for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("max_ms", "max")):
            rows.append(
                (
                    f"write -> yield latency {label} (ms)",
                    framing,
                    f"{lat['sdk'][key]:.2f}",
                    f"{lat['bare'][key]:.2f}",
                    "",
                    "",
                    "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events per stream")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (best is kept)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    results = run(args.events, args.rounds)
    print(
        f"{results['events']:,} chat chunk events per stream, Python {results['python']}, "
        f"{LATENCY_EVENTS} timed events {LATENCY_INTERVAL * 1000:g} ms apart for latency"
    )
    print(_table(results))
    goals = results["goals"]
    print(
        f"goals (SDK >= {GOAL_RATIO}x the bare loop, p95 latency <= {GOAL_LATENCY_MS:g} ms): "
        + ("met" if goals["met"] else "NOT met")
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
