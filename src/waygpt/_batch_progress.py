"""What a batch shows while it runs: a bar redrawn on a terminal, a line every 10% or 30 s
elsewhere (logs, CI), notes when something changes (a pause after a 429, a stop), and the
summary at the end."""

from __future__ import annotations

import math
import shutil
import time
from typing import TYPE_CHECKING, Any, List, NamedTuple, Optional, TextIO

if TYPE_CHECKING:
    from ._batch import BatchSummary
    from ._batch_files import Resume

__all__ = ["BatchDisplay", "Snapshot", "format_duration", "summary_lines"]

_BAR_WIDTH = 20
_REDRAW = 0.2  # seconds between two redraws of the bar
_LOG_EVERY = 30.0  # seconds between two progress lines when the stream is not a terminal
_LOG_STEPS = 10  # ... and a line at every tenth of the run


class Snapshot(NamedTuple):
    """The run's counts at one moment."""

    to_run: int
    finished: int  # succeeded or failed (a line written)
    failed: int
    in_flight: int
    elapsed: float
    waiting: Optional[str]  # why requests wait, when they do


def format_duration(seconds: float, precise: bool = False) -> str:
    """``41 s``, ``2 min 5 s``, ``3 h 20 min``: whole seconds, rounded up (``precise``:
    tenths under a minute, ``1.3 s``)."""
    if precise and seconds < 59.95:
        return f"{max(0.0, seconds):.1f} s"
    total = max(0, math.ceil(round(seconds, 3)))
    if total < 60:
        return f"{total} s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _rate_and_eta(snap: Snapshot) -> str:
    if not snap.finished or snap.elapsed <= 0:
        return "ETA -"
    rate = snap.finished / snap.elapsed
    left = snap.to_run - snap.finished
    return f"{rate:.1f}/s, ETA {format_duration(left / rate)}"


def progress_line(snap: Snapshot, bar: bool, width: int = 0) -> str:
    """One line of progress: done of all, failures, in flight, rate, ETA, and any wait.

    With ``width``, the parts that matter least are left out until the line fits (a bar
    redrawn in place must not wrap): the rate and ETA first (a wait makes them stale), then
    the requests in flight, then a zero of failures; why the run waits stays.
    """
    share = snap.finished / snap.to_run if snap.to_run else 1.0
    head = f"{snap.finished:,}/{snap.to_run:,} ({share:.0%})"
    if bar:
        filled = min(_BAR_WIDTH, int(_BAR_WIDTH * share))
        head = "[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + "] " + head
    # (text, what it is worth when the line is too long)
    parts = [(f"{snap.failed:,} failed", 3 if snap.failed else 1),
             (f"{snap.in_flight:,} in flight", 2),
             (_rate_and_eta(snap), 0 if snap.waiting else 2)]

    def joined() -> str:
        line = ", ".join([head] + [text for text, _ in parts])
        return line + f"; {snap.waiting}" if snap.waiting else line

    line = joined()
    while width and len(line) > width and parts:
        parts.remove(min(parts, key=lambda part: part[1]))
        line = joined()
    return line[:width] if width else line


def summary_lines(summary: BatchSummary) -> List[str]:
    """The summary a run ends with: counts by outcome, tokens, retries, wall time."""
    ran = f"{summary.succeeded:,} succeeded, {summary.failed:,} failed"
    if summary.errors:
        ran += " (" + ", ".join(f"{code} {count:,}"
                                for code, count in sorted(summary.errors.items())) + ")"
    if summary.skipped:
        ran += f", {summary.skipped:,} skipped (answered by an earlier run"
        if summary.skipped_failed:
            ran += f", {summary.skipped_failed:,} of them with an error line"
        ran += ")"
    if summary.not_run:
        ran += f", {summary.not_run:,} not run"
    verb = "stopped" if summary.interrupted else "done"
    lines = [f"batch {verb} in {format_duration(summary.elapsed, precise=True)}: {ran}"]
    tokens = (f"tokens: {summary.total_tokens:,} (prompt {summary.prompt_tokens:,}, "
              f"completion {summary.completion_tokens:,})")
    if summary.retries:
        tokens += (f"; {summary.retries:,} retr{'ies' if summary.retries > 1 else 'y'}, "
                   f"{summary.rate_limited:,} rate-limited answer"
                   f"{'s' if summary.rate_limited != 1 else ''} (429)")
    lines.append(tokens)
    return lines


class BatchDisplay:
    """Progress on ``stream``: a bar redrawn in place on a terminal, lines elsewhere."""

    def __init__(self, stream: TextIO, tty: Optional[bool] = None) -> None:
        self._stream = stream
        if tty is None:
            isatty = getattr(stream, "isatty", None)
            try:
                tty = bool(isatty()) if callable(isatty) else False
            except (ValueError, OSError):  # a closed stream
                tty = False
        self.tty = tty
        self._drawn = 0  # width of the bar line on screen, 0 when there is none
        self._last = 0.0  # when the last line or bar was written
        self._step = 0  # the last tenth reported

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop a batch
            pass

    def _clear(self) -> None:
        if self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def note(self, text: str) -> None:
        """A line of its own (the bar is drawn again at the next tick)."""
        self._clear()
        self._write(f"batch: {text}\n")

    def start(self, source: str, total: int, skipped: int, resume: Resume, concurrency: int,
              rpm: Optional[int], output: str) -> None:
        if resume.repaired:
            self.note(f"the last line of {output} was cut short (a crash?) and is removed: "
                      "its request runs again")
        if resume.dropped:
            self.note(f"retrying failed requests: {resume.dropped:,} error "
                      f"line{'s' if resume.dropped > 1 else ''} removed from {output}")
        line = f"{total:,} request{'s' if total != 1 else ''} in {source}"
        if skipped:
            line += f", {skipped:,} already answered in {output}"
        line += f"; {total - skipped:,} to run, {concurrency} at a time"
        if rpm:
            line += f", at most {rpm:,} a minute"
        self.note(line)
        self._last = time.monotonic()

    def tick(self, snap: Snapshot) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self._last >= _REDRAW:
                self._draw(snap)
                self._last = now
            return
        step = snap.finished * _LOG_STEPS // snap.to_run if snap.to_run else _LOG_STEPS
        if (step > self._step and snap.finished < snap.to_run) or now - self._last >= _LOG_EVERY:
            self._step = max(self._step, step)
            self._write(f"batch: {progress_line(snap, bar=False)}\n")
            self._last = now

    def _draw(self, snap: Snapshot) -> None:
        width = max(40, shutil.get_terminal_size((80, 24)).columns - 1)
        line = progress_line(snap, bar=True, width=width)
        padding = " " * max(0, self._drawn - len(line))
        self._write("\r" + line + padding)
        self._drawn = len(line)

    def finish(self, summary: Any) -> None:
        self._clear()
        for line in summary_lines(summary):
            self._write(line + "\n")
