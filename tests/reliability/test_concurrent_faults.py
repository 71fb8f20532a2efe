"""16 threads share one signing client for 500 calls each while the server misbehaves.

The server is scripted with a seeded mix of answers on the models endpoint: rate limits
(429, ``Retry-After: 0``), 503s, connection resets, answers slower than the read timeout,
slow answers within it, and successes; the other endpoints the threads call answer for real
(with HMAC checked and nonces remembered by the server). Most answers are immediate, so the
8000 calls take seconds, not minutes, on two cores.

What must hold:

* every call ends in a result or a ``WayGPTError`` subclass; anything else is recorded as a
  failure (and so is a 403, which would mean a signature or nonce the server refused);
* no call takes longer than its attempts' timeouts allow, and every thread ends (joined
  with a generous bound, so a hang fails the test instead of blocking CI);
* no nonce reaches the server twice;
* the process has as many open file descriptors afterwards as before, once the client is
  closed (while it is open, only its pooled keep-alive sockets may remain).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional

import pytest

from waygpt.testing import ScriptedResponse, WayGPTTestServer

THREADS = 16
CALLS = 500
READ_TIMEOUT = 0.5  # seconds; the "too slow" answers take longer than this
CONNECT_TIMEOUT = 5.0
RETRIES = 2
SLOW_OK = 0.02  # slow, but well within the read timeout
SLOW_TOO_LONG = READ_TIMEOUT + 0.3
JOIN_BOUND = 240.0  # seconds for the whole run: far above its usual duration
# The longest a call may take: every attempt times out (plus a stale-connection replay),
# with a wide margin for a loaded machine. A hang is orders of magnitude above this.
CALL_BOUND = (RETRIES + 2) * (CONNECT_TIMEOUT + READ_TIMEOUT) + 10.0
FD_SETTLE = 10.0  # seconds to let the server's side of the sockets close

MODELS = "/api/v1/waygpt/models"
MODEL_IDS = ["gpt-4o-mini", "gpt-4o"]

# kind -> (weight, script); None is a plain success script
MIX: Dict[str, Any] = {
    "ok": (58, lambda: ScriptedResponse(path=MODELS, body=MODEL_IDS)),
    "429": (12, lambda: ScriptedResponse(
        path=MODELS, status=429, body={"detail": "Rate limit"}, headers={"Retry-After": "0"}
    )),
    "503": (12, lambda: ScriptedResponse(path=MODELS, status=503, body="<html>busy</html>")),
    "reset": (5, lambda: ScriptedResponse(path=MODELS, reset=True)),
    "slow": (11, lambda: ScriptedResponse(path=MODELS, body=MODEL_IDS, delay=SLOW_OK)),
    "too_slow": (2, lambda: ScriptedResponse(path=MODELS, body=MODEL_IDS, delay=SLOW_TOO_LONG)),
}


def _open_fds() -> Optional[int]:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc (not Linux): the descriptor check is skipped
        return None


def _wait_for_fds(target: int) -> Optional[int]:
    """Poll until the count drops to ``target`` (bounded); return the last count seen."""
    deadline = time.monotonic() + FD_SETTLE
    count = _open_fds()
    while count is not None and count > target and time.monotonic() < deadline:
        time.sleep(0.05)
        count = _open_fds()
    return count


def _queue_mix(server: WayGPTTestServer, count: int, seed: int) -> Counter:
    rng = random.Random(seed)
    kinds = list(MIX)
    weights = [MIX[k][0] for k in kinds]
    planned: Counter = Counter()
    for kind in rng.choices(kinds, weights, k=count):
        planned[kind] += 1
        server.script(MIX[kind][1]())
    return planned


def test_16_threads_share_one_client_through_faults(
    sdk, make_signed_client, hmac_server, make_retry
):
    server = hmac_server
    # Models calls (half of all calls, plus retries) meet the scripted mix; more scripts are
    # queued than can be used, so the mix lasts the whole run.
    planned = _queue_mix(server, THREADS * CALLS, seed=20240611)
    fds_before = _open_fds()

    client = make_signed_client(
        server, max_retries=make_retry(RETRIES), timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
    )
    calls: List[Callable[[], Any]] = [
        client.get_models,  # scripted
        client.get_models_full,  # real
        client.get_models,  # scripted
        lambda: client.create_widget_token(ttl_seconds=60),  # real, a signed POST body
    ]
    outcomes: Counter = Counter()
    failures: List[str] = []
    slowest = [0.0]
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        local: Counter = Counter()
        local_failures: List[str] = []
        local_slowest = 0.0
        start.wait(timeout=30)
        for n in range(CALLS):
            began = time.monotonic()
            try:
                calls[(n + index) % len(calls)]()
                local["ok"] += 1
            except sdk.WayGPTError as error:
                local[type(error).__name__] += 1
                if isinstance(error, sdk.PermissionDeniedError):
                    local_failures.append(f"403 (signature or nonce refused): {error}")
            except Exception as error:  # noqa: BLE001 - recorded as a failure, not raised
                local_failures.append(f"{type(error).__module__}.{type(error).__name__}: {error!r}")
            local_slowest = max(local_slowest, time.monotonic() - began)
        with lock:
            outcomes.update(local)
            failures.extend(local_failures)
            slowest[0] = max(slowest[0], local_slowest)

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(THREADS)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    deadline = began + JOIN_BOUND
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    elapsed = time.monotonic() - began
    report = (
        f"{sum(outcomes.values())} calls in {elapsed:.1f} s, outcomes {dict(outcomes)}, "
        f"planned {dict(planned)}, slowest call {slowest[0]:.2f} s"
    )
    print(report)

    assert not hung, f"threads still running after {JOIN_BOUND} s: {hung}; {report}"
    assert not failures, f"{len(failures)} failures, first: {failures[:5]}; {report}"
    assert sum(outcomes.values()) == THREADS * CALLS, report
    assert slowest[0] < CALL_BOUND, report
    # The mix really reached the callers: successes and each kind of typed error.
    assert outcomes["ok"] > THREADS * CALLS // 2, report
    assert outcomes["APITimeoutError"] > 0, report
    assert outcomes["APIConnectionError"] > 0, report  # resets (read errors: not retried)
    assert outcomes["RateLimitError"] + outcomes["InternalServerError"] > 0, report

    # Every attempt was signed afresh: the server never saw a nonce twice.
    recorded = server.requests
    nonces = [r.headers.get("x-mb-nonce") for r in recorded]
    assert None not in nonces
    assert len(set(nonces)) == len(nonces), "a nonce was sent twice"
    assert len(recorded) >= THREADS * CALLS

    # Descriptors: while the client is open, at most its pooled sockets (one per thread
    # that held a connection at once, each with the server's end in this same process).
    if fds_before is not None:
        while_open = _wait_for_fds(fds_before + 2 * THREADS)
        assert while_open is not None and while_open <= fds_before + 2 * THREADS, (
            f"{while_open} open descriptors, {fds_before} before"
        )
    client.close()
    if fds_before is not None:
        after = _wait_for_fds(fds_before)
        assert after == fds_before, f"{after} open descriptors after close, {fds_before} before"


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_threads_streaming_through_one_client_release_every_connection(
    sdk, server, make_retry, framing
):
    """Streams read to the end, abandoned half-way, or cut by the server, from 8 threads."""
    body = (
        b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n' * 20
        + b"data: [DONE]\n\n"
    )
    fds_before = _open_fds()
    rng = random.Random(7)
    for _ in range(8 * 40):
        kind = rng.choice(["full", "full", "cut", "reset", "error"])
        if kind == "reset":
            server.script(method="POST", path="/api/v1/waygpt/chat/completions", reset=True)
        elif kind == "error":
            server.script(method="POST", path="/api/v1/waygpt/chat/completions", status=500,
                          body={"detail": "boom"})
        else:
            server.script(
                method="POST",
                path="/api/v1/waygpt/chat/completions",
                chunks=[body] if kind == "full" else [body[:300]],
                framing=framing if kind == "full" else "length",
                content_length=None if kind == "full" else 5000,
                content_type="text/event-stream",
            )
    failures: List[str] = []
    lock = threading.Lock()
    messages = [{"role": "user", "content": "hi"}]

    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0,
        timeout=(CONNECT_TIMEOUT, 2.0),
    ) as client:

        def worker(index: int) -> None:
            for n in range(40):
                try:
                    with client.chat_completions(messages=messages, stream=True) as stream:
                        for seen, _chunk in enumerate(stream):
                            if (n + index) % 3 == 0 and seen == 5:
                                break  # abandon the stream half-way
                except sdk.WayGPTError:
                    pass
                except Exception as error:  # noqa: BLE001 - recorded as a failure
                    with lock:
                        failures.append(repr(error))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_BOUND)
        assert not [t for t in threads if t.is_alive()], "a streaming thread hung"
    assert not failures, failures[:5]
    if fds_before is not None:
        after = _wait_for_fds(fds_before)
        assert after == fds_before, f"{after} open descriptors after close, {fds_before} before"
