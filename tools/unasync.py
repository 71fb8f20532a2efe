"""Generate the synchronous client from the asynchronous one.

Usage::

    python tools/unasync.py           # rewrite src/waygpt/client.py from _async_client.py
    python tools/unasync.py --check   # exit 1 (with a diff) when client.py is out of date

``src/waygpt/_async_client.py`` is the one hand-written client. ``src/waygpt/client.py`` is
that file with ``async``/``await`` taken out and the names of the async side replaced by
those of the sync side (``AiohttpTransport`` by ``RequestsTransport``, ...), by the plain
text rules below, applied in order. Everything that differs beyond that lives in the two
transports, so the rules stay a short list. The result is a real module, committed, read and
type-checked like any other; CI fails when it is stale.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "waygpt" / "_async_client.py"
TARGET = ROOT / "src" / "waygpt" / "client.py"

HEADER = (
    "# Generated from _async_client.py by tools/unasync.py: do not edit by hand. Change the\n"
    "# async client, then run `python tools/unasync.py` (CI checks this file is up to date).\n"
)

MODULE_DOCSTRING = '''"""``WayGPTClient``: the synchronous client, on requests.

Generated from ``_async_client.py`` (the one hand-written client) by ``tools/unasync.py``.
What each method sends is defined once in ``_endpoints.py``, the pipeline that sends it in
``_core.py``, the library specifics in ``_requests_transport.py``.
"""'''

# (pattern, replacement): regular expressions over the whole text, applied in order.
RULES: List[Tuple[str, str]] = [
    # The class docstring's async-only sentences.
    (
        r"An asyncio client for the WayGPT AI Server, on aiohttp "
        r'\(``pip install "waygpt\[aiohttp\]"``\)\.',
        "A synchronous client for the WayGPT AI Server, on requests.",
    ),
    (
        r"\n    The aiohttp session is made at the first call, in the running event loop: use the "
        r"client\n    from one event loop, and close it there \(a call from another loop while "
        r"that one still\n    runs raises ``ConfigurationError``\)\.",
        "",
    ),
    (
        r"an ``aiohttp\.ClientSession`` to send on; its headers, auth, cookies and\n"
        r"            connector apply\.",
        "a ``requests.Session`` to send on; its headers, auth, proxies, ``verify`` and\n"
        "            hooks apply.",
    ),
    (r"\n        ImportError: aiohttp is not installed\.", ""),
    (r" \(a plain function or a coroutine function\)", ""),
    (r" A hook may be a coroutine\n            function\.", ""),
    (r"an :class:`AsyncChatStream`", "a :class:`ChatStream`"),
    # The session's type.
    (r"from aiohttp import ClientSession", "from requests import Session"),
    (r"\bClientSession\b", "Session"),
    # The names of the async side.
    (r"\bAsyncWayGPTClient\b", "WayGPTClient"),
    (r"\bAsyncChatStream\b", "ChatStream"),
    (r"\bAiohttpTransport\b", "RequestsTransport"),
    (r"\b_aiohttp_transport\b", "_requests_transport"),
    # async and await.
    (r"\basync def\b", "def"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
]


def _split_docstring(source: str) -> Tuple[str, str]:
    """The module's docstring and the rest of the text after it."""
    match = re.match(r'"""(?:.|\n)*?"""', source)
    if match is None:
        raise SystemExit(f"{SOURCE}: the module must start with its docstring")
    return match.group(0), source[match.end() :]


def generate(source: str) -> str:
    """The sync client's source for the async client's ``source``."""
    _, rest = _split_docstring(source)
    for pattern, replacement in RULES:
        rest, count = re.subn(pattern, replacement, rest)
        if count == 0:
            # A rule that no longer matches is a rule the source outgrew: say so, rather
            # than leave an async phrase in the sync client.
            raise SystemExit(f"tools/unasync.py: the rule {pattern!r} matches nothing")
    leftover = re.search(r"\b(async|await|aiohttp|asyncio|Aiohttp)\b", rest)
    if leftover is not None:
        line = rest.count("\n", 0, leftover.start()) + 1
        raise SystemExit(
            f"tools/unasync.py: {leftover.group(0)!r} is left in the sync client "
            f"(line {line} after the docstring): add a rule, or move it into the transports"
        )
    return HEADER + MODULE_DOCSTRING + _sort_relative_imports(rest)


def _sort_relative_imports(text: str) -> str:
    """Each run of ``from .module import ...`` statements (one line or parenthesised),
    sorted again by module: a renamed module (``_aiohttp_transport`` to
    ``_requests_transport``) changes its place."""
    lines = text.split("\n")
    out: List[str] = []
    index = 0
    while index < len(lines):
        run: List[List[str]] = []
        while index < len(lines) and lines[index].startswith("from ."):
            statement = [lines[index]]
            if lines[index].endswith("("):
                while not lines[index].startswith(")"):
                    index += 1
                    statement.append(lines[index])
            run.append(statement)
            index += 1
        if run:
            for statement in sorted(run, key=lambda lines_: lines_[0].split()[1]):
                out.extend(statement)
        else:
            out.append(lines[index])
            index += 1
    return "\n".join(out)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when client.py is stale")
    args = parser.parse_args(argv)
    expected = generate(SOURCE.read_text(encoding="utf-8"))
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current == expected:
            print(f"{TARGET.relative_to(ROOT)} is up to date")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            str(TARGET.relative_to(ROOT)),
            "generated",
        )
        sys.stdout.writelines(diff)
        print(f"\n{TARGET.relative_to(ROOT)} is stale: run python tools/unasync.py")
        return 1
    TARGET.write_text(expected, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
