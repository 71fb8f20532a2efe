"""Secrets out of the texts an error carries, in whatever form a server echoes them.

An error answer may repeat what was sent: the project key, the HMAC secret, a JWT, a login
password. A server seldom repeats a value exactly as it received it. JSON encoders escape it
(PHP writes ``/`` as ``\\/``, .NET writes ``+`` as ``\\u002B``, most write non-ASCII as
``\\uXXXX``, some escape every character); a form body or a URL is echoed percent-encoded,
with hex digits in either case and ``+`` for a space; an HTML error page (a proxy's, a
framework's debug page) writes ``&`` as ``&amp;`` and other characters as ``&#NNN;``; and
these nest: a form body quoted in a JSON error, a JSON document inside a redirect URL, JSON
inside JSON. Listing every form of every secret would not end, so the text is decoded
instead: a view of it with one layer of escapes undone, then another, up to three layers,
each view mapped back to the text, and the secrets are looked for in every view.

Base64 is not undone. A secret inside base64 is written differently at each of its three
possible offsets and its edges mix with the neighbouring bytes, so finding it would mean
decoding every base64-looking run three ways; and no credential is sent base64-encoded (the
SDK sends no Basic auth), so a server has no base64 of a secret to echo.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Callable, Iterable, List, Optional, Pattern, Tuple

_REDACTED = "[REDACTED]"
# Shorter values are too common in ordinary text to be replaced safely.
_MIN_SECRET = 3
# A secret at least this long is replaced wherever it occurs, even inside a longer word: no
# word of a message is that long by chance. A shorter one only as a whole token.
_ANYWHERE_SECRET = 12
# Layers of escaping undone, one inside the other (a form body quoted in JSON is two).
_DECODE_LAYERS = 3

# A short secret that is one of these words (ignoring case) is taken, where it stands as a
# word in a sentence, for the server's own word ("Invalid project key" when the key is
# "key"): it is replaced only where it can only be a value (see _is_value). The words are
# those servers write in errors about credentials; docs/errors-and-retries.md lists them.
_MESSAGE_WORDS = frozenset(
    (
        "access", "already", "and", "api", "auth", "bad", "bearer", "cannot", "could",
        "credential", "credentials", "denied", "email", "error", "expired", "failed",
        "field", "for", "forbidden", "found", "header", "hmac", "incorrect", "invalid",
        "jwt", "key", "login", "missing", "nonce", "not", "pass", "passwd", "password",
        "project", "required", "secret", "signature", "the", "this", "token",
        "unauthorized", "user", "username", "valid", "validate", "with", "wrong",
        "для", "доступ", "запрещен", "запрещён", "или", "ключ", "логин", "найден",
        "найдена", "неверная", "неверное", "неверный", "неправильный", "нет", "ошибка",
        "пароль", "подпись", "пользователь", "почта", "проект", "секрет", "токен",
    )
)
# ASCII quotes and backticks, guillemets, and the typographic double and single quotes.
_OPENING_QUOTES = frozenset("\"'`«\u201c\u201e\u2018")
_CLOSING_QUOTES = frozenset("\"'`»\u201d\u201c\u2019")

_SHORT_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_escapes: Optional[Pattern[str]] = None
_colour: Optional[Pattern[str]] = None


def _escape_pattern() -> Pattern[str]:
    """The escapes one layer may hold; compiled on the first error, not at import."""
    global _escapes
    if _escapes is None:
        _escapes = re.compile(
            r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"  # a pair
            r"|\\u([0-9a-fA-F]{4})"  # JSON, JavaScript, Python
            r"|\\([\"'\\/bfnrt])"  # JSON's short escapes (and \' of JavaScript, Python)
            r"|(?:%|\\x)([0-9a-fA-F]{2})"  # one byte: percent-encoding, \xHH of a repr
            r"|&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|(amp|lt|gt|quot|apos));"  # HTML
        )
    return _escapes


class _Layer:
    """A view of the text with one more layer of escapes undone.

    Each decoded escape is one character at ``positions[k]`` of ``text`` that came from
    ``starts[k]:ends[k]`` of the view below; everything between escapes is copied as is.
    """

    __slots__ = ("below", "ends", "positions", "starts", "text")

    def __init__(self, text: str, below: Optional[_Layer]) -> None:
        self.text = text
        self.below = below
        self.positions: List[int] = []
        self.starts: List[int] = []
        self.ends: List[int] = []

    def decoded(self) -> Optional[_Layer]:
        """The view with the next layer undone; None when this one holds no escape."""
        text = self.text
        layer = _Layer("", self)
        pieces: List[str] = []
        size = 0  # characters in pieces so far
        copied = 0  # text[:copied] is in pieces
        octets: List[Tuple[int, int, int]] = []  # pending bytes: (value, start, end)
        for match in _escape_pattern().finditer(text):
            start, end = match.span()
            if octets and octets[-1][2] != start:
                size = layer._add_octets(octets, pieces, size)
            if match.group(5) is not None:  # a byte: UTF-8 sequences span several
                pieces.append(text[copied:start])
                size += start - copied
                copied = end
                octets.append((int(match.group(5), 16), start, end))
                continue
            char = _escaped_char(match)
            if char is None:  # "&#0;", "&#x110000;": not a character, left as text
                continue
            if octets:
                size = layer._add_octets(octets, pieces, size)
            pieces.append(text[copied:start])
            size += start - copied
            copied = end
            layer._add(char, start, end, pieces, size)
            size += 1
        if octets:
            size = layer._add_octets(octets, pieces, size)
        if not layer.positions:
            return None
        pieces.append(text[copied:])
        layer.text = "".join(pieces)
        return layer

    def _add(self, char: str, start: int, end: int, pieces: List[str], size: int) -> None:
        pieces.append(char)
        self.positions.append(size)
        self.starts.append(start)
        self.ends.append(end)

    def _add_octets(
        self, octets: List[Tuple[int, int, int]], pieces: List[str], size: int
    ) -> int:
        """Adds adjacent bytes as UTF-8 where they are, else as Latin-1 (``%E9`` is é)."""
        index = 0
        while index < len(octets):
            lead = octets[index][0]
            length = 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else (
                4 if 0xF0 <= lead <= 0xF4 else 1
            )
            group = octets[index : index + length]
            char = chr(lead)
            if length > 1 and len(group) == length:
                try:
                    char = bytes(value for value, _, _ in group).decode("utf-8")
                except UnicodeDecodeError:
                    group = group[:1]
            else:
                group = group[:1]
            self._add(char, group[0][1], group[-1][2], pieces, size)
            size += 1
            index += len(group)
        octets.clear()
        return size

    def span_below(self, start: int, end: int) -> Tuple[int, int]:
        """Where ``text[start:end]`` came from in the view below."""
        return self._source(start)[0], self._source(end - 1)[1]

    def _source(self, index: int) -> Tuple[int, int]:
        k = bisect_right(self.positions, index) - 1
        if k < 0:
            return index, index + 1
        position = self.positions[k]
        if position == index:
            return self.starts[k], self.ends[k]
        source = self.ends[k] + (index - position - 1)
        return source, source + 1


def _escaped_char(match: re.Match[str]) -> Optional[str]:
    high, low, unit, short, _, decimal, hexadecimal, entity = match.groups()
    if high is not None:
        point = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
        return chr(point)
    if unit is not None:
        return chr(int(unit, 16))
    if short is not None:
        return _SHORT_ESCAPES.get(short, short)
    if entity is not None:
        return _ENTITIES[entity]
    point = int(decimal, 10) if decimal is not None else int(hexadecimal, 16)
    return chr(point) if 0 < point <= 0x10FFFF else None


class _Secret:
    """One secret as it is looked for: the texts to find and how much of a match counts."""

    __slots__ = ("left_word", "needles", "right_word", "short", "word")

    def __init__(self, secret: str) -> None:
        # A space may be echoed as "+" (form encoding); "%20" is undone with the escapes.
        self.needles = tuple({secret, secret.replace(" ", "+")})
        self.short = len(secret) < _ANYWHERE_SECRET
        # A secret that starts (ends) with a letter or digit is a whole token only where no
        # letter or digit comes before (after) it; one that starts with "!" has that edge.
        self.left_word = secret[0].isalnum()
        self.right_word = secret[-1].isalnum()
        self.word = self.short and secret.casefold() in _MESSAGE_WORDS

    def accepts(self, text: str, start: int, end: int, bounds: Tuple[int, int]) -> bool:
        """Whether the occurrence at ``text[start:end]`` is this secret and not a word.

        ``bounds``: where the text starts and ends once stripped of surrounding spaces.
        """
        if not self.short:
            return True
        before = text[start - 1] if start > 0 else ""
        after = text[end] if end < len(text) else ""
        if self.left_word and before.isalnum() and not _after_control_sequence(text, start):
            return False  # inside a longer word: "rre" in "Incorrect"
        if self.right_word and after.isalnum():
            return False
        if not self.word:
            return True
        # A word of the messages is a value where it is the whole text (a JSON string, a
        # header), quoted, or after "=" (a form or a query echoed: password=password).
        quoted = before in _OPENING_QUOTES and after in _CLOSING_QUOTES
        return quoted or before == "=" or (start, end) == bounds


def _after_control_sequence(text: str, end: int) -> bool:
    """Whether ``text[:end]`` ends with an ANSI control sequence (``ESC [ 31 m``, a colour):
    its last byte is a letter, but it is no part of the word that follows."""
    window = text[max(0, end - 32) : end]
    if "\x1b" not in window and "\x9b" not in window:
        return False
    global _colour
    if _colour is None:
        _colour = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]\Z")  # CSI, 7- or 8-bit
    return _colour.search(window) is not None


class Redactor:
    """Replaces every secret in a text by ``[REDACTED]``, in every form a server echoes it.

    A secret of 12 characters or more is replaced wherever it occurs; a shorter one only as
    a whole token, and one that is a common word of error messages only where it stands as a
    value (docs/errors-and-retries.md has the rules); one under 3 characters never.
    Made when an error (or an event hook's view of the headers) first needs one; the client
    keeps it for its next calls with the same secrets.
    """

    __slots__ = ("_in_marker", "_secrets")

    def __init__(self, secrets: Iterable[Optional[str]]) -> None:
        unique = {secret for secret in secrets if secret and len(secret) >= _MIN_SECRET}
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = [_Secret(secret) for secret in sorted(unique, key=len, reverse=True)]
        # A text is often redacted twice (a field, then the message made of it): a secret
        # such as "RED" must not be found again inside the marker put in its place.
        self._in_marker = any(secret in _REDACTED for secret in unique)

    def __call__(self, text: str) -> str:
        if not self._secrets or len(text) < _MIN_SECRET:
            return text
        if "\\" not in text and "%" not in text and "&" not in text and not any(
            needle in text for secret in self._secrets for needle in secret.needles
        ):
            return text  # no escape to undo and no secret as it is: nothing to find
        spans: List[Tuple[int, int]] = []
        layer: Optional[_Layer] = _Layer(text, None)
        for _ in range(_DECODE_LAYERS + 1):
            if layer is None:
                break
            spans += self._find(layer)
            layer = layer.decoded()
        return _replace(text, spans) if spans else text

    def _find(self, layer: _Layer) -> List[Tuple[int, int]]:
        """The spans, in the original text, of the secrets found in ``layer``."""
        text = layer.text
        bounds = (len(text) - len(text.lstrip()), len(text.rstrip()))
        markers = _marker_starts(text) if self._in_marker else []
        found: List[Tuple[int, int]] = []
        for secret in self._secrets:
            for needle in secret.needles:
                start = text.find(needle)
                while start >= 0:
                    end = start + len(needle)
                    if not _in_marker(markers, start, end) and secret.accepts(
                        text, start, end, bounds
                    ):
                        found.append(_span_in_original(layer, start, end))
                    start = text.find(needle, start + 1)
        return found


class LazyRedactor:
    """The :class:`Redactor` that ``make`` gives, asked for on its first use."""

    __slots__ = ("_make", "_redactor")

    def __init__(self, make: Callable[[], Redactor]) -> None:
        self._make = make
        self._redactor: Optional[Redactor] = None

    def __call__(self, text: str) -> str:
        if self._redactor is None:
            self._redactor = self._make()
        return self._redactor(text)


def _marker_starts(text: str) -> List[int]:
    starts: List[int] = []
    start = text.find(_REDACTED)
    while start >= 0:
        starts.append(start)
        start = text.find(_REDACTED, start + 1)
    return starts


def _in_marker(starts: List[int], start: int, end: int) -> bool:
    """Whether ``start:end`` lies inside one of the markers that begin at ``starts``."""
    k = bisect_right(starts, start) - 1
    return k >= 0 and end <= starts[k] + len(_REDACTED)


def _span_in_original(layer: _Layer, start: int, end: int) -> Tuple[int, int]:
    below = layer.below
    while below is not None:
        start, end = layer.span_below(start, end)
        layer, below = below, below.below
    return start, end


def _replace(text: str, spans: List[Tuple[int, int]]) -> str:
    """``text`` with each span, overlapping ones merged, replaced by ``[REDACTED]``."""
    pieces: List[str] = []
    copied = 0
    merged_start, merged_end = -1, -1
    for start, end in sorted(spans):
        if start < merged_end:  # overlaps the span being merged
            merged_end = max(merged_end, end)
            continue
        if merged_end >= 0:
            pieces += (text[copied:merged_start], _REDACTED)
            copied = merged_end
        merged_start, merged_end = start, end
    pieces += (text[copied:merged_start], _REDACTED, text[merged_end:])
    return "".join(pieces)
