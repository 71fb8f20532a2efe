"""How a secret is found in a server's text (``_redaction.Redactor``), asked directly; the
errors, views and spans over sockets are in tests/client/test_secrets.py."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

import pytest

from waygpt._redaction import Redactor

KEY = "sk_live_Zq/9+Xr=Tw_4kP2mN"
PASSWORD = "pässwörd/+= €uro 🔑 key"


@pytest.mark.parametrize(
    "form",
    [
        lambda s: s,
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
        lambda s: "".join(f"\\u{ord(c):04X}" if ord(c) < 0x10000 else c for c in s),
        lambda s: quote(s, safe=""),
        lambda s: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(s, safe="")),
        lambda s: quote_plus(s),
    ],
    ids=["as-is", "json", "json-utf8", "json-slash", "json-every-char", "percent",
         "percent-lower", "form"],
)
def test_a_secret_is_found_in_each_form_a_server_writes_it_in(form) -> None:
    redact = Redactor([KEY, PASSWORD])
    text = f"denied: {form(KEY)} / {form(PASSWORD)}"
    assert redact(text) == "denied: [REDACTED] / [REDACTED]"


def test_a_secret_escaped_twice_is_not_looked_for() -> None:
    twice = json.dumps(quote_plus(PASSWORD))[1:-1].replace("+", "\\u002B")
    assert Redactor([PASSWORD])(twice) == twice


def test_a_long_secret_is_found_inside_a_longer_word() -> None:
    assert Redactor(["abcdefghijkl"])("xxabcdefghijklxx") == "xx[REDACTED]xx"


def test_a_short_secret_is_found_only_as_a_whole_token() -> None:
    redact = Redactor(["rre"])
    assert redact("Incorrect email or password") == "Incorrect email or password"
    assert redact("Incorrect password rre") == "Incorrect password [REDACTED]"


def test_a_short_secret_after_a_colour_code_is_a_whole_token() -> None:
    assert Redactor(["hunter2x"])("\x1b[31mhunter2x\x1b[0m") == "\x1b[31m[REDACTED]\x1b[0m"


def test_a_short_secret_after_an_escaped_character_is_a_whole_token() -> None:
    assert Redactor(["hunter2x"])("line\\nhunter2x") == "line\\n[REDACTED]"


def test_a_secret_that_is_a_word_of_the_messages_is_replaced_only_as_a_value() -> None:
    redact = Redactor(["key"])
    assert redact("Invalid project key") == "Invalid project key"
    assert redact('{"password": "key"}') == '{"password": "[REDACTED]"}'
    assert redact("password=key") == "password=[REDACTED]"
    assert redact("key") == "[REDACTED]"


def test_a_secret_under_3_characters_is_never_replaced() -> None:
    assert Redactor(["ab"])("ab ab") == "ab ab"


def test_a_text_redacted_twice_keeps_its_markers_whole() -> None:
    redact = Redactor(["RED", KEY])
    once = redact(f"{KEY} RED")
    assert once == "[REDACTED] [REDACTED]"
    assert redact(once) == once
