"""What each of the SDK's optimisations buys, measured with it and without it.

    python benchmarks/audit.py            # the full audit (about two minutes)
    python benchmarks/audit.py --quick    # fewer rounds
    python benchmarks/run.py --audit      # the same

Nothing in ``src/`` is edited: each optimisation is turned off in this process only, by
replacing a module or class attribute (``streaming._stream_json`` by ``json.loads``, ...) or
by recompiling one function from its source with a few lines replaced (``SSEDecoder.feed``
without ``_read_blocks``, ``RequestsTransport.run`` without the fork check, ...). The audit
fails loudly rather than measure nothing once the source changes: a replacement whose lines
are no longer in the source raises, and before a figure is measured, every variant runs its
work once with each of its replacements counting its calls, and a variant whose
replacements all went unused there raises, as does, at the end, a replacement that no
figure used. The SDK as it is and each variant run in the same process against the same
server, one round each in turn (their order rotating), several rounds; the figures are the
medians.

Figures, each where the optimisation can show:

* **fast stream**: events per client CPU second reading a chunked stream of chat chunk
  events that the server writes as fast as it can (``bench_stream``'s server): reads return
  64 KiB holding hundreds of events, which is where the block splitting and the de-chunker
  work;
* **paced stream**: the same with the server pausing 0.2 ms after each event, so that each
  read returns one event, as when a model streams its tokens;
* **decoder only**: ``ChatEventParser.feed`` without any I/O, on a 64 KiB block of events
  and on single-event chunks: the upper bound of what a parsing optimisation can buy;
* **small request**: client CPU per ``get_models()`` on a kept-alive connection
  (``bench_server``);
* **async request**: client CPU per ``await AsyncWayGPTClient.get_models()``, sequential
  calls on a kept-alive connection (``bench_aioserver``);
* **async streams**: events per client CPU second reading 16 streams at once with the async
  client (``bench_aioserver``, one HTTP chunk per event).

"Buys" is how much faster the SDK is with the optimisation than without it: events per CPU
second with / without - 1, or CPU per call without / with - 1. The recommendation follows
the project's rule: an optimisation that buys less than about 10 % on the figure it was made
for should go. The watchdog and the fork checks are not optimisations but per-call costs:
their rows show what removing them would save. A "control" row measures the SDK as it is a
second time, as if it were a variant: what it "buys" is the noise of that figure.

(``SSEDecoder.feed`` had a third way, for a chunk holding exactly one event; the audit
showed it bought 2.2 % on the paced stream, the figure it was made for, +21 % on the decoder
alone, and it was removed. Its rows went with it.)
"""

from __future__ import annotations
import __future__

import argparse
import asyncio
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
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_async  # noqa: E402
import bench_stream  # noqa: E402
import requests  # noqa: E402
from run import BenchServer, _sdk_client  # noqa: E402

import waygpt  # noqa: E402
from waygpt import (  # noqa: E402
    _aiohttp_transport,
    _requests_transport,
    _stream_reader,
    _watchdog,
    sse,
    streaming,
)
from waygpt._fork import fork_generation  # noqa: E402

THRESHOLD = 0.10  # an optimisation buying less than this should go
PACE = 0.0002  # seconds the server waits after each event of a paced stream
ASYNC_STREAMS = 16

PROFILES = {
    "full": {"fast_events": 30_000, "fast_rounds": 9, "paced_events": 1500, "paced_rounds": 7,
             "calls": 1000, "call_rounds": 11, "decoder_rounds": 5,
             "async_calls": 400, "async_call_rounds": 11, "async_events": 4000,
             "async_stream_rounds": 7},
    "quick": {"fast_events": 10_000, "fast_rounds": 5, "paced_events": 600, "paced_rounds": 5,
              "calls": 300, "call_rounds": 7, "decoder_rounds": 3,
              "async_calls": 200, "async_call_rounds": 7, "async_events": 2000,
              "async_stream_rounds": 3},
}

Patch = Tuple[Any, str, Any]  # (object, attribute, value while the variant runs)


# -- turning one optimisation off ---------------------------------------------------------------


def _recompiled(func: Any, replacements: Sequence[Tuple[str, str]]) -> Any:
    """``func`` compiled again from its source with ``replacements`` made, in its module.

    The replaced and replacing lines are written with the indentation they have in the file.
    Raises when a replaced text is no longer in the source.
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


# sse.py: _read_blocks and the events built through their __dict__
_BLOCKS_CALL = "        self._read_blocks(text, events)\n        return events"
_LINES_CALL = "        self._read_lines(text, events)\n        return events"
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

# the fork checks made on every call
_FORK_CHECK_RUN = (
    "        if self._generation != fork_generation():\n            self._after_fork()\n"
)
_FORK_CHECK_WATCHDOG = (
    "    if _watchdog_generation != fork_generation():\n"
    "        _watchdog, _watchdog_generation = Watchdog(), fork_generation()\n"
)
_FORK_CHECK_ASYNC = _indent(
    """\
    if self._generation != fork_generation():  # a forked child: never the parent's session
        if self.owns_session and self._session is not None:
            self._set_aside()
        self._generation = fork_generation()
""",
    8,
)

# _aiohttp_transport.py: a stream read in blocks of at most 16 KiB
_STREAM_READ = (
    "data: bytes = await (content.read(_STREAM_READ_SIZE) if loop else content.readany())"
)
_STREAM_READANY = "data: bytes = await content.readany()"

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
    feed = sse.SSEDecoder
    blocks_off = _recompiled(feed.feed, [(_BLOCKS_CALL, _LINES_CALL)])
    transport = _requests_transport.RequestsTransport
    async_transport = _aiohttp_transport.AiohttpTransport
    return {
        "sse_blocks_off": [(feed, "feed", blocks_off)],
        "sse_dataclass": [
            (feed, "_read_blocks",
             _recompiled(feed._read_blocks, [(_BLOCKS_NEW, _BLOCKS_DATACLASS)])),
            (sse, "_sse_event", _dataclass_event),
        ],
        "sse_plain": [  # _read_blocks off, and events made by the dataclass constructor
            (feed, "feed", blocks_off),
            (sse, "_sse_event", _dataclass_event),
        ],
        "json_loads": [(streaming, "_stream_json", json.loads)],
        "urllib3_read1": [(_stream_reader, "_stream_plain_reader", lambda raw: None)],
        # session_prepare is made by measure(), with the client's session
        "no_watchdog": [(_requests_transport, "watchdog", lambda: _NO_WATCHDOG)],
        "no_fork_check": [
            (transport, "run", _recompiled(transport.run, [(_FORK_CHECK_RUN, "")])),
            (_requests_transport, "watchdog",
             _recompiled(_watchdog.watchdog, [(_FORK_CHECK_WATCHDOG, "")])),
        ],
        "async_readany": [
            (_aiohttp_transport.AiohttpAnswer, "read",
             _recompiled(_aiohttp_transport.AiohttpAnswer.read,
                         [(_STREAM_READ, _STREAM_READANY)])),
        ],
        "no_fork_check_async": [
            (async_transport, "_current_session",
             _recompiled(async_transport._current_session, [(_FORK_CHECK_ASYNC, "")])),
        ],
    }


class _Applied:
    def __init__(self, patches: List[Patch]) -> None:
        self.patches = patches
        self.saved: List[Patch] = []

    def __enter__(self) -> None:
        for target, name, value in self.patches:
            # getattr raises for a name that is gone: setting it would change nothing
            self.saved.append((target, name, getattr(target, name)))
            setattr(target, name, value)

    def __exit__(self, *exc: object) -> None:
        for target, name, value in reversed(self.saved):
            setattr(target, name, value)
        self.saved = []


# -- checking that each variant changes what it is measured on ---------------------------------

_USED: Set[Tuple[str, int]] = set()  # (variant, patch index) called at least once
_MEASURED: Dict[str, List[Patch]] = {}  # every variant measured, with its patches


def _counting(value: Any, key: Tuple[str, int], hits: Set[Tuple[str, int]]) -> Any:
    """``value`` (a function) that adds ``key`` to ``hits`` when called."""

    @functools.wraps(value)
    def counted(*args: Any, **kwargs: Any) -> Any:
        hits.add(key)
        return value(*args, **kwargs)

    return counted


def _check_applies(chosen: Dict[str, List[Patch]], probe: Callable[[], Any], figure: str) -> None:
    """Run ``probe`` once under each variant, its replacements counting their calls; raise if
    none of a variant's replacements was called (its figure would measure nothing)."""
    for name, patches in chosen.items():
        if not patches:
            continue
        _MEASURED[name] = patches
        hits: Set[Tuple[str, int]] = set()
        counted = [(target, attr, _counting(value, (name, index), hits))
                   for index, (target, attr, value) in enumerate(patches)]
        with _Applied(counted):
            probe()
        if not hits:
            targets = ", ".join(f"{getattr(t, '__name__', t)}.{a}" for t, a, _ in patches)
            raise RuntimeError(
                f"audit: variant {name!r} replaced {targets}, but the {figure} figure called "
                "none of them: it would measure nothing"
            )
        _USED.update(hits)


def _check_all_used() -> None:
    unused = [f"{name}: {getattr(target, '__name__', target)}.{attr}"
              for name, patches in _MEASURED.items()
              for index, (target, attr, _value) in enumerate(patches)
              if (name, index) not in _USED]
    if unused:
        raise RuntimeError("audit: replacements that no figure called: " + "; ".join(unused))


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


def _chosen(names: Sequence[str], patches: Dict[str, List[Patch]]) -> Dict[str, List[Patch]]:
    as_is: List[Patch] = []
    return {"as_is": as_is, "control": as_is, **{name: patches[name] for name in names}}


def _measure_sync(profile: Dict[str, int], patches: Dict[str, List[Patch]],
                  results: Dict[str, Any]) -> None:
    # streams: bench_stream's server
    stream_variants = {
        "fast": ["sse_blocks_off", "sse_dataclass", "sse_plain", "json_loads", "urllib3_read1"],
        "paced": ["sse_dataclass", "json_loads", "urllib3_read1"],
    }
    with bench_stream._Server() as server, waygpt.WayGPTClient(
        api_url=server.url, project_key="sk_live_bench", max_retries=0, timeout=60
    ) as client:
        for figure, names in stream_variants.items():
            print(f"audit: {figure} stream ...", file=sys.stderr, flush=True)
            if figure == "fast":
                work = functools.partial(_stream_cpu, client, profile["fast_events"], 0.0)
                rounds = profile["fast_rounds"]
                probe = functools.partial(_stream_cpu, client, 2000, 0.0)
            else:
                work = functools.partial(_stream_cpu, client, profile["paced_events"], PACE)
                rounds = profile["paced_rounds"]
                probe = functools.partial(_stream_cpu, client, 20, PACE)
            chosen = _chosen(names, patches)
            _check_applies(chosen, probe, f"{figure} stream")
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
        ("decoder_blocks", blocks, ["sse_blocks_off", "sse_dataclass", "sse_plain",
                                     "json_loads"]),
        ("decoder_single", events, ["sse_dataclass", "json_loads"]),
    ):
        chosen = _chosen(names, patches)
        _check_applies(chosen, functools.partial(_decoder_cpu, chunks, 1), figure)
        work = functools.partial(_decoder_cpu, chunks, 5)
        results[figure] = _rotating(work, chosen, profile["decoder_rounds"])

    # small requests: bench_server
    print("audit: small requests ...", file=sys.stderr, flush=True)
    with BenchServer() as server, _sdk_client(server.url) as client:
        session = client._transport.session
        patches["session_prepare"] = [
            (_requests_transport, "_prepare", _prepare_with_session(session))
        ]
        chosen = _chosen(["session_prepare", "no_watchdog", "no_fork_check"],
                         patches)
        _check_applies(chosen, lambda: [client.get_models() for _ in range(3)], "small request")
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
        timeit.repeat(lambda: transport._generation != fork_generation(), number=loops, repeat=5)
    )
    results["micro_us"] = {
        "watchdog_arm_disarm": round(arm / loops * 1e6, 3),
        "fork_check": round(check / loops * 1e6, 3),
    }


async def _async_streams(client: Any, events: int) -> int:
    async def one() -> int:
        count = 0
        stream = await client.chat_completions_stream(
            messages=bench_async.MESSAGES, bench_events=events
        )
        async with stream:
            async for _chunk in stream:
                count += 1
        return count

    counts = await asyncio.gather(*(one() for _ in range(ASYNC_STREAMS)))
    if any(count != events for count in counts):
        raise RuntimeError(f"expected {events} events per stream, got {counts}")
    return sum(counts)


async def _async_calls(client: Any, calls: int) -> None:
    for _ in range(calls):
        await client.get_models()


def _measure_async(profile: Dict[str, int], patches: Dict[str, List[Patch]],
                   results: Dict[str, Any]) -> None:
    loop = asyncio.new_event_loop()
    try:
        with bench_async.AioServer() as server:
            client = waygpt.AsyncWayGPTClient(
                api_url=server.url, project_key=bench_async.PROJECT_KEY, timeout=60,
                max_retries=0,
            )
            try:
                print("audit: async requests ...", file=sys.stderr, flush=True)
                chosen = _chosen(["no_fork_check_async"], patches)
                _check_applies(chosen, lambda: loop.run_until_complete(_async_calls(client, 3)),
                               "async request")
                calls = profile["async_calls"]

                def requests_work() -> float:
                    started = time.process_time()
                    loop.run_until_complete(_async_calls(client, calls))
                    return (time.process_time() - started) / calls

                loop.run_until_complete(_async_calls(client, 200))
                results["async_request"] = _rotating(
                    requests_work, chosen, profile["async_call_rounds"]
                )

                print("audit: async streams ...", file=sys.stderr, flush=True)
                chosen = _chosen(["async_readany"], patches)
                _check_applies(chosen, lambda: loop.run_until_complete(_async_streams(client, 200)),
                               "async streams")
                events = profile["async_events"]

                def streams_work() -> float:
                    started = time.process_time()
                    count = loop.run_until_complete(_async_streams(client, events))
                    return (time.process_time() - started) / count

                results["async_stream"] = _rotating(
                    streams_work, chosen, profile["async_stream_rounds"]
                )
            finally:
                loop.run_until_complete(client.close())
    finally:
        loop.close()


def measure(profile: Dict[str, int]) -> Dict[str, Any]:
    patches = variants()
    results: Dict[str, Any] = {}
    _measure_sync(profile, patches, results)
    _measure_async(profile, patches, results)
    _check_all_used()
    return results


# -- the table ----------------------------------------------------------------------------------

FIGURES = {
    "fast_stream": "fast stream, events/CPU s",
    "paced_stream": "paced stream, events/CPU s",
    "decoder_blocks": "decoder only, 64 KiB chunks, events/CPU s",
    "decoder_single": "decoder only, 1 event per chunk, events/CPU s",
    "small_request": "CPU per get_models(), us",
    "async_request": "async CPU per get_models(), sequential, us",
    "async_stream": f"async, {ASYNC_STREAMS} streams, events/CPU s",
}
PER_CALL = {"small_request", "async_request"}  # shown in microseconds per call

# (optimisation, the variant turning it off, figure key)
ROWS: List[Tuple[str, str, str]] = [
    ("control: nothing turned off (the noise)", "control", "fast_stream"),
    ("", "control", "paced_stream"),
    ("", "control", "decoder_blocks"),
    ("", "control", "decoder_single"),
    ("", "control", "small_request"),
    ("", "control", "async_request"),
    ("", "control", "async_stream"),
    ("sse.py: _read_blocks for big chunks (vs always _read_lines)", "sse_blocks_off",
     "fast_stream"),
    ("", "sse_blocks_off", "decoder_blocks"),
    ("sse.py: object.__new__/__dict__ events (vs the dataclass constructor)", "sse_dataclass",
     "fast_stream"),
    ("", "sse_dataclass", "paced_stream"),
    ("", "sse_dataclass", "decoder_blocks"),
    ("", "sse_dataclass", "decoder_single"),
    ("sse.py: both (vs _read_lines and the dataclass constructor)", "sse_plain",
     "fast_stream"),
    ("", "sse_plain", "decoder_blocks"),
    ("streaming.py: _stream_json (vs json.loads)", "json_loads", "fast_stream"),
    ("", "json_loads", "paced_stream"),
    ("", "json_loads", "decoder_blocks"),
    ("_stream_reader.py: _ChunkedBody (vs urllib3 read1)", "urllib3_read1", "fast_stream"),
    ("", "urllib3_read1", "paced_stream"),
    ("_requests_transport.py: _prepare (vs session.prepare_request)", "session_prepare",
     "small_request"),
    ("_aiohttp_transport.py: stream reads of 16 KiB (vs readany())", "async_readany",
     "async_stream"),
    ("_watchdog.py: arm/disarm per call (cost)", "no_watchdog", "small_request"),
    ("fork checks per call, sync: run() and watchdog() (cost)", "no_fork_check",
     "small_request"),
    ("fork check per call, async: _current_session() (cost)", "no_fork_check_async",
     "async_request"),
]
COSTS = {"no_watchdog", "no_fork_check", "no_fork_check_async"}
# The figure each optimisation was made for: its recommendation follows that row.
DECIDING = {("sse_blocks_off", "fast_stream"), ("sse_dataclass", "fast_stream"),
            ("sse_plain", "fast_stream"), ("json_loads", "fast_stream"),
            ("urllib3_read1", "fast_stream"), ("session_prepare", "small_request"),
            ("async_readany", "async_stream")}


def table(results: Dict[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for label, variant, figure in ROWS:
        samples = results[figure]
        with_ = statistics.median(samples["as_is"])
        without = statistics.median(samples[variant])
        # with and without, each round: the spread of what the optimisation buys
        per_round = [w / a - 1 for a, w in zip(samples["as_is"], samples[variant])]
        buys = without / with_ - 1  # CPU per unit of work, without over with
        if figure in PER_CALL:
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
            "figure": FIGURES[figure],
            "with": shown[0],
            "without": shown[1],
            "buys": buys_text,
            "rounds": f"{min(per_round) * 100:+.0f}..{max(per_round) * 100:+.0f} %",
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
          f"{profile['fast_rounds']}/{profile['paced_rounds']}/{profile['decoder_rounds']}/"
          f"{profile['call_rounds']}/{profile['async_call_rounds']}/"
          f"{profile['async_stream_rounds']} rounds (fast stream/paced stream/decoder/"
          "small request/async request/async streams)")
    print(render(rows))
    print(f"alone: watchdog arm + disarm {micro['watchdog_arm_disarm']:.2f} us per call, "
          f"one fork-generation check {micro['fork_check'] * 1000:.0f} ns")
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
