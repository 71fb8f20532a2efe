"""``python -m waygpt.testing``: the test server from the shell, as a user runs it."""

from __future__ import annotations

import email.utils
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Dict, Iterator, List, Optional

import pytest
import requests

from waygpt import AuthenticationError, RateLimitError, WayGPTClient
from waygpt.testing import WayGPTTestServer
from waygpt.testing.__main__ import default_shell, export_lines

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
    assert server.lines == [
        f"# WayGPT test server listening on {url}",
        "# For a POSIX shell (bash, zsh, sh); paste into another terminal "
        "(--shell for another shell):",
        "unset WAYGPT_JWT",
        f"export WAYGPT_API_URL={url}",
        f"export WAYGPT_PROJECT_KEY={defaults.project_key}",
        f"export WAYGPT_PROJECT_ID={defaults.project_id}",
        f"export WAYGPT_HMAC_SECRET={defaults.hmac_secret}",
        "export WAYGPT_USE_HMAC=false",
        f"export WAYGPT_EMAIL={defaults.user_email}",
        f"export WAYGPT_PASSWORD={defaults.user_password}",
        "# Press Ctrl+C to stop.",
    ]
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


@posix_only
def test_shell_server_rate_limit_rpm_throttles_the_project(shell: List[ShellServer]) -> None:
    server = ShellServer("--port", "0", "--rate-limit-rpm", "2")
    shell.append(server)
    url = server.url()
    assert "# Rate limit: 2 requests a minute, then 429" in server.lines, server.lines
    key = WayGPTTestServer().project_key
    with WayGPTClient(api_url=url, project_key=key, max_retries=0) as client:
        client.get_models()
        client.get_models()
        with pytest.raises(RateLimitError) as caught:
            client.get_models()
    assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 60
    result = server.stop(signal.SIGTERM)
    assert result["code"] == 0, result


def waygpt_command() -> str:
    """How a user in this environment runs the command line: the ``waygpt`` script."""
    script = shutil.which("waygpt", path=os.path.dirname(sys.executable))
    return shlex.quote(script) if script else f"{shlex.quote(sys.executable)} -m waygpt"


def paste_into_bash(lines: List[str], *commands: str) -> subprocess.CompletedProcess[str]:
    """``lines`` pasted into a fresh bash, then ``commands``, in a shell whose environment
    still holds a token and a signing switch from an earlier session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYGPT_")}
    env.update(WAYGPT_JWT="stale-token-from-another-server", WAYGPT_USE_HMAC="TRUE")
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        ["bash", "-c", "\n".join([*lines, "set -e", *commands])],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )


@posix_only
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_printed_lines_pasted_into_bash_point_the_cli_at_the_server(
    shell: List[ShellServer],
) -> None:
    server = ShellServer("--port", "0", "--project-key", "sk_live_mykey123")
    shell.append(server)
    server.url()
    pasted = paste_into_bash(
        server.lines, f'{waygpt_command()} chat "Привет"', f"{waygpt_command()} projects list"
    )
    assert pasted.returncode == 0, (pasted.stdout, pasted.stderr)
    assert "Echo: Привет" in pasted.stdout
    assert "Default project" in pasted.stdout  # logged in with the exported e-mail/password
    assert pasted.stderr == ""


@posix_only
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_values_that_a_shell_would_expand_are_quoted(shell: List[ShellServer]) -> None:
    mine = {
        "--project-key": "sk_live_it's $HOME `id` \\n",
        "--password": 'пароль из трёх слов; "кавычки" $(команда)',
        "--hmac-secret": "*?[a]",
    }
    server = ShellServer("--port", "0", *[part for pair in mine.items() for part in pair])
    shell.append(server)
    server.url()
    shown = paste_into_bash(
        server.lines,
        'printf "%s\\n" "$WAYGPT_PROJECT_KEY" "$WAYGPT_PASSWORD" "$WAYGPT_HMAC_SECRET"',
        'printf "%s\\n" "${WAYGPT_JWT-unset}"',
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [*mine.values(), "unset"]


@posix_only
@pytest.mark.parametrize("page", ["testing.md", "ru/testing.md"])
def test_the_documented_lines_are_what_the_server_prints(
    shell: List[ShellServer], page: str
) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    documented = next(block for block in blocks if "listening on" in block).splitlines()
    server = ShellServer("--port", "0")
    shell.append(server)
    url = server.url()
    assert [line.replace("http://127.0.0.1:8765", url) for line in documented] == server.lines


def test_lines_for_powershell_and_cmd() -> None:
    left, right = "\u2018", "\u2019"  # PowerShell ends a '...' string at these quotes too
    password = f"it's {left}x{right}"
    variables = [("WAYGPT_API_URL", "http://127.0.0.1:8765"), ("WAYGPT_PASSWORD", password)]
    assert export_lines("powershell", variables, unset=["WAYGPT_JWT"]) == [
        "Remove-Item Env:WAYGPT_JWT -ErrorAction SilentlyContinue",
        "$env:WAYGPT_API_URL = 'http://127.0.0.1:8765'",
        f"$env:WAYGPT_PASSWORD = 'it''s {left * 2}x{right * 2}'",
    ]
    assert export_lines("cmd", [*variables, ("WAYGPT_HMAC_SECRET", "100%")], ["WAYGPT_JWT"]) == [
        'set "WAYGPT_JWT="',
        'set "WAYGPT_API_URL=http://127.0.0.1:8765"',
        f'set "WAYGPT_PASSWORD={password}"',
        'REM set WAYGPT_HMAC_SECRET by hand: its value holds " or %',
    ]
    assert export_lines("posix", variables) == [
        "export WAYGPT_API_URL=http://127.0.0.1:8765",
        "export WAYGPT_PASSWORD=" + shlex.quote(password),
    ]
    assert default_shell("win32") == "powershell"
    assert default_shell("linux") == default_shell("darwin") == "posix"


@posix_only
def test_the_shell_is_chosen_with_shell(shell: List[ShellServer]) -> None:
    server = ShellServer("--port", "0", "--shell", "powershell", "--require-hmac")
    shell.append(server)
    url = server.url()
    assert server.lines[1].startswith("# For PowerShell;")
    assert f"$env:WAYGPT_API_URL = '{url}'" in server.lines
    assert "$env:WAYGPT_USE_HMAC = 'true'" in server.lines
    assert all(line.startswith(("# ", "$env:", "Remove-Item ")) for line in server.lines)


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
        ["--shell", "fish"],
        ["--rate-limit-rpm", "-1"],
        ["--rate-limit-rpm", "many"],
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
