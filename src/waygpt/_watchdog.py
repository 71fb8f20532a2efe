"""Ends blocked socket reads at a call's deadline (``total_timeout``) in the sync client.

One daemon thread sleeps until the earliest deadline of the calls in progress and calls that
call's ``expire`` (which shuts its socket): a call that ends in time costs a dict insert and
delete. The thread ends when idle, and before a fork when no call is in progress (gunicorn
``--preload`` after a warm-up call finds no SDK thread). Why a thread: docs/architecture.md.
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
# How long a fork waits for the idle thread to end (well under a millisecond, normally).
_FORK_JOIN = 1.0

Expire = Callable[[], None]


class Watchdog:
    """The deadlines of the calls in progress, and the thread that enforces them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """No call, no thread, a new lock (in a forked child: the parent's thread does not
        exist, its lock may have been held at the fork, its calls are not the child's)."""
        self._lock = threading.Condition(threading.Lock())
        self._deadlines: Dict[Expire, float] = {}  # a call's expire: its time.monotonic()
        self._wake_at: Optional[float] = None  # when the thread will look next; None: idle
        self._thread: Optional[threading.Thread] = None
        self._stop = False  # a fork is coming: end the thread as soon as no call is left

    def arm(self, expire: Expire, at: float) -> None:
        with self._lock:
            self._deadlines[expire] = at
            self._stop = False  # a call is in progress: the thread stays for it
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="waygpt-deadlines", daemon=True
                )
                self._thread.start()
            elif self._wake_at is None or at < self._wake_at:
                self._lock.notify()  # an earlier deadline than the thread is waiting for

    def disarm(self, expire: Expire) -> None:
        with self._lock:
            self._deadlines.pop(expire, None)

    def stop_before_fork(self) -> None:
        """End the thread, and wait for it, when no call is in progress (else the process forks
        with it, and Python 3.12+ warns, as for any thread)."""
        with self._lock:
            thread = self._thread
            if thread is None or self._deadlines:
                return
            self._stop = True
            self._lock.notify()
        # Waited for in short steps, to stop waiting as soon as a call in another thread
        # arms the watchdog again (the thread then stays for that call).
        give_up = time.monotonic() + _FORK_JOIN
        while thread.is_alive() and not self._deadlines and time.monotonic() < give_up:
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
                if not self._deadlines:  # wait a little for the next call, else end
                    self._wake_at = None
                    if not self._stop:
                        lock.wait(_IDLE_EXIT)
                    if not self._deadlines:
                        self._thread = None
                        self._stop = False
                        return
                    continue
                due = [expire for expire, at in self._deadlines.items() if at <= now]
                if not due:
                    # (Woken now and then, too, to notice when no call is left.)
                    self._wake_at = min(min(self._deadlines.values()), now + _IDLE_EXIT)
                    lock.wait(self._wake_at - now)
                    continue
                self._wake_at = now + _EXPIRED_RECHECK
            for expire in due:
                try:
                    expire()
                except Exception:  # noqa: BLE001, S112 - one call's trouble must not stop the rest
                    continue
            with lock:
                lock.wait(_EXPIRED_RECHECK)


WATCHDOG = Watchdog()  # the process's
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=WATCHDOG.stop_before_fork, after_in_child=WATCHDOG.reset)
