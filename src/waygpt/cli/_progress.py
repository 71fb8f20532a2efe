"""Progress display for media jobs: a bar redrawn in place on a terminal, plain lines elsewhere.

:class:`JobProgress` is an ``on_update`` callback for ``WayGPTClient.wait_for_media_job``.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional, TextIO

__all__ = ["JobProgress", "format_job_line", "progress_bar"]

BAR_WIDTH = 24


def _percent(job: Mapping[str, Any]) -> Optional[float]:
    """The job's ``progress`` as a percentage in [0, 100], or None when it has none."""
    value = job.get("progress")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value:  # NaN
        return None
    return max(0.0, min(100.0, float(value)))


def progress_bar(percent: float, width: int = BAR_WIDTH) -> str:
    """``[#########---------------]``: a text bar, ASCII only so any console can show it."""
    filled = max(0, min(width, round(width * percent / 100.0)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def format_job_line(job: Mapping[str, Any], elapsed: float, bar: bool) -> str:
    """One status line: elapsed seconds, status and the percentage (with a bar on a TTY)."""
    status = str(job.get("status") or "unknown")
    line = f"{elapsed:6.1f}s  {status:<10}"
    percent = _percent(job)
    if percent is not None:
        if bar:
            line += f" {progress_bar(percent)}"
        line += f" {percent:3.0f}%"
    return line.rstrip()


class JobProgress:
    """Shows each change of a media job on ``stream``.

    On a terminal the line is redrawn in place with ``\\r``; otherwise each change gets its own
    line, so logs and pipes stay readable. Call :meth:`finish` once waiting is over.
    """

    def __init__(self, stream: TextIO, tty: Optional[bool] = None, prefix: str = "") -> None:
        self._stream = stream
        if tty is None:
            isatty = getattr(stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self._prefix = prefix
        self._started = time.monotonic()
        self._width = 0
        self.updates = 0

    def __call__(self, job: Mapping[str, Any]) -> None:
        self.updates += 1
        line = self._prefix + format_job_line(job, time.monotonic() - self._started, self.tty)
        if self.tty:
            # Pad with spaces to wipe what is left of a longer previous line.
            padding = " " * max(0, self._width - len(line))
            self._stream.write("\r" + line + padding)
            self._width = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the redrawn line (on a terminal), so the next output starts on its own line."""
        if self.tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0
