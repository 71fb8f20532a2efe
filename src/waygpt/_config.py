"""Configuration: the settings of a client, from its arguments or the ``WAYGPT_*`` environment.

Everything is checked here, when the client is created, so that a bad setting is a
``ConfigurationError`` naming it rather than a failure at the first call.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Tuple, Union
from urllib.parse import urlsplit

from .errors import ConfigurationError

DEFAULT_API_URL = "https://app.waygpt.ru"
DEFAULT_TIMEOUT = 60.0
# The wall-clock bound of one non-streamed call, retries and sleeps included: far above any
# real answer (a long chat completion takes a minute or two), it only ends calls that a broken
# or hostile peer keeps alive by dribbling bytes. A stream is bounded between events instead.
DEFAULT_TOTAL_TIMEOUT = 600.0

Timeout = Union[float, Tuple[float, float]]

_ENV = {
    "api_url": "WAYGPT_API_URL", "project_key": "WAYGPT_PROJECT_KEY",
    "project_id": "WAYGPT_PROJECT_ID", "hmac_secret": "WAYGPT_HMAC_SECRET",
}


def read_setting(name: str, value: Optional[str]) -> Optional[str]:
    """An argument, else its environment variable; checked so it can go into a header."""
    if value is None:
        value = os.environ.get(_ENV[name])
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, got {type(value).__name__}")
    # Checked before any stripping: a CR or LF anywhere is refused, never silently trimmed.
    if "\r" in value or "\n" in value:
        raise ConfigurationError(f"{name} must not contain CR or LF characters")
    if name != "hmac_secret":  # a secret is used byte for byte, spaces included
        if name == "api_url" and value and not value.strip():
            # Not "unset": a URL was meant, and the default server is not what was meant.
            raise ConfigurationError(
                f"api_url is only whitespace ({value!r}); leave it unset for the default"
            )
        value = value.strip()
        if not is_header_safe(value):
            raise ConfigurationError(f"{name} must contain printable ASCII characters only")
    return value or None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def env_use_hmac() -> bool:
    """``WAYGPT_USE_HMAC``: ``1``, ``true``, ``yes`` or ``on`` turn signing on, ``0``,
    ``false``, ``no``, ``off`` or nothing leave it off (any case).

    Raises:
        ConfigurationError: any other value, which would otherwise leave signing off without
            a word.
    """
    value = os.environ.get("WAYGPT_USE_HMAC", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"WAYGPT_USE_HMAC={os.environ['WAYGPT_USE_HMAC']!r} is not a yes or no: use "
        "1/true/yes/on or 0/false/no/off"
    )


def is_header_safe(value: str) -> bool:
    """True for text that goes into an HTTP header unchanged: printable ASCII and spaces."""
    return value.isascii() and value.isprintable()


def check_api_url(api_url: str) -> str:
    """The base URL without its trailing ``/``; a URL no request could be sent to is refused,
    and so are credentials in it (``https://user:pw@host``): they would replace the Client
    API's Bearer token, and show wherever the URL is printed (no message repeats them)."""
    if not isinstance(api_url, str):
        raise ConfigurationError(f"api_url must be a string, got {type(api_url).__name__}")
    url = api_url.strip().rstrip("/")
    # What was given, not what is left of it ("http://", not "http:").
    shown = "<hidden: it contains '@'>" if "@" in url else repr(api_url)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError as exc:
        reason = str(exc) if "@" not in url else "it cannot be parsed"
        raise ConfigurationError(f"api_url is not a valid URL ({reason}): {shown}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigurationError(f"api_url must start with http:// or https://, got {shown}")
    if "@" in parts.netloc:
        raise ConfigurationError(
            "api_url must not contain credentials (user:password@host): the Client API "
            "authenticates with its own token, and a project key goes in project_key"
        )
    if not parts.hostname or port == 0 or (parts.port is None and parts.netloc.endswith(":")):
        raise ConfigurationError(f"api_url has no valid host and port: {shown}")
    if parts.query or parts.fragment or not url.isprintable() or any(c.isspace() for c in url):
        raise ConfigurationError(f"api_url is not a valid base URL: {shown}")
    # Each endpoint adds the API's own path (/api/v1/waygpt/models): a URL that holds it
    # already would get 404s naming no cause. A reverse proxy's own prefix is kept.
    segments = parts.path.lower().split("/")
    for index, segment in enumerate(segments):
        if segment == "api" and segments[index + 1:index + 2] in ([], ["v1"]):
            base = url[: len(url) - len(parts.path)] + "/".join(parts.path.split("/")[:index])
            raise ConfigurationError(
                "api_url should be the server's base URL, e.g. https://app.waygpt.ru, without "
                f"/api/v1/waygpt: the SDK adds each endpoint's path itself (got {shown}; "
                f"perhaps {base!r})"
            )
    return url


def ca_bundle_from_environment(api_url: str) -> Optional[Tuple[str, Any]]:
    """The CA bundle requests would use for an ``https://`` ``api_url``: ``(path,
    ssl.SSLContext)``, or None. Checked when the client is made, so that a missing file or a
    bad PEM is a ``ConfigurationError`` naming the variable, not a failure of every call (the
    sync client) or an ``OSError`` out of the constructor (the async one)."""
    # The variables requests reads, in its order.
    variable = "REQUESTS_CA_BUNDLE" if os.environ.get("REQUESTS_CA_BUNDLE") else "CURL_CA_BUNDLE"
    path = os.environ.get(variable)
    if not path or not api_url.lower().startswith("https://"):
        return None
    import ssl  # only when a bundle is set: `import waygpt` need not pay for it

    reason = "no such file or directory"
    try:
        if os.path.isdir(path):
            return path, ssl.create_default_context(capath=path)
        if os.path.isfile(path):
            return path, ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        reason = "it holds no certificate in PEM format"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
    raise ConfigurationError(f"{variable}={path!r} cannot be used as a CA bundle: {reason}")


def _positive(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def check_timeout(timeout: Any) -> Timeout:
    """Seconds, or a ``(connect, read)`` pair of them."""
    if _positive(timeout):
        return float(timeout)
    if isinstance(timeout, (tuple, list)) and len(timeout) == 2 and all(map(_positive, timeout)):
        return (float(timeout[0]), float(timeout[1]))
    raise ConfigurationError(
        f"timeout must be a positive number or a (connect, read) pair, got {timeout!r}"
    )


def check_total_timeout(total_timeout: Any) -> float:
    """The wall-clock bound of one call, in seconds: a positive, finite number."""
    if not _positive(total_timeout):
        raise ConfigurationError(
            f"total_timeout must be a positive number of seconds, got {total_timeout!r}"
        )
    return float(total_timeout)


def check_max_connections(max_connections: Any, session: Any) -> Optional[int]:
    """The most connections the client's own session opens to the server at once (None: no
    limit); a caller's session brings its own pool, so a limit given with one is refused."""
    if max_connections is None:
        return None
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or (
        max_connections < 1
    ):
        raise ConfigurationError(
            "max_connections must be a positive int, or None for no limit, got "
            f"{max_connections!r}"
        )
    if session is not None:
        raise ConfigurationError(
            "max_connections applies to the client's own connections: a session passed in "
            "keeps its own pool (set its limit there)"
        )
    return max_connections


def split_timeout(timeout: Timeout) -> Tuple[float, float]:
    """``(connect, read)`` seconds of a timeout setting."""
    return timeout if isinstance(timeout, tuple) else (timeout, timeout)
