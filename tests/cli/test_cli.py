"""The ``waygpt`` command line, run as a real subprocess against a local test server.

Every run asserts that no traceback reached stderr; failures also assert the exit code and
that the error is one line. The test server lives in this process, so the tests can look at
what the CLI sent (``server.requests``) and script failures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from waygpt import WayGPTClient, __version__
from waygpt.cli import EXIT_API, EXIT_CONNECTION, EXIT_INTERRUPTED, EXIT_USAGE, build_parser
from waygpt.cli.demo import STEP_TITLES
from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
GLOBAL_OPTIONS = ("--api-url", "--project-key", "--project-id", "--hmac-secret", "--use-hmac",
                  "--timeout", "--max-retries", "--json", "--jwt", "--email", "--password")
SCREEN_LINES = 30


def _base_env() -> Dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("WAYGPT_") and "proxy" not in name.lower()
    }
    env["PYTHONIOENCODING"] = "utf-8"
    env["NO_PROXY"] = "*"
    return env


def run_cli(
    *args: str,
    server: Optional[WayGPTTestServer] = None,
    env: Optional[Dict[str, str]] = None,
    key: bool = True,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """``python -m waygpt ARGS`` with WAYGPT_API_URL (and the key) of ``server``."""
    full_env = _base_env()
    if server is not None:
        full_env["WAYGPT_API_URL"] = server.url
        if key:
            full_env["WAYGPT_PROJECT_KEY"] = server.project_key
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "waygpt", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=full_env,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result

RETRY_NOTE = re.compile(r"attempt \d+ failed \(.*\); retrying in \d+\.\d s…$")


def assert_fails(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """The run exited ``code`` with exactly one ``error: ...`` line holding ``parts`` (after
    a line per retry, if any)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if not RETRY_NOTE.match(line)]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for part in parts:
        assert part in line, line
    return line


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def secrets_of(server: WayGPTTestServer) -> List[str]:
    return [server.project_key, server.hmac_secret, server.user_password]


def assert_no_secrets(server: WayGPTTestServer, *texts: str) -> None:
    for secret in secrets_of(server):
        for text in texts:
            assert secret not in text


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
def jwt(server: WayGPTTestServer) -> str:
    return server.issue_token()


@pytest.fixture
def sdk_client(server: WayGPTTestServer) -> Iterator[WayGPTClient]:
    with WayGPTClient(api_url=server.url, project_key=server.project_key, timeout=5) as client:
        yield client


# -- help, version, demo ----------------------------------------------------------------------


def test_version_and_help() -> None:
    assert ok(run_cli("--version")).strip() == f"waygpt {__version__}"
    out = ok(run_cli("--help"))
    for command in ("demo", "chat", "models", "use-cases", "image", "video", "job", "batch",
                    "login", "projects", "exit codes"):
        assert command in out
    for option in GLOBAL_OPTIONS:
        assert _mentions(out, option), option


def _mentions(text: str, flag: str) -> bool:
    """``flag`` appears in ``text`` as a whole option (``--project`` is not ``--project-id``)."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def _commands(
    parser: argparse.ArgumentParser, path: Tuple[str, ...] = ()
) -> Iterator[Tuple[Tuple[str, ...], argparse.ArgumentParser]]:
    """Every command and action under ``parser``, as (``("use-cases", "create")``, parser)."""
    # argparse offers no public way to list subcommands; its private attributes are stable.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_command_help_fits_a_screen_without_the_global_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    commands = list(_commands(build_parser()))
    assert len(commands) == 20  # 10 commands, 5 use-cases actions, 5 projects actions
    # A global option a command gives a meaning or default of its own, in its own help.
    own = {("batch",): ("--max-retries",)}
    for path, parser in commands:
        text = parser.format_help()
        assert len(text.splitlines()) <= SCREEN_LINES, (path, text)
        for option in GLOBAL_OPTIONS:
            if option not in own.get(path, ()):
                assert not _mentions(text, option), (path, option)


def test_every_option_and_argument_has_help() -> None:
    top = build_parser()
    for path, parser in [((), top), *_commands(top)]:
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                # Only the global options hide, and only in a command's own help.
                assert path and action.option_strings[0] in GLOBAL_OPTIONS, (path, action)
                continue
            assert action.help and action.help.strip(), (path, action.dest)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._get_subactions():
                    assert choice.help and choice.help.strip(), (path, choice.dest)


def test_defaults_are_worded_one_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: no wrapped "(default:"
    top = build_parser()
    for path, parser in [((), top), *_commands(top)]:
        for line in parser.format_help().splitlines():
            assert line.count("default") == line.count("(default: "), (path, line)


def test_chat_help_explains_temperature_and_max_tokens() -> None:
    result = run_cli("chat", "--help", env={"COLUMNS": "80"})
    text = " ".join(ok(result).split())
    assert len(result.stdout.splitlines()) <= SCREEN_LINES
    assert "--temperature T sampling temperature from 0 to 2" in text
    assert "--max-tokens N caps the length of the answer, in tokens" in text
    assert text.count("sent only when given") == 2
    assert "Global options (see waygpt --help)" in text


def test_demo_takes_no_options() -> None:
    demo = dict(_commands(build_parser()))[("demo",)]
    assert [action.option_strings for action in demo._actions] == [["-h", "--help"]]
    assert ok(run_cli("demo", "--help")).startswith("usage: waygpt demo [-h]\n")
    after = run_cli("demo", "--json")
    assert after.returncode == EXIT_USAGE and "unrecognized arguments: --json" in after.stderr
    before = run_cli("--timeout", "5", "--json", "demo")
    assert_fails(before, EXIT_USAGE, "takes no options", "--timeout, --json")
    assert before.stdout == ""


def test_demo_runs_every_step_and_exits_0() -> None:
    started = time.monotonic()
    result = run_cli("demo")
    out = ok(result)
    assert time.monotonic() - started < 30
    for number, title in enumerate(STEP_TITLES, start=1):
        assert f"[{number}/{len(STEP_TITLES)}] {title}" in out
    assert "Echo: Привет! Расскажи коротко, что ты умеешь." in out  # the chat
    assert "completed  100%" in out  # the video job's progress, plain lines (no TTY)
    assert "\r" not in out
    assert "Echo: Подпиши этот запрос" in out  # HMAC-signed Russian text accepted
    assert "403 PermissionDeniedError" in out  # ... where the unsigned one is refused
    assert "request 1: GET /api/v1/waygpt/models -> 429, Retry-After: 1\n" in out
    assert "after 2 requests to the server" in out  # the 429 was retried ...
    waited = re.search(r"the client waited (\d+\.\d\d) s before retrying: "
                       r"it honoured Retry-After: 1\n", out)
    assert waited, out
    assert float(waited.group(1)) >= 1.0  # ... no sooner than the server asked
    assert "except AuthenticationError: status 401" in out
    assert "project 'Default project'" in out
    assert "Done: 10 steps" in out
    # The default password is the word "password", which a step title holds: look for it
    # as the demo would print an argument (quoted), not as a word.
    defaults = WayGPTTestServer()
    assert defaults.hmac_secret not in out and repr(defaults.user_password) not in out
    assert f"client_login({defaults.user_email!r}, ...)" in out


# -- project-key commands: success ------------------------------------------------------------


def test_chat_with_text_argument(server: WayGPTTestServer) -> None:
    out = ok(run_cli("chat", "Привет, мир", server=server))
    assert out == "Echo: Привет, мир\n"
    body = server.requests[-1].json()
    assert body["model"] == "auto"
    assert body["messages"] == [{"role": "user", "content": "Привет, мир"}]
    assert "stream" not in body


def test_chat_reads_stdin_and_passes_options(server: WayGPTTestServer) -> None:
    out = ok(run_cli("chat", "--model", "gpt-4o", "--use-case", "support",
                     "--system", "Будь краток", "--temperature", "0.5", "--max-tokens", "50",
                     server=server, stdin="из stdin\n"))
    assert out == "Echo: из stdin\n"
    body = server.requests[-1].json()
    assert body["model"] == "gpt-4o"
    assert body["use_case"] == "support"
    assert body["temperature"] == 0.5 and body["max_tokens"] == 50
    assert body["messages"] == [
        {"role": "system", "content": "Будь краток"},
        {"role": "user", "content": "из stdin"},
    ]


def test_chat_stream_prints_the_tokens(server: WayGPTTestServer) -> None:
    out = ok(run_cli("chat", "--stream", "раз два три", server=server))
    assert out == "Echo: раз два три\n"
    assert server.requests[-1].json()["stream"] is True


def test_chat_stream_json_prints_one_chunk_per_line(server: WayGPTTestServer) -> None:
    out = ok(run_cli("chat", "--stream", "--json", "раз два три", server=server))
    chunks = [json.loads(line) for line in out.splitlines()]
    assert len(chunks) >= 4
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Echo: раз два три"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_json_flag_prints_raw_json_before_or_after_the_command(server: WayGPTTestServer) -> None:
    out = ok(run_cli("--json", "chat", "Привет", server=server))
    assert '"content": "Echo: Привет"' in out  # ensure_ascii=False, indent 2
    assert json.loads(out)["object"] == "chat.completion"
    assert json.loads(ok(run_cli("models", "--json", server=server)))[0] == "gpt-4o-mini"


def test_models(server: WayGPTTestServer) -> None:
    assert ok(run_cli("models", server=server)).splitlines()[:2] == ["gpt-4o-mini", "gpt-4o"]
    full = ok(run_cli("models", "--full", server=server)).splitlines()
    assert full[0].split() == ["ID", "NAME", "PROVIDER", "TYPE"]
    assert any(line.startswith("yandexgpt-pro") and "yandex" in line for line in full)
    assert server.requests[-1].path == "/api/v1/waygpt/models/full"


def test_use_cases(server: WayGPTTestServer) -> None:
    out = ok(run_cli("use-cases", server=server))
    assert "support" in out and "Поддержка клиентов" in out
    assert "config" not in out
    assert server.requests[-1].query == {}
    detailed = ok(run_cli("use-cases", "--detailed", server=server))
    assert "Ты — вежливый помощник" in detailed
    assert server.requests[-1].query == {"detailed": "true"}


def test_image_prints_urls_and_writes_the_answer(server: WayGPTTestServer, tmp_path: Path) -> None:
    target = tmp_path / "images.json"
    result = run_cli("image", "Закат над Волгой", "--size", "512x512", "-n", "2", "-o",
                     str(target), server=server)
    urls = ok(result).splitlines()
    assert len(urls) == 2 and all(url.startswith(server.url + "/media/images/") for url in urls)
    saved = json.loads(target.read_text(encoding="utf-8"))
    assert [item["url"] for item in saved["data"]] == urls
    assert "Закат над Волгой" in target.read_text(encoding="utf-8")
    assert server.requests[-1].json() == {"prompt": "Закат над Волгой", "size": "512x512", "n": 2}


def test_video_then_job_show_wait_and_cancel(server: WayGPTTestServer) -> None:
    result = run_cli("video", "Кот играет на балалайке", "--duration", "5", server=server)
    job_id = ok(result).strip()
    assert job_id in server.jobs
    assert f"waygpt job {job_id} --wait" in result.stderr
    assert server.requests[-1].json() == {"prompt": "Кот играет на балалайке", "duration": 5}

    shown = ok(run_cli("job", job_id, server=server))
    assert f"job_id:     {job_id}" in shown and "status:     processing" in shown

    waited = run_cli("job", job_id, "--wait", "--poll-interval", "0.05", server=server)
    assert ok(waited).strip() == f"{server.url}/media/videos/{job_id}.mp4"
    # Not a terminal: one plain line per change, no carriage returns, no bar.
    progress = waited.stderr.splitlines()
    assert len(progress) == 2 and "\r" not in waited.stderr and "#" not in waited.stderr
    assert "processing" in progress[0] and "66%" in progress[0]
    assert "completed" in progress[1] and "100%" in progress[1]

    other = run_cli("video", "Ещё одно видео", server=server)
    other_id = ok(other).strip()
    cancelled = run_cli("job", other_id, "--cancel", "--json", server=server)
    assert json.loads(ok(cancelled))["status"] == "cancelled"
    assert server.requests[-1].path == f"/api/v1/waygpt/media/jobs/{other_id}/cancel"


def test_video_wait_json(server: WayGPTTestServer) -> None:
    result = run_cli("video", "кот", "--wait", "--poll-interval", "0.05", "--json", server=server)
    job = json.loads(ok(result))
    assert job["status"] == "completed" and job["result"]["url"].endswith(".mp4")


def test_hmac_signed_request_with_russian_text() -> None:
    # Not the default "password", a word the leak check below would find in any usage text.
    with WayGPTTestServer(require_hmac=True, user_password="s3cret-Пароль-7f3a") as server:
        signed = run_cli("--use-hmac", "--project-id", server.project_id, "chat", "Ёжик в тумане",
                         server=server, env={"WAYGPT_HMAC_SECRET": server.hmac_secret})
        assert ok(signed) == "Echo: Ёжик в тумане\n"
        assert server.requests[-1].headers["x-mb-signature"]
        unsigned = run_cli("chat", "Ёжик в тумане", server=server)
        assert_fails(unsigned, EXIT_API, "403 PermissionDeniedError", "Missing HMAC headers")
        assert_no_secrets(server, signed.stdout, signed.stderr, unsigned.stderr)


# -- Client API: success ----------------------------------------------------------------------


def test_login_prints_a_token_that_the_client_api_accepts(server: WayGPTTestServer) -> None:
    result = run_cli("login", server=server, key=False,
                     env={"WAYGPT_EMAIL": server.user_email,
                          "WAYGPT_PASSWORD": server.user_password})
    token = ok(result).strip()
    assert token.count(".") == 2 and "\n" not in token
    assert server.user_password not in result.stdout + result.stderr
    listed = run_cli("projects", "list", server=server, key=False, env={"WAYGPT_JWT": token})
    assert "Default project" in ok(listed)

    as_json = run_cli("login", "--email", server.user_email, "--password", server.user_password,
                      "--json", server=server, key=False)
    answer = json.loads(ok(as_json))
    assert answer["token_type"] == "bearer" and answer["token"] == answer["access_token"]


def test_projects_commands(server: WayGPTTestServer, jwt: str) -> None:
    env = {"WAYGPT_JWT": jwt}
    listed = ok(run_cli("projects", "list", server=server, key=False, env=env))
    assert listed.splitlines()[0].split() == ["ID", "ACTIVE", "HMAC", "NAME"]
    assert server.project_id in listed

    shown = run_cli("projects", "get", server.project_id, server=server, key=False, env=env)
    assert "name:" in ok(shown) and "Default project" in shown.stdout
    assert "api_key:" in shown.stdout and "********" in shown.stdout
    assert_no_secrets(server, shown.stdout, shown.stderr)
    as_json = json.loads(ok(run_cli("projects", "get", server.project_id, "--json",
                                    server=server, key=False, env=env)))
    assert as_json["api_key"].startswith("****") and as_json["hmac_secret"].startswith("****")
    revealed = ok(run_cli("projects", "--show-secrets", "get", server.project_id, "--json",
                          server=server, key=False, env=env))
    assert json.loads(revealed)["api_key"] == server.project_key

    created = json.loads(ok(run_cli("projects", "create", "Новый проект", "--json",
                                    server=server, key=False, env=env)))
    assert created["name"] == "Новый проект"
    updated = ok(run_cli("projects", "update", created["id"], "--name", "Переименован",
                         "--hmac-required", "--allowed-models", "gpt-4o,yandexgpt-pro",
                         "--rate-limit-rpm", "5", server=server, key=False, env=env))
    assert "Переименован" in updated
    assert server.requests[-1].json() == {
        "name": "Переименован",
        "hmac_required": True,
        "allowed_models": ["gpt-4o", "yandexgpt-pro"],
        "rate_limit_rpm": 5,
    }
    deleted = ok(run_cli("projects", "delete", created["id"], server=server, key=False, env=env))
    assert deleted.strip() == f"deleted project {created['id']}"
    assert created["id"] not in ok(run_cli("projects", "list", server=server, key=False, env=env))


def test_client_api_logs_in_on_the_fly(server: WayGPTTestServer) -> None:
    env = {"WAYGPT_EMAIL": server.user_email, "WAYGPT_PASSWORD": server.user_password}
    out = ok(run_cli("projects", "list", server=server, key=False, env=env))
    assert "Default project" in out
    paths = [r.path for r in server.requests]
    assert paths == ["/api/v1/auth/login/access-token", "/api/v1/client/projects"]


def test_use_cases_through_the_client_api(server: WayGPTTestServer, jwt: str) -> None:
    env = {"WAYGPT_JWT": jwt}
    project = ["use-cases", "--project", server.project_id]
    listed = ok(run_cli(*project, server=server, key=False, env=env))
    assert listed.splitlines()[0].split() == ["ID", "KEY", "KIND", "ACTIVE", "NAME"]
    assert "legacy" in listed  # the Client API shows inactive ones too

    created = json.loads(ok(run_cli(*project, "create", "faq", "FAQ бот", "--kind", "chat",
                                    "--config", '{"temperature": 0.2}', "--json",
                                    server=server, key=False, env=env)))
    assert created["key"] == "faq" and created["config"] == {"temperature": 0.2}
    shown = ok(run_cli(*project, "get", "faq", server=server, key=False, env=env))
    assert created["id"] in shown and "FAQ бот" in shown
    # Update and delete accept the key too; the CLI resolves it to the id.
    updated = ok(run_cli(*project, "update", "faq", "--name", "Вопросы", "--no-active",
                         server=server, key=False, env=env))
    assert "Вопросы" in updated
    assert server.requests[-1].json() == {"name": "Вопросы", "is_active": False}
    assert server.requests[-1].path.endswith(f"/use-cases/{created['id']}")
    deleted = ok(run_cli(*project, "delete", created["id"], server=server, key=False, env=env))
    assert deleted.strip() == f"deleted use case {created['id']}"


# -- failures ---------------------------------------------------------------------------------


def test_missing_project_key_exits_2(server: WayGPTTestServer) -> None:
    result = run_cli("models", server=server, key=False)
    assert_fails(result, EXIT_USAGE, "no project key", "WAYGPT_PROJECT_KEY")
    assert server.requests == []


def test_bad_project_key_exits_3(server: WayGPTTestServer) -> None:
    result = run_cli("models", "--project-key", "sk_live_wrong_key", server=server)
    line = assert_fails(result, EXIT_API)
    assert line == ("error: 401 AuthenticationError: Invalid project key"
                    " (check WAYGPT_PROJECT_KEY or the project_key argument)")
    assert "sk_live_wrong_key" not in result.stderr


def test_server_down_exits_4(closed_port: int) -> None:
    result = run_cli("models", "--max-retries", "0",
                     env={"WAYGPT_API_URL": f"http://127.0.0.1:{closed_port}",
                          "WAYGPT_PROJECT_KEY": "sk_live_secret_key_123"})
    assert_fails(result, EXIT_CONNECTION, "APIConnectionError", f"127.0.0.1:{closed_port}")
    assert "sk_live_secret_key_123" not in result.stderr


def test_server_down_shows_the_long_waits_and_counts_the_attempts(closed_port: int) -> None:
    started = time.monotonic()
    result = run_cli("chat", "hi", "--max-retries", "2",
                     env={"WAYGPT_API_URL": f"http://127.0.0.1:{closed_port}",
                          "WAYGPT_PROJECT_KEY": "sk_live_secret_key_123"})
    elapsed = time.monotonic() - started
    assert result.returncode == EXIT_CONNECTION, result.stderr
    *notes, error = result.stderr.splitlines()
    # Every retry has its line, numbered as the log numbers it: the attempt that failed.
    # The waits before attempts 2 and 3 are 0.5-1 s and 1-2 s (backoff with jitter).
    assert len(notes) == 2, notes
    assert re.fullmatch(r"attempt 1 failed \(APIConnectionError\); retrying in (0\.[5-9]|1\.0) s…",
                        notes[0]), notes
    assert re.fullmatch(r"attempt 2 failed \(APIConnectionError\); retrying in (1\.\d|2\.0) s…",
                        notes[1]), notes
    found = re.fullmatch(r"error: APIConnectionError: connection failed: .+ "
                         rf"\(3 attempts over (\d+\.\d) s\) \(server http://127.0.0.1:{closed_port}\)",
                         error)
    assert found, error
    assert 1.5 <= float(found.group(1)) <= elapsed
    assert result.stdout == ""


def test_timeout_exits_4(server: WayGPTTestServer) -> None:
    server.script(status=200, body=["late"], delay=1.5, path=MODELS)
    result = run_cli("models", "--timeout", "0.3", "--max-retries", "0", server=server)
    assert_fails(result, EXIT_CONNECTION, "APITimeoutError")


def test_rate_limit_exits_3_after_retrying(server: WayGPTTestServer) -> None:
    server.script(status=429, headers={"Retry-After": "0"}, body={"detail": "Rate limit exceeded"},
                  times=None, path=MODELS)
    result = run_cli("models", "--max-retries", "1", server=server)
    assert_fails(result, EXIT_API, "error: 429 RateLimitError: Rate limit exceeded",
                 "(retry after 0 s)")
    assert [r.path for r in server.requests] == [MODELS, MODELS]
    assert result.stderr.startswith("attempt 1 failed (HTTP 429); retrying in 0.0 s…\n")


def test_html_error_page_exits_3(server: WayGPTTestServer) -> None:
    server.script(status=502, body="<html><body>502 Bad Gateway</body></html>", times=None,
                  path=MODELS)
    result = run_cli("models", "--max-retries", "0", server=server)
    assert_fails(result, EXIT_API, "502 InternalServerError", "502 Bad Gateway")


def test_validation_error_exits_3(server: WayGPTTestServer) -> None:
    result = run_cli("image", "кот", "--size", "huge", server=server)
    assert_fails(result, EXIT_API, "422 UnprocessableEntityError", "size")


@pytest.mark.parametrize("action", [[], ["--wait", "--poll-interval", "0.05"], ["--cancel"]],
                         ids=["show", "wait", "cancel"])
def test_unknown_job_exits_3_saying_no_such_job(server: WayGPTTestServer,
                                                action: List[str]) -> None:
    line = assert_fails(run_cli("job", "no-such-job", *action, server=server), EXIT_API)
    assert line == "error: 404 NotFoundError: no media job with id 'no-such-job'"


def test_failed_job_wait_exits_3(server: WayGPTTestServer, sdk_client: WayGPTClient) -> None:
    job_id = sdk_client.video_generations("кот")["job_id"]
    server.fail_job(job_id, "Модель перегружена")
    result = run_cli("job", job_id, "--wait", "--poll-interval", "0.05", server=server)
    assert result.returncode == EXIT_API
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [
        f"error: MediaJobFailedError: media job {job_id} failed: Модель перегружена"
    ]
    assert result.stdout == ""


def test_wait_timeout_exits_3() -> None:
    with WayGPTTestServer(job_steps=1000) as server:
        job_id = ok(run_cli("video", "кот", server=server)).strip()
        result = run_cli("job", job_id, "--wait", "--poll-interval", "0.05", "--wait-timeout",
                         "0.3", server=server)
        assert result.returncode == EXIT_API
        assert result.stderr.splitlines()[-1].startswith("error: MediaJobTimeoutError: ")


@pytest.mark.parametrize(
    "args",
    [
        ["models", "--bogus"],
        ["image"],
        ["job", "x", "--wait", "--cancel"],
        ["image", "кот", "-n", "0"],
        ["chat", "кот", "--temperature", "2.5"],
        [],
    ],
    ids=["unknown-option", "missing-prompt", "wait-and-cancel", "n-zero", "temperature-3",
         "none"],
)
def test_usage_errors_exit_2(args: List[str]) -> None:
    result = run_cli(*args, env={"WAYGPT_PROJECT_KEY": "sk_live_x"})
    assert result.returncode == EXIT_USAGE
    assert "usage: waygpt" in result.stderr and result.stdout == ""


def test_configuration_errors_exit_2(server: WayGPTTestServer, tmp_path: Path) -> None:
    assert_fails(run_cli("models", "--api-url", "ftp://example.com", server=server), EXIT_USAGE,
                 "ConfigurationError", "api_url")
    assert_fails(run_cli("models", "--use-hmac", server=server), EXIT_USAGE,
                 "ConfigurationError", "use_hmac=True requires project_id and hmac_secret")
    assert_fails(run_cli("chat", server=server, stdin="  \n"), EXIT_USAGE, "the message is empty")
    assert_fails(run_cli("use-cases", "list", server=server), EXIT_USAGE, "needs --project")
    assert_fails(run_cli("projects", "update", "x", server=server, env={"WAYGPT_JWT": "t.t.t"}),
                 EXIT_USAGE, "nothing to update")
    missing_dir = tmp_path / "missing" / "out.json"
    assert_fails(run_cli("image", "кот", "-o", str(missing_dir), server=server), EXIT_USAGE,
                 "cannot write")
    assert server.requests == []


@pytest.mark.parametrize("url", ["http://", "https:///", "http://:8080/"])
def test_an_api_url_without_a_host_is_quoted_as_given(server: WayGPTTestServer, url: str) -> None:
    result = run_cli("models", "--api-url", url, server=server)
    line = assert_fails(result, EXIT_USAGE, "ConfigurationError", "no valid host")
    assert line.endswith(f": {url!r}"), line


def test_an_api_url_with_the_api_path_exits_2_naming_the_base_url(
    server: WayGPTTestServer,
) -> None:
    result = run_cli("models", "--api-url", server.url + "/api/v1/waygpt", server=server)
    assert_fails(result, EXIT_USAGE, "ConfigurationError",
                 "api_url should be the server's base URL", "without /api/v1/waygpt",
                 f"perhaps {server.url!r}")
    assert server.requests == []


def test_client_api_errors(server: WayGPTTestServer) -> None:
    no_token = run_cli("projects", "list", server=server, key=False)
    assert_fails(no_token, EXIT_USAGE, "the Client API needs a token", "WAYGPT_JWT")
    bad_token = run_cli("projects", "list", "--jwt", "not-a-valid-token-123", server=server)
    assert_fails(bad_token, EXIT_API, "401 AuthenticationError", "Could not validate credentials")
    assert "not-a-valid-token-123" not in bad_token.stderr
    no_password = run_cli("login", "--email", server.user_email, server=server)
    assert_fails(no_password, EXIT_USAGE, "no password")
    wrong = run_cli("login", server=server,
                    env={"WAYGPT_EMAIL": server.user_email, "WAYGPT_PASSWORD": "wrong-pass-42"})
    assert_fails(wrong, EXIT_API, "400 BadRequestError", "Incorrect email or password")
    assert "wrong-pass-42" not in wrong.stderr and wrong.stdout == ""


def test_debug_log_shows_attempts_without_secrets(server: WayGPTTestServer) -> None:
    server.script(status=503, headers={"Retry-After": "0"}, path=MODELS)
    result = run_cli("models", server=server, env={"WAYGPT_LOG": "debug"})
    ok(result)
    assert "GET /api/v1/waygpt/models -> 503" in result.stderr
    assert "retrying in 0.00 s (attempt 1, client request id " in result.stderr
    # The CLI's own line numbers that retry as the log does, though its wait is short.
    assert "attempt 1 failed (HTTP 503); retrying in 0.0 s…" in result.stderr
    assert "GET /api/v1/waygpt/models -> 200" in result.stderr
    assert "(attempt 2, client request id " in result.stderr
    assert_no_secrets(server, result.stderr)
    quiet = run_cli("models", server=server)
    assert ok(quiet) and quiet.stderr == ""


def test_debug_log_shows_the_path_sent_under_a_proxy_prefix(server: WayGPTTestServer) -> None:
    result = run_cli("models", "--api-url", server.url + "/waygpt-proxy", "--max-retries", "0",
                     server=server, env={"WAYGPT_LOG": "debug"})
    assert result.returncode == EXIT_API
    assert server.requests[-1].path == "/waygpt-proxy" + MODELS
    assert f"GET /waygpt-proxy{MODELS} -> 404" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_ctrl_c_exits_130(server: WayGPTTestServer) -> None:
    # Long enough that only the SIGINT, not the answer, can end the command in time.
    server.script(status=200, body=["slow"], delay=10.0, path=MODELS)
    env = _base_env()
    env.update(WAYGPT_API_URL=server.url, WAYGPT_PROJECT_KEY=server.project_key)
    # A shell without job control starts `pytest &` with SIGINT ignored, children inherit
    # that, and Python leaves an ignored SIGINT ignored. Ctrl-C comes from a terminal, where
    # SIGINT is at its default: restore that before the CLI's interpreter starts, so the
    # test means the same in the foreground and in the background.
    launcher = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.executable, [sys.executable, '-m', 'waygpt', 'models'])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.requests, "the CLI never reached the server"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr


@pytest.mark.parametrize(("typed", "meant"), [("chta", "chat"), ("modles", "models")])
def test_a_mistyped_command_gets_one_line_with_a_suggestion(typed, meant):
    result = run_cli(typed)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"waygpt: unknown command '{typed}' (did you mean '{meant}'?)\n"


def test_an_unknown_command_far_from_any_points_to_help():
    result = run_cli("zzzzzz")

    assert (result.returncode, result.stderr) == (
        2, "waygpt: unknown command 'zzzzzz' (see waygpt --help)\n"
    )
