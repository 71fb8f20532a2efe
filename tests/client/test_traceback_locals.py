"""An error's traceback holds no secret in the SDK's frame locals.

Crash reporters (Sentry, rich tracebacks) record the local variables of every frame of an
exception's traceback. The SDK's frames read what the server sent (a body that echoes the
project key, a stream block holding the JWT) before it is redacted, so once an error leaves
the SDK those frames must hold nothing of it. Each test makes the server echo a secret,
catches the error as a caller would, and renders every frame's locals the way a reporter
does: containers walked, bytes and strings in full, any other object by its ``repr``.
"""

from __future__ import annotations

import json
import os
from types import TracebackType
from typing import Any, Callable, Iterator, List, Optional

import pytest

from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
LOGIN = "/api/v1/auth/login/access-token"
MESSAGES = [{"role": "user", "content": "hello"}]
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT_KEY = "sk_live_Echoed0Project0Key0In0Frames"
PASSWORD = "Echoed-Password-9a7f2c41"


def render(value: Any, depth: int = 0) -> str:
    """A value as a crash reporter would record it."""
    if depth > 6:
        return "..."
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(render(k, depth + 1) + "=" + render(v, depth + 1)
                        for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return " ".join(render(item, depth + 1) for item in value)
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a reporter skips what cannot be shown
        return ""


def frames(tb: Optional[TracebackType]) -> Iterator[Any]:
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def leaks(error: BaseException, secret: str) -> List[str]:
    """The frames (outside the tests) whose locals show ``secret``."""
    found = []
    for frame in frames(error.__traceback__):
        if os.path.abspath(frame.f_code.co_filename).startswith(TESTS):
            continue  # the test's own frames (and the async adapter) hold the secret on purpose
        code = frame.f_code
        # What the caller passed to a public method (a password to client_login) is the
        # caller's own value, shown in the caller's frame as well; what a frame *read* is not.
        given = code.co_varnames[: code.co_argcount] if not code.co_name.startswith("_") else ()
        for name, value in frame.f_locals.items():
            if name not in given and secret in render(value):
                found.append(f"{frame.f_code.co_name}.{name}")
    return found


@pytest.fixture
def echo_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer(project_key=PROJECT_KEY) as running:
        running.add_user("owner@example.com", PASSWORD)
        yield running


def caught(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - returned for the test to inspect
        return error
    raise AssertionError("no error was raised")


def client_for(sdk: Any, server: WayGPTTestServer) -> Any:
    return sdk.WayGPTClient(api_url=server.url, project_key=server.project_key, max_retries=0)


ECHO = f"key {PROJECT_KEY} is not valid"


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 401, "body": {"detail": ECHO}},
        {"status": 503, "body": ECHO, "content_type": "text/html"},
        {"status": 200, "body": ECHO, "content_type": "text/plain"},
        {"status": 200, "body": {"echo": ECHO}},  # a dict where the method expects a list
        {"status": 401, "body": {"detail": "no"}, "headers": {"X-Echo": PROJECT_KEY}},
    ],
    ids=["json-error", "html-error", "not-json-success", "wrong-type-success", "header"],
)
def test_an_echoed_project_key_is_in_no_frame_of_the_traceback(sdk, echo_server, answer):
    echo_server.script(path=MODELS, **answer)
    with client_for(sdk, echo_server) as client:
        error = caught(client.get_models)

    assert isinstance(error, sdk.WayGPTError)
    assert leaks(error, PROJECT_KEY) == []


def test_an_echoed_password_is_in_no_frame_of_a_failed_login(sdk, echo_server):
    echo_server.script(path=LOGIN, status=401, body={"detail": f"bad password {PASSWORD}"})
    with client_for(sdk, echo_server) as client:
        error = caught(lambda: client.client_login("owner@example.com", PASSWORD))

    assert isinstance(error, sdk.AuthenticationError)
    assert leaks(error, PASSWORD) == []


def event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


@pytest.mark.parametrize(
    "pieces",
    [
        [event({"error": {"message": ECHO, "code": 401}})],
        [event({"choices": [{"index": 0, "delta": {"content": "a"}}]}),
         b"data: not json " + PROJECT_KEY.encode() + b"\n\n"],
    ],
    ids=["error-event", "bad-data"],
)
def test_an_echoed_key_in_a_stream_is_in_no_frame_of_the_traceback(sdk, echo_server, pieces):
    echo_server.script(method="POST", path=CHAT, chunks=pieces, content_type="text/event-stream")
    with client_for(sdk, echo_server) as client:
        stream = client.chat_completions_stream(messages=MESSAGES)
        error = caught(lambda: list(stream))

    assert isinstance(error, sdk.WayGPTError)
    assert leaks(error, PROJECT_KEY) == []


def test_a_stream_refused_with_an_echoing_json_answer_leaves_no_secret_in_frames(
    sdk, echo_server
):
    echo_server.script(method="POST", path=CHAT, status=200, body={"error": {"message": ECHO}})
    with client_for(sdk, echo_server) as client:
        error = caught(lambda: client.chat_completions_stream(messages=MESSAGES))

    assert isinstance(error, sdk.WayGPTError)
    assert leaks(error, PROJECT_KEY) == []
