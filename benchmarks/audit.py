"""What each of the SDK's optimisations buys, measured with it and without it.

    python benchmarks/run.py --audit            # the full audit (a few minutes)
    python benchmarks/run.py --audit --quick    # fewer rounds

Nothing in ``src/`` is edited: each optimisation is turned off in this process only, by
replacing a module or class attribute (``streaming._stream_json`` by ``json.loads``, ...) or
by compiling one function again from its source with a few lines replaced (``SSEDecoder.feed``
without ``_read_blocks``, ...). Other engineers change ``src/`` while this file stays, so a
variant is checked before it is measured, and reported as "n/a" rather than measured when
it would measure nothing or crash: a target that no longer exists, or whose replaced lines
are no longer in its source, is "n/a (not in src)"; a variant whose replacements the
figure's work never calls is "n/a (not called)"; one under which that work fails is "n/a
(fails: ...)". A figure whose own work fails is "n/a" on all its rows. The SDK as it is and
each variant run in the same rounds against the same server (``harness.rotate``); the
figures are the medians.

Figures, each where its optimisations can show:

* **fast stream**: events per client CPU second reading a chunked stream the server writes
  as fast as it can: reads return 64 KiB, hundreds of events;
* **paced stream**: the same with the server pausing 0.2 ms after each event, so that each
  read returns one event, as when a model streams its tokens;
* **decoder only**: ``ChatEventParser`` without I/O, on 64 KiB blocks of events and on
  single-event chunks: the upper bound of what a parsing optimisation can buy;
* **small request**: client CPU per ``get_models()`` on a kept-alive connection;
* **async request**: the same for ``await AsyncWayGPTClient.get_models()``;
* **async streams**: events per client CPU second reading 16 streams at once.

"Buys" is how much faster the SDK is with the optimisation than without it (events per CPU
second with / without - 1, or CPU per call without / with - 1). An optimisation buying less
than about 10 % on the figure it was made for should go (the project's rule). The watchdog
and the fork checks are per-call costs, not optimisations: their rows show what removing
them would save. The "control" rows measure the SDK as it is a second time, as a variant:
what it "buys" is the noise of that figure, and a recommendation that this noise could
tip either way is "undecided".
"""

from __future__ import annotations
import __future__

import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import sys
import textwrap
import time
import timeit
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import harness
import requests
from server import chunk_json

THRESHOLD = 0.10  # an optimisation buying less than this should go
PACE = 0.0002  # seconds the server waits after each event of a paced stream
STREAMS = 16
THREADS = 16  # the sync client's calls in flight at once
TASKS = 64  # the async client's
PROFILES = {
    "full": {"fast_events": 30_000, "fast_rounds": 9, "paced_events": 1500, "paced_rounds": 7,
             "calls": 1000, "call_rounds": 11, "decoder_rounds": 5, "async_calls": 400,
             "async_call_rounds": 11, "async_events": 4000, "async_stream_rounds": 7,
             "thread_calls": 1600, "task_calls": 1280},
    "quick": {"fast_events": 10_000, "fast_rounds": 5, "paced_events": 600, "paced_rounds": 5,
              "calls": 300, "call_rounds": 7, "decoder_rounds": 3, "async_calls": 200,
              "async_call_rounds": 7, "async_events": 2000, "async_stream_rounds": 3,
              "thread_calls": 640, "task_calls": 640},
}


# -- the variants: each optimisation turned off -------------------------------------------------


class Patch(NamedTuple):
    """``target`` ("module:Class.attr") replaced by ``value``, by what ``make()`` returns
    when the variant is built, or by the function ``source`` (default: the target) compiled
    again with each ``(old, new)`` of ``lines`` made."""

    target: str
    value: Any = None
    lines: Sequence[Tuple[str, str]] = ()
    source: Optional[str] = None
    make: Optional[Callable[[], Any]] = None


def _indent(text: str, spaces: int) -> str:
    return textwrap.indent(textwrap.dedent(text), " " * spaces)


def _dataclass_events() -> Any:
    """``_sse_event`` as the dataclass constructor (the class looked up once, not per event)."""
    from waygpt.sse import ServerSentEvent

    def event(data: str, kind: str, last_id: Optional[str], retry: Optional[int]) -> Any:
        return ServerSentEvent(data, kind, last_id, retry)

    return event


_PREPARE_SESSION = requests.Session()


def _session_prepare(method: str, url: str, headers: Dict[str, str], body: Any) -> Any:
    return _PREPARE_SESSION.prepare_request(
        requests.Request(method, url, headers=headers, data=body))


class _NoWatchdog:
    def arm(self, watch: Any) -> None:
        pass

    def disarm(self, watch: Any) -> None:
        pass


_NO_WATCHDOG = _NoWatchdog()
_BLOCKS_OFF = Patch("waygpt.sse:SSEDecoder.feed", lines=[(
    "        self._read_blocks(text, events)\n        return events",
    "        self._read_lines(text, events)\n        return events")])
_DATACLASS_EVENTS = Patch("waygpt.sse:_sse_event", make=_dataclass_events)
VARIANTS: Dict[str, List[Patch]] = {
    "sse_blocks_off": [_BLOCKS_OFF],
    "sse_dataclass": [
        Patch("waygpt.sse:SSEDecoder._read_blocks", lines=[(_indent("""\
            event = new(ServerSentEvent)  # as in _sse_event()
            fields = event.__dict__
            fields["data"] = value
            fields["event"] = "message"
            fields["id"] = last_id
            fields["retry"] = None
            append(event)
            """, 12), _indent('append(ServerSentEvent(value, "message", last_id, None))\n', 12))]),
        _DATACLASS_EVENTS,
    ],
    "sse_plain": [_BLOCKS_OFF, _DATACLASS_EVENTS],
    "json_loads": [Patch("waygpt.streaming:_stream_json", json.loads)],
    "urllib3_read1": [Patch("waygpt._stream_reader:_stream_plain_reader", lambda raw: None)],
    # the direct http.client path kept, without the SDK's own de-chunking: http.client's
    # read1 hands over one HTTP chunk per call
    "http_client_chunks": [
        Patch("waygpt._stream_reader:StreamBodyReader.__init__", lines=[(
            "            self._chunked = _ChunkedBody(self._fp.fp)\n"
            "            self._read = self._chunked.read\n",
            "            self._read = self._read_http_client\n")]),
        Patch("waygpt._stream_reader:StreamBodyReader.drain", lines=[(
            "if self._chunked is None and getattr(raw, \"length_remaining\", None) is None:",
            "if self._fp is None and getattr(raw, \"length_remaining\", None) is None:")]),
    ],
    "session_prepare": [Patch("waygpt._requests_transport:_prepare", _session_prepare)],
    "no_watchdog": [Patch("waygpt._requests_transport:watchdog", lambda: _NO_WATCHDOG)],
    "no_fork_check": [
        Patch("waygpt._requests_transport:RequestsTransport.run", lines=[(
            "        if self._generation != fork_generation():\n"
            "            self._after_fork()\n", "")]),
        Patch("waygpt._requests_transport:watchdog", source="waygpt._watchdog:watchdog",
              lines=[("    if _watchdog_generation != fork_generation():\n"
                      "        _watchdog, _watchdog_generation = Watchdog(), fork_generation()\n",
                      "")]),
    ],
    "async_readany": [Patch("waygpt._aiohttp_transport:AiohttpAnswer.read", lines=[(
        "data: bytes = await (content.read(_STREAM_READ_SIZE) if loop else content.readany())",
        "data: bytes = await content.readany()")])],
    "no_fork_check_async": [Patch("waygpt._aiohttp_transport:AiohttpTransport._leave_parent",
                                  lambda self: None)],
}


class NotApplicable(Exception):
    """A variant that cannot be measured; its message is what the table shows."""


def _lookup(path: str) -> Tuple[Any, str, Any]:
    """(owner, attribute, current value) of "module:Qual.name"; NotApplicable if gone."""
    module, _, qualname = path.partition(":")
    *owners, name = qualname.split(".")
    try:
        owner: Any = importlib.import_module(module)
        for part in owners:
            owner = getattr(owner, part)
        return owner, name, getattr(owner, name)
    except (ImportError, AttributeError):
        raise NotApplicable("n/a (not in src)") from None


def _recompiled(func: Any, lines: Sequence[Tuple[str, str]]) -> Any:
    """``func`` compiled again from its source (indented as in its file, as ``lines`` are)
    with ``lines`` replaced, in its module's globals."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        raise NotApplicable("n/a (not in src)") from None
    for old, new in lines:
        if old not in source:
            raise NotApplicable("n/a (not in src)")
        source = source.replace(old, new)
    flags = __future__.annotations.compiler_flag  # as the module: annotations stay strings
    code = compile(textwrap.dedent(source), f"<audit: {func.__qualname__}>", "exec", flags,
                   dont_inherit=True)
    namespace: Dict[str, Any] = {}
    exec(code, func.__globals__, namespace)
    return namespace[func.__name__]


def _patches(variant: str) -> List[Tuple[Any, str, Any]]:
    """(owner, attribute, value while the variant runs) for each of its patches."""
    made = []
    for patch in VARIANTS.get(variant, []):
        owner, name, _current = _lookup(patch.target)
        value = patch.value
        if patch.make is not None:
            try:
                value = patch.make()
            except (ImportError, AttributeError):
                raise NotApplicable("n/a (not in src)") from None
        if patch.lines:
            value = _recompiled(_lookup(patch.source or patch.target)[2], patch.lines)
        made.append((owner, name, value))
    return made


@contextlib.contextmanager
def _applied(patches: Sequence[Tuple[Any, str, Any]]) -> Iterator[None]:
    saved = [(owner, name, getattr(owner, name)) for owner, name, _value in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


def _counting(value: Any, key: Tuple[str, int], hits: set) -> Any:  # type: ignore[type-arg]
    @functools.wraps(value)
    def counted(*args: Any, **kwargs: Any) -> Any:
        hits.add(key)
        return value(*args, **kwargs)

    return counted


# (variant, patch index) that some figure called; (variant, -1): the variant was measured
_USED: set = set()  # type: ignore[type-arg]


def _check(variant: str, probe: Callable[[], Any]) -> List[Tuple[Any, str, Any]]:
    """The variant's patches, once ``probe`` (a little of the figure's work) ran under
    them, counting their calls; NotApplicable if it cannot be measured there."""
    patches = _patches(variant)
    hits: set = set()  # type: ignore[type-arg]
    counted = [(owner, name, _counting(value, (variant, index), hits))
               for index, (owner, name, value) in enumerate(patches)]
    try:
        with _applied(counted):
            probe()
    except Exception as exc:  # noqa: BLE001 - a variant src no longer fits
        raise NotApplicable(f"n/a (fails: {type(exc).__name__})") from None
    if patches and not hits:
        raise NotApplicable("n/a (not called)")
    _USED.update(hits | {(variant, -1)})
    return patches


def _figure(results: Dict[str, Any], figure: str, variants: Sequence[str], work: harness.Work,
            probe: Callable[[], Any], rounds: int,
            settle: Optional[Callable[[], Any]] = None) -> None:
    """CPU per unit of ``work`` for the SDK as it is (twice: "as_is", "control") and under
    each variant that can be measured; the others are noted as n/a."""
    print(f"audit: {figure} ...", file=sys.stderr, flush=True)
    chosen: Dict[str, Any] = {"as_is": [], "control": []}
    skipped: Dict[str, str] = {}
    for variant in variants:
        try:
            chosen[variant] = _check(variant, probe)
        except NotApplicable as why:
            skipped[variant] = str(why)
    try:
        samples = harness.rotate({name: work for name in chosen}, rounds,
                                 around=lambda name: _applied(chosen[name]), settle=settle)
    except Exception as exc:  # noqa: BLE001 - the figure's own work no longer runs
        results[figure] = {"failed": f"n/a (figure fails: {type(exc).__name__}: {exc})"}
        return
    results[figure] = {"samples": samples, "skipped": skipped}


# -- the figures --------------------------------------------------------------------------------


def _stream_work(client: Any, events: int, interval: float) -> harness.Work:
    options = harness.bench(events, "chunked", interval)
    return harness.expect(lambda: harness.sdk_stream(client, options), events)


def _decoder_work(chunks: List[bytes], repeat: int) -> harness.Work:
    """``ChatEventParser`` (``push``, then ``pull`` until ``[]``) over ``chunks``, ``repeat``
    times."""
    from waygpt.streaming import ChatEventParser

    events = sum(chunk.count(b"\n\n") for chunk in chunks)

    def work() -> int:
        for _ in range(repeat):
            parser = ChatEventParser(200, None)
            for chunk in chunks:
                parser.push(chunk)
                while parser.pull():
                    pass
        return events * repeat

    return work


def _measure_sync(server: harness.Server, profile: Dict[str, int],
                  results: Dict[str, Any]) -> None:
    with harness.sdk_client(server.url) as client:
        _figure(results, "fast_stream", ["sse_blocks_off", "sse_dataclass", "sse_plain",
                                         "json_loads", "urllib3_read1", "http_client_chunks"],
                _stream_work(client, profile["fast_events"], 0.0),
                _stream_work(client, 2000, 0.0), profile["fast_rounds"],
                # the urllib3 variant closes its connection after each stream: the next
                # stream would pay for a new one
                settle=_stream_work(client, 20, 0.0))
        _figure(results, "paced_stream", ["sse_blocks_off", "sse_dataclass", "sse_plain",
                                          "json_loads", "urllib3_read1",
                                          "http_client_chunks"],
                _stream_work(client, profile["paced_events"], PACE),
                _stream_work(client, 20, PACE), profile["paced_rounds"],
                settle=_stream_work(client, 20, 0.0))
        events = [b"data: " + chunk_json(i) + b"\n\n" for i in range(2000)]
        joined = b"".join(events)
        blocks = [joined[i : i + 65536] for i in range(0, len(joined), 65536)]
        _figure(results, "decoder_blocks", ["sse_blocks_off", "sse_dataclass", "sse_plain",
                                            "json_loads"],
                _decoder_work(blocks, 5), _decoder_work(blocks, 1), profile["decoder_rounds"])
        _figure(results, "decoder_single", ["sse_dataclass", "json_loads"],
                _decoder_work(events, 5), _decoder_work(events, 1), profile["decoder_rounds"])
        _figure(results, "small_request", ["session_prepare", "no_watchdog", "no_fork_check"],
                harness.repeat(client.get_models, profile["calls"]),
                harness.repeat(client.get_models, 3), profile["call_rounds"],
                settle=client.get_models)
        _figure(results, "threads_request", ["session_prepare", "no_watchdog", "no_fork_check"],
                harness.in_threads(client.get_models, profile["thread_calls"], THREADS),
                harness.in_threads(client.get_models, THREADS * 3, THREADS),
                profile["call_rounds"], settle=client.get_models)
        results["micro_us"] = _micro(client)


def _micro(client: Any) -> Dict[str, Any]:
    """The watchdog's arm and disarm, and one fork check, alone (us per call)."""
    loops = 200_000
    try:
        from waygpt import _watchdog
        from waygpt._fork import fork_generation

        dog = _watchdog.watchdog()
        watch = _watchdog.Watch(time.monotonic() + 3600, lambda: None)
        dog.arm(watch)  # the thread is started once per process, not per call
        dog.disarm(watch)
        transport = client._transport
        arm = min(timeit.repeat(lambda: (dog.arm(watch), dog.disarm(watch)), number=loops,
                                repeat=5))
        check = min(timeit.repeat(lambda: transport._generation != fork_generation(),
                                  number=loops, repeat=5))
    except Exception as exc:  # noqa: BLE001 - src changed: reported, not measured
        return {"failed": f"n/a ({type(exc).__name__}: {exc})"}
    return {"watchdog_arm_disarm": round(arm / loops * 1e6, 3),
            "fork_check": round(check / loops * 1e6, 3)}


def _measure_async(server: harness.Server, profile: Dict[str, int],
                   results: Dict[str, Any]) -> None:
    loop = asyncio.new_event_loop()
    try:
        client = harness.async_sdk_client(server.url)  # its session is made in the loop

        def streams(events: int) -> harness.Work:
            options = harness.bench(events)
            return harness.streams_at_once(
                loop, lambda: harness.async_sdk_stream(client, options), STREAMS, events)

        calls = functools.partial(harness.in_tasks, loop, client.get_models)
        try:
            _figure(results, "async_request", ["no_fork_check_async"],
                    calls(profile["async_calls"]), calls(3), profile["async_call_rounds"])
            _figure(results, "async_tasks", ["no_fork_check_async"],
                    harness.in_tasks(loop, client.get_models, profile["task_calls"], TASKS),
                    harness.in_tasks(loop, client.get_models, TASKS, TASKS),
                    profile["async_call_rounds"])
            _figure(results, "async_stream", ["async_readany"],
                    streams(profile["async_events"]), streams(200),
                    profile["async_stream_rounds"])

            def paced(events: int) -> harness.Work:
                options = harness.bench(events, "chunked", PACE)
                return harness.expect(lambda: loop.run_until_complete(
                    harness.async_sdk_stream(client, options)), events)

            _figure(results, "async_paced", ["async_readany"], paced(profile["paced_events"]),
                    paced(20), profile["paced_rounds"])
        finally:
            loop.run_until_complete(client.close())
    finally:
        loop.close()


# -- the table ----------------------------------------------------------------------------------

FIGURES = {
    "fast_stream": "fast stream, events/CPU s",
    "paced_stream": "paced stream, events/CPU s",
    "decoder_blocks": "decoder only, 64 KiB chunks, events/CPU s",
    "decoder_single": "decoder only, 1 event per chunk, events/CPU s",
    "small_request": "CPU per get_models(), us",
    "async_request": "async CPU per get_models(), sequential, us",
    "async_stream": f"async, {STREAMS} streams, events/CPU s",
    "threads_request": f"CPU per get_models() from {THREADS} threads, us",
    "async_tasks": f"async CPU per get_models() from {TASKS} tasks, us",
    "async_paced": "async paced stream, events/CPU s",
}
# shown in microseconds per call
PER_CALL = {"small_request", "async_request", "threads_request", "async_tasks"}
# (optimisation, variant, figure, role): "decides" rows give the recommendation (the figure
# the optimisation was made for), "cost" rows show what the SDK pays per call.
ROWS: List[Tuple[str, str, str, str]] = [
    ("control: nothing turned off (the noise)", "control", "fast_stream", ""),
    *[("", "control", figure, "") for figure in list(FIGURES)[1:]],
    ("sse.py: _read_blocks for big chunks (vs always _read_lines)", "sse_blocks_off",
     "paced_stream", "decides"),
    ("", "sse_blocks_off", "fast_stream", ""),
    ("", "sse_blocks_off", "decoder_blocks", ""),
    ("sse.py: object.__new__/__dict__ events (vs the dataclass constructor)",
     "sse_dataclass", "paced_stream", "decides"),
    ("", "sse_dataclass", "fast_stream", ""),
    ("", "sse_dataclass", "decoder_blocks", ""),
    ("", "sse_dataclass", "decoder_single", ""),
    ("sse.py: both (vs _read_lines and the dataclass constructor)", "sse_plain",
     "paced_stream", "decides"),
    ("", "sse_plain", "fast_stream", ""),
    ("", "sse_plain", "decoder_blocks", ""),
    ("streaming.py: _stream_json (vs json.loads)", "json_loads", "paced_stream", "decides"),
    ("", "json_loads", "fast_stream", ""),
    ("", "json_loads", "decoder_blocks", ""),
    ("_stream_reader.py: direct http.client reads and _ChunkedBody (vs urllib3 read1)",
     "urllib3_read1", "paced_stream", "decides"),
    ("", "urllib3_read1", "fast_stream", ""),
    ("_stream_reader.py: _ChunkedBody (vs http.client read1, one chunk a call)",
     "http_client_chunks", "paced_stream", "decides"),
    ("", "http_client_chunks", "fast_stream", ""),
    ("_requests_transport.py: _prepare (vs session.prepare_request)", "session_prepare",
     "threads_request", "decides"),
    ("", "session_prepare", "small_request", ""),
    ("_aiohttp_transport.py: stream reads of 16 KiB (vs readany())", "async_readany",
     "async_paced", "decides"),
    ("", "async_readany", "async_stream", ""),
    ("_watchdog.py: arm/disarm per call (cost)", "no_watchdog", "threads_request", "cost"),
    ("", "no_watchdog", "small_request", "cost"),
    ("fork checks per call, sync: run() and watchdog() (cost)", "no_fork_check",
     "threads_request", "cost"),
    ("fork check per call, async: _current_session() (cost)", "no_fork_check_async",
     "async_tasks", "cost"),
]
COLUMNS = ("optimisation", "figure", "with it", "without it", "buys", "per round",
           "recommendation")


def table(results: Dict[str, Any]) -> List[Dict[str, str]]:
    rows = []
    for label, variant, figure, role in ROWS:
        row = dict(zip(COLUMNS, (label, FIGURES[figure], "-", "-", "-", "-", "")))
        rows.append(row)
        measured = results.get(figure, {"failed": "n/a (not measured)"})
        if "failed" in measured:
            row["buys"] = measured["failed"]
            continue
        samples = measured["samples"]
        with_ = harness.median(samples["as_is"])
        row["with it"] = (f"{with_ * 1e6:.1f}" if figure in PER_CALL else f"{1 / with_:,.0f}")
        if variant not in samples:
            row["buys"] = measured["skipped"].get(variant, "n/a")
            continue
        without = harness.median(samples[variant])
        row["without it"] = (f"{without * 1e6:.1f}" if figure in PER_CALL
                             else f"{1 / without:,.0f}")
        per_round = [w / a - 1 for a, w in zip(samples["as_is"], samples[variant])]
        row["per round"] = f"{min(per_round) * 100:+.0f}..{max(per_round) * 100:+.0f} %"
        buys = without / with_ - 1
        if role == "cost":
            row["buys"] = f"costs {(with_ / without - 1) * 100:+.1f} %"
            row["recommendation"] = f"{(with_ - without) * 1e6:+.1f} us per call"
        else:
            row["buys"] = f"{buys * 100:+.1f} %"
            if variant == "control":
                row["recommendation"] = "noise floor"
            elif role == "decides":  # judged only where the figure's noise cannot tip it
                noise = abs(harness.median(samples["control"]) / with_ - 1)
                row["recommendation"] = (
                    "keep" if buys - noise >= THRESHOLD else "remove (< 10 %)"
                    if buys + noise < THRESHOLD else f"undecided (noise {noise * 100:.0f} %)")
    return rows


def main(quick: bool, path: str, markdown: bool) -> int:
    """The audit, for ``run.py --audit``; 0 even when a variant is n/a (the table says)."""
    profile = PROFILES["quick" if quick else "full"]
    results: Dict[str, Any] = {}
    started = time.monotonic()
    with harness.Server() as server:
        _measure_sync(server, profile, results)
        _measure_async(server, profile, results)
    seconds = round(time.monotonic() - started, 1)
    rows = table(results)
    print(f"waygpt {_version()}, Python {sys.version.split()[0]}, "
          f"{'quick' if quick else 'full'} audit in {seconds} s; the medians of "
          f"{profile['fast_rounds']}/{profile['paced_rounds']}/{profile['decoder_rounds']}/"
          f"{profile['call_rounds']}/{profile['async_call_rounds']}/"
          f"{profile['async_stream_rounds']} rounds (fast stream/paced stream/decoder/"
          "small request/async request/async streams)")
    cells = [[row[c] for c in COLUMNS] for row in rows]
    print(harness.render(COLUMNS, cells))
    micro = results["micro_us"]
    print("alone: " + (micro["failed"] if "failed" in micro else
                       f"watchdog arm + disarm {micro['watchdog_arm_disarm']:.2f} us per call, "
                       f"one fork-generation check {micro['fork_check'] * 1000:.0f} ns"))
    unused = [f"{variant}: {patch.target}" for variant, patches in VARIANTS.items()
              for index, patch in enumerate(patches)
              if (variant, -1) in _USED and (variant, index) not in _USED]
    if unused:  # a part of a variant that no figure reached: its rows measure less than it says
        print("replacements that no figure called: " + "; ".join(unused))
    if markdown:
        print("\n" + harness.render(COLUMNS, cells, markdown=True))
    harness.write_json(path, {"profile": "quick" if quick else "full", "seconds": seconds,
                              "table": rows, "unused": unused, "figures": results})
    return 0


def _version() -> str:
    import waygpt

    return str(waygpt.__version__)
