"""The aiogram recipe of docs/async.md (and its Russian twin), run against the local server.

The docs runner marks the recipe ``<!-- not run -->``: it needs aiogram and a Telegram bot
token. aiogram is not installed for the tests (it brings pydantic and more, for five names),
so this test puts a stand-in for the part of aiogram the recipe imports into ``sys.modules``,
runs the page's ``# bot.py`` block as it stands as a module, and calls its handler with a
user's message whose reply records every edit the bot asks Telegram for, and refuses the
edits a test names with ``TelegramRetryAfter``, as Telegram's flood control does. The answer
itself comes from a ``WayGPTTestServer`` over real HTTP, every stream of it ending with a
usage-only chunk.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from doc_blocks import parse_blocks
from waygpt.testing import WayGPTTestServer

pytest.importorskip("aiohttp")  # the recipe runs AsyncWayGPTClient

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "docs" / "async.md", ROOT / "docs" / "ru" / "async.md"]
CHAT = "/api/v1/waygpt/chat/completions"
QUESTION = "Привет, как дела"
ANSWER = "Echo: Привет, как дела"  # the test server's answer: "Echo:", " Привет,", " как", " дела"


# -- the stand-in for aiogram: only what the recipe imports ------------------------------------


class TelegramRetryAfter(Exception):
    """Stands in for ``aiogram.exceptions.TelegramRetryAfter``: Telegram's flood control
    refused a request; ``retry_after`` is how many seconds to wait."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Flood control exceeded. Retry in {retry_after} seconds")
        self.retry_after = retry_after


class TelegramBadRequest(Exception):
    """Stands in for ``aiogram.exceptions.TelegramBadRequest``."""


class Router:
    """Stands in for ``aiogram.Router``: its ``message`` decorator notes the handler."""

    def __init__(self) -> None:
        self.handlers: List[Callable[..., Any]] = []

    def message(self, *filters: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.handlers.append(handler)
            return handler

        return register


class NotStartedInTests:
    """Stands in for ``aiogram.Bot`` and ``aiogram.Dispatcher``: the tests never poll."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("the recipe's test does not start polling Telegram")


def aiogram_modules() -> Dict[str, types.ModuleType]:
    aiogram = types.ModuleType("aiogram")
    aiogram.Bot = aiogram.Dispatcher = NotStartedInTests  # type: ignore[attr-defined]
    aiogram.Router = Router  # type: ignore[attr-defined]
    aiogram.F = types.SimpleNamespace(text="F.text")  # type: ignore[attr-defined]
    exceptions = types.ModuleType("aiogram.exceptions")
    exceptions.TelegramBadRequest = TelegramBadRequest  # type: ignore[attr-defined]
    exceptions.TelegramRetryAfter = TelegramRetryAfter  # type: ignore[attr-defined]
    filters = types.ModuleType("aiogram.filters")
    filters.CommandStart = type("CommandStart", (), {})  # type: ignore[attr-defined]
    aiogram_types = types.ModuleType("aiogram.types")
    aiogram_types.Message = type("Message", (), {})  # type: ignore[attr-defined]  # (annotations)
    return {"aiogram": aiogram, "aiogram.exceptions": exceptions, "aiogram.filters": filters,
            "aiogram.types": aiogram_types}


class BotMessage:
    """The bot's reply in the chat: every ``edit_text`` asked for, with its time and whether
    it went through. ``refuse`` maps the number of an edit (0: the first) to the
    ``retry_after`` of the ``TelegramRetryAfter`` that refuses it."""

    def __init__(self, text: str, refuse: Dict[int, float]) -> None:
        self.text = text
        self.refuse = refuse
        self.edits: List[Tuple[float, str, bool]] = []

    async def edit_text(self, text: str) -> None:
        number = len(self.edits)
        self.edits.append((time.monotonic(), text, number not in self.refuse))
        if number in self.refuse:
            raise TelegramRetryAfter(self.refuse[number])
        self.text = text


class UserMessage:
    """A user's message to the bot; ``answer`` posts the bot's reply."""

    def __init__(self, text: str, refuse: Optional[Dict[int, float]] = None) -> None:
        self.text = text
        self.refuse = refuse or {}
        self.reply: Optional[BotMessage] = None

    async def answer(self, text: str) -> BotMessage:
        assert self.reply is None, "the bot answers each message once"
        self.reply = BotMessage(text, self.refuse)
        return self.reply


# -- running the recipe -----------------------------------------------------------------------


@pytest.fixture
def usage_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer(always_include_usage=True) as running:
        yield running


@pytest.fixture(params=PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def bot(
    request: pytest.FixtureRequest, usage_server: WayGPTTestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Dict[str, Any]:
    """The page's ``# bot.py`` run as a module (not as ``__main__``), its client pointed at
    the local server: the module's namespace."""
    page: Path = request.param
    found = [block for block in parse_blocks(page) if block.code.startswith("# bot.py")]
    assert len(found) == 1, f"{page}: no single '# bot.py' block"
    block = found[0]
    for name, module in aiogram_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("WAYGPT_API_URL", usage_server.url)
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", usage_server.project_key)
    monkeypatch.setenv("NO_PROXY", "*")
    namespace: Dict[str, Any] = {"__name__": "bot"}
    # At the block's own lines, so that a traceback points into the page.
    exec(compile("\n" * block.line + block.code, str(page), "exec"), namespace)
    return namespace


def ask(bot: Dict[str, Any], message: UserMessage) -> BotMessage:
    """The bot as aiogram runs it: start-up, the message's handler, shutdown."""

    async def run() -> None:
        await bot["on_startup"]()
        try:
            await bot["answer"](message)
        finally:
            await bot["on_shutdown"]()

    asyncio.run(run())
    assert message.reply is not None, "the bot did not answer"
    return message.reply


def note_for(bot: Dict[str, Any], error_name: str) -> str:
    return str(dict((kind.__name__, words) for kind, words in bot["APOLOGIES"])[error_name])


# -- what the user sees ------------------------------------------------------------------------


def test_the_bot_waits_out_flood_control_and_goes_on_with_a_newer_snapshot(
    bot: Dict[str, Any],
) -> None:
    # The first edit is refused for 1.1 s, and the last one once, for 0.1 s.
    reply = ask(bot, UserMessage(QUESTION, refuse={0: 1.1, 2: 0.1}))

    assert [(text, went_through) for _, text, went_through in reply.edits] == [
        ("Echo:", False),             # the first snapshot, at once: refused
        ("Echo: Привет,", True),      # after the wait, the snapshot then: not the refused one
        (ANSWER, False),              # the whole answer, at the end: refused...
        (ANSWER, True),               # ...so sent again after the wait
    ]
    times = [at for at, _, _ in reply.edits]
    assert times[1] - times[0] >= 1.1 - 0.01
    assert times[3] - times[2] >= 0.1 - 0.01
    assert reply.text == ANSWER


def test_a_stream_cut_halfway_leaves_every_word_that_arrived_and_a_note(
    bot: Dict[str, Any], usage_server: WayGPTTestServer,
) -> None:
    usage_server.script_stream_fault(after_events=2, cut="reset")

    reply = ask(bot, UserMessage(QUESTION))

    # "Echo:" was shown at once; " Привет," came within the second and was held back, and
    # the partial answer still brings it to the user.
    final = "Echo: Привет,\n\n" + note_for(bot, "StreamInterruptedError")
    assert [text for _, text, _ in reply.edits] == ["Echo:", final]
    assert reply.text == final


def test_a_rate_limit_before_the_answer_is_a_friendly_message(
    bot: Dict[str, Any], usage_server: WayGPTTestServer,
) -> None:
    usage_server.script(path=CHAT, status=429, headers={"Retry-After": "120"},
                        body={"detail": "Too many requests"})

    reply = ask(bot, UserMessage(QUESTION))

    assert [text for _, text, _ in reply.edits] == [note_for(bot, "RateLimitError")]


def test_without_a_bot_token_the_bot_says_what_to_set(
    bot: Dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    with pytest.raises(SystemExit, match=r"BOT_TOKEN=\.\.\. python bot\.py"):
        asyncio.run(bot["main"]())
