"""``waygpt.batch`` over real HTTP against the local server, with both drivers.

Each behaviour runs with ``WayGPTClient`` (threads) and, when aiohttp is installed, with
``AsyncWayGPTClient`` (asyncio tasks): one set of decisions, two drivers. Faults are the
server's scripts (429, 5xx, resets, slow answers) and its project policy (a throttled
project). The command line (signals, exit codes) is in ``test_batch_cli.py``.
"""

from __future__ import annotations

import _thread
import asyncio
import importlib.util
import io
import json
import os
import pickle
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional

import pytest

import waygpt
from waygpt import BatchInputError, WayGPTClient, _batch
from waygpt._batch_files import RequestSource, check_requests
from waygpt._batch_progress import Snapshot, progress_line
from waygpt.retry import DEFAULT_STATUS_FORCELIST, RetryPolicy, default_retry
from waygpt.testing import WayGPTTestServer

CHAT = "/api/v1/waygpt/chat/completions"
IMAGES = "/api/v1/waygpt/images/generations"
HAS_AIOHTTP = importlib.util.find_spec("aiohttp") is not None
DRIVERS = [
    "threads",
    pytest.param("tasks", marks=pytest.mark.skipif(not HAS_AIOHTTP, reason="needs aiohttp")),
]
SLOW_ANSWER = {
    "id": "chatcmpl-slow", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def chat(custom_id: str, text: Optional[str] = None, url: str = "/v1/chat/completions",
         **body: Any) -> Dict[str, Any]:
    message = {"role": "user", "content": text if text is not None else f"text of {custom_id}"}
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": "auto", "messages": [message], **body}}


def write_jsonl(path: Path, items: Iterable[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for item in items:
            handle.write((item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))
                         + "\n")
    return path


def read_out(path: Path) -> List[Dict[str, Any]]:
    """The output's lines; every one whole (the file ends with a newline)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.splitlines()]


def by_id(lines: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a custom_id has two lines"
    return {line["custom_id"]: line for line in lines}


def run_batch(driver: str, server: WayGPTTestServer, requests: Any, out: Path,
              client_options: Optional[Mapping[str, Any]] = None, **options: Any) -> Any:
    """``waygpt.batch`` with a fresh client of ``driver``'s kind for ``server``."""
    settings = {"api_url": server.url, "project_key": server.project_key, "timeout": 5,
                **(client_options or {})}
    if driver == "threads":
        with WayGPTClient(**settings) as client:
            return waygpt.batch(client, requests, out, **options)

    async def main() -> Any:
        async with waygpt.AsyncWayGPTClient(**settings) as client:
            return await waygpt.batch(client, requests, out, **options)

    return asyncio.run(main())


def chat_requests_sent(server: WayGPTTestServer) -> List[Any]:
    return [r for r in server.requests if r.path_only == CHAT]


class Attempts:
    """Event hooks that note when each attempt was sent and answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: List[float] = []
        self.answered: List[tuple] = []  # (time, status)

    def request(self, view: Any) -> None:
        with self.lock:
            self.sent.append(time.monotonic())

    def response(self, view: Any) -> None:
        with self.lock:
            self.answered.append((time.monotonic(), view.status_code))

    def hooks(self) -> Dict[str, Any]:
        return {"event_hooks": {"request": [self.request], "response": [self.response]}}


# -- input and output -------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_each_request_gets_one_line_in_the_batch_api_output_format(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [
        chat("a", "Привет"),
        chat("b", "use case", url=CHAT, use_case="support", temperature=0.3),
        {"custom_id": "c", "method": "POST", "url": "/v1/images/generations",
         "body": {"prompt": "кот", "size": "256x256", "n": 1}},
        {"custom_id": "d", "url": IMAGES, "body": {"prompt": "dog"}},
    ])
    summary = run_batch(driver, server, source, tmp_path / "out.jsonl")

    lines = by_id(read_out(tmp_path / "out.jsonl"))
    assert sorted(lines) == ["a", "b", "c", "d"]
    for line in lines.values():
        assert set(line) == {"id", "custom_id", "response", "error"}
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"].startswith("req_")
    assert lines["a"]["response"]["body"]["choices"][0]["message"]["content"] == "Echo: Привет"
    assert lines["c"]["response"]["body"]["data"][0]["url"].endswith(".png")
    sent = {json.loads(r.body)["messages"][0]["content"] if r.path_only == CHAT
            else json.loads(r.body)["prompt"]: json.loads(r.body) for r in server.requests}
    assert sent["use case"]["use_case"] == "support" and sent["use case"]["temperature"] == 0.3
    assert sent["кот"]["size"] == "256x256"
    assert {r.path_only for r in server.requests} == {CHAT, IMAGES}
    assert (summary.total, summary.succeeded, summary.failed, summary.not_run) == (4, 4, 0, 0)
    assert summary.ok and not summary.interrupted
    usage = [line["response"]["body"].get("usage") for line in lines.values()]
    assert summary.total_tokens == sum(u["total_tokens"] for u in usage if u)
    assert summary.prompt_tokens > 0 and summary.completion_tokens > 0


def test_bad_input_is_reported_with_line_numbers_before_anything_is_sent(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [
        chat("ok-1"),
        '{"custom_id": "broken", "url": ',
        "",
        "[1, 2]",
        {"url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "x"}]}},
        chat("ok-1"),
        {**chat("e"), "url": "/v1/embeddings"},
        chat("s", stream=True),
        {**chat("m"), "method": "GET"},
        {"custom_id": "i", "url": "/v1/images/generations", "body": {"size": "256x256"}},
        {"custom_id": "v", "url": "/api/v1/waygpt/videos/generations", "body": {"prompt": "x"}},
        chat("ok-2"),
    ])
    with WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        with pytest.raises(BatchInputError) as caught:
            waygpt.batch(client, source, tmp_path / "out.jsonl")
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.message.startswith("9 problems in ") and "nothing was sent" in error.message
    text = "\n".join(error.problems)
    assert [p.split(":")[0] for p in error.problems] == [
        "line 2", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9", "line 10",
        "line 11"]
    assert "not JSON" in text and '"custom_id" must be a non-empty string' in text
    assert 'custom_id "ok-1" is used by an earlier request' in text
    assert "'/v1/embeddings' is not one a batch runs" in text
    assert '"stream": true is not accepted' in text and '"method" must be "POST"' in text
    assert '"body" needs "prompt"' in text and "videos/generations' is not one" in text
    assert server.requests == [] and not (tmp_path / "out.jsonl").exists()
    assert pickle.loads(pickle.dumps(error)).problems == error.problems


def test_requests_may_be_dicts_or_a_generator(server: WayGPTTestServer, tmp_path: Path) -> None:
    with WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        summary = waygpt.batch(client, (chat(f"g{i}") for i in range(5)), tmp_path / "o.jsonl")
        assert summary.succeeded == 5 and len(read_out(tmp_path / "o.jsonl")) == 5
        with pytest.raises(BatchInputError) as caught:
            waygpt.batch(client, [chat("x"), {"custom_id": "y"}, chat("z", when={1, 2})],
                         tmp_path / "o2.jsonl")
    assert caught.value.problems[0].startswith("request 2: ")
    assert caught.value.problems[1].startswith('request 3: "body" cannot be sent as JSON')


def test_the_input_is_streamed_not_loaded(tmp_path: Path) -> None:
    # 2,000 requests of 10 KB each: 20 MB of input, checked with a few MB at most.
    filler = "я" * 5000
    source = write_jsonl(tmp_path / "big.jsonl", (chat(f"id-{i}", filler) for i in range(2000)))
    assert source.stat().st_size > 19_000_000
    tracemalloc.start()
    try:
        ids = check_requests(RequestSource(source))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(ids) == 2000
    assert peak < 2_000_000, peak


@pytest.mark.parametrize("driver", DRIVERS)
def test_lines_are_written_as_each_request_finishes(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    # The first request answers after 1 s; the others must be in the file long before.
    server.script(status=200, body=SLOW_ANSWER, delay=1.0, path=CHAT, times=1)
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(6)])
    out = tmp_path / "out.jsonl"
    result: List[Any] = []
    worker = threading.Thread(target=lambda: result.append(
        run_batch(driver, server, source, out, concurrency=2)))
    worker.start()
    try:
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline and not (out.exists() and len(read_out(out)) >= 5):
            time.sleep(0.02)
        assert out.exists() and len(read_out(out)) == 5, "lines wait for the slow request"
        assert worker.is_alive()
    finally:
        worker.join(10)
    assert len(read_out(out)) == 6 and result[0].succeeded == 6


# -- resuming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_rerun_skips_the_requests_already_answered(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(8)])
    out = tmp_path / "out.jsonl"
    run_batch(driver, server, [chat("r1"), chat("r4"), chat("r6")], out)
    server.clear_requests()
    summary = run_batch(driver, server, source, out)
    assert sorted(json.loads(r.body)["messages"][0]["content"]
                  for r in server.requests) == [f"text of r{i}" for i in (0, 2, 3, 5, 7)]
    assert (summary.skipped, summary.succeeded, summary.total) == (3, 5, 8)
    assert sorted(by_id(read_out(out))) == [f"r{i}" for i in range(8)]
    server.clear_requests()
    again = run_batch(driver, server, source, out)
    assert server.requests == [] and again.skipped == 8 and again.ok


@pytest.mark.parametrize("driver", DRIVERS)
def test_retry_failed_reruns_the_error_lines_and_replaces_them(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(4)])
    out = tmp_path / "out.jsonl"
    server.script(status=400, body={"detail": "Bad prompt"}, path=CHAT, times=1)
    first = run_batch(driver, server, source, out, concurrency=1)
    assert (first.succeeded, first.failed, first.errors) == (3, 1, {"bad_request": 1})
    failed = [line for line in read_out(out) if line["error"]]
    assert failed[0]["error"]["message"] == "Bad prompt" and failed[0]["response"] is None

    server.clear_requests()
    kept = run_batch(driver, server, source, out)
    assert server.requests == [] and kept.skipped_failed == 1 and not kept.ok

    inode = out.stat().st_ino
    retried = run_batch(driver, server, source, out, retry_failed=True)
    assert len(server.requests) == 1 and retried.succeeded == 1 and retried.ok
    lines = by_id(read_out(out))
    assert sorted(lines) == ["r0", "r1", "r2", "r3"]
    assert all(line["error"] is None for line in lines.values())
    assert out.stat().st_ino != inode  # rewritten beside it and renamed over: never half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".waygpt-batch-")]


def test_a_torn_last_line_is_dropped_and_its_request_runs_again(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(3)])
    out = tmp_path / "out.jsonl"
    run_batch("threads", server, [chat("r0"), chat("r1")], out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 40])  # a kill -9 in the middle of the second line
    server.clear_requests()
    progress = io.StringIO()
    summary = run_batch("threads", server, source, out, progress=progress)
    assert len(server.requests) == 2 and summary.skipped == 1
    assert sorted(by_id(read_out(out))) == ["r0", "r1", "r2"]
    assert "was cut short" in progress.getvalue()


def test_an_output_file_that_is_not_batch_output_is_refused(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat("r0")])
    out = tmp_path / "notes.txt"
    out.write_text("my notes\nmore notes\n", encoding="utf-8")
    with pytest.raises(BatchInputError, match=r"line 1: not JSON; is .* the output of a batch"):
        run_batch("threads", server, source, out)
    with pytest.raises(BatchInputError, match="is the input file"):
        run_batch("threads", server, source, source)
    assert server.requests == [] and out.read_text(encoding="utf-8").startswith("my notes")


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_5xx_resets_and_timeouts_are_retried(
    driver: str, server: WayGPTTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client's backoff, with backoff_factor 0.1: 50-100 ms before each retry.
    monkeypatch.setattr(_batch, "_POLICY", RetryPolicy(default_retry(backoff_factor=0.1)))
    for status in DEFAULT_STATUS_FORCELIST:  # the statuses the client itself retries
        server.script(status=status, body="<html>gateway trouble</html>", path=CHAT)
    server.script(status=503, headers={"Retry-After": "0"}, body={"detail": "busy"}, path=CHAT)
    server.script(reset=True, path=CHAT)
    server.script(status=200, body=SLOW_ANSWER, delay=2.0, path=CHAT)  # past the timeout
    faults = len(DEFAULT_STATUS_FORCELIST) + 3
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(faults)])
    summary = run_batch(driver, server, source, tmp_path / "out.jsonl", concurrency=faults,
                        client_options={"timeout": 0.3})
    assert (summary.succeeded, summary.failed, summary.retries) == (faults, 0, faults)
    assert len(chat_requests_sent(server)) == 2 * faults
    assert all(line["error"] is None for line in read_out(tmp_path / "out.jsonl"))


def test_a_retry_without_retry_after_waits_the_clients_backoff(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    # No Retry-After: the first retry waits what the client's own first retry would
    # (waygpt.retry.default_retry: 0.5-1 s), not a delay of the batch's own.
    server.script(status=DEFAULT_STATUS_FORCELIST[-1], body={"detail": "down"}, path=CHAT)
    attempts = Attempts()
    summary = run_batch("threads", server, [chat("a")], tmp_path / "out.jsonl",
                        client_options=attempts.hooks())
    assert summary.succeeded == 1 and summary.retries == 1
    waited = attempts.sent[1] - attempts.answered[0][0]
    factor = default_retry().backoff_factor  # the first retry waits factor/2 to factor
    assert factor / 2 - 0.05 <= waited <= factor + 0.5, waited


@pytest.mark.parametrize("driver", DRIVERS)
def test_other_4xx_are_final_error_lines_and_the_run_goes_on(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [
        chat("ok"),
        chat("unknown-use-case", use_case="nope"),  # 404 from the server
        chat("too-hot", temperature=5),  # 422
        chat("ok-2"),
    ])
    summary = run_batch(driver, server, source, tmp_path / "out.jsonl")
    lines = by_id(read_out(tmp_path / "out.jsonl"))
    assert lines["unknown-use-case"]["error"]["code"] == "not_found"
    assert "Use case 'nope' not found" in lines["unknown-use-case"]["error"]["message"]
    assert lines["unknown-use-case"]["error"]["status_code"] == 404
    assert lines["unknown-use-case"]["error"]["request_id"].startswith("req_")
    assert lines["too-hot"]["error"]["code"] == "unprocessable_entity"
    assert lines["ok-2"]["error"] is None
    assert summary.errors == {"not_found": 1, "unprocessable_entity": 1}
    assert summary.retries == 0 and len(chat_requests_sent(server)) == 4


@pytest.mark.parametrize("driver", DRIVERS)
def test_retries_stop_after_max_retries(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    server.script(status=503, headers={"Retry-After": "0"}, body={"detail": "overloaded"},
                  path=CHAT, times=None)
    source = write_jsonl(tmp_path / "in.jsonl", [chat("a"), chat("b")])
    summary = run_batch(driver, server, source, tmp_path / "out.jsonl", max_retries=2)
    assert len(chat_requests_sent(server)) == 6  # 1 + 2 retries each
    assert summary.errors == {"server_error": 2} and summary.retries == 4
    line = read_out(tmp_path / "out.jsonl")[0]
    assert line["error"] == {"code": "server_error", "message": "overloaded",
                             "status_code": 503, "request_id": line["error"]["request_id"]}


# -- throttling -------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_429_pauses_every_request_for_its_retry_after(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    server.script(status=429, headers={"Retry-After": "1"}, body={"detail": "Too many"},
                  path=CHAT, times=1)
    attempts = Attempts()
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(12)])
    progress = io.StringIO()
    summary = run_batch(driver, server, source, tmp_path / "out.jsonl", concurrency=4,
                        client_options=attempts.hooks(), progress=progress)
    limited = [when for when, status in attempts.answered if status == 429]
    assert len(limited) == 1 and summary.rate_limited == 1 and summary.succeeded == 12
    # No worker starts an attempt for the next second (one let through just before the 429
    # was read, the answer's hook being called a moment before the pause is set, may go).
    after = [when - limited[0] for when in attempts.sent if when > limited[0]]
    assert len(after) >= 9 and not [t for t in after if 0.3 < t < 0.9], after
    assert len([t for t in after if t <= 0.3]) <= 3
    assert "rate limited (429): every request waits 1 s" in progress.getvalue()


@pytest.mark.parametrize("driver", DRIVERS)
def test_rpm_keeps_a_throttled_project_free_of_429(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A minute of about 1 s on both sides: the server's clock runs 60 times faster, the
    # runner's window is 1.25 s (the server counts a request when it arrives, a little after
    # the runner sent it: a window of exactly 1 s raced the server's at its edge). The project
    # takes 5 requests a minute; the batch has 7.
    monkeypatch.setattr(_batch, "_RPM_WINDOW", 1.25)
    with WayGPTTestServer(rate_limit_rpm=5,
                          rate_limit_clock=lambda: time.monotonic() * 60) as server:
        attempts = Attempts()
        source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(7)])
        started = time.monotonic()
        # max_retries=0: a 429 would be an error line at once (its Retry-After is minutes).
        summary = run_batch(driver, server, source, tmp_path / "out.jsonl", concurrency=8,
                            rpm=5, max_retries=0, client_options=attempts.hooks())
        elapsed = time.monotonic() - started
    assert [status for _, status in attempts.answered] == [200] * 7
    assert summary.succeeded == 7 and summary.rate_limited == 0
    assert elapsed >= 1.0  # 5, then 2 more a "minute" later


def test_progress_shows_why_the_run_waits(server: WayGPTTestServer, tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    server.script(status=429, headers={"Retry-After": "1"}, path=CHAT, times=1)
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(3)])
    terminal = Terminal()
    run_batch("threads", server, source, tmp_path / "out.jsonl", progress=terminal)
    shown = terminal.getvalue()
    assert "\r[" in shown and "rate limited, resuming in 1 s" in shown
    assert "in flight; rate limited" in shown
    assert shown.endswith("\r" + " " * len(shown.split("\r")[-2]) + "\rbatch done in "
                          + shown.split("\rbatch done in ")[-1])  # the bar wiped first
    assert "3 succeeded, 0 failed" in shown


def test_the_progress_line_fits_the_terminal_and_keeps_why_it_waits() -> None:
    going = Snapshot(to_run=3000, finished=1204, failed=3, in_flight=32, elapsed=30.0,
                     waiting=None)
    assert progress_line(going, bar=True) == (
        "[########------------] 1,204/3,000 (40%), 3 failed, 32 in flight, 40.1/s, ETA 45 s")
    assert progress_line(going, bar=False).startswith("1,204/3,000 (40%), 3 failed")
    waiting = going._replace(waiting="rate limited, resuming in 41 s", failed=0)
    full = progress_line(waiting, bar=False)
    assert full.endswith("40.1/s, ETA 45 s; rate limited, resuming in 41 s")
    assert progress_line(waiting, bar=True, width=90) == (
        "[########------------] 1,204/3,000 (40%), 32 in flight; rate limited, resuming in 41 s")
    assert progress_line(waiting, bar=True, width=79) == (
        "[########------------] 1,204/3,000 (40%); rate limited, resuming in 41 s")
    assert progress_line(waiting, bar=True, width=60).endswith("(40%); rate limited, resu")


def test_progress_prints_a_line_every_tenth_when_not_a_terminal(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    server.script(status=200, body=SLOW_ANSWER, delay=0.05, path=CHAT, times=None)
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(20)])
    log = io.StringIO()
    run_batch("threads", server, source, tmp_path / "out.jsonl", concurrency=1, progress=log)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    shares = [line.split("(")[1].split(")")[0] for line in lines if "/20 (" in line]
    assert 7 <= len(shares) <= 9 and shares == sorted(shares, key=lambda s: int(s[:-1]))
    assert lines[0] == "batch: 20 requests in " + str(source) + "; 20 to run, 1 at a time"
    assert lines[-2].startswith("batch done in ") and lines[-1].startswith("tokens: 40 ")


# -- stopping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_stop_lets_the_requests_in_flight_finish_and_starts_no_new_one(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    server.script(status=200, body=SLOW_ANSWER, delay=0.6, path=CHAT, times=None)
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(10)])
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    summary = run_batch(driver, server, source, tmp_path / "out.jsonl", concurrency=2,
                        stop=stop)
    assert len(chat_requests_sent(server)) == 2
    assert (summary.succeeded, summary.not_run, summary.interrupted) == (2, 8, True)
    assert len(read_out(tmp_path / "out.jsonl")) == 2


@pytest.mark.parametrize("driver", DRIVERS)
def test_requests_in_flight_are_abandoned_after_the_grace(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    server.script(status=200, body=SLOW_ANSWER, delay=0.8, path=CHAT, times=None)
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(4)])
    out = tmp_path / "out.jsonl"
    stop = threading.Event()
    threading.Timer(0.15, stop.set).start()
    started = time.monotonic()
    summary = run_batch(driver, server, source, out, concurrency=2, stop=stop, grace=0.1)
    assert time.monotonic() - started < 0.6
    assert (summary.succeeded, summary.not_run) == (0, 4)
    time.sleep(0.9 - (time.monotonic() - started))  # the answers arrive: they write nothing
    assert out.read_bytes() == b""


def test_keyboard_interrupt_abandons_at_once_and_is_raised_again(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    server.script(status=200, body=SLOW_ANSWER, delay=0.2, path=CHAT, times=None)
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(20)])
    out = tmp_path / "out.jsonl"
    threading.Timer(0.3, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_batch("threads", server, source, out, concurrency=3, progress=io.StringIO())
    assert time.monotonic() - started < 1.0
    count = len(by_id(read_out(out)))
    time.sleep(0.3)  # the answers then in flight arrive: nothing more is written
    assert 0 < len(by_id(read_out(out))) == count < 20
    assert len(by_id(read_out(out))) == count
    run_batch("threads", server, source, out, concurrency=8)
    assert len(by_id(read_out(out))) == 20


@pytest.mark.skipif(not HAS_AIOHTTP, reason="needs aiohttp")
def test_cancelling_the_async_batch_abandons_the_requests_and_cancels(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    server.script(status=200, body=SLOW_ANSWER, delay=0.3, path=CHAT, times=None)
    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(20)])
    out = tmp_path / "out.jsonl"

    progress = io.StringIO()

    async def main() -> None:
        async with waygpt.AsyncWayGPTClient(api_url=server.url,
                                            project_key=server.project_key) as client:
            task = asyncio.ensure_future(waygpt.batch(client, source, out, concurrency=3,
                                                      progress=progress))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            count = len(read_out(out))
            await asyncio.sleep(0.4)
            assert 0 < len(by_id(read_out(out))) == count < 20

    asyncio.run(main())
    assert "batch stopped in " in progress.getvalue()  # the output closed, the summary shown
    assert f"{len(read_out(out))} succeeded, 0 failed, {20 - len(read_out(out))} not run" in (
        progress.getvalue())


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_exception_from_a_hook_stops_the_run_and_is_raised(
    driver: str, server: WayGPTTestServer, tmp_path: Path
) -> None:
    calls = []

    def hook(view: Any) -> None:
        calls.append(view)
        if len(calls) == 3:
            raise RuntimeError("the hook failed")

    source = write_jsonl(tmp_path / "in.jsonl", [chat(f"r{i}") for i in range(10)])
    with pytest.raises(RuntimeError, match="the hook failed"):
        run_batch(driver, server, source, tmp_path / "out.jsonl", concurrency=1,
                  client_options={"event_hooks": {"request": [hook]}})
    assert len(by_id(read_out(tmp_path / "out.jsonl"))) == 2


def test_options_are_checked(server: WayGPTTestServer, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat("a")])
    with WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        for options in ({"concurrency": 0}, {"rpm": 0}, {"max_retries": -1}, {"grace": -1},
                        {"concurrency": True}, {"rpm": 2.5}):
            with pytest.raises(ValueError):
                waygpt.batch(client, source, tmp_path / "out.jsonl", **options)
        with pytest.raises(TypeError):
            waygpt.batch(object(), source, tmp_path / "out.jsonl")  # type: ignore
    assert server.requests == [] and not os.path.exists(tmp_path / "out.jsonl")
