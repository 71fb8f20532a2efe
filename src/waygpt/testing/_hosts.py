"""The host of a URL as a browser reads it (the WHATWG URL Standard), for domain checks.

``urllib.parse`` reads URLs the RFC 3986 way, and a browser does not: for ``http``, ``https``,
``ws``, ``wss`` and ``ftp`` a backslash is a path separator, any run of slashes and backslashes
after the scheme is skipped, tabs and newlines inside are dropped, the host is what follows
the *last* ``@``, a host is percent-decoded and lower-cased, and ``0x7f.1`` is ``127.0.0.1``.
``https://evil.com\\@shop.example.com`` is a page on ``evil.com`` to a browser and on
``shop.example.com`` to ``urlsplit``; a domain check must read it as the browser that sent it.

Only what the host needs is parsed: the scheme, the authority, the port's validity. A URL the
standard rejects, or one without a host of its own (``null``, ``file:``, ``data:``, a
non-special scheme, whose origin is opaque), gives None.
"""

import ipaddress
import re
from typing import List, Optional, Tuple
from urllib.parse import unquote

_SPECIAL_SCHEMES = frozenset({"ftp", "http", "https", "ws", "wss"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_LEADING_AND_TRAILING = "".join(chr(code) for code in range(0x21))  # C0 controls and space
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_FORBIDDEN_IN_DOMAIN = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_IPV4_PART = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")


def url_host(text: str) -> Optional[str]:
    """The host of an absolute URL, lower-case, as a browser parses it; None when none."""
    text = _TAB_OR_NEWLINE.sub("", text.strip(_LEADING_AND_TRAILING))
    scheme = _SCHEME.match(text)
    if scheme is None or scheme.group(0)[:-1].lower() not in _SPECIAL_SCHEMES:
        return None
    rest = text[scheme.end() :].lstrip("/\\")
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    host_and_port = authority.rpartition("@")[2]
    host, port = _split_port(host_and_port)
    if host is None or port is None:
        return None
    return _parse_host(host)


def domain_host(value: str) -> Optional[str]:
    """The host named by a domain setting: a bare domain (``shop.example.com:8443``) or a URL."""
    text = value.strip(_LEADING_AND_TRAILING)
    scheme = _SCHEME.match(text)
    is_url = scheme is not None and (
        scheme.group(0)[:-1].lower() in _SPECIAL_SCHEMES or text[scheme.end() :].startswith("//")
    )
    return url_host(text if is_url else "https://" + text)


def same_host(host: str) -> str:
    """The form hosts are compared in: one trailing dot does not make another host."""
    return host[:-1] if host.endswith(".") else host


def _split_port(text: str) -> Tuple[Optional[str], Optional[str]]:
    """Host and port text; the port None when it is not a valid port (then so is the URL)."""
    inside_brackets = False
    for index, char in enumerate(text):
        if char == "[":
            inside_brackets = True
        elif char == "]":
            inside_brackets = False
        elif char == ":" and not inside_brackets:
            port = text[index + 1 :]
            if port and (not port.isascii() or not port.isdigit() or int(port) > 65535):
                return None, None
            return text[:index], port
    return text, ""


def _parse_host(text: str) -> Optional[str]:
    if not text:
        return None
    if text.startswith("["):
        if not text.endswith("]") or "%" in text:
            return None  # the standard knows no zone ids (``%eth0``), ipaddress does
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            return None
        return "[" + _ipv6_text(address) + "]"
    domain = unquote(text, encoding="utf-8", errors="replace")
    if domain.isascii():
        ascii_domain = domain.lower()
    else:
        try:
            # IDNA 2003 (the stdlib's codec), close to the standard's UTS #46 for real names.
            ascii_domain = domain.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    if not ascii_domain or _FORBIDDEN_IN_DOMAIN.search(ascii_domain):
        return None
    if _IPV4_PART.fullmatch(_labels(ascii_domain)[-1]):
        return _ipv4(ascii_domain)  # a host ending in a number must be an IPv4 address
    return ascii_domain


def _labels(domain: str) -> List[str]:
    labels = domain.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    return labels


def _ipv4(domain: str) -> Optional[str]:
    """``127.1`` and ``0x7f.0.0.1`` as ``127.0.0.1``; None when it is not an IPv4 address."""
    labels = _labels(domain)
    numbers: List[int] = []
    for label in labels:
        if not _IPV4_PART.fullmatch(label):
            return None
        if label[:2].lower() == "0x":
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                return None
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]):
        return None
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    address = numbers[-1]
    for position, number in enumerate(numbers[:-1]):
        address += number * 256 ** (3 - position)
    return str(ipaddress.IPv4Address(address))


def _ipv6_text(address: ipaddress.IPv6Address) -> str:
    """The standard's form: hex pieces, the first longest run of two or more zeros as ``::``
    (``ipaddress`` writes ``::ffff:127.0.0.1`` where a browser writes ``::ffff:7f00:1``)."""
    packed = address.packed
    pieces = [packed[index] << 8 | packed[index + 1] for index in range(0, 16, 2)]
    start, length = -1, 1
    run_start, run = 0, 0
    for index, piece in enumerate([*pieces, 1]):  # the 1 closes a run at the end
        if piece == 0:
            if run == 0:
                run_start = index
            run += 1
            continue
        if run > length:
            start, length = run_start, run
        run = 0
    words = [format(piece, "x") for piece in pieces]
    if start < 0:
        return ":".join(words)
    return ":".join(words[:start]) + "::" + ":".join(words[start + length :])
