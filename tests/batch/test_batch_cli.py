"""``waygpt batch`` as a real subprocess against a local server in this process.

The signal tests stop the command at random moments, many times, and check the guarantee:
the output holds whole lines only, one per finished request, never two for one request,
and a run of the same command afterwards completes the rest.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from waygpt.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE
from waygpt.testing import WayGPTTestServer

CHAT = "/api/v1/waygpt/chat/completions"
SLOW_ANSWER = {
    "id": "chatcmpl-slow", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def write_requests(path: Path, count: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({
                "custom_id": f"r{index}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "auto",
                         "messages": [{"role": "user", "content": f"товар {index}"}]},
            }, ensure_ascii=False) + "\n")
    return path


def output_lines(path: Path) -> List[Dict[str, Any]]:
    """OUT's lines, each checked whole, no custom_id twice."""
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), data[-300:]
    lines = [json.loads(line) for line in data.splitlines()]
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a request has two lines"
    return lines


def environment(server: WayGPTTestServer) -> Dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("WAYGPT_") and "proxy" not in name.lower()}
    env.update(PYTHONIOENCODING="utf-8", NO_PROXY="*", WAYGPT_API_URL=server.url,
               WAYGPT_PROJECT_KEY=server.project_key)
    return env


def run_cli(server: WayGPTTestServer, *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    result = subprocess.run([sys.executable, "-m", "waygpt", *args], capture_output=True,
                            text=True, encoding="utf-8", env=environment(server), timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def start_cli(server: WayGPTTestServer, *args: str) -> subprocess.Popen:  # type: ignore[type-arg]
    # SIGINT at its default in the child, as under a terminal, even when pytest itself was
    # started in the background with SIGINT ignored (see test_cli.test_ctrl_c_exits_130).
    launcher = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                f"os.execv(sys.executable, [sys.executable, '-m', 'waygpt', *{list(args)!r}])")
    return subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            env=environment(server))


def finish(process: subprocess.Popen, timeout: float = 30) -> tuple:  # type: ignore[type-arg]
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def test_batch_runs_a_file_and_prints_the_summary(server: WayGPTTestServer,
                                                  tmp_path: Path) -> None:
    source, out = write_requests(tmp_path / "in.jsonl", 12), tmp_path / "out.jsonl"
    result = run_cli(server, "batch", str(source), str(out), "--concurrency", "4", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["succeeded"], summary["failed"], summary["ok"]) == (12, 0, True)
    lines = output_lines(out)
    assert len(lines) == 12 and lines[0]["response"]["status_code"] == 200
    assert "batch done in " in result.stderr and "12 succeeded, 0 failed" in result.stderr
    assert "tokens: " in result.stderr


def test_batch_exits_5_when_some_failed_and_says_how_to_run_them_again(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    source, out = write_requests(tmp_path / "in.jsonl", 5), tmp_path / "out.jsonl"
    server.script(status=403, body={"detail": "Domain not allowed"}, path=CHAT, times=2)
    result = run_cli(server, "batch", str(source), str(out), "--concurrency", "1")
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    assert "2 requests failed (error lines in " in result.stderr
    assert f"waygpt batch {source} {out} --retry-failed" in result.stderr
    assert "permission_denied 2" in result.stderr

    again = run_cli(server, "batch", str(source), str(out))
    assert again.returncode == EXIT_SOME_FAILED  # kept: the run sent nothing
    retried = run_cli(server, "batch", str(source), str(out), "--retry-failed")
    assert retried.returncode == EXIT_OK, retried.stderr
    assert len(output_lines(out)) == 5 and not [x for x in output_lines(out) if x["error"]]
    assert len([r for r in server.requests if r.path_only == CHAT]) == 7


def test_batch_refuses_bad_input_with_line_numbers_and_exits_2(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    source = write_requests(tmp_path / "in.jsonl", 3)
    with open(source, "a", encoding="utf-8") as handle:
        handle.write(source.read_text(encoding="utf-8").splitlines()[1] + "\n")
        handle.write('{"custom_id": "r9", "url": "/v1/chat/completions", "body": {}}\n')
    result = run_cli(server, "batch", str(source), str(tmp_path / "out.jsonl"))
    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith("error: 2 problems in ")
    assert result.stderr.splitlines()[1:] == [
        '  line 4: custom_id "r1" is used by an earlier request (each must be unique)',
        '  line 5: "body" needs "messages", a non-empty list',
    ]
    assert server.requests == []
    missing = run_cli(server, "batch", str(tmp_path / "nothing.jsonl"), str(tmp_path / "o"))
    assert missing.returncode == 1 and "No such file" in missing.stderr


def test_batch_help_shows_an_example_line_and_refuses_a_bad_option(
    server: WayGPTTestServer, tmp_path: Path
) -> None:
    shown = run_cli(server, "batch", "--help")
    assert '{"custom_id": "p1", "method": "POST", "url": "/v1/chat/completions",' in shown.stdout
    assert "5 some failed" in shown.stdout and "--retry-failed" in shown.stdout
    source = write_requests(tmp_path / "in.jsonl", 1)
    refused = run_cli(server, "batch", str(source), "o.jsonl", "--concurrency", "33")
    assert refused.returncode == EXIT_USAGE and "must be at most 32" in refused.stderr


def test_max_retries_goes_before_or_after_the_command(server: WayGPTTestServer,
                                                      tmp_path: Path) -> None:
    source = write_requests(tmp_path / "in.jsonl", 1)
    server.script(status=503, headers={"Retry-After": "0"}, path=CHAT, times=None)
    for number, args in enumerate((["--max-retries", "1", "batch"],
                                   ["batch", "--max-retries", "2"])):
        server.clear_requests()
        result = run_cli(server, *args, str(source), str(tmp_path / f"out{number}.jsonl"))
        assert result.returncode == EXIT_SOME_FAILED
        assert len(server.requests) == number + 2


# `python -m waygpt ARGS` that prints, as it exits, its peak resident set (VmHWM, kB): the
# high-water mark of its own memory. (A child's ru_maxrss starts at its parent's size on
# Linux: the forked copy counts.)
PEAK_RSS_LAUNCHER = """
import runpy, sys
sys.argv[0] = "waygpt"
try:
    runpy.run_module("waygpt", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status", encoding="ascii") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM:")][0]
    sys.stdout.write(f"VmHWM {peak}\\n")
"""


def peak_rss_of_a_run(server: WayGPTTestServer, *args: str) -> Tuple[int, float]:
    """``waygpt ARGS`` in a child process: its exit code and its peak resident set (MB)."""
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_LAUNCHER, *args],
                            capture_output=True, text=True, encoding="utf-8",
                            env=environment(server), timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, int(result.stdout.split("VmHWM ")[-1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_memory_stays_flat_over_a_100000_line_input(server: WayGPTTestServer,
                                                    tmp_path: Path) -> None:
    # 100,000 requests of 1 KB (about 108 MB); an earlier run answered all but the last 300.
    lines, left = 100_000, 300
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    filler = "x" * 1000
    with open(source, "w", encoding="utf-8") as requests, open(out, "w", encoding="utf-8") as done:
        for index in range(lines):
            requests.write(json.dumps({
                "custom_id": f"r{index}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": filler}]}}) + "\n")
            if index < lines - left:
                done.write(json.dumps({"id": f"batch_req_{index}", "custom_id": f"r{index}",
                                       "response": {"status_code": 200, "request_id": "req_1",
                                                    "body": {}}, "error": None}) + "\n")
    small = write_requests(tmp_path / "small.jsonl", 1)
    code, baseline = peak_rss_of_a_run(server, "batch", str(small),
                                       str(tmp_path / "small-out.jsonl"))
    assert code == EXIT_OK
    code, peak = peak_rss_of_a_run(server, "batch", str(source), str(out))
    assert code == EXIT_OK
    assert len(output_lines(out)) == lines
    assert len([r for r in server.requests if r.path_only == CHAT]) == left + 1
    # The input is read line by line (twice) and the output's answers are not kept: what
    # grows is the two sets of 100,000 custom_ids, about 20 MB, not the 108 MB of bodies.
    assert source.stat().st_size > 100 * 2**20
    assert peak - baseline < 45, (baseline, peak)


@posix_signals
def test_a_signal_at_any_moment_leaves_one_whole_line_per_finished_request(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    with WayGPTTestServer() as server:
        # Every answer takes 0.15 s: a run of 30 requests, 4 at a time, takes about 1.2 s.
        server.script(status=200, body=SLOW_ANSWER, delay=0.15, path=CHAT, times=None)
        source = write_requests(tmp_path / "in.jsonl", 30)
        out = tmp_path / "out.jsonl"
        runs = 0
        for attempt in range(10):
            if len(output_lines(out)) == 30:
                out.unlink()  # that sequence completed: start another
            before = len(output_lines(out))
            sent = len(server.requests)
            process = start_cli(server, "batch", str(source), str(out), "--concurrency", "4",
                                "--json")
            if attempt % 2:  # any moment: starting, checking the files, sending, ending
                time.sleep(chance.uniform(0.0, 1.5))
            else:  # a moment while requests are in flight
                deadline = time.monotonic() + 10
                while len(server.requests) == sent and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(chance.uniform(0.0, 0.5))
            process.send_signal(signal.SIGTERM if attempt % 3 == 2 else signal.SIGINT)
            code, stdout, stderr = finish(process)
            context = (f"seed {seed}, run {attempt}", code, stderr)
            lines = output_lines(out)  # whole lines, no request twice
            assert all(line["custom_id"].startswith("r") and line["error"] is None
                       for line in lines), context
            if stdout.strip():  # the command answered the signal: its own count
                summary = json.loads(stdout)
                assert len(lines) == before + summary["succeeded"], context
                if summary["interrupted"]:
                    assert code == EXIT_INTERRUPTED, context
                else:  # it ended first; the signal may then end the process a bit sooner
                    assert code in (EXIT_OK, -signal.SIGINT, -signal.SIGTERM), context
                if code == EXIT_INTERRUPTED:
                    assert "to resume, run the same command again" in stderr, context
                    runs += 1
            else:  # the signal came before the command took it over: nothing written
                assert len(lines) == before, context
        final = run_cli(server, "batch", str(source), str(out), "--concurrency", "8")
        assert final.returncode == EXIT_OK, final.stderr
        assert sorted(line["custom_id"] for line in output_lines(out)) == sorted(
            f"r{i}" for i in range(30))
    assert runs >= 3, f"seed {seed}: too few runs were stopped in the middle"


@posix_signals
def test_a_second_signal_abandons_the_requests_in_flight(server: WayGPTTestServer,
                                                         tmp_path: Path) -> None:
    server.script(status=200, body=SLOW_ANSWER, delay=20.0, path=CHAT, times=None)
    source, out = write_requests(tmp_path / "in.jsonl", 10), tmp_path / "out.jsonl"
    process = start_cli(server, "batch", str(source), str(out), "--concurrency", "3")
    deadline = time.monotonic() + 20
    while len(server.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    code, _, stderr = finish(process, timeout=10)
    assert time.monotonic() - started < 3
    assert code == EXIT_INTERRUPTED and "Traceback" not in stderr
    assert "stopping: waiting up to 10 s for 3 requests in flight" in stderr
    assert "to resume, run the same command again" in stderr
    assert output_lines(out) == []
