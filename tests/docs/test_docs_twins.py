"""Every English page in docs/ has a Russian twin in docs/ru/ with the same code.

The twin of ``docs/<name>.md`` is ``docs/ru/<name>.md``. The two pages' fenced code blocks
must be the same, in the same order, except for the contents of string literals and for
comments (a Russian page may translate prompts, messages and comments): Python blocks are
compared token by token, other blocks line by line (see ``doc_blocks.normalise``). A block
that is run on one page must be run on the other (the same ``<!-- not run: ... -->``
markers). A Russian page without an English twin is reported too, unless it is listed in
``RUSSIAN_ONLY``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from doc_blocks import twin_differences

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUSSIAN = DOCS / "ru"
ENGLISH_PAGES = sorted(DOCS.glob("*.md"))
RUSSIAN_PAGES = sorted(RUSSIAN.glob("*.md"))

# Russian pages allowed to exist without an English twin (none today).
RUSSIAN_ONLY: frozenset[str] = frozenset()


@pytest.mark.parametrize("page", ENGLISH_PAGES, ids=lambda page: page.name)
def test_english_page_has_a_russian_twin_with_the_same_code(page: Path) -> None:
    twin = RUSSIAN / page.name
    assert twin.exists(), f"docs/{page.name} has no Russian twin docs/ru/{page.name}"
    problems = twin_differences(page, twin, ROOT)
    assert not problems, "\n".join(problems)


def test_every_russian_page_has_an_english_twin() -> None:
    orphans = [
        f"docs/ru/{page.name}"
        for page in RUSSIAN_PAGES
        if not (DOCS / page.name).exists() and page.name not in RUSSIAN_ONLY
    ]
    assert not orphans, f"Russian pages without an English twin: {orphans}"


def test_the_russian_index_links_every_russian_page() -> None:
    index = (RUSSIAN / "index.md").read_text(encoding="utf-8")
    missing = [page.name for page in RUSSIAN_PAGES
               if page.name != "index.md" and f"]({page.name})" not in index]
    assert not missing, f"docs/ru/index.md does not link {missing}"
