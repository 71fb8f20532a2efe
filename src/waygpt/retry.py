"""The retry policy: which failures are retried, and how long to wait before the next attempt.

Callers configure retries with a urllib3 ``Retry`` (or an int), as with the reference client,
but the loop runs in the SDK, which signs every attempt afresh (urllib3 re-sends the same
bytes). The rules, and which of the ``Retry``'s fields count: docs/errors-and-retries.md.
"""

from __future__ import annotations

import random
from typing import Any, FrozenSet, Mapping, Optional, Union

from urllib3.util.retry import Retry

from .errors import ConfigurationError, parse_retry_after

__all__ = [
    "DEFAULT_ALLOWED_METHODS", "DEFAULT_STATUS_FORCELIST", "MAX_RETRY_AFTER", "RetryPolicy",
    "RetryState", "build_retry", "default_retry",
]

DEFAULT_STATUS_FORCELIST = (429, 500, 502, 503, 504)
DEFAULT_ALLOWED_METHODS = ("GET", "POST", "PUT")
# A longer Retry-After is raised at once: the caller decides, no thread sleeps for minutes.
MAX_RETRY_AFTER = 60.0
# The backoff's ceiling when the Retry has none: urllib3 1.26's (urllib3 2's has backoff_max).
_FALLBACK_BACKOFF_MAX = 30.0
# RFC 9110 idempotent methods: sending one twice has the effect of sending it once.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Statuses whose Retry-After makes urllib3 retry even when they are not in the forcelist.
_RETRY_AFTER_STATUSES = frozenset({413, 429, 503})

# The jitter's source: the OS, not the `random` an application may seed alike in every worker.
_JITTER = random.SystemRandom()

# How a transport failure is classified; the transports decide, the policy only reads it.
CONNECT_FAILURE = "connect"  # the request cannot have reached the server
STALE_CONNECTION = "stale"  # a kept-alive connection was closed before any answer
OTHER_FAILURE = "other"  # anything else: the server may have acted on the request


def default_retry(total: int = 3, *, backoff_factor: float = 1.0) -> Retry:
    """The SDK's default retry policy with ``total`` retries: what ``max_retries=total`` stands
    for (``DEFAULT_STATUS_FORCELIST`` for ``DEFAULT_ALLOWED_METHODS``, connect failures,
    ``Retry-After``). ``backoff_factor=0``: no wait between attempts, as tests want. Adjust
    it with urllib3's ``Retry.new(...)``."""
    return Retry(
        total=total, connect=total, read=False, status=total, redirect=False, raise_on_status=False,
        backoff_factor=backoff_factor, status_forcelist=DEFAULT_STATUS_FORCELIST,
        allowed_methods=DEFAULT_ALLOWED_METHODS, respect_retry_after_header=True,
    )


def build_retry(max_retries: Union[int, Retry]) -> Retry:
    """The ``Retry`` for ``max_retries``: an int (0 turns retries off) or a ``Retry`` as is."""
    if isinstance(max_retries, Retry):
        return max_retries
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(
            f"max_retries must be a non-negative int or a urllib3 Retry, got {max_retries!r}"
        )
    return default_retry(max_retries)


def _budget(value: Any) -> Optional[int]:
    """A urllib3 counter as a number of retries: None is unlimited, False is none."""
    return None if value is None else int(value)  # (int(False) == 0)


class RetryPolicy:
    """What a ``Retry`` says, read once: budgets, statuses, methods and backoff."""

    __slots__ = ("allowed_methods", "backoff_factor", "backoff_max", "connect",
                 "respect_retry_after", "status", "status_forcelist", "total")

    def __init__(self, retry: Retry) -> None:
        self.total = _budget(retry.total)
        self.connect = _budget(retry.connect)
        self.status = _budget(retry.status)
        self.status_forcelist: FrozenSet[int] = frozenset(retry.status_forcelist or ())
        methods = getattr(retry, "allowed_methods", None)
        self.allowed_methods = frozenset(m.upper() for m in methods) if methods else None  # all
        self.backoff_factor = float(retry.backoff_factor or 0.0)
        ceiling = getattr(retry, "backoff_max", None)  # 0 is a valid ceiling: no backoff at all
        self.backoff_max = _FALLBACK_BACKOFF_MAX if ceiling is None else float(ceiling)
        self.respect_retry_after = bool(retry.respect_retry_after_header)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first) when the answer
        gave no ``Retry-After``: exponential backoff with equal jitter, half fixed, half
        random."""
        if self.backoff_factor <= 0:
            return 0.0
        base: float = min(self.backoff_max, self.backoff_factor * 2.0 ** (retry - 1))
        return base / 2 + _JITTER.uniform(0, base / 2)


class RetryState:
    """The retry budget of one client call; ``attempt`` counts from 1."""

    def __init__(self, policy: RetryPolicy, method: str) -> None:
        self._policy = policy
        self._method = method.upper()
        self._total, self._connect, self._status = policy.total, policy.connect, policy.status
        self.attempt = 1
        self._replayed_stale = False

    def delay_after_status(self, status: int, headers: Mapping[str, str]) -> Optional[float]:
        """Seconds to wait before retrying this answer, or None to give up and raise it."""
        policy = self._policy
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if policy.allowed_methods is not None and self._method not in policy.allowed_methods:
            return None
        if status not in policy.status_forcelist and not (
            policy.total and policy.respect_retry_after and retry_after is not None
            and status in _RETRY_AFTER_STATUSES
        ):
            return None
        if not self._spend(status=True):
            return None
        if retry_after is not None and policy.respect_retry_after:
            return retry_after if retry_after <= MAX_RETRY_AFTER else None
        return self._backoff()

    def delay_after_failure(self, kind: str) -> Optional[float]:
        """Seconds to wait before retrying a transport failure of ``kind``, or None to give up:
        a connect failure within the budget; a stale connection at once, once per call,
        outside the budget, for an idempotent method only."""
        if kind == STALE_CONNECTION:
            if self._replayed_stale or self._method not in _IDEMPOTENT_METHODS:
                return None
            self._replayed_stale = True
            self.attempt += 1
            return 0.0
        if kind != CONNECT_FAILURE:
            return None
        return self._backoff() if self._spend(connect=True) else None

    def _spend(self, *, status: bool = False, connect: bool = False) -> bool:
        """Take one retry from the budgets; False when one of them is exhausted."""
        if self._total is not None:
            self._total -= 1
        if status and self._status is not None:
            self._status -= 1
        if connect and self._connect is not None:
            self._connect -= 1
        budgets = (self._total, self._status, self._connect)
        if any(count is not None and count < 0 for count in budgets):
            return False
        self.attempt += 1
        return True

    def _backoff(self) -> float:
        return self._policy.backoff(self.attempt - 1)  # (attempt already counts this retry)
