"""``waygpt batch IN OUT``: the requests of a JSONL file, bounded, throttled and resumable."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import threading
from typing import Any, Dict, Iterator

from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    int_at_least,
)
from ._run import COMMAND_EPILOG, Run, add_command

# WayGPTClient pools 32 connections: more threads would open and drop one per request.
MAX_CONCURRENCY = 32

_EPILOG = """\
a line of IN (the url may also be /v1/images/generations):
  {"custom_id": "p1", "method": "POST", "url": "/v1/chat/completions",
   "body": {"messages": [{"role": "user", "content": "Describe: tea"}]}}

exit codes: 0 every request answered, 5 some failed (error lines in OUT),
130 stopped by Ctrl+C or SIGTERM (run the same command again to resume).
""" + COMMAND_EPILOG


def _concurrency(text: str) -> int:
    value = int_at_least(1)(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CONCURRENCY}: {text!r}")
    return value


_concurrency.__name__ = "integer"


def register(commands: Any) -> None:
    """Add ``batch`` to ``commands`` (an ``add_subparsers()`` result)."""
    parser = add_command(
        commands, "batch",
        "run many requests from a JSONL file, writing each answer to OUT as it arrives",
        _batch, own_options=("--max-retries",),
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("input", metavar="IN",
                        help="the requests, one a line, in the OpenAI Batch API's format")
    parser.add_argument("output", metavar="OUT",
                        help="the answers, a line per request; run again to resume")
    parser.add_argument("--concurrency", type=_concurrency, default=8, metavar="N",
                        help=f"requests in flight at once, 1 to {MAX_CONCURRENCY} "
                             "(default: %(default)s)")
    parser.add_argument("--rpm", type=int_at_least(1), metavar="N",
                        help="at most N requests, retries included, start in any minute "
                             "(default: no limit)")
    # SUPPRESS, like the global options: `waygpt --max-retries 2 batch ...` works too.
    parser.add_argument("--max-retries", type=int_at_least(0), metavar="N",
                        default=argparse.SUPPRESS,
                        help="retries after a 429 or a 5xx the client retries, a failed connection "
                             "or a timeout; any other error is final (default: 5)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the requests whose line in OUT is an error")


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, ended: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (no new request; those in flight finish); a second
    one raises KeyboardInterrupt (they are abandoned); once ``ended`` is set (the run is
    over, its summary being written) they do nothing. A signal the shell told this process
    to ignore (a background job's SIGINT) stays ignored."""

    def handle(signum: int, frame: Any) -> None:
        if ended.is_set():
            return
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: Dict[int, Any] = {}
    for name in ("SIGINT", "SIGTERM"):
        number = getattr(signal, name, None)
        if number is None or signal.getsignal(number) == signal.SIG_IGN:
            continue
        previous[number] = signal.signal(number, handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _batch(run: Run) -> int:
    from .._batch import DEFAULT_MAX_RETRIES, BatchInputError, batch

    client = run.project_client()
    source, output = run.opt("input"), run.opt("output")
    max_retries = run.opt("max_retries")
    stop, ended = threading.Event(), threading.Event()
    again = f"waygpt batch {_quoted(source)} {_quoted(output)}"
    # The handlers stay until the summary is out: a signal as the run ends changes nothing.
    with _stop_on_signals(stop, ended):
        try:
            summary = batch(
                client, source, output,
                concurrency=run.opt("concurrency"),
                rpm=run.opt("rpm"),
                max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
                retry_failed=bool(run.opt("retry_failed")),
                progress=run.err,
                stop=stop,
            )
        except KeyboardInterrupt:
            run.note(f"stopped; to resume, run the same command again: {again}")
            return EXIT_INTERRUPTED
        except BatchInputError as exc:
            run.err.write(f"error: {exc.message}\n")
            return EXIT_USAGE
        ended.set()
        return _report(run, summary, again)


def _report(run: Run, summary: Any, again: str) -> int:
    """The summary on stdout with --json, what to do next on stderr; the exit code."""
    if run.json:
        run.print_json(summary.as_dict())
        run.out.flush()
    if summary.interrupted:
        run.note(f"to resume, run the same command again: {again}")
        return EXIT_INTERRUPTED
    failed = summary.failed + summary.skipped_failed
    if failed:
        run.note(f"{failed:,} request{'s' if failed > 1 else ''} failed (error lines in "
                 f"{summary.output}); to run them again: {again} --retry-failed")
        return EXIT_SOME_FAILED
    return EXIT_OK


def _quoted(path: str) -> str:
    return shlex.quote(path)

