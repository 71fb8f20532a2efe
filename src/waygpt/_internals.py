"""Every private attribute of another library that the SDK uses (all aiohttp's, with the
undocumented ``read_timeout`` of its connection protocol), each behind one function that falls
back to aiohttp's public behaviour when it is missing; each function is handed its object (no
aiohttp import here). docs/architecture.md: the guarantee and test of each.
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
    """Turn off aiohttp's replay of a failed GET, PUT or DELETE on ``session`` for good: it
    re-sends the same bytes, the same HMAC nonce (the pipeline retries, freshly signed)."""
    if hasattr(session, REPLAY):
        setattr(session, REPLAY, False)


def request_overrides(session: Any, headers: Mapping[str, str]) -> Dict[str, Any]:
    """What a caller's session must not do to this request, as attributes to set on it
    during the request's first step (``_aiohttp_transport._first_step_with``): replay a
    signed request (see ``never_replay``), or let its ``auth`` or a netrc entry collide with
    (aiohttp: a ``ValueError``) or replace the Bearer token of a Client API request."""
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
    return {name: value for name, value in overrides.items() if hasattr(session, name)}


def environment_proxy(aiohttp: Any, url: Any) -> Tuple[Any, Any]:
    """The proxy and proxy auth aiohttp takes from the environment for ``url`` with
    ``trust_env`` (the proxy's credentials may come from netrc), else (None, None). It reads
    files: run it on a thread."""
    lookup = getattr(aiohttp.helpers, "get_env_proxy_for_url", None)
    try:
        proxy, proxy_auth = lookup(url) if lookup is not None else (None, None)
    except LookupError:
        return None, None
    return proxy, proxy_auth


def received_before_failure(content: Any) -> bytes:
    """Bytes of a body that arrived before its connection failed, not read yet: aiohttp's
    reads raise the failure first, and a stream cut short would lose its last complete
    events. ``_read_nowait`` reads the buffer regardless; without it, nothing is saved."""
    read = getattr(content, "_read_nowait", None)
    try:
        data: bytes = read(-1) if read is not None else b""
    except Exception:  # noqa: BLE001 - nothing to save after all
        return b""
    return data


def leave_connections_open(connector: Any) -> None:
    """Make a set-aside session's connector leave its connections to their sockets' own
    finalisers: marked closed (the flag its ``__del__`` checks), it closes nothing (no TLS
    close_notify on a parent's connections in a forked child, no error from a closed loop)."""
    if hasattr(connector, "_closed"):
        connector._closed = True


def stop_socket_read_timer(response: Any) -> None:
    """Stop aiohttp's ``sock_read`` timer for the rest of a stream's body, which the
    stream's own timer bounds (``AiohttpAnswer.bound_each_read``): aiohttp cancels and makes
    an asyncio timer again at every piece of data that arrives. ``read_timeout`` of the
    connection's protocol (``ResponseHandler``, a class aiohttp does not document; it sets
    the attribute itself for websockets); the next request on the connection sets it
    again. Without it, the timer goes on as it did."""
    protocol = getattr(getattr(response, "connection", None), "protocol", None)
    if protocol is not None and hasattr(protocol, "read_timeout"):
        protocol.read_timeout = None
