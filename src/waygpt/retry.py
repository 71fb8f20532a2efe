"""The retry policy: which failures are retried, and how long to wait before the next attempt.

The policy is a urllib3 ``Retry`` object (so callers can pass their own), but the loop runs in
the client rather than inside urllib3: every attempt must be signed afresh with a new
timestamp and nonce, which urllib3 cannot do when it re-sends the same prepared bytes.
"""

from __future__ import annotations

import random
from http.client import RemoteDisconnected
from typing import Any, List, Mapping, Optional, Union

from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.retry import Retry

from .errors import ConfigurationError, parse_retry_after

__all__ = [
    "DEFAULT_ALLOWED_METHODS",
    "DEFAULT_STATUS_FORCELIST",
    "MAX_RETRY_AFTER",
    "RetryState",
    "build_retry",
]

DEFAULT_STATUS_FORCELIST = (429, 500, 502, 503, 504)
DEFAULT_ALLOWED_METHODS = ("GET", "POST", "PUT")
DEFAULT_BACKOFF_FACTOR = 1.0
# A server asking for a longer pause than this is better answered at once with the error,
# so the caller decides, than with a thread that silently sleeps for minutes.
MAX_RETRY_AFTER = 60.0
_FALLBACK_BACKOFF_MAX = 30.0
# RFC 9110 idempotent methods: sending one twice has the effect of sending it once.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def build_retry(max_retries: Union[int, Retry]) -> Retry:
    """The ``Retry`` for ``max_retries``: an int (0 turns retries off) or a ``Retry`` as is."""
    if isinstance(max_retries, Retry):
        return max_retries
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(
            f"max_retries must be a non-negative int or a urllib3 Retry, got {max_retries!r}"
        )
    return Retry(
        total=max_retries,
        connect=max_retries,
        read=False,
        status=max_retries,
        redirect=False,
        backoff_factor=DEFAULT_BACKOFF_FACTOR,
        status_forcelist=DEFAULT_STATUS_FORCELIST,
        allowed_methods=DEFAULT_ALLOWED_METHODS,
        raise_on_status=False,
        respect_retry_after_header=True,
    )


def exception_chain(exc: BaseException) -> List[BaseException]:
    """The exception and what it wraps (requests wraps urllib3, which wraps the socket error)."""
    chain: List[BaseException] = []
    pending: List[Any] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        pending.extend(current.args)
    return chain


def is_connect_failure(error: BaseException) -> bool:
    """True when the request cannot have reached the server (refused, unresolved, timed out)."""
    return isinstance(error, (NewConnectionError, ConnectTimeoutError))


def is_stale_connection(error: BaseException) -> bool:
    """True when the server closed the connection without sending a byte of its answer.

    That is what a kept-alive connection looks like when the server closed it while it sat
    in the pool and the close crossed the next request on the wire: urllib3 checks a pooled
    connection before reusing it, but that check can run just before the server's close.
    """
    return any(isinstance(e, RemoteDisconnected) for e in exception_chain(error))


class RetryState:
    """The retry budget of one client call; ``attempt`` counts from 1."""

    def __init__(self, retry: Retry, method: str, url: str) -> None:
        self._retry = retry
        self._method = method
        self._url = url
        self.attempt = 1
        self._replayed_stale = False

    def delay_after_status(
        self, status: int, headers: Mapping[str, str], raw: Any
    ) -> Optional[float]:
        """Seconds to wait before retrying this answer, or None to give up and raise it."""
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if not self._retry.is_retry(self._method, status, retry_after is not None):
            return None
        if retry_after is not None and self._retry.respect_retry_after_header:
            if retry_after > MAX_RETRY_AFTER:
                return None
            return retry_after if self._advance(response=raw) else None
        return self._backoff() if self._advance(response=raw) else None

    def delay_after_error(self, error: BaseException) -> Optional[float]:
        """Seconds to wait before retrying a transport failure, or None to give up.

        A request that met a stale kept-alive connection (see ``is_stale_connection``) is sent
        again at once on a fresh one, once per call, outside the retry budget, and only for
        idempotent methods: a server that closed without answering may still have acted.
        """
        if not is_connect_failure(error):
            if (
                not self._replayed_stale
                and self._method.upper() in _IDEMPOTENT_METHODS
                and is_stale_connection(error)
            ):
                self._replayed_stale = True
                self.attempt += 1
                return 0.0
            return None
        return self._backoff() if self._advance(error=error) else None

    def _advance(self, **kwargs: Any) -> bool:
        try:
            self._retry = self._retry.increment(self._method, self._url, **kwargs)
        except Exception:  # noqa: BLE001 - urllib3 signals an exhausted budget by raising
            return False
        self.attempt += 1
        return True

    def _backoff(self) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        factor = float(self._retry.backoff_factor or 0.0)
        if factor <= 0:
            return 0.0
        ceiling = float(getattr(self._retry, "backoff_max", None) or _FALLBACK_BACKOFF_MAX)
        base: float
        base = min(ceiling, factor * (2 ** (self.attempt - 2)))
        return base / 2 + random.uniform(0, base / 2)
