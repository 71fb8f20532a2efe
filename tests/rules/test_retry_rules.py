"""The retry decisions, asked directly (the tests over sockets are in tests/client/test_retries.py).

``RetryState`` decides, for one call, whether an answer or a transport failure is worth
another attempt and how long to wait first; these tests name each rule it follows.
"""

from __future__ import annotations

from waygpt.retry import (
    CONNECT_FAILURE,
    DEFAULT_ALLOWED_METHODS,
    DEFAULT_STATUS_FORCELIST,
    MAX_RETRY_AFTER,
    OTHER_FAILURE,
    STALE_CONNECTION,
    RetryPolicy,
    RetryState,
    default_retry,
)


def state(method: str = "POST", total: int = 3, backoff_factor: float = 0.0) -> RetryState:
    return RetryState(RetryPolicy(default_retry(total, backoff_factor=backoff_factor)), method)


def test_the_default_statuses_are_retried_for_the_default_methods() -> None:
    for method in DEFAULT_ALLOWED_METHODS:
        for status in DEFAULT_STATUS_FORCELIST:
            assert state(method).delay_after_status(status, {}) == 0.0, (method, status)


def test_a_status_outside_the_list_is_not_retried() -> None:
    for status in (400, 401, 403, 404, 409, 422, 501):
        assert state().delay_after_status(status, {}) is None, status


def test_delete_is_never_retried_on_a_status() -> None:
    assert state("DELETE").delay_after_status(503, {}) is None


def test_retry_after_is_waited_exactly() -> None:
    assert state().delay_after_status(429, {"Retry-After": "2.5"}) == 2.5


def test_a_retry_after_over_the_cap_is_raised_at_once() -> None:
    too_long = str(MAX_RETRY_AFTER + 1)
    assert state().delay_after_status(429, {"Retry-After": too_long}) is None


def test_an_unreadable_retry_after_falls_back_to_the_backoff() -> None:
    assert state().delay_after_status(503, {"Retry-After": "soon"}) == 0.0


def test_the_budget_is_spent_by_each_retry() -> None:
    call = state(total=2)
    assert call.delay_after_status(503, {}) == 0.0
    assert call.delay_after_status(503, {}) == 0.0
    assert call.delay_after_status(503, {}) is None


def test_the_backoff_grows_and_stays_within_its_bounds() -> None:
    call = state(total=5, backoff_factor=1.0)
    delays = [call.delay_after_status(503, {}) for _ in range(4)]
    for delay, base in zip(delays, (1.0, 2.0, 4.0, 8.0)):  # half fixed, half random
        assert delay is not None and base / 2 <= delay <= base, (delays, base)


def test_a_connect_failure_is_retried_for_every_method() -> None:
    for method in ("GET", "POST", "DELETE"):
        assert state(method).delay_after_failure(CONNECT_FAILURE) == 0.0, method


def test_a_failure_after_the_request_left_is_not_retried() -> None:
    assert state("GET").delay_after_failure(OTHER_FAILURE) is None


def test_a_stale_connection_is_replayed_once_for_an_idempotent_method_only() -> None:
    get = state("GET")
    assert get.delay_after_failure(STALE_CONNECTION) == 0.0
    assert get.delay_after_failure(STALE_CONNECTION) is None
    assert state("POST").delay_after_failure(STALE_CONNECTION) is None


def test_max_retries_0_retries_nothing() -> None:
    call = state(total=0)
    assert call.delay_after_status(503, {}) is None
    assert call.delay_after_failure(CONNECT_FAILURE) is None
