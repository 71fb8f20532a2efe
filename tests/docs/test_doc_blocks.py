"""The documentation tooling itself (tests/doc_blocks.py): parsing, running, twin comparison."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from doc_blocks import BlockFailed, PageRunner, normalise, parse_blocks, parse_markers
from doc_blocks import twin_differences as _twin_differences

FENCE = "```"


def _page(tmp_path: Path, text: str, name: str = "page.md") -> Path:
    page = tmp_path / name
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(textwrap.dedent(text).replace("'''", FENCE), encoding="utf-8")
    return page


def _run_all(tmp_path: Path, page: Path, **options: Any) -> PageRunner:
    runner = PageRunner(tmp_path, **options)
    for block in parse_blocks(page):
        if block.runnable:
            runner.run(block)
    return runner


# -- parsing --------------------------------------------------------------------------------


def test_blocks_are_found_with_their_fence_line_language_and_code(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        # Title

        '''python
        x = 1
        '''

        * a list item:

          '''py
          y = 2
          '''

        ~~~bash
        echo '''not a fence'''
        ~~~
        '''
        plain
        '''
        """)
    blocks = parse_blocks(page)
    assert [(b.line, b.language, b.code) for b in blocks] == [
        (3, "python", "x = 1\n"),
        (9, "python", "y = 2\n"),
        (13, "bash", "echo ```not a fence```\n"),
        (16, "", "plain\n"),
    ]
    assert [b.runnable for b in blocks] == [True, True, False, False]


def test_a_marker_right_above_a_python_fence_makes_it_not_runnable(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        <!-- not run: needs a Telegram bot token -->
        '''python
        import aiogram
        '''

        <!-- not run -->
        '''python
        pass
        '''
        """)
    first, second = parse_blocks(page)
    assert first.marker == "needs a Telegram bot token" and not first.runnable
    assert second.marker == "" and not second.runnable
    assert [(m.line, m.reason, m.attached) for m in parse_markers(page)] == [
        (1, "needs a Telegram bot token", True),
        (6, "", True),
    ]


def test_a_marker_elsewhere_is_reported_as_not_attached(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        <!-- not run: a reason -->

        '''python
        pass
        '''
        <!-- not run: shell is never run anyway -->
        '''bash
        ls
        '''
        """)
    assert all(block.marker is None or not block.is_python for block in parse_blocks(page))
    assert [m.attached for m in parse_markers(page)] == [False, False]


def test_a_marker_quoted_in_running_text_is_not_a_marker(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        Mark it with `<!-- not run: the reason -->` on the line above.
        '''python
        pass
        '''
        """)
    assert parse_markers(page) == []
    assert parse_blocks(page)[0].runnable


# -- running --------------------------------------------------------------------------------


def test_blocks_share_one_namespace_in_order(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        '''python
        import json
        greeting = "Привет"
        '''
        text between
        '''python
        result = json.dumps({"text": greeting}, ensure_ascii=False)
        '''
        """)
    runner = _run_all(tmp_path, page)
    assert runner.namespace["result"] == '{"text": "Привет"}'


def test_a_failure_names_the_page_and_the_line(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        Intro.

        '''python
        ok = True
        '''

        '''python
        value = 1
        missing_name + value
        '''
        """, name="docs/broken.md")
    with pytest.raises(BlockFailed) as caught:
        _run_all(tmp_path, page)
    message = str(caught.value)
    assert message.startswith("docs/broken.md:7: the Python block starting at line 7 raised: "
                              "NameError")
    assert f'File "{page}", line 9' in message
    assert "missing_name + value" in message  # the page's own line is shown


def test_a_syntax_error_names_the_page_and_the_line(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        '''python
        WayGPTClient(api_url=None, *, session=None)
        '''
        """)
    with pytest.raises(BlockFailed, match=r"^page\.md:1: .* does not compile: SyntaxError"):
        _run_all(tmp_path, page)


def test_top_level_await_runs_on_one_loop_per_page(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        '''python
        import asyncio
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        '''
        '''python
        await asyncio.sleep(0)
        same = asyncio.get_running_loop() is loop
        '''
        """)
    with _run_all(tmp_path, page) as runner:
        assert runner.namespace["same"] is True


def test_documented_test_functions_are_called_with_fixtures(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        '''python
        calls = []

        def test_uses_the_server(server):
            calls.append(server)

        def test_fails(client):
            assert client == "wrong"
        '''
        """)
    scopes: List[str] = []

    @contextlib.contextmanager
    def fixtures(names: List[str], marks: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        scopes.append("open")
        try:
            yield {name: f"the {name}" for name in names}
        finally:
            scopes.append("closed")

    with pytest.raises(BlockFailed, match=r"^page\.md:1: .*AssertionError"):
        _run_all(tmp_path, page, fixtures=fixtures)
    runner = PageRunner(tmp_path, fixtures=fixtures)
    with pytest.raises(BlockFailed):
        runner.run(parse_blocks(page)[0])
    assert runner.namespace["calls"] == ["the server"]
    assert scopes.count("open") == scopes.count("closed")


def test_an_unknown_fixture_is_reported(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        '''python
        def test_it(database):
            pass
        '''
        """)

    @contextlib.contextmanager
    def fixtures(names: List[str], marks: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        raise LookupError(f"no fixture {names}")
        yield {}

    with pytest.raises(BlockFailed, match=r"test_it\(\) takes \['database'\]"):
        _run_all(tmp_path, page, fixtures=fixtures)


def test_system_exit_in_a_block_is_a_failure(tmp_path: Path) -> None:
    page = _page(tmp_path, """\
        '''python
        import sys
        sys.exit(2)
        '''
        """)
    with pytest.raises(BlockFailed, match="SystemExit"):
        _run_all(tmp_path, page)


# -- twins ----------------------------------------------------------------------------------


def _single(tmp_path: Path, code: str, language: str = "python") -> Any:
    page = _page(tmp_path, f"'''{language}\n{code}'''\n", name="single.md")
    return normalise(parse_blocks(page)[0])


def test_strings_and_comments_may_differ_in_python(tmp_path: Path) -> None:
    english = _single(tmp_path, textwrap.dedent("""\
        reply = client.chat(messages=[{"role": "user", "content": "Hello"}])  # ask
        print(f"answer: {reply}", 'x')
        """))
    russian = _single(tmp_path, textwrap.dedent("""\
        # Спросим модель:
        reply = client.chat(messages=[{"role": "user", "content": "Привет"}])

        print(f"ответ: {reply}", 'икс')  # печать
        """))
    assert english == russian


@pytest.mark.parametrize(
    "changed",
    [
        'reply = client.chat(messages=[{"role": "user", "content": "Hello"}], n=2)\n',
        'answer = client.chat(messages=[{"role": "user", "content": "Hello"}])\n',
        'reply = client.chat(messages=[{"role": "user", "content": b"Hello"}])\n',
        'reply = client.chat(\n    messages=[{"role": "user", "content": "Hello"}])\nx = 1\n',
    ],
)
def test_code_may_not_differ_in_python(tmp_path: Path, changed: str) -> None:
    original = 'reply = client.chat(messages=[{"role": "user", "content": "Hello"}])\n'
    assert _single(tmp_path, original) != _single(tmp_path, changed)


def test_other_languages_ignore_hash_comments_and_quoted_strings(tmp_path: Path) -> None:
    english = _single(tmp_path, 'export KEY=sk_live_...   # the key\nwaygpt chat "Hello"\n',
                      "bash")
    russian = _single(tmp_path, '# ключ:\nexport KEY=sk_live_...\nwaygpt chat "Привет"\n',
                      "bash")
    assert english == russian
    assert english != _single(tmp_path, "export KEY=other\nwaygpt chat 'Hello'\n", "bash")


def test_twin_pages_are_compared_block_by_block(tmp_path: Path) -> None:
    english = _page(tmp_path, """\
        '''python
        x = "one"  # a comment
        '''
        '''bash
        ls
        '''
        """, name="docs/page.md")
    same = _page(tmp_path, """\
        Текст.
        '''python
        x = "один"  # комментарий
        '''
        '''bash
        ls
        '''
        """, name="docs/ru/page.md")
    assert _twin_differences(english, same, tmp_path) == []
    other = _page(tmp_path, """\
        '''python
        y = "один"
        '''
        """, name="docs/ru/other.md")
    problems = _twin_differences(english, other, tmp_path)
    assert problems[0].startswith("code block 1 (docs/page.md:1 and docs/ru/other.md:1)")
    assert "'NAME x'" in problems[0] and "'NAME y'" in problems[0]
    assert problems[-1] == "docs/page.md has 2 code blocks, docs/ru/other.md has 1"


def test_twins_must_agree_on_what_is_run(tmp_path: Path) -> None:
    english = _page(tmp_path, "'''python\npass\n'''\n", name="docs/page.md")
    russian = _page(tmp_path, "<!-- not run: причина -->\n'''python\npass\n'''\n",
                    name="docs/ru/page.md")
    assert _twin_differences(english, russian, tmp_path) == [
        "code block 1 (docs/page.md:1 and docs/ru/page.md:2): "
        "one is marked 'not run', the other is not"
    ]
