"""The ``total_timeout`` watchdog thread is gone when the process forks, and comes back after.

gunicorn ``--preload`` (and docs/production.md's fork example) call the API in the parent,
then fork. The sync client's ``waygpt-deadlines`` thread lives on for a while after a call,
and Python 3.12+ warns at a fork of a process with threads ("This process ... is
multi-threaded, use of fork() may lead to deadlocks in the child"). The watchdog stops its
thread just before a fork, and the next call starts one again, in the parent and the child.

Each test runs its program in a fresh interpreter: this process has threads of its own (the
test server's), and the warning counts every thread of the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Dict

import pytest

from waygpt.testing import WayGPTTestServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SLOW = "/api/v1/waygpt/use-cases"

# The program's shared part: a client whose slow call only the watchdog can end (the body
# trickles in every 0.2 s, well within the read timeout, for 6 s), and the check that it
# ends at total_timeout=1 all the same.
PRELUDE = """
import os, sys, threading, time, warnings
from waygpt import APITimeoutError, WayGPTClient

client = WayGPTClient(api_url=sys.argv[1], project_key=sys.argv[2], timeout=(5, 5),
                      total_timeout=1.0, max_retries=0)

def watchdog_threads():
    return [t for t in threading.enumerate() if t.name == "waygpt-deadlines"]

def slow_call_ends_at_total_timeout():
    started = time.monotonic()
    try:
        client.get_use_cases()
    except APITimeoutError as error:
        assert "total_timeout" in error.message, error.message
    else:
        raise AssertionError("the slow call returned")
    elapsed = time.monotonic() - started
    assert elapsed < 4.0, f"the slow call took {elapsed:.1f} s"
"""


def run_program(server: WayGPTTestServer, body: str) -> subprocess.CompletedProcess[str]:
    env: Dict[str, str] = {
        name: value for name, value in os.environ.items()
        if not name.startswith("WAYGPT_") and "proxy" not in name.lower()
    }
    env["NO_PROXY"] = "*"
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, server.url, server.project_key],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def script_slow_answers(server: WayGPTTestServer) -> None:
    server.script(path=SLOW, times=None, chunk_delay=0.2, content_type="application/json",
                  chunks=[b"[" + b" " * 40] + [b" " * 40] * 28 + [b"]"])


def test_a_fork_after_a_call_finds_no_thread_and_deadlines_hold_on_both_sides(
    server: WayGPTTestServer,
) -> None:
    script_slow_answers(server)
    result = run_program(server, """
        def os_threads():  # what Python 3.12+ counts to decide whether to warn
            try:
                with open("/proc/self/stat") as stat:
                    return int(stat.read().rsplit(")", 1)[1].split()[17])
            except OSError:
                return threading.active_count()

        # Run in the parent right after the fork, before anything could start a thread.
        at_fork = []
        os.register_at_fork(after_in_parent=lambda: at_fork.append(os_threads()))
        client.get_models()
        assert watchdog_threads(), "the call started no watchdog thread"
        # Recorded, not raised: the "error" filter would hide it, os.fork() swallowing the
        # exception (CPython gh-135427, up to 3.13).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                assert not watchdog_threads()
                slow_call_ends_at_total_timeout()    # the child's own watchdog thread
                code = 0
            finally:
                os._exit(code)
        slow_call_ends_at_total_timeout()            # the parent's, started again
        assert watchdog_threads()
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        print("threads at the fork:", at_fork)
        for warning in caught:
            print("warned:", warning.category.__name__, warning.message)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "child 0\nthreads at the fork: [1]\n", result.stdout + result.stderr


def test_a_fork_during_a_call_in_another_thread_keeps_that_calls_deadline(
    server: WayGPTTestServer,
) -> None:
    # The thread must stay for the parent's call; the fork then sees it (and Python 3.12+
    # warns, as for any thread), and the child, which has no such call, gets its own.
    script_slow_answers(server)
    result = run_program(server, """
        warnings.simplefilter("ignore", DeprecationWarning)
        errors = []
        def call_in_a_thread():
            try:
                slow_call_ends_at_total_timeout()
            except BaseException as error:
                errors.append(error)
        caller = threading.Thread(target=call_in_a_thread)
        caller.start()
        time.sleep(0.3)                              # the call is in progress now
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                slow_call_ends_at_total_timeout()
                code = 0
            finally:
                os._exit(code)
        caller.join(10)
        assert not caller.is_alive() and not errors, errors
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "child 0\n", result.stderr
