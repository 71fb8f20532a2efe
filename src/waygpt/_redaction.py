"""Secrets out of what a server sends back, in the forms a server echoes them.

An answer may repeat what a call sent (the project key, the HMAC secret, a JWT, a password)
as it is, JSON-escaped or percent-encoded, each character in any of those forms. The rules,
and the forms not looked for: docs/errors-and-retries.md ("How an echoed secret is found").
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, List, Optional, Tuple

_REDACTED = "[REDACTED]"
_MIN_SECRET = 3  # shorter values are too common in ordinary text to be replaced safely
# A secret this long is replaced even inside a longer word (no word of a message is that long
# by chance); a shorter one only as a whole token.
_ANYWHERE_SECRET = 12
# A short secret that is one of these words (any case) is the server's own word where it stands
# in a sentence ("Invalid project key", the key "key"): replaced only as a value (accepts).
_MESSAGE_WORDS = frozenset((
    "access", "already", "and", "api", "auth", "bad", "bearer", "cannot", "could", "credential",
    "credentials", "denied", "email", "error", "expired", "failed", "field", "for", "forbidden",
    "found", "header", "hmac", "incorrect", "invalid", "jwt", "key", "login", "missing", "nonce",
    "not", "pass", "passwd", "password", "project", "required", "secret", "signature", "the",
    "this", "token", "unauthorized", "user", "username", "valid", "validate", "with", "wrong",
    "для", "доступ", "запрещен", "запрещён", "или", "ключ", "логин", "найден", "найдена",
    "неверная", "неверное", "неверный", "неправильный", "нет", "ошибка", "пароль", "подпись",
    "пользователь", "почта", "проект", "секрет", "токен",
))
# ASCII quotes and backticks, guillemets, and the typographic double and single quotes.
_OPENING_QUOTES = frozenset("\"'`«\u201c\u201e\u2018")
_CLOSING_QUOTES = frozenset("\"'`»\u201d\u201c\u2019")
# The characters JSON encoders write with a short escape.
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
               "\r": "\\r", "\t": "\\t"}
_SHORT_DECODED = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# One character written in a form that is not itself (or a terminal colour code, which a log
# line wraps around a value): what stands next to a short secret is judged decoded.
_ESCAPE = r"\\u[0-9a-fA-F]{4}|%[0-9a-fA-F]{2}|\\[\"\\/bfnrt]|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"


def _character(char: str) -> str:
    """The pattern of one character of a secret, in each form a server may write it."""
    units = char.encode("utf-16-be", "surrogatepass")
    forms = [  # (hex digits in either case)
        re.escape(char),
        "".join(rf"\\u(?i:{units[i] << 8 | units[i + 1]:04x})" for i in range(0, len(units), 2)),
        "".join(f"%(?i:{byte:02x})" for byte in char.encode("utf-8", "surrogatepass")),
    ]
    if char in _JSON_SHORT:
        forms.append(re.escape(_JSON_SHORT[char]))
    if char == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


def _decoded(escape: str) -> str:
    """The character an escape (as ``_ESCAPE`` matches it) stands for; "" for a colour code."""
    if escape.startswith("\\u"):
        return chr(int(escape[2:], 16))
    if escape.startswith("%"):
        return chr(int(escape[1:], 16))
    if escape.startswith("\\"):
        return _SHORT_DECODED.get(escape[1], escape[1])
    return ""  # a colour code stands for no character: a boundary


def _neighbours(text: str, start: int, end: int) -> Tuple[str, str]:
    """The characters before and after ``text[start:end]``, decoded ("" at an edge)."""
    # (Compiled when first used, and then found in re's cache: `import waygpt` need not pay.)
    found = re.compile(f"(?:{_ESCAPE})\\Z").search(text, max(0, start - 16), start)
    before = _decoded(found.group()) if found else text[start - 1 : start]
    found = re.compile(_ESCAPE).match(text, end)
    after = _decoded(found.group()) if found else text[end : end + 1]
    return before, after


class _Secret:
    """One secret as it is looked for: its pattern, and how much of a match counts."""

    __slots__ = ("left_word", "pattern", "right_word", "short", "word")

    def __init__(self, secret: str) -> None:
        self.pattern = re.compile("".join(_character(char) for char in secret))
        self.short = len(secret) < _ANYWHERE_SECRET
        # A secret that starts (ends) with a letter or digit is a whole token only where no
        # letter or digit comes before (after) it; one that starts with "!" has that edge.
        self.left_word = secret[0].isalnum()
        self.right_word = secret[-1].isalnum()
        self.word = self.short and secret.casefold() in _MESSAGE_WORDS

    def accepts(self, text: str, start: int, end: int) -> bool:
        """Whether the occurrence at ``text[start:end]`` is this secret and not a word."""
        if not self.short:
            return True
        before, after = _neighbours(text, start, end)
        if (self.left_word and before.isalnum()) or (self.right_word and after.isalnum()):
            return False  # inside a longer word: "rre" in "Incorrect"
        if not self.word:
            return True
        # A word of the messages is a value where it is the whole text (a JSON string, a
        # header), quoted, or after "=" (a form or a query echoed: password=password).
        quoted = before in _OPENING_QUOTES and after in _CLOSING_QUOTES
        whole = not text[:start].strip() and not text[end:].strip()
        return quoted or before == "=" or whole


class Redactor:
    """Replaces every secret in a text by ``[REDACTED]``, in every form a server echoes it.
    Its patterns are compiled on first use: most calls never need them."""

    __slots__ = ("_needles", "_secrets", "_unique")

    def __init__(self, secrets: Iterable[Optional[str]]) -> None:
        unique = {secret for secret in secrets if secret and len(secret) >= _MIN_SECRET}
        self._unique = sorted(unique, key=len, reverse=True)
        # What a text must hold for any secret to be in it: an escape, or a secret as it is.
        self._needles = ("\\", "%", *unique, *(s.replace(" ", "+") for s in unique if " " in s))
        self._secrets: Optional[List[_Secret]] = None

    def __call__(self, text: str) -> str:
        if not self._unique or not any(needle in text for needle in self._needles):
            return text
        if self._secrets is None:
            self._secrets = [_Secret(secret) for secret in self._unique]
        # The markers of an earlier redaction (a text is often redacted twice: a field, then a
        # message) count as spans: a secret such as "RED" found in one merges into it.
        spans = [found.span() for found in re.finditer(re.escape(_REDACTED), text)]
        marked = len(spans)
        for secret in self._secrets:
            found = secret.pattern.search(text)
            while found is not None:
                start, end = found.span()
                if secret.accepts(text, start, end):
                    spans.append((start, end))
                found = secret.pattern.search(text, start + 1)
        return _replace(text, spans) if len(spans) > marked else text


class LazyRedactor:
    """The :class:`Redactor` that ``make`` gives, asked for on its first use: a call's
    secrets are known once its request is built, after its span was started."""

    __slots__ = ("_make", "_redactor")

    def __init__(self, make: Callable[[], Redactor]) -> None:
        self._make = make
        self._redactor: Optional[Redactor] = None

    def __call__(self, text: str) -> str:
        if self._redactor is None:
            self._redactor = self._make()
        return self._redactor(text)


def _replace(text: str, spans: List[Tuple[int, int]]) -> str:
    """``text`` with each span, overlapping ones merged, replaced by ``[REDACTED]``."""
    pieces: List[str] = []
    copied = 0  # where the text not yet copied (nor replaced) starts
    for start, end in sorted(spans):
        if start >= copied:  # (else it overlaps the span replaced last: merged into it)
            pieces += (text[copied:start], _REDACTED)
        copied = max(copied, end)
    pieces.append(text[copied:])
    return "".join(pieces)
