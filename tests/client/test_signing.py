"""HMAC signing: the exact bytes sent, the path with its query, a fresh nonce per attempt.

``hmac_server`` rejects a bad signature, a stale timestamp and a reused nonce, so a call that
succeeds there was signed correctly; the tests also recompute each signature independently
from what the server recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import pytest

from waygpt.testing import RecordedRequest, WayGPTTestServer

SIGNATURE_HEADERS = ("x-mb-timestamp", "x-mb-nonce", "x-mb-signature")


def expected_signature(request: RecordedRequest, project_id: str, secret: str) -> str:
    """The signature PROTOCOL.md defines, over what the server actually received."""
    canonical = "\n".join(
        [
            request.method.upper(),
            request.path,
            "sha256(body)=" + hashlib.sha256(request.body).hexdigest(),
            "timestamp=" + request.headers["x-mb-timestamp"],
            "nonce=" + request.headers["x-mb-nonce"],
            "project=" + project_id,
        ]
    )
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def assert_signed_for(request: RecordedRequest, server: WayGPTTestServer) -> None:
    signature = expected_signature(request, server.project_id, server.hmac_secret)
    assert request.headers["x-mb-signature"] == signature


def test_signature_covers_the_exact_body_bytes_sent(hmac_client, hmac_server):
    hmac_client.chat_completions(
        messages=[{"role": "user", "content": "hello there, signed world"}], temperature=0.5
    )

    request = hmac_server.last_request
    assert request is not None and request.body  # a body was sent and it is what was signed
    assert_signed_for(request, hmac_server)


def test_russian_prompt_verifies_on_the_strict_server(hmac_client, hmac_server):
    prompt = "Привет! Расскажи про погоду в Москве — кратко, пожалуйста."

    answer = hmac_client.chat_completions(messages=[{"role": "user", "content": prompt}])

    assert answer["choices"][0]["message"]["content"] == "Echo: " + prompt
    request = hmac_server.last_request
    assert request is not None
    assert prompt.encode("utf-8") in request.body
    assert_signed_for(request, hmac_server)


def test_signed_get_with_query_string_verifies(hmac_client, hmac_server):
    use_cases = hmac_client.get_use_cases(detailed=True)

    assert use_cases and all("config" in item for item in use_cases)
    request = hmac_server.last_request
    assert request is not None
    assert request.path == "/api/v1/waygpt/use-cases?detailed=true"
    assert_signed_for(request, hmac_server)


def test_signed_post_without_body_verifies(hmac_client, hmac_server):
    job_id = hmac_client.video_generations("waves")["job_id"]

    assert hmac_client.cancel_media_job(job_id)["status"] == "cancelled"
    request = hmac_server.last_request
    assert request is not None and request.body == b""
    assert_signed_for(request, hmac_server)


def test_signed_percent_encoded_path_verifies(sdk, hmac_client, hmac_server):
    with pytest.raises(sdk.NotFoundError):  # not PermissionDeniedError: the signature held
        hmac_client.get_media_job("задача#1 x")  # sent as one escaped segment

    request = hmac_server.last_request
    assert request is not None and "%" in request.path
    assert_signed_for(request, hmac_server)


def test_signature_headers_have_the_protocol_format(hmac_client, hmac_server):
    before = int(time.time())
    hmac_client.get_models()
    after = int(time.time())

    headers = hmac_server.requests[0].headers
    assert before <= int(headers["x-mb-timestamp"]) <= after
    assert re.fullmatch(r"[0-9]+", headers["x-mb-timestamp"])
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-mb-nonce"])
    assert re.fullmatch(r"[0-9a-f]{64}", headers["x-mb-signature"])


def test_each_request_gets_a_new_nonce(hmac_client, hmac_server):
    for _ in range(3):
        hmac_client.get_models()

    nonces = {r.headers["x-mb-nonce"] for r in hmac_server.requests}
    assert len(nonces) == 3


def test_each_retry_attempt_is_signed_with_a_fresh_nonce_and_timestamp(hmac_client, hmac_server):
    # Retry-After: 1 makes the second attempt start in a later second than the first.
    hmac_server.script(status=503, headers={"Retry-After": "1"}, path="/api/v1/waygpt/models")

    models = hmac_client.get_models()

    assert "gpt-4o" in models
    first, second = hmac_server.requests
    assert first.headers["x-mb-nonce"] != second.headers["x-mb-nonce"]
    assert int(second.headers["x-mb-timestamp"]) > int(first.headers["x-mb-timestamp"])
    assert_signed_for(first, hmac_server)
    assert_signed_for(second, hmac_server)


def test_retried_signed_post_with_cyrillic_succeeds(hmac_client, hmac_server):
    hmac_server.script(status=502, headers={"Retry-After": "0"}, times=2, path="/api/v1/waygpt/*")

    answer = hmac_client.chat_completions(messages=[{"role": "user", "content": "Ещё раз"}])

    assert answer["choices"][0]["message"]["content"] == "Echo: Ещё раз"
    requests = hmac_server.requests
    assert len(requests) == 3
    assert len({r.headers["x-mb-nonce"] for r in requests}) == 3
    assert len({r.body for r in requests}) == 1  # the same bytes every attempt


def test_client_api_and_login_are_neither_signed_nor_carry_the_project_key(
    hmac_client, hmac_server
):
    hmac_client.client_login(hmac_server.user_email, hmac_server.user_password)
    hmac_client.client_list_projects()
    hmac_client.client_get_project(hmac_server.project_id)

    requests = hmac_server.requests
    assert [r.path.split("/")[3] for r in requests] == ["auth", "client", "client"]
    for request in requests:
        assert not any(name in request.headers for name in SIGNATURE_HEADERS), request.path
        assert "x-project-key" not in request.headers, request.path


def test_unsigned_client_is_refused_by_the_strict_server(sdk, hmac_server):
    """Sanity check of the fixture: the strict server really rejects unsigned requests."""
    with sdk.WayGPTClient(
        api_url=hmac_server.url, project_key=hmac_server.project_key, max_retries=0
    ) as unsigned:
        with pytest.raises(sdk.PermissionDeniedError):
            unsigned.get_models()


def test_wrong_hmac_secret_is_refused_by_the_strict_server(sdk, hmac_server):
    with sdk.WayGPTClient(
        api_url=hmac_server.url,
        project_key=hmac_server.project_key,
        project_id=hmac_server.project_id,
        hmac_secret="not-the-secret",
        use_hmac=True,
        max_retries=0,
    ) as wrong:
        with pytest.raises(sdk.PermissionDeniedError) as caught:
            wrong.get_models()
    assert caught.value.status_code == 403


def test_use_hmac_signs_even_for_a_project_that_does_not_require_it(make_signed_client, server):
    """The server checks any signature it is sent, so this one must verify too."""
    with make_signed_client(server, max_retries=0) as signed:
        signed.create_widget_token(site_domain="пример.рф")

    request = server.last_request
    assert request is not None
    assert all(name in request.headers for name in SIGNATURE_HEADERS)
    assert_signed_for(request, server)
