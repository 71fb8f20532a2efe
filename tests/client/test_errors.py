"""Typed errors: the class for each status, what an error carries, and how its message is made.

No ``requests``, ``urllib3`` or ``json`` exception may escape a client method: broken
answers become ``APIConnectionError`` or ``APIResponseValidationError``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import urllib3

from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)

STATUS_CLASSES = [
    (400, "BadRequestError"),
    (401, "AuthenticationError"),
    (403, "PermissionDeniedError"),
    (404, "NotFoundError"),
    (409, "ConflictError"),
    (422, "UnprocessableEntityError"),
    (429, "RateLimitError"),
    (500, "InternalServerError"),
    (502, "InternalServerError"),
    (503, "InternalServerError"),
    (504, "InternalServerError"),
    (501, "InternalServerError"),
    (418, "APIStatusError"),
    (405, "APIStatusError"),
]


def raised(sdk: Any, call: Any) -> Any:
    """The WayGPTError a call raises (fails the test for any other outcome)."""
    with pytest.raises(sdk.WayGPTError) as caught:
        call()
    return caught.value


def assert_not_foreign(error: BaseException) -> None:
    """Not a requests/urllib3 exception, nor a JSON decoding error (a ValueError)."""
    assert not isinstance(error, (requests.RequestException, urllib3.exceptions.HTTPError))
    assert not isinstance(error, (json.JSONDecodeError, ValueError))


# -- classes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "name"), STATUS_CLASSES)
def test_status_maps_to_its_error_class(sdk, no_retry_client, server, status, name):
    server.script(
        status=status,
        body={"detail": f"status {status}"},
        headers={"X-Request-ID": "req-abc-123"},
        path=MODELS,
    )

    error = raised(sdk, no_retry_client.get_models)

    assert type(error) is getattr(sdk, name)
    assert isinstance(error, sdk.APIStatusError) and isinstance(error, sdk.WayGPTError)
    assert error.status_code == status
    hint = " (check WAYGPT_PROJECT_KEY or the project_key argument)" if status == 401 else ""
    assert error.message == f"status {status}{hint}"
    assert error.response == {"detail": f"status {status}"}
    assert error.request_id == "req-abc-123"
    assert json.loads(error.body) == {"detail": f"status {status}"}
    assert {k.lower(): v for k, v in error.headers.items()}["x-request-id"] == "req-abc-123"


def test_error_hierarchy(sdk):
    for name in (
        "APIStatusError",
        "APIConnectionError",
        "APIResponseValidationError",
        "ConfigurationError",
    ):
        assert issubclass(getattr(sdk, name), sdk.WayGPTError), name
    for _, name in STATUS_CLASSES:
        assert issubclass(getattr(sdk, name), sdk.APIStatusError), name
    assert issubclass(sdk.APITimeoutError, sdk.APIConnectionError)
    assert issubclass(sdk.ConfigurationError, ValueError)
    assert issubclass(sdk.WayGPTError, Exception)


def test_waygpt_error_keeps_the_reference_constructor(sdk):
    error = sdk.WayGPTError("boom", 500, {"detail": "boom"})

    assert (error.message, error.status_code, error.response) == ("boom", 500, {"detail": "boom"})
    assert "boom" in str(error)
    assert sdk.WayGPTError("no status").status_code is None


def test_rate_limit_error_carries_retry_after(sdk, no_retry_client, server):
    server.script(status=429, body={"detail": "Rate limit"}, headers={"Retry-After": "3"})

    error = raised(sdk, no_retry_client.get_models)

    assert isinstance(error, sdk.RateLimitError)
    assert error.retry_after == pytest.approx(3.0)


@pytest.mark.parametrize(
    "value", ["Wed, 21 Oct 99999999999999999999 07:28:00 GMT", "inf", "nan", "1e999"]
)
def test_an_unreadable_retry_after_gives_no_retry_after(sdk, no_retry_client, server, value):
    server.script(status=429, body={"detail": "Rate limit"}, headers={"Retry-After": value})

    error = raised(sdk, no_retry_client.get_models)

    assert isinstance(error, sdk.RateLimitError)
    assert error.retry_after is None


def test_real_server_401_for_a_bad_project_key(sdk, server):
    with sdk.WayGPTClient(api_url=server.url, project_key="sk_live_wrong", max_retries=0) as c:
        error = raised(sdk, c.get_models)

    assert isinstance(error, sdk.AuthenticationError)
    assert error.message == (
        "Invalid project key (check WAYGPT_PROJECT_KEY or the project_key argument)"
    )


def test_a_403_for_missing_hmac_headers_tells_an_unsigned_client_how_to_sign(sdk):
    with WayGPTTestServer(require_hmac=True) as server:
        with sdk.WayGPTClient(api_url=server.url, project_key=server.project_key) as c:
            error = raised(sdk, c.get_models)

    assert isinstance(error, sdk.PermissionDeniedError)
    assert error.message.startswith("Missing HMAC headers")
    assert "use_hmac=True or WAYGPT_USE_HMAC=true" in error.message


def test_a_403_to_a_signed_request_names_no_setting(sdk):
    with WayGPTTestServer(require_hmac=True) as server:
        with sdk.WayGPTClient(
            api_url=server.url, project_key=server.project_key, project_id=server.project_id,
            hmac_secret="not-the-secret", use_hmac=True, max_retries=0,
        ) as c:
            error = raised(sdk, c.get_models)

    assert isinstance(error, sdk.PermissionDeniedError)
    assert "use_hmac" not in error.message and "WAYGPT_" not in error.message


def test_real_server_409_for_a_duplicate_use_case_key(sdk, client, server, token):
    error = raised(
        sdk, lambda: client.client_create_use_case(server.project_id, token, "support", "Again")
    )

    assert isinstance(error, sdk.ConflictError)
    assert "support" in error.message


def test_fastapi_validation_detail_list_becomes_a_readable_message(sdk, client, server):
    error = raised(sdk, lambda: client.image_generations("fox", size="huge"))

    assert isinstance(error, sdk.UnprocessableEntityError)
    assert isinstance(error.message, str) and "size" in error.message
    assert isinstance(error.response["detail"], list)


# -- messages -----------------------------------------------------------------------------


def test_message_prefers_detail_over_message(sdk, no_retry_client, server):
    server.script(status=400, body={"message": "the message", "detail": "the detail"})

    assert raised(sdk, no_retry_client.get_models).message == "the detail"


def test_message_falls_back_to_message_field(sdk, no_retry_client, server):
    server.script(status=400, body={"message": "the message", "code": 7})

    assert raised(sdk, no_retry_client.get_models).message == "the message"


def test_nginx_html_502_keeps_its_text(sdk, no_retry_client, server):
    server.script(status=502, body=NGINX_502)

    error = raised(sdk, no_retry_client.get_models)

    assert isinstance(error, sdk.InternalServerError) and error.status_code == 502
    assert "502 Bad Gateway" in error.message
    assert error.response is None
    assert error.body == NGINX_502


def test_long_html_error_page_is_truncated_in_the_message(sdk, no_retry_client, server):
    page = "<html><body><h1>Gateway Timeout</h1>" + "<p>filler text</p>" * 5000 + "</body></html>"
    server.script(status=504, body=page)

    error = raised(sdk, no_retry_client.get_models)

    assert error.message.startswith("<html><body><h1>Gateway Timeout</h1>")
    assert len(error.message) <= 1000
    assert len(str(error)) <= 1100


def test_huge_error_body_is_bounded(sdk, no_retry_client, server):
    server.script(status=500, body="x" * 5_000_000)

    error = raised(sdk, no_retry_client.get_models)

    assert isinstance(error, sdk.InternalServerError)
    assert 0 < len(error.body) <= 256 * 1024


def test_empty_error_body_gives_http_status_message(sdk, no_retry_client, server):
    server.script(status=503)

    error = raised(sdk, no_retry_client.get_models)

    assert error.message == "HTTP 503"
    assert error.response is None


def test_json_error_without_detail_or_message_uses_the_body_text(sdk, no_retry_client, server):
    server.script(status=400, body={"error_code": "E42"})

    assert "E42" in raised(sdk, no_retry_client.get_models).message


# -- broken answers -----------------------------------------------------------------------


def test_success_answer_with_invalid_json_raises_response_validation_error(
    sdk, no_retry_client, server
):
    server.script(status=200, body="{not json", content_type="application/json")

    error = raised(sdk, no_retry_client.get_models)

    assert type(error) is sdk.APIResponseValidationError
    assert error.status_code == 200
    assert_not_foreign(error)


def test_success_answer_of_the_wrong_json_type_raises_response_validation_error(
    sdk, no_retry_client, server
):
    server.script(status=200, body={"not": "a list"})

    error = raised(sdk, no_retry_client.get_models)

    assert type(error) is sdk.APIResponseValidationError


def test_connection_reset_raises_api_connection_error(sdk, no_retry_client, server):
    server.script(reset=True)

    error = raised(sdk, no_retry_client.get_models)

    assert type(error) is sdk.APIConnectionError
    assert error.status_code is None
    assert_not_foreign(error)


def test_reset_on_post_is_not_retried(sdk, client, server):
    server.script(reset=True, path="/api/v1/widget/token", times=None)

    error = raised(sdk, client.create_widget_token)

    assert type(error) is sdk.APIConnectionError
    assert len(server.requests) == 1


def test_success_body_cut_half_way_raises_api_connection_error(sdk, no_retry_client, server):
    server.script(status=200, body='["gpt-4o", "gpt-4o-mini"]', content_length=500)

    error = raised(sdk, no_retry_client.get_models)

    assert isinstance(error, sdk.APIConnectionError)
    assert error.status_code is None
    assert_not_foreign(error)


def test_success_body_slower_than_the_read_timeout_raises_api_timeout_error(sdk, server):
    server.script(chunks=[b'["gpt-4o",', b'"gpt-4o-mini"]'], chunk_delay=2.0, path=MODELS)

    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, timeout=(2, 0.3), max_retries=0
    ) as client:
        error = raised(sdk, client.get_models)

    assert type(error) is sdk.APITimeoutError
    assert error.status_code is None
    assert_not_foreign(error)


def test_error_body_cut_half_way_still_raises_the_status_error(sdk, no_retry_client, server):
    server.script(status=500, body='{"detail": "broken', content_length=500)

    error = raised(sdk, no_retry_client.get_models)

    assert isinstance(error, sdk.InternalServerError)
    assert error.status_code == 500
    assert_not_foreign(error)


def test_stream_answer_with_error_status_raises_the_typed_error(sdk, no_retry_client, server):
    server.script(status=429, body={"detail": "Too many"}, headers={"Retry-After": "0"})

    with pytest.raises(sdk.RateLimitError) as caught:
        stream = no_retry_client.chat_completions(
            messages=[{"role": "user", "content": "hi"}], stream=True
        )
        list(stream)

    assert caught.value.message == "Too many"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed_and_raises_a_status_error_naming_the_target(
    sdk, no_retry_client, server, status
):
    server.script(status=status, headers={"Location": "https://elsewhere.example/api"}, path=MODELS)
    error = raised(sdk, no_retry_client.get_models)
    assert type(error) is sdk.APIStatusError
    assert error.status_code == status
    assert "https://elsewhere.example/api" in error.message
    assert "api_url" in error.message
    assert len(server.requests) == 1
