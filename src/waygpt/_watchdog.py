"""Ends blocked socket reads at a call's deadline (``total_timeout``) in the sync client.

A socket timeout bounds each read, not a call: a server that sends one byte just before
every timeout keeps a call alive for hours. So each call is registered here with its
deadline, and one daemon thread, when a deadline passes, calls the call's ``expire``
callback, which shuts the socket down; the blocked read then returns at once and the call
raises ``APITimeoutError``. The thread sleeps until the earliest deadline, so a process that
makes calls pays a dictionary insert and delete per call and no wake-ups while calls finish
in time; it ends when no call has been in progress for a while. After a fork the child
starts with no thread and no registrations (the parent's calls are not the child's to end).

Just before a fork (``os.register_at_fork(before=...)``) the thread is woken and ended, and
waited for a moment, unless a call is in progress in another thread: then it keeps
enforcing that call's deadline in the parent, and the process forks with the thread alive
(Python 3.12+ then warns, as for any thread; the child has no thread either way). A fork of
a process that made calls earlier (gunicorn ``--preload`` after a warm-up call) thus finds
no SDK thread. The next call, in the parent or the child, starts a thread again.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Dict, Optional

# While a deadline has passed but its call has not finished (its socket may appear only
# after a connect that was already under way), its callback is called again this often.
_EXPIRED_RECHECK = 0.05
# The thread ends after this many seconds without a call in progress; the next call
# starts it again (a thread start costs about as much as one request).
_IDLE_EXIT = 2.0
# How long a fork waits for the idle thread to end (it takes well under a millisecond; the
# bound only keeps a fork from hanging on a thread that cannot be scheduled).
_FORK_JOIN = 1.0


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
        self._stop = False  # a fork is coming: end the thread as soon as no call is left

    def arm(self, watch: Watch) -> None:
        with self._lock:
            self._watches[id(watch)] = watch
            self._stop = False  # a call is in progress: the thread stays for it
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

    def stop_before_fork(self) -> None:
        """End the thread, and wait for it, when no call is in progress (see the module)."""
        with self._lock:
            thread = self._thread
            if thread is None or self._watches:
                return
            self._stop = True
            self._lock.notify()
        # Waited for in short steps, to stop waiting as soon as a call in another thread
        # arms the watchdog again (the thread then stays for that call).
        give_up = time.monotonic() + _FORK_JOIN
        while thread.is_alive() and not self._watches and time.monotonic() < give_up:
            thread.join(0.01)
        # join() returns when the thread's Python state is gone, a moment before the OS
        # thread itself; Python 3.12+ counts the OS threads (Linux: /proc/self/stat) to
        # decide whether to warn, so on a busy machine the fork would still see it.
        task = f"/proc/self/task/{thread.native_id}"
        while not thread.is_alive() and os.path.exists(task) and time.monotonic() < give_up:
            time.sleep(0.0005)

    def _run(self) -> None:
        lock = self._lock
        while True:
            with lock:
                now = time.monotonic()
                if not self._watches:
                    # No call in progress: wait a little for the next one, else end, so that
                    # a process that forks later (gunicorn --preload) has no thread left.
                    self._wake_at = None
                    if not self._stop:
                        lock.wait(_IDLE_EXIT)
                    if not self._watches:
                        self._thread = None
                        self._stop = False
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


def watchdog() -> Watchdog:
    """The process's watchdog."""
    return _watchdog


def _new_watchdog_in_child() -> None:
    # The parent's thread does not exist here, its lock may have been held at the fork, and
    # its calls are not the child's to end.
    global _watchdog
    _watchdog = Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=lambda: _watchdog.stop_before_fork(),
                        after_in_child=_new_watchdog_in_child)
