"""The relay recipes of docs/relay.md, run as their readers run them, and its page in a browser.

Each recipe is taken from the page as it stands, in English and in Russian (the twins' code
differs only in strings and comments), written to a temporary directory and served on
127.0.0.1 against a local ``WayGPTTestServer``: FastAPI with ``python -m uvicorn``, Flask
with ``python -m flask run``, Django's two modules with runserver's threaded WSGI server and
a minimal ``settings.configure``. urllib reads the relay: the chunks and ``[DONE]``, an
upstream failure inside the stream as one ``event: error`` for the end user with no secret
in it, and a failure before the stream as a logged 502.

The page (the ``html`` block) is served by the FastAPI recipe and opened by headless
Chromium (Debian's ``chromium``) with ``--dump-dom``; the tests read the text it shows. They
skip, with one line, where Chromium is not installed, unless ``WAYGPT_REQUIRE_BROWSER=1``
(CI's newest cell, which installs it) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from doc_blocks import parse_blocks
from served_app import ServedApp
from waygpt.testing import WayGPTTestServer, sse_event

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "docs" / "relay.md", ROOT / "docs" / "ru" / "relay.md"]
CHAT = "/api/v1/waygpt/chat/completions"
LISTENING = re.compile(r"[Rr]unning on (http://127\.0\.0\.1:\d+)")
BROWSER_BOUND = 60.0
# Read once, at import: the suite's fixtures clear WAYGPT_* variables for each test.
REQUIRE_BROWSER = os.environ.get("WAYGPT_REQUIRE_BROWSER") == "1"

# Django's threaded WSGI server (the one runserver uses) on a free port, the recipe's
# chat/urls.py as the whole project's URLconf.
DJANGO_SERVER = """\
import django
from django.conf import settings

settings.configure(ROOT_URLCONF="chat.urls", ALLOWED_HOSTS=["127.0.0.1"], SECRET_KEY="relay-test")
django.setup()

from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

httpd = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
httpd.set_app(WSGIHandler())
print(f"Running on http://127.0.0.1:{httpd.server_address[1]}", flush=True)
httpd.serve_forever()
"""


def block(page: Path, first_line: str) -> str:
    """The page's one code block whose first line starts with ``first_line``."""
    found = [b.code for b in parse_blocks(page) if b.code.startswith(first_line)]
    assert len(found) == 1, f"{page}: no single block starting with {first_line!r}"
    return found[0]


def html_page(page: Path) -> str:
    found = [b.code for b in parse_blocks(page) if b.language == "html"]
    assert len(found) == 1, f"{page}: no single html block"
    return found[0]


def write_recipe(framework: str, page: Path, directory: Path) -> List[str]:
    """Write the recipe's files into ``directory``; the command that serves them."""
    if framework == "fastapi":
        pytest.importorskip("fastapi")
        pytest.importorskip("uvicorn")
        pytest.importorskip("aiohttp")  # the recipe runs AsyncWayGPTClient
        (directory / "relay_fastapi.py").write_text(block(page, "# relay_fastapi.py"), "utf-8")
        (directory / "index.html").write_text(html_page(page), "utf-8")
        return ["-m", "uvicorn", "relay_fastapi:app", "--host", "127.0.0.1", "--port", "0"]
    if framework == "flask":
        pytest.importorskip("flask")
        (directory / "relay_flask.py").write_text(block(page, "# relay_flask.py"), "utf-8")
        return ["-m", "flask", "--app", "relay_flask", "run", "--port", "0"]
    pytest.importorskip("django")
    (directory / "chat").mkdir()
    (directory / "chat" / "__init__.py").write_text("", "utf-8")
    (directory / "chat" / "views.py").write_text(block(page, "# chat/views.py"), "utf-8")
    (directory / "chat" / "urls.py").write_text(block(page, "# chat/urls.py"), "utf-8")
    (directory / "serve.py").write_text(DJANGO_SERVER, "utf-8")
    return ["serve.py"]


def serve_recipe(arguments: List[str], directory: Path, server: WayGPTTestServer) -> ServedApp:
    """A recipe served by its own Python process in ``directory``, started."""
    served = ServedApp(arguments, directory, server, server.project_key, listening=LISTENING,
                       drop=("WAYGPT_", "FLASK_", "DJANGO_"))
    served.url()
    return served


@pytest.fixture(scope="module")
def upstream() -> Iterator[WayGPTTestServer]:
    """The WayGPT server the recipes relay, shared by a module's tests (scripts cleared)."""
    with WayGPTTestServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _no_scripts_left(upstream: WayGPTTestServer) -> None:
    upstream.clear_scripts()


def serve(
    framework: str, page: Path, upstream: WayGPTTestServer, factory: pytest.TempPathFactory
) -> ServedApp:
    directory = factory.mktemp(framework)
    return serve_recipe(write_recipe(framework, page, directory), directory, upstream)


RECIPES = [(framework, page) for framework in ("fastapi", "flask", "django") for page in PAGES]


@pytest.fixture(
    scope="module", params=RECIPES,
    ids=lambda p: f"{p[0]}-{p[1].relative_to(ROOT).as_posix()}",
)
def relay(
    request: pytest.FixtureRequest, upstream: WayGPTTestServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedApp]:
    framework, page = request.param
    served = serve(framework, page, upstream, tmp_path_factory)
    try:
        yield served
    finally:
        served.stop()


def ask(url: str, question: str) -> Tuple[Any, List[str]]:
    """GET the relay's /chat: the answer's headers and its events, as text."""
    target = url + "/chat?" + urllib.parse.urlencode({"q": question})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(target, timeout=30) as answer:
        body = answer.read().decode("utf-8")
        headers = answer.headers
    events = body.split("\n\n")
    assert events[-1] == "", f"the body does not end with a whole event: {body!r}"
    return headers, events[:-1]


def data_of(event: str) -> Any:
    assert event.startswith("data: ") and "\n" not in event, event
    return json.loads(event[len("data: "):])


def content_of(chunk: Dict[str, Any]) -> str:
    return "".join(c["delta"].get("content") or "" for c in chunk["choices"])


# -- the relay over HTTP ----------------------------------------------------------------------


def test_the_relay_sends_each_chunk_then_done_as_server_sent_events(relay: ServedApp) -> None:
    headers, events = ask(relay.url(), "Привет,\nмир")

    assert headers["Content-Type"].startswith("text/event-stream"), dict(headers)
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert events[-1] == "data: [DONE]", events
    chunks = [data_of(event) for event in events[:-1]]
    assert "".join(content_of(chunk) for chunk in chunks) == "Echo: Привет,\nмир"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "usage" in chunks[-1]


def test_an_upstream_failure_in_the_stream_becomes_one_error_event_without_the_secret(
    relay: ServedApp, upstream: WayGPTTestServer
) -> None:
    upstream.script_stream_fault(
        after_events=2, error_code=503,
        error_message=f"provider overloaded, key {upstream.project_key} rejected",
    )

    _, events = ask(relay.url(), "Привет, мир")

    assert [content_of(data_of(event)) for event in events[:2]] == ["Echo:", " Привет,"]
    assert len(events) == 3, events
    kind, data = events[2].split("\n")
    assert kind == "event: error"
    error = data_of(data)
    assert sorted(error) == ["message", "request_id", "type"]
    assert error["type"] == "InternalServerError"
    assert error["message"] == "The answering service failed. Please try again."
    assert error["request_id"].startswith("req_")  # the server's id, to quote to support
    relayed = "\n\n".join(events)
    assert upstream.project_key not in relayed and "overloaded" not in relayed


def test_a_failure_before_the_stream_is_logged_and_answered_502(
    relay: ServedApp, upstream: WayGPTTestServer
) -> None:
    upstream.script(status=401, body={"detail": "Invalid project key"}, path=CHAT)

    with pytest.raises(urllib.error.HTTPError) as caught:
        ask(relay.url(), "Привет")

    assert caught.value.code == 502
    give_up = time.monotonic() + 10
    while "AuthenticationError" not in relay.log and time.monotonic() < give_up:
        time.sleep(0.05)
    logged = [line for line in relay.lines if "AuthenticationError" in line]
    assert logged and "Invalid project key" in logged[0], relay.log
    assert upstream.project_key not in relay.log


# -- the page in a browser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if REQUIRE_BROWSER:
            pytest.fail("WAYGPT_REQUIRE_BROWSER=1, but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium): no browser check")
    return found


@pytest.fixture(scope="module", params=PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def site(
    request: pytest.FixtureRequest, chromium: str, upstream: WayGPTTestServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tuple[ServedApp, Path]]:
    """The FastAPI recipe serving the page, and the docs page it came from."""
    served = serve("fastapi", request.param, upstream, tmp_path_factory)
    try:
        yield served, request.param
    finally:
        served.stop()


class _Text(HTMLParser):
    """The text inside each element with an id, and each such element's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.text: Dict[str, str] = {}
        self.attributes: Dict[str, Dict[str, Optional[str]]] = {}
        self._open: List[Optional[str]] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        if tag in ("meta", "input", "br"):  # void elements: no end tag comes
            return
        found = dict(attrs).get("id")
        self._open.append(found)
        if found:
            self.text[found] = ""
            self.attributes[found] = dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            if element:
                self.text[element] += data


def shown(chromium: str, url: str, profile: Path) -> _Text:
    """What the page at ``url`` shows once its scripts are done, as Chromium renders it."""
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-proxy-server", f"--user-data-dir={profile}",
        # Virtual time runs while the network is idle: 20 s of it let an EventSource that
        # was not closed reconnect (after about 3 s) and ask again, which the tests see.
        "--virtual-time-budget=20000", "--dump-dom", url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8",
                          timeout=BROWSER_BOUND, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    page = _Text()
    page.feed(done.stdout)
    assert "answer" in page.text and "notice" in page.text, done.stdout
    return page


def open_page(site: Tuple[ServedApp, Path], question: str) -> str:
    return site[0].url() + "/?" + urllib.parse.urlencode({"q": question})


def chat_requests(upstream: WayGPTTestServer) -> int:
    return sum(1 for r in upstream.requests if r.path.split("?", 1)[0] == CHAT)


ANSWER = ["Привет,", " мир!\n", "Вторая строка,\n\nи <b>третья</b> ✓ 🎉"]


def test_the_page_shows_the_whole_answer_russian_and_multi_line(
    site: Tuple[ServedApp, Path], chromium: str, upstream: WayGPTTestServer, tmp_path: Path
) -> None:
    chunks = [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in ANSWER]
    final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    upstream.script(
        path=CHAT, content_type="text/event-stream",
        chunks=[*(sse_event(chunk) for chunk in chunks), sse_event(final), sse_event("[DONE]")],
    )
    asked = chat_requests(upstream)

    page = shown(chromium, open_page(site, "Как дела?"), tmp_path / "profile")

    assert page.text["answer"] == "".join(ANSWER)
    assert "white-space: pre-wrap" in (page.attributes["answer"].get("style") or "")
    assert page.text["notice"] == ""
    assert chat_requests(upstream) == asked + 1  # [DONE] closed the EventSource: no new ask


def test_the_page_shows_the_relays_error_event(
    site: Tuple[ServedApp, Path], chromium: str, upstream: WayGPTTestServer, tmp_path: Path
) -> None:
    upstream.script_stream_fault(after_events=2, error_code=503)
    asked = chat_requests(upstream)

    page = shown(chromium, open_page(site, "Привет, мир"), tmp_path / "profile")

    assert page.text["answer"] == "Echo: Привет,"
    assert page.text["notice"] == "The answering service failed. Please try again."
    assert chat_requests(upstream) == asked + 1


def test_the_page_tells_a_failed_connection_from_the_relays_error_event(
    site: Tuple[ServedApp, Path], chromium: str, upstream: WayGPTTestServer, tmp_path: Path
) -> None:
    upstream.script(status=401, body={"detail": "Invalid project key"}, path=CHAT, times=None)
    own_words = re.search(r'const CONNECTION_FAILED = "([^"]+)";', html_page(site[1]))
    assert own_words, "the page's words for a failed connection"

    page = shown(chromium, open_page(site, "Привет"), tmp_path / "profile")

    assert page.text["answer"] == ""
    assert page.text["notice"] == own_words.group(1)
