"""``python -m waygpt.testing``: the test server from the shell, as a user runs it."""

from __future__ import annotations

import email.utils
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Dict, Iterator, List, Optional

import pytest
import requests

from waygpt import AuthenticationError, WayGPTClient
from waygpt.testing import WayGPTTestServer

TIMEOUT = 20  # seconds for a start or a stop, far above what either takes
URL = re.compile(r"listening on (http://\S+)")
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class ShellServer:
    """``python -m waygpt.testing ...`` in a subprocess, its output read line by line."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYGPT_")}
        env["PYTHONIOENCODING"] = "utf-8"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "waygpt.testing", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self.lines: List[str] = []
        self._queue: queue.Queue[Optional[str]] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def read_until(self, text: str) -> List[str]:
        """The lines printed up to and including the first one holding ``text``."""
        while True:
            line = self._queue.get(timeout=TIMEOUT)
            if line is None:
                raise AssertionError(f"output ended before {text!r}: {self.lines}")
            self.lines.append(line)
            if text in line:
                return self.lines

    def url(self) -> str:
        match = URL.search("\n".join(self.read_until("Press Ctrl+C")))
        assert match, self.lines
        return match.group(1)

    def stop(self, signum: int) -> Dict[str, object]:
        self.process.send_signal(signum)
        code = self.process.wait(TIMEOUT)
        rest = []
        while True:
            line = self._queue.get(timeout=TIMEOUT)
            if line is None:
                break
            rest.append(line)
        assert self.process.stderr is not None
        return {"code": code, "stdout": rest, "stderr": self.process.stderr.read()}

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def shell() -> Iterator[List[ShellServer]]:
    started: List[ShellServer] = []
    yield started
    for server in started:
        server.kill()


@posix_only
def test_shell_server_takes_your_credentials_and_a_free_port(shell: List[ShellServer]) -> None:
    mine = {
        "--project-key": "sk_live_my_own_key",
        "--project-id": "3f0c2a9e-1111-4222-8333-444455556666",
        "--hmac-secret": "my-hmac-secret",
        "--email": "owner@shop.example",
        "--password": "пароль-владельца",
    }
    server = ShellServer("--port", "0", *[part for pair in mine.items() for part in pair])
    shell.append(server)
    url = server.url()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and not url.endswith(":0")
    printed = "\n".join(server.lines)
    for value in mine.values():
        assert value in printed

    with WayGPTClient(
        api_url=url,
        project_key=mine["--project-key"],
        project_id=mine["--project-id"],
        hmac_secret=mine["--hmac-secret"],
        use_hmac=True,
        max_retries=0,
    ) as client:
        assert "gpt-4o" in client.get_models()  # signed with the given id and secret
        login = client.client_login(mine["--email"], mine["--password"])
        assert login["access_token"]
        projects = client.client_list_projects()
        assert [p["id"] for p in projects] == [mine["--project-id"]]
    with WayGPTClient(api_url=url, project_key=WayGPTTestServer().project_key) as default:
        with pytest.raises(AuthenticationError):
            default.get_models()  # the default key is not accepted any more

    result = server.stop(signal.SIGTERM)
    assert result["code"] == 0, result
    assert result["stdout"] == ["SIGTERM: stopping", "stopped"], result
    assert result["stderr"] == "", result


@posix_only
def test_shell_server_prints_the_defaults_and_stops_on_ctrl_c(shell: List[ShellServer]) -> None:
    server = ShellServer("--port", "0")
    shell.append(server)
    url = server.url()
    defaults = WayGPTTestServer()
    printed = "\n".join(server.lines)
    for value in (
        f"WAYGPT_API_URL={url}",
        f"WAYGPT_PROJECT_KEY={defaults.project_key}",
        f"WAYGPT_PROJECT_ID={defaults.project_id}",
        f"WAYGPT_HMAC_SECRET={defaults.hmac_secret}",
        f"{defaults.user_email} / {defaults.user_password}",
    ):
        assert value in printed
    with WayGPTClient(api_url=url, project_key=defaults.project_key, max_retries=0) as client:
        assert client.get_models()

    result = server.stop(signal.SIGINT)  # what Ctrl+C sends
    assert result["code"] == 0, result
    assert result["stdout"] == ["SIGINT: stopping", "stopped"], result
    assert result["stderr"] == "", result


@posix_only
def test_shell_server_clock_offset_moves_its_clock(shell: List[ShellServer]) -> None:
    server = ShellServer("--port", "0", "--clock-offset", "-3600")
    shell.append(server)
    url = server.url()
    assert any("3600 s behind this machine" in line for line in server.lines), server.lines
    answer = requests.get(url + "/api/v1/waygpt/models", timeout=TIMEOUT)
    told = email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp()
    assert abs(told - (time.time() - 3600)) < 5, answer.headers["Date"]
    result = server.stop(signal.SIGTERM)
    assert result["code"] == 0, result


def test_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "waygpt.testing", "--port", str(port)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT,
            check=False,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"python -m waygpt.testing: error: cannot listen on 127.0.0.1:{port}:"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--project-key", ""],
        ["--port", "70000"],
        ["--email", " "],
        ["--clock-offset", "soon"],
        ["--clock-offset", "nan"],
    ],
)
def test_invalid_options_are_usage_errors(args: List[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "waygpt.testing", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "usage: python -m waygpt.testing" in result.stderr
