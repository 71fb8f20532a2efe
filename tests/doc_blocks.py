"""Fenced code blocks of the Markdown documentation: find them, run them, compare twins.

Used by ``tests/docs/test_docs_run.py`` (every Python block runs against a local test server),
``tests/docs/test_docs_twins.py`` (each English page in ``docs/`` has a Russian twin in
``docs/ru/`` with the same code) and ``tests/docs/test_doc_blocks.py`` (this module's own tests).

A block is a fenced block (three or more backticks or tildes, possibly indented inside a list
item). Its *language* is the first word of the info string. A Python block (``python`` or
``py``) may be marked as not runnable by an HTML comment on the line right before its fence,
which the reader of the rendered page does not see but the reader of the source does::

    <!-- not run: needs a Telegram bot token -->
    ```python
    ...

The reason after ``not run:`` is required.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import re
import token
import tokenize
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

PYTHON_LANGUAGES = frozenset({"python", "py"})

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# Any "not run" comment on a line of its own, wherever it is: those not right above a Python
# fence are reported. (One quoted in running text, inside backticks, is not a marker.)
_ANY_MARKER = re.compile(r"^\s*<!--\s*not[ -]run\b", re.IGNORECASE)
_MARKER = re.compile(r"^\s*<!--\s*not[ -]run\b\s*:?(?P<reason>.*?)-->\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a Markdown page."""

    page: Path
    line: int  # 1-based line number of the opening fence
    info: str  # the whole info string, stripped
    code: str  # the content, with the fence's indentation removed; ends with a newline
    marker: Optional[str] = None  # None: no "not run" marker; else its reason ("" if none given)

    @property
    def language(self) -> str:
        words = self.info.split()
        first = words[0].lower().lstrip("{.") if words else ""
        return "python" if first in PYTHON_LANGUAGES else first

    @property
    def is_python(self) -> bool:
        return self.language == "python"

    @property
    def runnable(self) -> bool:
        return self.is_python and self.marker is None

    def where(self, root: Optional[Path] = None) -> str:
        """``page.md:LINE``, the page relative to ``root`` when given."""
        page = self.page
        if root is not None:
            try:
                page = page.relative_to(root)
            except ValueError:
                pass
        return f"{page.as_posix()}:{self.line}"


@dataclass(frozen=True)
class Marker:
    """A ``<!-- not run ... -->`` comment found on a page."""

    page: Path
    line: int
    reason: str  # "" when the comment gives none
    attached: bool  # True when it is right above a Python fence


def parse_blocks(page: Path, text: Optional[str] = None) -> List[CodeBlock]:
    """Every fenced code block of ``page``, in order."""
    return _parse(page, text)[0]


def parse_markers(page: Path, text: Optional[str] = None) -> List[Marker]:
    """Every "not run" marker of ``page``, attached to a Python block or not."""
    return _parse(page, text)[1]


def _parse(page: Path, text: Optional[str]) -> Tuple[List[CodeBlock], List[Marker]]:
    if text is None:
        text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks: List[CodeBlock] = []
    attached_lines = set()
    index = 0
    while index < len(lines):
        opening = _FENCE_OPEN.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: List[str] = []
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            body.append(_dedent(lines[end], indent))
            end += 1
        marker: Optional[str] = None
        if index > 0:
            found = _MARKER.match(lines[index - 1])
            if found is not None:
                marker = found["reason"].strip()
                attached_lines.add(index)  # the marker's own 1-based line number
        block = CodeBlock(page, index + 1, info, "".join(f"{b}\n" for b in body), marker)
        if marker is not None and not block.is_python:
            attached_lines.discard(index)
        blocks.append(block)
        index = end + 1
    markers = []
    for number, line in enumerate(lines, start=1):
        if _ANY_MARKER.search(line):
            found = _MARKER.match(line)
            reason = found["reason"].strip() if found is not None else ""
            markers.append(Marker(page, number, reason, number in attached_lines))
    return blocks, markers


def _dedent(line: str, indent: str) -> str:
    """Remove the fence's indentation (as far as the line has it) from a content line."""
    width = len(indent)
    stripped = len(line) - len(line.lstrip(" \t"))
    return line[min(width, stripped):]


# -- running ------------------------------------------------------------------------------------


class BlockFailed(AssertionError):
    """A documentation block raised; the message names the page and the block's line."""


# ``fixtures(names, marks)``: a context manager giving the value of each named fixture, fresh
# for one test function; ``marks`` maps each pytest marker on the function to its keyword
# arguments (``@pytest.mark.waygpt_server(require_hmac=True)``). It raises LookupError for a
# name it does not provide.
Fixtures = Callable[[List[str], Dict[str, Dict[str, Any]]], ContextManager[Dict[str, Any]]]


class PageRunner:
    """Runs the Python blocks of one page in order, in one namespace.

    A block is compiled with the Markdown file as its file name and with its code at the
    lines where it stands in the file, so a traceback points into the page itself. Top-level
    ``await`` is allowed; every block of the page runs on one event loop.

    A block that defines ``test_*`` functions has them called right after it, as pytest
    would call them, with the fixtures named by their parameters (see ``Fixtures``).
    """

    def __init__(self, root: Path, fixtures: Optional[Fixtures] = None) -> None:
        self.root = root
        self.fixtures = fixtures
        self.namespace: Dict[str, Any] = {"__name__": "__docs__", "__builtins__": __builtins__}
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __enter__(self) -> PageRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, block: CodeBlock) -> None:
        """Run one block; raise ``BlockFailed`` naming the page and line if it raises."""
        filename = str(block.page)
        source = "\n" * block.line + block.code  # the first code line is the fence's next
        try:
            code = compile(
                source, filename, "exec", flags=_TOP_LEVEL_AWAIT, dont_inherit=True
            )
        except SyntaxError as error:
            raise BlockFailed(self._message(block, error, "does not compile")) from None
        before = dict(self.namespace)
        try:
            if code.co_flags & inspect.CO_COROUTINE:
                self._run_coroutine(eval(code, self.namespace))
            else:
                exec(code, self.namespace)
            for name, function in self._new_tests(block, before):
                self._call_test(block, name, function)
        except BlockFailed:
            raise
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            raise BlockFailed(self._message(block, error, "raised")) from None

    def _run_coroutine(self, coroutine: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coroutine)

    def _new_tests(
        self, block: CodeBlock, before: Dict[str, Any]
    ) -> List[Tuple[str, Callable[..., Any]]]:
        found = []
        for name, value in self.namespace.items():
            if not name.startswith("test") or before.get(name) is value:
                continue
            code = getattr(value, "__code__", None)
            if inspect.isfunction(value) and code is not None:
                if code.co_filename == str(block.page) and code.co_firstlineno > block.line:
                    found.append((name, value))
        return found

    def _call_test(self, block: CodeBlock, name: str, function: Callable[..., Any]) -> None:
        names = list(inspect.signature(function).parameters)
        with contextlib.ExitStack() as stack:
            values: Dict[str, Any] = {}
            if names:
                try:
                    if self.fixtures is None:
                        raise LookupError("this runner provides no fixtures")
                    marks = {
                        mark.name: dict(mark.kwargs)
                        for mark in reversed(getattr(function, "pytestmark", []))
                    }
                    values = stack.enter_context(self.fixtures(names, marks))
                except LookupError as error:
                    raise BlockFailed(
                        f"{block.where(self.root)}: {name}() takes {names}: {error}"
                    ) from None
            result = function(**values)
            if inspect.iscoroutine(result):
                self._run_coroutine(result)

    def _message(self, block: CodeBlock, error: BaseException, what: str) -> str:
        frames = traceback.TracebackException.from_exception(error)
        frames.stack = traceback.StackSummary.from_list(_useful_frames(frames.stack))
        detail = "".join(frames.format()).rstrip()
        return (
            f"{block.where(self.root)}: the Python block starting at line {block.line} "
            f"{what}: {type(error).__name__}: {error}\n{detail}"
        )


def _useful_frames(stack: traceback.StackSummary) -> List[traceback.FrameSummary]:
    """The frames in the page and in waygpt, and the innermost one; not the runner's."""
    kept = []
    for position, frame in enumerate(stack):
        path = Path(frame.filename)
        if frame.filename == __file__:
            continue
        if path.suffix == ".md" or "waygpt" in path.parts or position == len(stack) - 1:
            kept.append(frame)
    return kept


_TOP_LEVEL_AWAIT = getattr(__import__("ast"), "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)


# -- twins --------------------------------------------------------------------------------------

STRING_PLACEHOLDER = '""'
_GENERIC_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<comment>(?:^|(?<=\s))#.*$)"""
)
_STRING_PREFIX = re.compile(r"^[A-Za-z]*")
_LAYOUT = frozenset({token.NEWLINE, token.INDENT, token.DEDENT, token.ENDMARKER})
_SKIPPED = frozenset({tokenize.COMMENT, tokenize.NL, token.ENCODING})
# Python 3.12+ splits an f-string (3.14+ also a t-string) into start, middle and end tokens
# with the replacement fields' tokens in between; before 3.12 it is one STRING token. For the
# same result on every version, the whole f-string counts as one string.
_STRING_STARTS = frozenset(
    getattr(token, name) for name in ("FSTRING_START", "TSTRING_START") if hasattr(token, name)
)
_STRING_ENDS = frozenset(
    getattr(token, name) for name in ("FSTRING_END", "TSTRING_END") if hasattr(token, name)
)


def normalise(block: CodeBlock) -> Tuple[str, Tuple[str, ...]]:
    """The block's language and its code with string contents and comments taken out.

    Python blocks are compared token by token (comments and blank or comment-only lines
    dropped, each string literal reduced to its prefix and ``""``). Other blocks are compared
    line by line, with ``#`` comments dropped, quoted strings reduced to ``""`` or ``''``,
    trailing spaces and empty lines ignored.
    """
    if block.is_python:
        try:
            return block.language, _python_tokens(block.code)
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass
    return block.language, _generic_lines(block.code)


def _python_tokens(code: str) -> Tuple[str, ...]:
    result = []
    depth = 0  # inside how many f-strings (3.12+ tokens)
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type in _STRING_STARTS:
            if depth == 0:
                result.append(f"STRING {_string_prefix(tok.string)}{STRING_PLACEHOLDER}")
            depth += 1
        elif tok.type in _STRING_ENDS:
            depth -= 1
        elif depth or tok.type in _SKIPPED:
            continue
        elif tok.type == token.STRING:
            result.append(f"STRING {_string_prefix(tok.string)}{STRING_PLACEHOLDER}")
        elif tok.type in _LAYOUT:
            result.append(token.tok_name[tok.type])
        else:
            result.append(f"{token.tok_name[tok.type]} {tok.string}")
    return tuple(result)


def _string_prefix(text: str) -> str:
    prefix = _STRING_PREFIX.match(text)
    return prefix.group(0).lower() if prefix else ""


def _generic_lines(code: str) -> Tuple[str, ...]:
    result = []
    for line in code.splitlines():
        reduced = _GENERIC_TOKEN.sub(
            lambda m: "" if m["comment"] else m["string"][0] * 2, line
        ).rstrip()
        if reduced.strip():
            result.append(reduced)
    return tuple(result)


def twin_differences(english: Path, russian: Path, root: Path) -> List[str]:
    """What keeps two twin pages' code blocks from being the same; empty when they are."""
    ours, theirs = parse_blocks(english), parse_blocks(russian)
    problems = []
    for number, (a, b) in enumerate(zip(ours, theirs), start=1):
        left, right = normalise(a), normalise(b)
        pair = f"code block {number} ({a.where(root)} and {b.where(root)})"
        if left != right:
            problems.append(f"{pair} differs in more than strings and comments:\n"
                            f"{_first_difference(left, right)}")
        elif a.runnable != b.runnable:
            problems.append(f"{pair}: one is marked 'not run', the other is not")
    if len(ours) != len(theirs):
        problems.append(f"{english.relative_to(root).as_posix()} has {len(ours)} code blocks, "
                        f"{russian.relative_to(root).as_posix()} has {len(theirs)}")
    return problems


def _first_difference(
    left: Tuple[str, Tuple[str, ...]], right: Tuple[str, Tuple[str, ...]]
) -> str:
    if left[0] != right[0]:
        return f"  language {left[0]!r} != {right[0]!r}"
    for position, (a, b) in enumerate(zip(left[1], right[1])):
        if a != b:
            before = " ".join(left[1][max(0, position - 4):position])
            where = f"after {before!r}" if before else "at the start"
            return f"  {where}:\n    English: {a!r}\n    Russian: {b!r}"
    shorter = "English" if len(left[1]) < len(right[1]) else "Russian"
    return f"  the {shorter} block ends early ({len(left[1])} != {len(right[1])} items)"
