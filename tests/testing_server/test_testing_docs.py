"""docs/testing.md and its Russian twin: every Python block runs, and the twins' code agrees.

The Python blocks of a page run in order in one namespace, as a reader pastes them, and
then the same blocks, as one test module in an empty directory, under pytest with the
installed plugin: the ``test_*`` functions on the page pass.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import List, Tuple

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = [DOCS / "testing.md", DOCS / "ru" / "testing.md"]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(page: Path) -> List[Tuple[str, str]]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def python_source(page: Path) -> str:
    return "\n\n".join(code for language, code in blocks(page) if language == "python")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_run_in_order(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": "docs_page"}
    for index, (language, code) in enumerate(blocks(page)):
        if language == "python":
            exec(compile(code, f"{page.name} block {index}", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_the_tests_on_the_page_pass_under_pytest(page: Path, tmp_path: Path) -> None:
    source = python_source(page)
    expected = len(re.findall(r"^def test_", source, re.MULTILINE))
    (tmp_path / "test_page.py").write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAYGPT_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "test_page.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = dict(
        (word, int(number)) for number, word in re.findall(r"(\d+) (passed|skipped)", output)
    )
    assert counts.get("passed", 0) + counts.get("skipped", 0) == expected, output
    # Only the async client's test may skip, and only while the SDK has no async client.
    assert counts.get("skipped", 0) <= 1, output


def _code_tokens(code: str) -> List[Tuple[int, str]]:
    """The tokens of Python code without its strings and comments."""
    ignored = {tokenize.COMMENT, tokenize.NL, tokenize.STRING}
    return [
        (token.type, token.string)
        for token in tokenize.generate_tokens(io.StringIO(code).readline)
        if token.type not in ignored
    ]


def _without_comments(code: str) -> List[str]:
    lines = (line.split("#", 1)[0].rstrip() for line in code.splitlines())
    return [line for line in lines if line]


def test_the_russian_page_has_the_same_code() -> None:
    english, russian = (blocks(page) for page in PAGES)
    assert [language for language, _ in russian] == [language for language, _ in english]
    for (language, ours), (_, theirs) in zip(english, russian):
        if language == "python":
            assert _code_tokens(theirs) == _code_tokens(ours), ours
        else:
            assert _without_comments(theirs) == _without_comments(ours), ours
