"""Logging on ``logging.getLogger("waygpt")``: one DEBUG line per attempt, a WARNING per retry,
``WAYGPT_LOG`` for a stderr handler, and never a secret."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from types import ModuleType
from typing import Any, Dict, Iterator, List

import pytest

from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
ATTEMPT = re.compile(
    r"^(?P<method>[A-Z]+) (?P<path>/\S*) -> (?P<status>\d{3}|no answer) "
    r"in (?P<ms>\d+\.\d) ms \(attempt (?P<attempt>\d+), "
    r"client request id (?P<client_request_id>\S+)\)$"
)
RETRY = re.compile(
    r"^(?P<method>[A-Z]+) (?P<path>/\S*) failed \((?P<reason>[^)]+)\); "
    r"retrying in (?P<delay>\d+\.\d\d) s \(attempt (?P<attempt>\d+), "
    r"client request id (?P<client_request_id>\S+)\)$"
)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="waygpt")
    yield caplog


def waygpt_records(records: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in records.records if r.name.startswith("waygpt")]


def attempts(records: pytest.LogCaptureFixture) -> List[Dict[str, str]]:
    found = []
    for record in waygpt_records(records):
        match = ATTEMPT.match(record.getMessage())
        if match:
            assert record.levelno == logging.DEBUG
            found.append(match.groupdict())
    return found


def retries(records: pytest.LogCaptureFixture) -> List[Dict[str, str]]:
    found = []
    for record in waygpt_records(records):
        match = RETRY.match(record.getMessage())
        if match:
            assert record.levelno == logging.WARNING
            found.append(match.groupdict())
    return found


def everything_logged(records: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in waygpt_records(records):
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(repr(record.__dict__))
    return "\n".join(parts)


def test_one_debug_line_per_attempt(client: Any, records: pytest.LogCaptureFixture) -> None:
    client.get_models()
    client.get_use_cases(detailed=True)
    client.chat_completions(messages=[{"role": "user", "content": "Привет"}])
    logged = attempts(records)
    assert [(a["method"], a["path"], a["status"], a["attempt"]) for a in logged] == [
        ("GET", MODELS, "200", "1"),
        ("GET", "/api/v1/waygpt/use-cases", "200", "1"),
        ("POST", "/api/v1/waygpt/chat/completions", "200", "1"),
    ]
    assert retries(records) == []
    # Nothing above DEBUG when all goes well.
    assert all(r.levelno == logging.DEBUG for r in waygpt_records(records))


def test_retry_logs_a_warning_with_the_delay(
    client: Any, server: WayGPTTestServer, records: pytest.LogCaptureFixture
) -> None:
    server.script(status=429, headers={"Retry-After": "0.2"}, path=MODELS)
    server.script(status=503, headers={"Retry-After": "0"}, path=MODELS)
    client.get_models()
    assert [(a["status"], a["attempt"]) for a in attempts(records)] == [
        ("429", "1"),
        ("503", "2"),
        ("200", "3"),
    ]
    assert [(r["reason"], r["delay"], r["attempt"]) for r in retries(records)] == [
        ("HTTP 429", "0.20", "1"),
        ("HTTP 503", "0.00", "2"),
    ]


def test_the_logged_path_is_the_one_sent_with_the_base_path(
    sdk: ModuleType, server: WayGPTTestServer, records: pytest.LogCaptureFixture
) -> None:
    with sdk.WayGPTClient(api_url=server.url + "/waygpt-proxy", project_key=server.project_key,
                          max_retries=0) as client:
        with pytest.raises(sdk.NotFoundError):
            client.get_models()
    sent = server.last_request.path
    assert sent == "/waygpt-proxy" + MODELS
    assert [(a["method"], a["path"], a["status"]) for a in attempts(records)] == [
        ("GET", sent, "404")
    ]


def test_error_answer_is_logged_once_without_a_retry_warning(
    client: Any, server: WayGPTTestServer, sdk: ModuleType, records: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(sdk.NotFoundError):
        client.get_media_job("missing")
    assert [(a["path"], a["status"]) for a in attempts(records)] == [
        ("/api/v1/waygpt/media/jobs/missing", "404")
    ]
    assert retries(records) == []


def test_connection_failure_is_logged_as_no_answer(
    sdk: ModuleType, records: pytest.LogCaptureFixture
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = sdk.WayGPTClient(api_url=f"http://127.0.0.1:{port}", project_key="sk_live_k",
                              max_retries=0)
    with client, pytest.raises(sdk.APIConnectionError):
        client.get_models()
    assert [(a["path"], a["status"], a["attempt"]) for a in attempts(records)] == [
        (MODELS, "no answer", "1")
    ]


def test_secrets_never_logged(
    hmac_client: Any, hmac_server: WayGPTTestServer, sdk: ModuleType,
    records: pytest.LogCaptureFixture,
) -> None:
    hmac_server.script(status=429, headers={"Retry-After": "0"}, path=MODELS)
    hmac_client.get_models()
    hmac_client.chat_completions(messages=[{"role": "user", "content": "секретный вопрос"}])
    login = hmac_client.client_login(hmac_server.user_email, hmac_server.user_password)
    hmac_client.client_list_projects()
    with pytest.raises(sdk.AuthenticationError):
        hmac_client.client_list_projects(jwt_token="eyJ.not-a-real-token.sig")
    text = everything_logged(records)
    assert len(attempts(records)) == 6 and len(retries(records)) == 1
    for secret in (
        hmac_server.project_key,
        hmac_server.hmac_secret,
        hmac_server.user_password,
        login["token"],
        "not-a-real-token",
    ):
        assert secret not in text
    # Neither the signature headers nor the bodies are logged.
    assert "x-mb-" not in text.lower() and "секретный" not in text


def _run_python(
    code: str, server: WayGPTTestServer, level: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WAYGPT_") and "proxy" not in k.lower()}
    env.update(PYTHONIOENCODING="utf-8", NO_PROXY="*", WAYGPT_API_URL=server.url,
               WAYGPT_PROJECT_KEY=server.project_key)
    if level:
        env["WAYGPT_LOG"] = level
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=60, check=False)


def _script(sdk: ModuleType) -> str:
    """A program that makes one call with the SDK under test and prints ``ok``."""
    if getattr(sdk, "is_async_facade", False):
        return (
            "import asyncio, waygpt\n"
            "async def main():\n"
            "    async with waygpt.AsyncWayGPTClient() as client:\n"
            "        await client.get_models()\n"
            "asyncio.run(main())\n"
            "print('ok')\n"
        )
    if sdk.__name__ != "waygpt":  # the one-file build, imported from where it was written
        directory = os.path.dirname(str(sdk.__file__))
        return (f"import sys; sys.path.insert(0, {directory!r}); import {sdk.__name__} as sdk; "
                "sdk.WayGPTClient().get_models(); print('ok')")
    return "import waygpt; waygpt.WayGPTClient().get_models(); print('ok')"


@pytest.mark.parametrize("level", ["", "info", "debug", "DEBUG"])
def test_waygpt_log_attaches_a_stderr_handler(
    sdk: ModuleType, server: WayGPTTestServer, level: str
) -> None:
    server.script(status=500, headers={"Retry-After": "0"}, path=MODELS)
    result = _run_python(_script(sdk), server, level)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    lines = result.stderr.splitlines()
    if not level:
        assert lines == []
        return
    warnings = [line for line in lines if " waygpt WARNING " in line]
    debugs = [line for line in lines if " waygpt DEBUG " in line]
    assert len(warnings) == 1 and "failed (HTTP 500); retrying in 0.00 s" in warnings[0]
    if level == "info":
        assert debugs == []
    else:
        assert len(debugs) == 2
        assert "(attempt 1, client request id " in debugs[0] and "-> 500 in" in debugs[0]
        assert "(attempt 2, client request id " in debugs[1] and "-> 200 in" in debugs[1]
        ids = [line.rsplit(" ", 1)[1] for line in debugs]
        assert ids[0] == ids[1]  # one id for the call, on each of its attempts
    assert server.project_key not in result.stderr
