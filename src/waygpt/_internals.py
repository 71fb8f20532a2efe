"""Every private attribute of another library that the SDK uses, each behind one function.

All of them are aiohttp's; checked on aiohttp 3.11.18 (the oldest declared) and 3.14.5.
Each function falls back to aiohttp's public behaviour when the attribute is missing, and
tests/internals/test_aiohttp_internals.py fails when a release renames one (docs/architecture.md
lists them with the guarantee each one keeps). The sync client uses none: its connections and
answers are the SDK's own subclasses of urllib3's and ``http.client``'s public classes
(``ConnectionCls``, ``response_class``), see ``_requests_transport.py``.

This module imports no aiohttp: each function is handed the object it works on.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

# What ClientSession._request reads of its session at the start of each request, before it
# first waits: whether to replay a request that failed on a kept-alive connection, its
# default auth, and trust_env (netrc, environment proxies).
REPLAY = "_retry_connection"
DEFAULT_AUTH = "_default_auth"
TRUST_ENV = "_trust_env"


def never_replay(session: Any) -> None:
    """Turn off aiohttp's replay of a failed GET, PUT or DELETE on ``session`` for good.

    aiohttp re-sends such a request once when it failed on a kept-alive connection, with
    the same bytes: the same HMAC nonce, which the server refuses if the first copy reached
    it. The pipeline makes that retry itself, freshly signed.
    """
    if hasattr(session, REPLAY):
        setattr(session, REPLAY, False)


def request_overrides(session: Any, headers: Mapping[str, str]) -> Dict[str, Any]:
    """What a caller's session must not do to this request, as attributes to set on it
    during the request's first step (``_aiohttp_transport._first_step_with``).

    A signed request is not replayed (see ``never_replay``). A Client API request carries
    its Bearer token, which the session's ``auth`` or a netrc entry would collide with
    (aiohttp refuses an Authorization header next to an auth: a ``ValueError``) or replace.
    """
    overrides: Dict[str, Any] = {}
    if "Authorization" in headers:
        if session.auth is not None:
            overrides[DEFAULT_AUTH] = None
        if session.trust_env:
            overrides[TRUST_ENV] = False
    if overrides or "X-MB-Nonce" in headers:
        # (A replay would read the auth settings again, restored by then: no replay either;
        # the pipeline retries a stale connection itself.)
        overrides[REPLAY] = False
    # An aiohttp without one of them: its public behaviour, as before.
    return {name: value for name, value in overrides.items() if hasattr(session, name)}


def environment_proxy(aiohttp: Any, url: Any) -> Tuple[Any, Any]:
    """The proxy and proxy auth aiohttp takes from the environment for ``url`` with
    ``trust_env`` (the proxy's credentials may come from netrc); reads files: run it on a
    thread. (None, None) when there is none."""
    lookup = getattr(aiohttp.helpers, "get_env_proxy_for_url", None)
    if lookup is None:
        return None, None
    try:
        proxy, proxy_auth = lookup(url)
    except LookupError:
        return None, None
    return proxy, proxy_auth


def received_before_failure(content: Any) -> bytes:
    """Bytes of a body that arrived before its connection failed, not read yet.

    aiohttp's reads raise a body's failure before handing out what was received ahead of
    it: a stream cut short would lose its last complete events. ``_read_nowait`` reads the
    buffer regardless; without it, nothing is saved.
    """
    read = getattr(content, "_read_nowait", None)
    if read is None:
        return b""
    try:
        data: bytes = read(-1)
    except Exception:  # noqa: BLE001 - nothing to save after all
        return b""
    return data


def leave_connections_open(connector: Any) -> None:
    """Make a set-aside session's connector leave its connections to their sockets' own
    finalisers.

    aiohttp's connector closes its connections when it is garbage-collected, through its
    event loop: in a forked child that would send a TLS close_notify on the parent's
    connections (ending them), and with a closed loop it fails noisily. Marked closed (the
    flag its ``__del__`` checks), it closes nothing.
    """
    if hasattr(connector, "_closed"):
        connector._closed = True
