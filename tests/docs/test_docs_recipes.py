"""The FastAPI recipe of docs/async.md, run as its reader runs it: ``uvicorn app:app``.

The docs runner marks the recipe ``<!-- not run -->`` (it is a file for an ASGI server, not
a block to run in a namespace), so this test writes the block to ``app.py`` as it stands on
the page, starts uvicorn on it against a local test server, and talks to it with urllib:
a wrong key stops the server at start-up with a log line that says why, a good one streams
the answer, and a failure during a request is logged before the browser gets its 502.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from doc_blocks import parse_blocks
from served_app import ServedApp
from waygpt.testing import WayGPTTestServer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("aiohttp")  # the recipe runs AsyncWayGPTClient

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "docs" / "async.md", ROOT / "docs" / "ru" / "async.md"]
CHAT = "/api/v1/waygpt/chat/completions"
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


def recipe(page: Path) -> str:
    """The page's ``# app.py`` block, as a reader copies it."""
    found = [block.code for block in parse_blocks(page) if block.code.startswith("# app.py")]
    assert len(found) == 1, f"{page}: no single '# app.py' block"
    return found[0]


def serve_with_uvicorn(directory: Path, server: WayGPTTestServer, key: str) -> ServedApp:
    """``python -m uvicorn app:app`` in ``directory``, its log collected as it comes."""
    return ServedApp(["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "0"],
                     directory, server, key, listening=LISTENING)


@pytest.fixture(params=PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def app_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(recipe(request.param), encoding="utf-8")
    return tmp_path


@pytest.fixture
def running(app_dir: Path, server: WayGPTTestServer) -> Iterator[ServedApp]:
    app = serve_with_uvicorn(app_dir, server, server.project_key)
    try:
        yield app
    finally:
        app.stop()


def post_chat(url: str, text: str) -> urllib.request.Request:
    return urllib.request.Request(
        url + "/chat", data=json.dumps({"text": text}).encode("utf-8"),
        headers={"Content-Type": "application/json"}, method="POST",
    )


def no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_with_a_wrong_key_the_recipe_stops_at_start_up_saying_why(
    app_dir: Path, server: WayGPTTestServer
) -> None:
    app = serve_with_uvicorn(app_dir, server, "sk_live_wrong_key_for_the_recipe")
    try:
        code = app.wait()
    finally:
        app.stop()
    assert code != 0, app.log
    assert "WAYGPT_PROJECT_KEY" in app.log and "AuthenticationError" in app.log, app.log
    assert "Application startup failed" in app.log, app.log
    assert "sk_live_wrong_key_for_the_recipe" not in app.log


def test_the_recipe_relays_the_stream_as_server_sent_events(running: ServedApp) -> None:
    with no_proxy_opener().open(post_chat(running.url(), "Привет"), timeout=30) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in answer.read().decode("utf-8").split("\n\n") if line]
    assert events[-1] == "data: [DONE]", events
    texts = [json.loads(event[len("data: "):])["text"] for event in events[:-1]]
    assert "".join(texts) == "Echo: Привет", events


def test_a_failure_during_a_request_is_logged_before_the_502(
    running: ServedApp, server: WayGPTTestServer
) -> None:
    url = running.url()  # started: the key was accepted
    server.script(status=401, body={"detail": "Invalid project key"}, path=CHAT)
    with pytest.raises(urllib.error.HTTPError) as caught:
        no_proxy_opener().open(post_chat(url, "Привет"), timeout=30)
    assert caught.value.code == 502
    give_up = time.monotonic() + 10
    while "AuthenticationError" not in running.log and time.monotonic() < give_up:
        time.sleep(0.05)
    logged = [line for line in running.lines if "AuthenticationError" in line]
    assert logged and "Invalid project key" in logged[0], running.log
