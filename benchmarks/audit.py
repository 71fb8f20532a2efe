"""What each of the sync client's optimisations buys, measured with it and without it.

    python benchmarks/audit.py            # the full audit (about two minutes)
    python benchmarks/audit.py --quick    # fewer rounds
    python benchmarks/run.py --audit      # the same

Nothing in ``src/`` is edited: each optimisation is turned off in this process only, by
replacing a module attribute (``streaming._stream_json`` by ``json.loads``, ...) or by
recompiling one function from its source with a few lines replaced (the SSE decoder's fast
paths). Each replacement checks that the lines it replaces are still there, so the audit
fails loudly rather than measure nothing once the source changes. The SDK as it is and each
variant run in the same process against the same server, one round each in turn (their
order rotating), several rounds; the figures are the medians.

Figures, each where the optimisation can show:

* **fast stream**: events per client CPU second reading a chunked stream of chat chunk
  events that the server writes as fast as it can (``bench_stream``'s server): reads return
  64 KiB holding hundreds of events, which is where the block splitting and the de-chunker
  work;
* **paced stream**: the same with the server pausing 0.2 ms after each event, so that each
  read returns one event, as when a model streams its tokens: where the single-event path
  works;
* **decoder only**: ``ChatEventParser.feed`` without any I/O, on a 64 KiB block of events
  and on single-event chunks: the upper bound of what a parsing optimisation can buy;
* **small request**: client CPU per ``get_models()`` on a kept-alive connection
  (``bench_server``).

The paced stream's CPU per event is mostly waking up for each event, and varies by several
per cent from one stream to the next on a shared machine, far more than a parsing
optimisation can change it; so the single-event path is judged on the paced stream's CPU per
event plus the extra CPU per event the decoder alone spends without it.

"Buys" is how much faster the SDK is with the optimisation than without it: events per CPU
second with / without - 1, or CPU per call without / with - 1. The recommendation follows
the project's rule: an optimisation that buys less than about 10 % on the figure it was made
for should go. The watchdog and the fork check are not optimisations but per-call costs:
their rows show what removing them would save. A "control" row measures the SDK as it is a
second time, as if it were a variant: what it "buys" is the noise of that figure.
"""

from __future__ import annotations
import __future__

import argparse
import functools
import gc
import inspect
import json
import os
import statistics
import sys
import textwrap
import time
import timeit
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_stream  # noqa: E402
import requests  # noqa: E402
from run import BenchServer, _sdk_client  # noqa: E402

import waygpt  # noqa: E402
from waygpt import _requests_transport, _stream_reader, _watchdog, sse, streaming  # noqa: E402

THRESHOLD = 0.10  # an optimisation buying less than this should go
PACE = 0.0002  # seconds the server waits after each event of a paced stream

PROFILES = {
    "full": {"fast_events": 30_000, "fast_rounds": 9, "paced_events": 1500, "paced_rounds": 7,
             "calls": 1000, "call_rounds": 11, "decoder_rounds": 5},
    "quick": {"fast_events": 10_000, "fast_rounds": 5, "paced_events": 600, "paced_rounds": 5,
              "calls": 300, "call_rounds": 7, "decoder_rounds": 3},
}

Patch = Tuple[Any, str, Any]  # (object, attribute, value while the variant runs)


# -- turning one optimisation off ---------------------------------------------------------------


def _recompiled(func: Any, replacements: Sequence[Tuple[str, str]]) -> Any:
    """``func`` compiled again from its source with ``replacements`` made, in its module.

    The replaced and replacing lines are written with the indentation they have in the file.
    """
    source = inspect.getsource(func)  # indented as in its file, as ``replacements`` are
    for old, new in replacements:
        if old not in source:
            raise RuntimeError(
                f"audit: {func.__qualname__} no longer contains the lines it replaces:\n{old}"
            )
        source = source.replace(old, new)
    source = textwrap.dedent(source)
    flags = __future__.annotations.compiler_flag  # as the module: annotations stay strings
    code = compile(source, f"<audit: {func.__qualname__}>", "exec", flags, dont_inherit=True)
    namespace: Dict[str, Any] = {}
    exec(code, func.__globals__, namespace)  # the module's globals; the def lands in namespace
    return namespace[func.__name__]


def _indent(text: str, spaces: int) -> str:
    return textwrap.indent(textwrap.dedent(text), " " * spaces)


_FEED = sse.SSEDecoder.feed
_READ_BLOCKS = sse.SSEDecoder._read_blocks

_SINGLE_PATH = "if self._idle and text.startswith(\"data:\") and len(text) <= self._limit:"
_BLOCKS_CALL = "        self._read_blocks(text, events)\n        return events"
_LINES_CALL = "        self._read_lines(text, events)\n        return events"
_FORK_CHECK = (
    "        if self._generation != _fork_generation:\n            self._after_fork()\n"
)
_FEED_NEW = _indent(
    """\
    new = _sse_new_instance(ServerSentEvent)
    fields = new.__dict__
    fields["data"] = text[6:end] if text[5] == " " else text[5:end]
    fields["event"] = "message"
    fields["id"] = self._last_id = self._id
    fields["retry"] = None
    return [new]
""",
    16,
)
_FEED_DATACLASS = _indent(
    """\
    self._last_id = self._id
    value = text[6:end] if text[5] == " " else text[5:end]
    return [ServerSentEvent(value, "message", self._id, None)]
""",
    16,
)
_BLOCKS_NEW = _indent(
    """\
    event = new(ServerSentEvent)  # as in _sse_event()
    fields = event.__dict__
    fields["data"] = value
    fields["event"] = "message"
    fields["id"] = last_id
    fields["retry"] = None
    append(event)
""",
    12,
)
_BLOCKS_DATACLASS = _indent('append(ServerSentEvent(value, "message", last_id, None))\n', 12)


def _dataclass_event(
    data: str, event: str, last_id: Optional[str], retry: Optional[int]
) -> sse.ServerSentEvent:
    return sse.ServerSentEvent(data, event, last_id, retry)


def _prepare_with_session(session: requests.Session) -> Callable[..., Any]:
    def prepare(method: str, url: str, headers: Dict[str, str], body: Optional[bytes]) -> Any:
        return session.prepare_request(requests.Request(method, url, headers=headers, data=body))

    return prepare


class _NoWatchdog:
    def arm(self, watch: Any) -> None:
        pass

    def disarm(self, watch: Any) -> None:
        pass


_NO_WATCHDOG = _NoWatchdog()


def variants() -> Dict[str, List[Patch]]:
    """Each optimisation turned off: the patches that do it (made now, applied later)."""
    single_off = [(_SINGLE_PATH, "if False:  # audit: the single-event path is off")]
    blocks_off = [(_BLOCKS_CALL, _LINES_CALL)]
    feed = sse.SSEDecoder
    return {
        "sse_single_off": [(feed, "feed", _recompiled(_FEED, single_off))],
        "sse_blocks_off": [(feed, "feed", _recompiled(_FEED, blocks_off))],
        "sse_both_off": [(feed, "feed", _recompiled(_FEED, single_off + blocks_off))],
        "sse_dataclass": [
            (feed, "feed", _recompiled(_FEED, [(_FEED_NEW, _FEED_DATACLASS)])),
            (feed, "_read_blocks", _recompiled(_READ_BLOCKS, [(_BLOCKS_NEW, _BLOCKS_DATACLASS)])),
            (sse, "_sse_event", _dataclass_event),
        ],
        "sse_plain": [  # both fast paths off, and events made by the dataclass constructor
            (feed, "feed", _recompiled(_FEED, single_off + blocks_off)),
            (sse, "_sse_event", _dataclass_event),
        ],
        "json_loads": [(streaming, "_stream_json", json.loads)],
        "urllib3_read1": [(_stream_reader, "_stream_plain_reader", lambda raw: None)],
        # the two below are filled in with the client's session by _small_requests
        "no_watchdog": [(_requests_transport, "watchdog", lambda: _NO_WATCHDOG)],
        "no_fork_check": [
            (
                _requests_transport.RequestsTransport,
                "run",
                _recompiled(
                    _requests_transport.RequestsTransport.run,
                    [(_FORK_CHECK, "")],
                ),
            )
        ],
    }


class _Applied:
    def __init__(self, patches: List[Patch]) -> None:
        self.patches = patches
        self.saved: List[Patch] = []

    def __enter__(self) -> None:
        for target, name, value in self.patches:
            self.saved.append((target, name, getattr(target, name)))
            setattr(target, name, value)

    def __exit__(self, *exc: object) -> None:
        for target, name, value in reversed(self.saved):
            setattr(target, name, value)
        self.saved = []


# -- measuring ----------------------------------------------------------------------------------


def _rotating(
    work: Callable[[], float],
    patches: Dict[str, List[Patch]],
    rounds: int,
    settle: Optional[Callable[[], Any]] = None,
) -> Dict[str, List[float]]:
    """``work()`` (a cost) under each variant, one round each in turn, ``rounds`` times.

    ``settle()`` runs, untimed, before each measurement under the same variant, so that none
    pays for what the one before it left (the urllib3 variant closes its connection after
    each stream: the next stream would pay for a new one).
    """
    names = list(patches)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        with _Applied(patches[name]):
            work()
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            with _Applied(patches[name]):
                if settle is not None:
                    settle()
                gc.collect()
                samples[name].append(work())
    return samples


def _stream_cpu(client: Any, events: int, interval: float) -> float:
    """Client CPU seconds per event reading one stream."""
    body = bench_stream._body(events, "chunked", interval)
    started = time.process_time()
    count = bench_stream._sdk_loop(client, body, None)
    spent = time.process_time() - started
    if count != events:
        raise RuntimeError(f"expected {events} events, got {count}")
    return spent / events


def _decoder_cpu(chunks: List[bytes], repeat: int) -> float:
    """CPU seconds per event for ChatEventParser.feed over ``chunks``, best of ``repeat``."""
    events = 0
    for chunk in chunks:
        events += chunk.count(b"\n\n")

    def parse() -> None:
        parser = streaming.ChatEventParser(200, None)
        for chunk in chunks:
            parser.feed(chunk)

    best = min(timeit.repeat(parse, number=1, repeat=repeat))
    return best / events


def _event_bytes(count: int) -> List[bytes]:
    return [b"data: " + bench_stream.chunk_json(i) + b"\n\n" for i in range(count)]


def measure(profile: Dict[str, int]) -> Dict[str, Any]:
    patches = variants()
    as_is: List[Patch] = []
    results: Dict[str, Any] = {}

    # streams: bench_stream's server
    stream_variants = {
        "fast": ["sse_blocks_off", "sse_both_off", "sse_dataclass", "sse_plain", "json_loads",
                 "urllib3_read1"],
        "paced": ["sse_single_off", "sse_both_off", "sse_dataclass", "json_loads",
                  "urllib3_read1"],
    }
    with bench_stream._Server() as server, waygpt.WayGPTClient(
        api_url=server.url, project_key="sk_live_bench", max_retries=0, timeout=60
    ) as client:
        for figure, names in stream_variants.items():
            print(f"audit: {figure} stream ...", file=sys.stderr, flush=True)
            if figure == "fast":
                work = functools.partial(_stream_cpu, client, profile["fast_events"], 0.0)
                rounds = profile["fast_rounds"]
            else:
                work = functools.partial(_stream_cpu, client, profile["paced_events"], PACE)
                rounds = profile["paced_rounds"]
            chosen = {"as_is": as_is, "control": as_is,
                      **{name: patches[name] for name in names}}
            settle = functools.partial(_stream_cpu, client, 20, 0.0)
            results[f"{figure}_stream"] = _rotating(work, chosen, rounds, settle)

    # the decoder alone, without I/O
    print("audit: decoder only ...", file=sys.stderr, flush=True)
    events = _event_bytes(2000)
    blocks: List[bytes] = []
    joined = b"".join(events)
    for start in range(0, len(joined), 64 * 1024):
        blocks.append(joined[start : start + 64 * 1024])
    for figure, chunks, names in (
        ("decoder_blocks", blocks, ["sse_blocks_off", "sse_both_off", "sse_dataclass",
                                     "sse_plain", "json_loads"]),
        ("decoder_single", events, ["sse_single_off", "sse_both_off", "sse_dataclass",
                                    "json_loads"]),
    ):
        chosen = {"as_is": as_is, "control": as_is,
                  **{name: patches[name] for name in names}}
        work = functools.partial(_decoder_cpu, chunks, 5)
        results[figure] = _rotating(work, chosen, profile["decoder_rounds"])

    # small requests: bench_server
    print("audit: small requests ...", file=sys.stderr, flush=True)
    with BenchServer() as server, _sdk_client(server.url) as client:
        session = client._transport.session
        chosen = {
            "as_is": as_is,
            "control": as_is,
            "session_prepare": [(_requests_transport, "_prepare", _prepare_with_session(session))],
            "no_watchdog": patches["no_watchdog"],
            "no_fork_check": patches["no_fork_check"],
        }
        calls = profile["calls"]

        def small() -> float:
            started = time.process_time()
            for _ in range(calls):
                client.get_models()
            return (time.process_time() - started) / calls

        for _ in range(200):
            client.get_models()
        results["small_request"] = _rotating(
            small, chosen, profile["call_rounds"], client.get_models
        )

    # the watchdog's arm/disarm and the fork check, alone
    dog = _watchdog.watchdog()
    watch = _watchdog.Watch(time.monotonic() + 3600, lambda: None)
    dog.arm(watch)  # the thread is started once per process, not per call
    dog.disarm(watch)
    loops = 200_000
    arm = min(timeit.repeat(lambda: (dog.arm(watch), dog.disarm(watch)), number=loops, repeat=5))
    transport = client._transport
    check = min(
        timeit.repeat(
            lambda: transport._generation != _requests_transport._fork_generation,
            number=loops,
            repeat=5,
        )
    )
    results["micro_us"] = {
        "watchdog_arm_disarm": round(arm / loops * 1e6, 3),
        "fork_check": round(check / loops * 1e6, 3),
    }
    return results


# -- the table ----------------------------------------------------------------------------------

# (optimisation, the variant turning it off, figure key, figure label, is it a rate?)
ROWS: List[Tuple[str, str, str, str]] = [
    ("control: nothing turned off (the noise)", "control", "fast_stream",
     "fast stream, events/CPU s"),
    ("", "control", "paced_stream", "paced stream, events/CPU s"),
    ("", "control", "decoder_blocks", "decoder only, 64 KiB chunks, events/CPU s"),
    ("", "control", "decoder_single", "decoder only, 1 event per chunk, events/CPU s"),
    ("", "control", "small_request", "CPU per get_models(), us"),
    ("sse.py: single-event chunk path in SSEDecoder.feed", "sse_single_off", "paced_stream",
     "paced stream, events/CPU s"),
    ("", "sse_single_off", "paced_estimate",
     "paced stream + the decoder's extra CPU per event, events/CPU s"),
    ("", "sse_single_off", "decoder_single", "decoder only, 1 event per chunk, events/CPU s"),
    ("sse.py: _read_blocks for big chunks", "sse_blocks_off", "fast_stream",
     "fast stream, events/CPU s"),
    ("", "sse_blocks_off", "decoder_blocks", "decoder only, 64 KiB chunks, events/CPU s"),
    ("sse.py: both fast paths (vs always _read_lines)", "sse_both_off", "fast_stream",
     "fast stream, events/CPU s"),
    ("", "sse_both_off", "paced_stream", "paced stream, events/CPU s"),
    ("sse.py: object.__new__/__dict__ events (vs the dataclass constructor)", "sse_dataclass",
     "fast_stream", "fast stream, events/CPU s"),
    ("", "sse_dataclass", "paced_stream", "paced stream, events/CPU s"),
    ("", "sse_dataclass", "decoder_blocks", "decoder only, 64 KiB chunks, events/CPU s"),
    ("sse.py: all three (vs _read_lines and the dataclass constructor)", "sse_plain",
     "fast_stream", "fast stream, events/CPU s"),
    ("", "sse_plain", "decoder_blocks", "decoder only, 64 KiB chunks, events/CPU s"),
    ("streaming.py: _stream_json (vs json.loads)", "json_loads", "fast_stream",
     "fast stream, events/CPU s"),
    ("", "json_loads", "paced_stream", "paced stream, events/CPU s"),
    ("", "json_loads", "decoder_blocks", "decoder only, 64 KiB chunks, events/CPU s"),
    ("_stream_reader.py: _ChunkedBody (vs urllib3 read1)", "urllib3_read1", "fast_stream",
     "fast stream, events/CPU s"),
    ("", "urllib3_read1", "paced_stream", "paced stream, events/CPU s"),
    ("_requests_transport.py: _prepare (vs session.prepare_request)", "session_prepare",
     "small_request", "CPU per get_models(), us"),
    ("_watchdog.py: arm/disarm per call (cost)", "no_watchdog", "small_request",
     "CPU per get_models(), us"),
    ("fork-generation check per call (cost)", "no_fork_check", "small_request",
     "CPU per get_models(), us"),
]
COSTS = {"no_watchdog", "no_fork_check"}
# The figure each optimisation was made for: its recommendation follows that row.
DECIDING = {("sse_single_off", "paced_estimate"), ("sse_blocks_off", "fast_stream"),
            ("sse_both_off", "fast_stream"), ("sse_dataclass", "fast_stream"),
            ("sse_plain", "fast_stream"),
            ("json_loads", "fast_stream"), ("urllib3_read1", "fast_stream"),
            ("session_prepare", "small_request")}


def table(results: Dict[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for label, variant, figure, figure_label in ROWS:
        if figure == "paced_estimate":
            # The paced stream's CPU per event, plus what the decoder alone spends more per
            # event without the optimisation: a figure the paced stream's noise cannot hide.
            decoder = results["decoder_single"]
            extra = statistics.median(decoder[variant]) - statistics.median(decoder["as_is"])
            with_ = statistics.median(results["paced_stream"]["as_is"])
            without = with_ + extra
            per_round = []
        else:
            samples = results[figure]
            with_ = statistics.median(samples["as_is"])
            without = statistics.median(samples[variant])
            # with and without, each round: the spread of what the optimisation buys
            per_round = [w / a - 1 for a, w in zip(samples["as_is"], samples[variant])]
        buys = without / with_ - 1  # CPU per unit of work, without over with
        if figure == "small_request":
            shown = (f"{with_ * 1e6:.1f}", f"{without * 1e6:.1f}")
        else:
            shown = (f"{1 / with_:,.0f}", f"{1 / without:,.0f}")
        if variant in COSTS:  # what the SDK pays for it: with over without - 1
            buys_text = f"costs {(with_ / without - 1) * 100:+.1f} %"
            verdict = f"{(with_ - without) * 1e6:+.1f} us per call"
        else:
            buys_text = f"{buys * 100:+.1f} %"
            verdict = ""
            if variant == "control":
                verdict = "noise floor"
            elif (variant, figure) in DECIDING:
                verdict = "keep" if buys >= THRESHOLD else "remove (< 10 %)"
        rows.append({
            "optimisation": label,
            "figure": figure_label,
            "with": shown[0],
            "without": shown[1],
            "buys": buys_text,
            "rounds": (f"{min(per_round) * 100:+.0f}..{max(per_round) * 100:+.0f} %"
                       if per_round else "-"),
            "recommendation": verdict,
        })
    return rows


COLUMNS = ("optimisation", "figure", "with", "without", "buys", "rounds", "recommendation")


def render(rows: List[Dict[str, str]], markdown: bool = False) -> str:
    header = dict(zip(COLUMNS, ("optimisation", "figure", "with it", "without it", "buys",
                                "per round", "recommendation")))
    if markdown:
        lines = ["| " + " | ".join(header[c] for c in COLUMNS) + " |",
                 "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
        return "\n".join(lines)
    all_rows = [header, *rows]
    widths = {c: max(len(r[c]) for r in all_rows) for c in COLUMNS}
    lines = ["  ".join(header[c].ljust(widths[c]) for c in COLUMNS).rstrip(),
             "  ".join("-" * widths[c] for c in COLUMNS)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", metavar="FILE",
                        default=os.path.join(HERE, "results-audit.json"),
                        help="where to write the figures (default: benchmarks/results-audit.json)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown too")
    args = parser.parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    started = time.monotonic()
    results = measure(profile)
    seconds = round(time.monotonic() - started, 1)
    rows = table(results)
    micro = results["micro_us"]
    print(f"waygpt {waygpt.__version__}, Python {sys.version.split()[0]}, "
          f"{'quick' if args.quick else 'full'} audit in {seconds} s; medians of "
          f"{profile['fast_rounds']}/{profile['paced_rounds']}/{profile['call_rounds']} rounds "
          "(fast stream/paced stream/small request)")
    print(render(rows))
    print(f"alone: watchdog arm + disarm {micro['watchdog_arm_disarm']:.2f} us per call, "
          f"fork-generation check {micro['fork_check'] * 1000:.0f} ns per call")
    if args.markdown:
        print()
        print(render(rows, markdown=True))
    out = {"profile": "quick" if args.quick else "full", "seconds": seconds, "table": rows,
           "micro_us": micro,
           "samples": {k: v for k, v in results.items() if k != "micro_us"}}
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=2)
        handle.write("\n")
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
