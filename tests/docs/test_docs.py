"""The documentation stays consistent with the code: links resolve, names and variables exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import List, Tuple

import pytest

import waygpt

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def _relative_links() -> List[Tuple[Path, str]]:
    links = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if not re.match(r"^[a-z]+:", target):
                links.append((page, target))
    return links


@pytest.mark.parametrize(
    ("page", "target"),
    _relative_links(),
    ids=lambda value: str(value.relative_to(ROOT)) if isinstance(value, Path) else value,
)
def test_relative_link_resolves(page: Path, target: str) -> None:
    assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}"


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.rglob("*.md")):
        if page.name != "index.md":
            assert str(page.relative_to(DOCS)) in index, page.name


def test_every_environment_variable_is_documented() -> None:
    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    used = set()
    for source in (ROOT / "src" / "waygpt").rglob("*.py"):
        used |= set(re.findall(r"WAYGPT_[A-Z_]+", source.read_text(encoding="utf-8")))
    missing = sorted(name for name in used if name not in configuration)
    assert not missing, f"configuration.md does not mention {missing}"


def test_every_error_class_is_documented() -> None:
    text = (DOCS / "errors-and-retries.md").read_text(encoding="utf-8")
    for name in waygpt.__all__:
        value = getattr(waygpt, name)
        if inspect.isclass(value) and issubclass(value, waygpt.WayGPTError):
            assert name in text, name


def test_every_public_method_is_listed_in_the_index() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for name, _ in inspect.getmembers(waygpt.WayGPTClient, inspect.isfunction):
        if not name.startswith("_"):
            assert f"`{name}" in index, name


@pytest.mark.parametrize(
    ("page", "opening", "joint"),
    [
        ("errors-and-retries.md", "about credentials:", ", and in Russian "),
        ("ru/errors-and-retries.md", "учётных данных:", " и по-русски "),
    ],
)
def test_the_words_a_short_secret_is_taken_for_are_those_the_code_has(
    page: str, opening: str, joint: str
) -> None:
    from waygpt._redaction import _MESSAGE_WORDS

    text = " ".join((DOCS / page).read_text(encoding="utf-8").split())
    listed = text.split(opening, 1)[1].split(".", 1)[0].replace(joint, ", ")
    assert {word.strip() for word in listed.split(",")} == set(_MESSAGE_WORDS)
