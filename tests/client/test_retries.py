"""Retries: which answers and failures are retried, how long the client waits, what it raises.

``sleeps`` records the waits the client asks for instead of sleeping, so Retry-After values
can be checked exactly and quickly.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from typing import Any, Dict, Iterator

import pytest
from urllib3.util.retry import Retry

from raw_server import RawServer, fixed_answer
from waygpt.retry import DEFAULT_STATUS_FORCELIST

MODELS = "/api/v1/waygpt/models"
WIDGET = "/api/v1/widget/token"
PID = "00000000-0000-4000-8000-000000000001"  # the test server's default project
# Retry-After values that cannot be read: a date past any calendar, numbers not finite.
UNREADABLE_RETRY_AFTER = ["Wed, 21 Oct 99999999999999999999 07:28:00 GMT", "inf", "nan", "1e999"]

# method -> (path to script, the call); all three are retried by default.
RETRIED_CALLS: Dict[str, Any] = {
    "GET": (MODELS, lambda c, t: c.get_models()),
    "POST": (WIDGET, lambda c, t: c.create_widget_token()),
    "PUT": (f"/api/v1/client/projects/{PID}", lambda c, t: c.client_update_project(PID, t, "n")),
}


@pytest.fixture
def default_client(sdk: Any, server: Any) -> Iterator[Any]:
    """A client with the default retry policy (``max_retries=3``); use it with ``sleeps``."""
    with sdk.WayGPTClient(api_url=server.url, project_key=server.project_key) as created:
        yield created


def no_backoff_client(sdk: Any, server: Any, retries: Any, **options: Any) -> Any:
    return sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=retries, **options
    )


@pytest.mark.parametrize("status", DEFAULT_STATUS_FORCELIST)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_default_retry_statuses_are_retried_for_get_post_put(
    default_client, server, token, sleeps, method, status
):
    path, call = RETRIED_CALLS[method]
    server.script(status=status, body={"detail": "try again"}, method=method, path=path)

    result = call(default_client, token)

    assert result  # the second, normal answer
    assert [(r.method, r.path) for r in server.requests] == [(method, path)] * 2


def test_delete_is_not_retried(sdk, default_client, server, token, sleeps):
    path = f"/api/v1/client/projects/{PID}"
    server.script(status=503, method="DELETE", path=path, times=None)

    with pytest.raises(sdk.InternalServerError) as caught:
        default_client.client_delete_project(PID, token)

    assert caught.value.status_code == 503
    assert len(server.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 501])
def test_other_error_statuses_are_not_retried(sdk, default_client, server, sleeps, status):
    server.script(status=status, body={"detail": "no"}, path=MODELS, times=None)

    with pytest.raises(sdk.APIStatusError) as caught:
        default_client.get_models()

    assert caught.value.status_code == status
    assert len(server.requests) == 1


def test_max_retries_zero_sends_once(sdk, server, sleeps):
    server.script(status=503, headers={"Retry-After": "0"}, path=MODELS, times=None)

    with no_backoff_client(sdk, server, 0) as client:
        with pytest.raises(sdk.InternalServerError):
            client.get_models()

    assert len(server.requests) == 1
    assert sleeps == []


def test_max_retries_int_is_the_number_of_retries(sdk, server, sleeps):
    server.script(status=503, headers={"Retry-After": "0"}, path=MODELS, times=None)

    with no_backoff_client(sdk, server, 2) as client:
        with pytest.raises(sdk.InternalServerError):
            client.get_models()

    assert len(server.requests) == 3


def test_max_retries_accepts_a_urllib3_retry_object_as_is(sdk, server, sleeps):
    policy = Retry(
        total=1,
        status_forcelist=[418],
        allowed_methods=["GET"],
        backoff_factor=0,
        raise_on_status=False,
    )
    server.script(status=418, path=MODELS, times=1)

    with no_backoff_client(sdk, server, policy) as client:
        assert "gpt-4o" in client.get_models()  # 418 is retried under this policy
        server.clear_requests()
        server.script(status=503, path=MODELS, times=1)
        with pytest.raises(sdk.InternalServerError):
            client.get_models()  # 503 is not in this policy's list

    assert len(server.requests) == 1


def test_int_max_retries_backs_off_exponentially_with_jitter(sdk, server, sleeps):
    server.script(status=503, path=MODELS, times=3)

    with no_backoff_client(sdk, server, 3) as client:
        assert "gpt-4o" in client.get_models()

    assert len(sleeps) == 3
    # Equal jitter around a doubling base of 1 s: [0.5, 1], [1, 2], [2, 4].
    for wait, base in zip(sleeps, (1.0, 2.0, 4.0)):
        assert base / 2 <= wait <= base, sleeps


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_honoured(client, server, sleeps, status):
    server.script(status=status, headers={"Retry-After": "7"}, path=MODELS)

    assert "gpt-4o" in client.get_models()

    assert sleeps == [pytest.approx(7.0)]
    assert len(server.requests) == 2


def test_retry_after_as_http_date_is_honoured(client, server, sleeps):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.script(status=429, headers={"Retry-After": when}, path=MODELS)

    assert "gpt-4o" in client.get_models()

    assert len(sleeps) == 1
    assert 27.0 <= sleeps[0] <= 30.0, sleeps


def test_retry_after_really_waits(client, server):
    server.script(status=429, headers={"Retry-After": "1"}, path=MODELS)

    started = time.monotonic()
    assert "gpt-4o" in client.get_models()

    assert time.monotonic() - started >= 0.9
    assert len(server.requests) == 2


@pytest.mark.parametrize("value", UNREADABLE_RETRY_AFTER)
def test_an_unreadable_retry_after_is_ignored(default_client, server, sleeps, value):
    server.script(status=429, headers={"Retry-After": value}, path=MODELS)

    assert "gpt-4o" in default_client.get_models()

    # Retried as an answer without Retry-After is: after the first backoff, 0.5 to 1 s.
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0, sleeps


def test_a_repeated_retry_after_counts_by_its_first_value(sdk, sleeps):
    answer = fixed_answer(
        "429 Too Many Requests",
        [("Retry-After", "2"), ("Retry-After", "7"), ("Content-Type", "application/json")],
        b'{"detail": "slow down"}',
    )
    with RawServer(answer) as raw, sdk.WayGPTClient(
        api_url=raw.url, project_key="sk_live_x", max_retries=1, timeout=5
    ) as client:
        with pytest.raises(sdk.RateLimitError) as caught:
            client.get_models()

    assert sleeps == [2.0]
    assert caught.value.retry_after == 2.0


def test_backoff_jitter_does_not_follow_the_applications_seeded_random(sdk, server, sleeps):
    with no_backoff_client(sdk, server, 3) as client:
        for _ in range(2):  # as two workers of a pool, seeded alike: their retries must differ
            server.script(status=503, path=MODELS)
            random.seed(1)
            client.get_models()

    assert len(sleeps) == 2 and sleeps[0] != sleeps[1], sleeps


def test_retry_after_above_the_cap_raises_at_once_without_sleeping(sdk, client, server, sleeps):
    server.script(
        status=429, body={"detail": "slow down"}, headers={"Retry-After": "120"}, times=None
    )

    with pytest.raises(sdk.RateLimitError) as caught:
        client.get_models()

    assert caught.value.retry_after == pytest.approx(120.0)
    assert caught.value.status_code == 429
    assert len(server.requests) == 1
    assert sleeps == []


def test_retry_after_above_the_cap_on_503_raises_at_once(sdk, client, server, sleeps):
    server.script(status=503, headers={"Retry-After": "3600"}, times=None)

    with pytest.raises(sdk.InternalServerError) as caught:
        client.get_models()

    assert caught.value.status_code == 503
    assert len(server.requests) == 1
    assert sleeps == []


def test_retry_after_of_exactly_the_cap_is_still_honoured(client, server, sleeps):
    server.script(status=429, headers={"Retry-After": "60"}, path=MODELS)

    assert "gpt-4o" in client.get_models()

    assert sleeps == [pytest.approx(60.0)]


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, "RateLimitError"), (500, "InternalServerError"), (503, "InternalServerError")],
)
def test_exhausted_retries_raise_the_typed_error_with_its_status(
    sdk, default_client, server, sleeps, status, error
):
    server.script(status=status, body={"detail": "still failing"}, path=MODELS, times=None)

    with pytest.raises(getattr(sdk, error)) as caught:
        default_client.get_models()

    assert caught.value.status_code == status
    assert caught.value.message == "still failing"
    assert len(server.requests) == 4  # the first attempt and the default 3 retries


def test_exhausted_retries_raise_the_last_answer(sdk, client, server, sleeps):
    for status in (500, 503, 429):
        server.script(status=status, body={"detail": f"answer {status}"}, path=MODELS)
    server.script(status=502, body={"detail": "the last one"}, path=MODELS)

    with pytest.raises(sdk.InternalServerError) as caught:
        client.get_models()

    assert caught.value.status_code == 502
    assert caught.value.message == "the last one"


def test_connection_refused_is_retried_then_raises_api_connection_error(
    sdk, closed_port, sleeps
):
    policy = Retry(total=2, connect=2, read=False, status=2, backoff_factor=0.1)

    with sdk.WayGPTClient(
        api_url=f"http://127.0.0.1:{closed_port}", project_key="sk_live_x", max_retries=policy
    ) as client:
        with pytest.raises(sdk.APIConnectionError) as caught:
            client.get_models()

    assert type(caught.value) is sdk.APIConnectionError  # not a timeout
    assert caught.value.status_code is None
    assert len(sleeps) == 2  # two retries, each after a back-off wait


def test_a_retried_connection_failure_says_how_many_attempts_over_how_long(sdk, closed_port):
    policy = Retry(total=2, connect=2, read=False, status=2, backoff_factor=0.4)
    url = f"http://127.0.0.1:{closed_port}"

    with sdk.WayGPTClient(api_url=url, project_key="sk_live_x", max_retries=policy) as client:
        started = time.monotonic()
        with pytest.raises(sdk.APIConnectionError) as caught:
            client.get_models()
        elapsed = time.monotonic() - started
        with pytest.raises(sdk.APIConnectionError) as once:
            client.with_options(max_retries=0).get_models()

    error = caught.value
    found = re.fullmatch(r"connection failed: .+ \(3 attempts over (\d+\.\d) s\)", error.message)
    assert found, error.message
    # The waits were 0.2-0.4 s and 0.4-0.8 s (backoff with jitter), and they are counted.
    assert 0.5 <= float(found.group(1)) <= elapsed + 0.1
    assert str(error) == error.message and error.args == (error.message,)
    assert "attempts" not in once.value.message  # one attempt: nothing to add


def test_read_timeout_raises_api_timeout_error_and_post_is_not_retried(sdk, server, sleeps):
    server.script(delay=2.0, body={"token": "late"}, path=WIDGET, times=None)

    with no_backoff_client(sdk, server, 3, timeout=(2, 0.3)) as client:
        started = time.monotonic()
        with pytest.raises(sdk.APITimeoutError) as caught:
            client.create_widget_token()

    assert time.monotonic() - started < 1.5
    assert caught.value.status_code is None
    assert isinstance(caught.value, sdk.APIConnectionError)
    assert len(server.requests) == 1
