"""Every Python code block of README.md and docs/ (English and Russian) runs.

One test per page (its id is the page's path). The page's fenced blocks whose info string
starts with ``python`` or ``py`` run in order in one namespace, so a block may use the names
and imports of the blocks above it. A failure names the page and the line of the block's
opening fence, and the traceback points at the page's own lines.

Hidden set-up, the same for every page:

* a fresh ``WayGPTTestServer`` on 127.0.0.1 as a reader would start it, with its default
  credentials (the pages log in with them, ``you@example.com`` / ``password``), and only
  ``job_steps=1``, so a video job is completed at its first poll and nothing waits (the pages
  pass with the default of 3 too, a few seconds slower each), and
  ``always_include_usage=True``: every stream ends with a usage-only chunk, one without
  choices, as a real server may send, so a loop that reads ``chunk["choices"][0]`` fails here;
* ``WAYGPT_API_URL``, ``WAYGPT_PROJECT_KEY``, ``WAYGPT_PROJECT_ID`` and ``WAYGPT_HMAC_SECRET``
  set to that server, so ``WayGPTClient()`` reaches it (and the proxy variables removed, so
  nothing goes through a proxy);
* the working directory is a temporary directory;
* no network beyond the loopback interface: resolving or connecting to any other host
  raises ``NetworkNotAllowed`` in the block that tried;
* a page that imports ``waygpt_client`` (the one-file drop-in) gets one, built by
  ``tools/build_single_file.py`` into a temporary directory on ``sys.path``;
* a block that defines ``test_*`` functions (as docs/testing.md does) has them called at
  once, like pytest would: the parameter ``server`` is a fresh ``WayGPTTestServer`` (also
  with ``always_include_usage=True``, unless the test's marker says otherwise) and
  ``client`` a ``WayGPTClient`` for it (``timeout=5``), as the fixtures on that page (or the
  plugin's ``waygpt_server`` and ``waygpt_client``, the same two);
* a page that imports ``opentelemetry`` starts with no tracer provider set, as a fresh
  process would, and leaves none behind: the global provider can be set only once per process,
  and waygpt looks its tracer up once per process (see ``_fresh_tracing``);
* a page must finish within ``PAGE_TIMEOUT`` seconds.

A page that uses the async client is skipped when aiohttp is not installed. A page whose
blocks import optional packages that are not installed (``opentelemetry`` modules, the API
alone or nothing of it; ``waygpt.langchain`` and ``langchain_core``, ``openai``, ``pydantic``,
``llama_index``: see ``OPTIONAL_IMPORT``) runs up to the first such block, and the rest of it
is skipped: put those blocks last.

A block that cannot run (real credentials, a bot token, a framework the test environment
lacks) carries, on the line right above its fence, an HTML comment with the reason::

    <!-- not run: needs a Telegram bot token -->

A marker without a reason, or one that is not right above a Python fence, fails
``test_not_run_markers_are_well_formed``.

Shell blocks (``bash``, ``sh``, ...) are not executed. Only the ``waygpt`` commands they show,
and those in inline code such as `waygpt models`, are checked: each must be accepted by the
command line's argument parser (``test_shown_waygpt_commands_exist``).
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.util
import io
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from doc_blocks import BlockFailed, CodeBlock, PageRunner, parse_blocks, parse_markers
from waygpt import WayGPTClient
from waygpt.testing import WayGPTTestServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# The test server every page runs against; see the module docstring.
SERVER_OPTIONS: Dict[str, Any] = {"job_steps": 1, "always_include_usage": True}
PAGE_TIMEOUT = 30.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
ONE_FILE_IMPORT = re.compile(r"^\s*(?:from|import)\s+waygpt_client\b", re.MULTILINE)
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console", "zsh"})


def _page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# A page that forks (production.md) forks this process, whose test server runs in threads:
# Python 3.12+ warns about those threads, not the SDK's (tests/reliability/
# test_fork_watchdog.py runs the same fork in a fresh interpreter and gets no warning).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_runs(page: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = [block for block in parse_blocks(page) if block.runnable]
    if not blocks:
        return
    if ASYNC_CLIENT.search("".join(b.code for b in blocks)) and not _has_aiohttp():
        # The CI cell without the optional extra: the sync client must not need it, and
        # these pages are run by the other cell.
        pytest.skip(f"{page.relative_to(ROOT)} uses the async client, which needs aiohttp")
    with WayGPTTestServer(**SERVER_OPTIONS) as server:
        monkeypatch.setenv("WAYGPT_API_URL", server.url)
        monkeypatch.setenv("WAYGPT_PROJECT_KEY", server.project_key)
        monkeypatch.setenv("WAYGPT_PROJECT_ID", server.project_id)
        monkeypatch.setenv("WAYGPT_HMAC_SECRET", server.hmac_secret)
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)
        monkeypatch.chdir(tmp_path)
        _allow_only_loopback(monkeypatch)
        with contextlib.ExitStack() as stack:
            if any(ONE_FILE_IMPORT.search(block.code) for block in blocks):
                stack.enter_context(_one_file_build(tmp_path / "one-file", monkeypatch))
            runner = stack.enter_context(PageRunner(ROOT, fixtures=_test_fixtures))
            if OTEL_IMPORT.search("".join(b.code for b in blocks)) and _importable(
                "opentelemetry.trace"
            ):
                stack.enter_context(_fresh_tracing())
            stack.enter_context(_deadline(PAGE_TIMEOUT))
            failure: Optional[BlockFailed] = None
            skipped: Optional[str] = None
            for ran, block in enumerate(blocks):
                missing = _missing_modules(block)
                if missing:
                    skipped = (
                        f"{block.where(ROOT)} and the blocks after it: {', '.join(missing)} "
                        f"not installed ({_install_hint(missing)}); the {ran} blocks above ran"
                    )
                    break
                try:
                    runner.run(block)
                except BlockFailed as error:
                    failure = error
                    break
        if failure is not None:
            pytest.fail(str(failure), pytrace=False)
        if skipped is not None:
            pytest.skip(skipped)


ASYNC_CLIENT = re.compile(r"\bAsyncWayGPTClient\b|\basync_waygpt_client\b")


def _has_aiohttp() -> bool:
    return importlib.util.find_spec("aiohttp") is not None


# The OpenTelemetry modules a block imports (``import opentelemetry.trace``,
# ``from opentelemetry.sdk.trace.export import ...``): optional, as the SDK's `otel` extra is.
OTEL_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(opentelemetry(?:\.\w+)*)[ \t]+import|"
    r"import[ \t]+(opentelemetry(?:\.\w+)*))\b",
    re.MULTILINE,
)
# Every optional package a block may import: OpenTelemetry, and the integrations of
# docs/integrations.md. `waygpt.langchain` is always found; what it needs is langchain_core.
_OPTIONAL = r"(?:opentelemetry|waygpt\.langchain|langchain_core|openai|pydantic|llama_index)"
OPTIONAL_IMPORT = re.compile(
    rf"^[ \t]*(?:from[ \t]+({_OPTIONAL}(?:\.\w+)*)[ \t]+import|"
    rf"import[ \t]+({_OPTIONAL}(?:\.\w+)*))\b",
    re.MULTILINE,
)
NEEDS = {"waygpt.langchain": "langchain_core"}
INSTALL_HINTS = {
    "opentelemetry.sdk": "pip install opentelemetry-sdk",
    "opentelemetry": 'pip install "waygpt[otel]"',
    "waygpt.langchain": 'pip install "waygpt[langchain]"',
    "langchain_core": 'pip install "waygpt[langchain]"',
    "openai": "pip install openai",
    "pydantic": "pip install pydantic",
    "llama_index": "pip install llama-index-llms-openai-like",
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _missing_modules(block: CodeBlock) -> List[str]:
    """The optional modules ``block`` imports that cannot be imported here."""
    names = {a or b for a, b in OPTIONAL_IMPORT.findall(block.code)}
    return sorted(name for name in names if not _importable(NEEDS.get(name, name)))


def _install_hint(modules: List[str]) -> str:
    hints = []
    for name in modules:
        hint = next(h for prefix, h in INSTALL_HINTS.items() if name.startswith(prefix))
        if hint not in hints:
            hints.append(hint)
    return "; ".join(hints)


@contextlib.contextmanager
def _fresh_tracing() -> Iterator[None]:
    """No global tracer provider while a page runs, and the previous state after it.

    OpenTelemetry lets a process set its global tracer provider once (a second
    ``set_tracer_provider`` is ignored with a warning), and waygpt takes its tracer once per
    process, at the first client (a proxy that follows the global provider once one is set,
    then stays with it). A page that sets one up would otherwise keep it for every later test
    of the process, and would itself find whatever an earlier test left. The names reset are
    those OpenTelemetry's own test utilities reset.
    """
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    from waygpt import _telemetry

    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE, _telemetry._tracer)
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    _telemetry._tracer = _telemetry._UNSET
    try:
        yield
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE, _telemetry._tracer = saved


@contextlib.contextmanager
def _test_fixtures(
    names: List[str], marks: Dict[str, Dict[str, Any]]
) -> Iterator[Dict[str, Any]]:
    """The fixtures a documented ``test_*`` function may take: ``server`` and ``client``, or
    the plugin's ``waygpt_server`` and ``waygpt_client`` (the same two objects) and
    ``async_waygpt_client``, configured by a ``waygpt_server`` marker as the plugin does."""
    known = {"server", "client", "waygpt_server", "waygpt_client", "async_waygpt_client"}
    unknown = sorted(set(names) - known)
    if unknown:
        raise LookupError(f"the docs runner provides only {sorted(known)}, not {unknown}")
    options = {"always_include_usage": True, **marks.get("waygpt_server", {})}
    with WayGPTTestServer(**options) as server:
        values: Dict[str, Any] = {"server": server, "waygpt_server": server}
        if {"client", "waygpt_client"} & set(names):
            signing: Dict[str, Any] = {}
            if server.require_hmac:
                signing = {
                    "project_id": server.project_id,
                    "hmac_secret": server.hmac_secret,
                    "use_hmac": True,
                }
            client = WayGPTClient(
                api_url=server.url, project_key=server.project_key, timeout=5, **signing
            )
            values["client"] = values["waygpt_client"] = client
            with client:
                yield {name: values[name] for name in names}
        elif "async_waygpt_client" in names:
            from waygpt import AsyncWayGPTClient

            # The page's test closes it (`async with`), in the event loop it runs.
            values["async_waygpt_client"] = AsyncWayGPTClient(
                api_url=server.url, project_key=server.project_key, timeout=5
            )
            yield {name: values[name] for name in names}
        else:
            yield {name: values[name] for name in names}


class NetworkNotAllowed(BaseException):
    """Documentation code tried to reach a host other than the loopback one.

    A ``BaseException``, so that no ``except Exception`` (nor the client's retry loop, which
    would retry a failed connection after a pause) gets in the way of the report.
    """


def _allow_only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make resolving or connecting to any host but the loopback one an error."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(host: Any) -> None:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and str(name).lower() not in LOOPBACK:
            raise NetworkNotAllowed(f"documentation code may only reach 127.0.0.1, not {name}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple):
            check(address[0])
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple):
            check(address[0])
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@contextlib.contextmanager
def _one_file_build(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``waygpt_client.py`` built from this checkout, importable while the page runs."""
    directory.mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_single_file.py"),
         str(directory / "waygpt_client.py")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    monkeypatch.syspath_prepend(str(directory))
    previous = sys.modules.pop("waygpt_client", None)
    try:
        yield
    finally:
        sys.modules.pop("waygpt_client", None)
        if previous is not None:
            sys.modules["waygpt_client"] = previous


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt a page that runs too long (a TimeoutError in the block it is in)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not in_main_thread:
        faulthandler.dump_traceback_later(seconds, exit=True)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the page ran for more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the async page, pasted into python -m asyncio --------------------------------------------

ASYNC_PAGES = [ROOT / "docs" / "async.md", ROOT / "docs" / "ru" / "async.md"]
# A block that is a file of its own (``# first_call.py``, ``# bot.py: ...``) is a program, run
# with ``python``: not for the prompt (its ``asyncio.run()`` cannot run inside a running loop).
FILE_BLOCK = re.compile(r"^# [\w-]+\.py(?::.*)?$")
REPL_DONE = "-- every block ran --"
# ``python -m asyncio`` before 3.13: ``code.InteractiveConsole`` compiling with top-level
# await, each input run on the event loop. 3.13's asyncio REPL reads a non-terminal stdin one
# line at a time, so no block with an indented line can be fed to it (CPython gh-140013, its
# fix deferred); its terminal REPL takes a pasted block whole, which asks less of a block
# than the line-by-line console does. So from 3.13 on, the same console, rebuilt from the
# standard library as 3.12's asyncio REPL builds it, reads the blocks instead.
_CONSOLE_312 = """
import ast, asyncio, code, inspect, types
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)

class Console(code.InteractiveConsole):
    def __init__(self):
        super().__init__({"__name__": "__main__", "asyncio": asyncio})
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT

    def runcode(self, compiled):
        try:
            result = types.FunctionType(compiled, self.locals)()
            if inspect.iscoroutine(result):
                loop.run_until_complete(result)
        except SystemExit:
            raise
        except BaseException:
            self.showtraceback()

Console().interact(banner="", exitmsg="")
"""


def _prompt_blocks(page: Path) -> List[str]:
    """The page's runnable Python blocks a reader pastes at the prompt, in order."""
    return [block.code for block in parse_blocks(page)
            if block.runnable and not FILE_BLOCK.match(block.code.split("\n", 1)[0])]


@pytest.mark.parametrize("page", ASYNC_PAGES, ids=_page_id)
def test_async_page_blocks_paste_into_python_m_asyncio(page: Path) -> None:
    if not _has_aiohttp():
        pytest.skip("the async client needs aiohttp")
    blocks = _prompt_blocks(page)
    assert len(blocks) > 10, "the page's blocks were not found"
    # Each block as pasted, then Enter on an empty line (what ends an indented block).
    typed = "".join(block + "\n" for block in blocks) + f"print({REPL_DONE!r})\n"
    command = ["-m", "asyncio"] if sys.version_info < (3, 13) else ["-c", _CONSOLE_312]
    with WayGPTTestServer(**SERVER_OPTIONS) as server:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("WAYGPT_") and "proxy" not in name.lower()}
        env.update(WAYGPT_API_URL=server.url, WAYGPT_PROJECT_KEY=server.project_key,
                   NO_PROXY="*", PYTHONIOENCODING="utf-8")
        result = subprocess.run([sys.executable, *command], input=typed, capture_output=True,
                                text=True, encoding="utf-8", env=env, timeout=120, check=False)
    output = result.stdout + result.stderr
    problems = [line for line in result.stderr.splitlines()
                if "Error" in line or "Traceback" in line or "Unclosed" in line]
    assert not problems, output
    assert REPL_DONE in result.stdout, output


# -- markers --------------------------------------------------------------------------------


def test_not_run_markers_are_well_formed() -> None:
    problems = []
    for page in PAGES:
        for marker in parse_markers(page):
            where = f"{_page_id(page)}:{marker.line}"
            if not marker.attached:
                problems.append(f"{where}: a 'not run' marker must be on the line right "
                                "above a ```python fence")
            elif not marker.reason:
                problems.append(f"{where}: a 'not run' marker needs its reason: "
                                "<!-- not run: why -->")
    assert not problems, "\n".join(problems)


def test_every_page_is_collected() -> None:
    """The runner sees the README and the pages in both languages."""
    names = {_page_id(page) for page in PAGES}
    assert {"README.md", "docs/index.md", "docs/ru/index.md"} <= names


# -- commands shown ---------------------------------------------------------------------------

_INLINE_COMMAND = re.compile(r"`((?:python -m )?waygpt (?:[^`]*))`")
_COMMAND_START = re.compile(r"^(?:python3? -m )?waygpt(?:\s|$)")


def _shown_commands() -> List[Tuple[str, str]]:
    """Every ``waygpt ...`` command in a shell block or in inline code, with its place."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in parse_blocks(page, text):
            if block.language not in SHELL_LANGUAGES:
                continue
            for offset, line in enumerate(block.code.splitlines(), start=1):
                for part in re.split(r"&&|\|\||;|\|", line):
                    command = part.strip().removeprefix("$ ").strip()
                    if _COMMAND_START.match(command):
                        found.append((f"{_page_id(page)}:{block.line + offset}", command))
        for number, line in enumerate(text.splitlines(), start=1):
            for command in _INLINE_COMMAND.findall(line):
                found.append((f"{_page_id(page)}:{number}", command))
    return found


def _parser_verdict(command: str) -> Optional[str]:
    """None when the command line's parser accepts ``command``, else what it said."""
    from waygpt.cli import build_parser

    words = shlex.split(command, comments=True)
    words = words[3:] if words[0].startswith("python") else words[1:]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            build_parser().parse_args(words)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            said = err.getvalue().strip().splitlines()
            return said[-1] if said else f"exit status {exit_.code}"
    return None


def test_shown_waygpt_commands_exist() -> None:
    commands = _shown_commands()
    assert commands, "no waygpt command found in the documentation"
    problems = []
    for where, command in commands:
        verdict = _parser_verdict(command)
        if verdict is not None:
            problems.append(f"{where}: {command!r}: {verdict}")
    assert not problems, "\n".join(problems)
