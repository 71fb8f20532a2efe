"""The server's wall clock: the machine's, moved by an offset a test sets.

A test of clock-skew handling needs a server whose clock disagrees with the client's; the
``Date`` header, the HMAC timestamp window, JWT times and ``created`` fields all read this.
The rate limiter keeps its own monotonic clock: windows measure durations, not dates.
"""

import math
import time
from datetime import datetime, timezone


def checked_offset(value: object) -> float:
    """``value`` as an offset in seconds; TypeError or ValueError when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("clock_offset must be a number of seconds")
    if not math.isfinite(value):
        raise ValueError("clock_offset must be finite")
    return float(value)


class ServerClock:
    """Seconds since the epoch as the server tells them: the machine's plus ``offset``.

    ``offset`` is read on every call and written whole, so a test may change it while the
    server runs.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = checked_offset(offset)

    def now(self) -> float:
        return time.time() + self.offset

    def iso(self) -> str:
        """The time now, as the API writes ``created_at``: ``2025-01-31T12:00:00Z``."""
        moment = datetime.fromtimestamp(self.now(), timezone.utc)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
