"""Ends blocked socket reads at a call's deadline (``total_timeout``) in the sync client.

A socket timeout bounds each read, not a call: a server that sends one byte just before
every timeout keeps a call alive for hours. So each call is registered here with its
deadline, and one daemon thread, when a deadline passes, calls the call's ``expire``
callback, which shuts the socket down; the blocked read then returns at once and the call
raises ``APITimeoutError``. The thread sleeps until the earliest deadline, so a process that
makes calls pays a dictionary insert and delete per call and no wake-ups while calls finish
in time; it ends when no call has been in progress for a while. After a fork the child
starts with no thread and no registrations (the parent's calls are not the child's to end).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional

from ._fork import fork_generation

# While a deadline has passed but its call has not finished (its socket may appear only
# after a connect that was already under way), its callback is called again this often.
_EXPIRED_RECHECK = 0.05
# The thread ends after this many seconds without a call in progress; the next call
# starts it again (a thread start costs about as much as one request).
_IDLE_EXIT = 2.0


class Watch:
    """One call's registration: its deadline, and what to do when it passes."""

    __slots__ = ("at", "expire")

    def __init__(self, at: float, expire: Callable[[], None]) -> None:
        self.at = at  # time.monotonic() of the deadline
        self.expire = expire


class Watchdog:
    """The deadlines of the calls in progress, and the thread that enforces them."""

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._watches: Dict[int, Watch] = {}
        self._wake_at: Optional[float] = None  # when the thread will look next; None: idle
        self._thread: Optional[threading.Thread] = None

    def arm(self, watch: Watch) -> None:
        with self._lock:
            self._watches[id(watch)] = watch
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="waygpt-deadlines", daemon=True
                )
                self._thread.start()
            elif self._wake_at is None or watch.at < self._wake_at:
                self._lock.notify()  # an earlier deadline than the thread is waiting for

    def disarm(self, watch: Watch) -> None:
        with self._lock:
            self._watches.pop(id(watch), None)

    def _run(self) -> None:
        lock = self._lock
        while True:
            with lock:
                now = time.monotonic()
                if not self._watches:
                    # No call in progress: wait a little for the next one, else end, so that
                    # a process that forks later (gunicorn --preload) has no thread left.
                    self._wake_at = None
                    lock.wait(_IDLE_EXIT)
                    if not self._watches:
                        self._thread = None
                        return
                    continue
                due = [watch for watch in self._watches.values() if watch.at <= now]
                if not due:
                    # (Woken now and then, too, to notice when no call is left.)
                    earliest = min(w.at for w in self._watches.values())
                    self._wake_at = min(earliest, now + _IDLE_EXIT)
                    lock.wait(self._wake_at - now)
                    continue
                self._wake_at = now + _EXPIRED_RECHECK
            for watch in due:
                try:
                    watch.expire()
                except Exception:  # noqa: BLE001, S112 - one call's trouble must not stop the rest
                    continue
            with lock:
                lock.wait(_EXPIRED_RECHECK)


_watchdog = Watchdog()
_watchdog_generation = fork_generation()


def watchdog() -> Watchdog:
    """The process's watchdog: a new one in a forked child, where the parent's thread does
    not exist, its lock may have been held at the fork, and its calls are not the child's."""
    global _watchdog, _watchdog_generation
    if _watchdog_generation != fork_generation():
        _watchdog, _watchdog_generation = Watchdog(), fork_generation()
    return _watchdog
