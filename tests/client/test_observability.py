"""What every call shows of itself: raw responses, one client request id, attempts, hooks.

Over real HTTP against ``waygpt.testing``, for the sync client, the async client and the
one-file build. (OpenTelemetry spans: tests/observability/test_otel.py.)
"""

from __future__ import annotations

import functools
import pickle
import random
import re
from typing import Any, Iterator, List

import pytest
from urllib3.util.retry import Retry

from raw_server import RawServer, fixed_answer
from waygpt.retry import default_retry
from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello there"}]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def quick_retry(total: int = 3) -> Retry:
    return default_retry(total, backoff_factor=0)


@pytest.fixture
def client(sdk: Any, server: WayGPTTestServer) -> Iterator[Any]:
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=quick_retry(), timeout=5
    ) as created:
        yield created


def client_request_ids(server: WayGPTTestServer) -> List[str]:
    return [r.headers.get("x-client-request-id", "") for r in server.requests]


# -- raw responses --------------------------------------------------------------------------


def test_a_raw_response_has_the_status_headers_request_id_attempts_and_elapsed(client, server):
    raw = client.with_raw_response.get_models()

    assert raw.status_code == 200
    assert raw.parse() == client.get_models()
    assert raw.request_id and raw.request_id == raw.headers["X-Request-ID"]
    assert raw.headers["content-type"] == raw.headers["Content-Type"]  # any case
    assert raw.attempts == 1
    assert 0 < raw.elapsed < 30
    assert raw.client_request_id == client_request_ids(server)[0]


def test_a_raw_response_counts_every_attempt_of_the_call(client, server):
    server.script(path=MODELS, status=503, headers={"Retry-After": "0"}, times=2)

    raw = client.with_raw_response.get_models()

    assert raw.attempts == 3
    assert raw.parse()


def test_every_method_has_a_raw_form(sdk, client, server):
    login = client.with_raw_response.client_login(server.user_email, server.user_password)
    projects = client.with_raw_response.client_list_projects()
    job = client.with_raw_response.video_generations("закат").parse()
    polled = client.with_raw_response.wait_for_media_job(job["job_id"], poll_interval=0.01)

    assert login.parse()["token"] == client.jwt_token
    assert isinstance(projects.parse(), list)
    assert polled.parse()["status"] == "completed" and polled.status_code == 200
    with pytest.raises(AttributeError):
        client.with_raw_response.close  # noqa: B018 - makes no call of the API
    with pytest.raises(AttributeError):
        client.with_raw_response._call  # noqa: B018


def test_a_raw_streams_headers_are_there_before_its_first_chunk(client, server):
    raw = client.with_raw_response.chat_completions_stream(messages=MESSAGES)

    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.request_id
    with raw.parse() as stream:
        assert stream.collect().text == "Echo: hello there"


def test_raw_response_headers_redact_an_echoed_secret(client, server):
    server.script(path=MODELS, body=["gpt-4o"], headers={"X-Echo": server.project_key})

    raw = client.with_raw_response.get_models()

    assert server.project_key not in raw.headers["x-echo"]
    assert "[REDACTED]" in raw.headers["x-echo"]


def test_the_plain_methods_still_return_plain_values(client):
    assert isinstance(client.get_models(), list)
    assert isinstance(client.chat_completions(messages=MESSAGES), dict)


# -- one client request id per call --------------------------------------------------------


def test_each_call_sends_its_own_client_request_id_on_every_attempt(client, server):
    server.script(path=MODELS, status=503, headers={"Retry-After": "0"}, times=2)
    client.get_models()
    client.get_models()

    ids = client_request_ids(server)
    assert len(ids) == 4 and all(HEX32.match(i) for i in ids), ids
    assert ids[0] == ids[1] == ids[2]  # the three attempts of the first call
    assert ids[3] != ids[0]


def test_client_request_ids_do_not_follow_the_applications_seeded_random(client, server):
    random.seed(1)
    client.get_models()
    random.seed(1)  # as every worker of a pool seeded alike
    client.get_models()

    first, second = client_request_ids(server)
    assert first != second


def test_a_call_leaves_the_applications_random_as_it_was(sdk, server, sleeps):
    server.script(path=MODELS, status=503, times=1)  # a retry: its backoff's jitter too
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=1, timeout=5
    ) as client:
        random.seed(1)
        state = random.getstate()
        client.get_models()

        assert random.getstate() == state
    assert len(sleeps) == 1


def test_a_callers_own_client_request_id_is_kept(client, server):
    mine = client.with_options(extra_headers={"x-client-request-id": "order-4711"})
    raw = mine.with_raw_response.get_models()

    assert client_request_ids(server) == ["order-4711"]
    assert raw.client_request_id == "order-4711"


def test_extra_headers_are_sent_but_cannot_replace_the_clients_own(sdk, client, server):
    client.with_options(extra_headers={"X-Shop": "42"}).get_models()

    assert server.requests[0].headers.get("x-shop") == "42"
    for name in ("x-project-key", "Authorization", "Content-Length", "X-MB-Nonce"):
        with pytest.raises(sdk.ConfigurationError):
            client.with_options(extra_headers={name: "x"})
    with pytest.raises(sdk.ConfigurationError):
        client.with_options(extra_headers={"X-Bad": "a\r\nb"})


# -- every error says the same --------------------------------------------------------------


def test_a_status_error_has_its_request_id_attempts_and_client_request_id(sdk, client, server):
    server.script(path=MODELS, status=503, headers={"Retry-After": "0"}, times=None)

    with pytest.raises(sdk.InternalServerError) as caught:
        client.get_models()

    error = caught.value
    assert error.attempts == 4
    assert error.client_request_id == client_request_ids(server)[0]
    assert error.request_id  # the server's X-Request-ID
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.attempts, copy.client_request_id, copy.request_id) == (
        error.attempts, error.client_request_id, error.request_id)


def test_a_connection_error_has_its_attempts_and_client_request_id(sdk, closed_port):
    with sdk.WayGPTClient(
        api_url=f"http://127.0.0.1:{closed_port}", project_key="sk_live_x",
        max_retries=quick_retry(2),
    ) as unreachable:
        with pytest.raises(sdk.APIConnectionError) as caught:
            unreachable.get_models()

    assert caught.value.attempts == 3
    assert HEX32.match(caught.value.client_request_id)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.attempts == 3


def test_a_stream_error_has_the_same(sdk, client, server):
    server.script_stream_fault(after_events=1, error_code=503)

    with pytest.raises(sdk.InternalServerError) as caught:
        list(client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.attempts == 1
    assert caught.value.client_request_id == client_request_ids(server)[0]
    assert caught.value.request_id


# -- event hooks ----------------------------------------------------------------------------


def test_hooks_see_every_attempt_with_its_request_and_response(sdk, server):
    server.script(path=MODELS, status=503, headers={"Retry-After": "0"})
    requests: List[Any] = []
    responses: List[Any] = []
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=quick_retry(),
        event_hooks={"request": [requests.append], "response": [responses.append]},
    ) as client:
        client.get_models()

    assert [r.attempt for r in requests] == [1, 2]
    assert [r.status_code for r in responses] == [503, 200]
    first = requests[0]
    assert first.method == "GET" and first.url == server.url + MODELS
    assert first.client_request_id == client_request_ids(server)[0]
    assert responses[1].client_request_id == first.client_request_id
    assert responses[1].request_id == responses[1].headers["x-request-id"] != ""
    assert 0 <= responses[0].elapsed < 30


def test_hook_views_hide_every_secret(sdk, hmac_server):
    seen: List[Any] = []
    with sdk.WayGPTClient(
        api_url=hmac_server.url, project_key=hmac_server.project_key,
        project_id=hmac_server.project_id, hmac_secret=hmac_server.hmac_secret, use_hmac=True,
        event_hooks={"request": [seen.append], "response": [seen.append]},
    ) as client:
        client.get_models()
        client.client_login(hmac_server.user_email, hmac_server.user_password)
        client.client_list_projects()

    text = repr([(v.url, dict(v.headers), dict(getattr(v, "request_headers", {}))) for v in seen])
    assert hmac_server.project_key not in text
    assert hmac_server.hmac_secret not in text
    assert client.jwt_token not in text
    assert "[REDACTED]" in text


def test_hook_views_pickle_as_they_read_without_the_secrets_they_hide(sdk, server):
    server.script(path=MODELS, body=["gpt-4o"], headers={"X-Echo": server.project_key})
    seen: List[Any] = []
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, event_hooks={"response": [seen.append]}
    ) as client:
        client.get_models()

    view = seen[0]
    for headers in (view.headers, view.request_headers):
        pickled = pickle.dumps(headers)
        assert server.project_key.encode() not in pickled
        assert dict(pickle.loads(pickled)) == dict(headers)
    assert view.headers["x-echo"] == "[REDACTED]"
    assert view.request_headers["x-project-key"] == "[REDACTED]"


def test_a_hook_that_raises_stops_the_call_with_its_own_exception(sdk, server):
    class Refused(Exception):
        pass

    def refuse(view: Any) -> None:
        raise Refused(view.url)

    for hooks in ({"request": [refuse]}, {"response": [refuse]}):
        with sdk.WayGPTClient(
            api_url=server.url, project_key=server.project_key, event_hooks=hooks
        ) as client:
            with pytest.raises(Refused):
                client.get_models()
            # Nothing was left half-read: the next call goes through, on at most the one
            # kept-alive connection.
            assert client.with_options(event_hooks={}).get_models()
            assert server.wait_for_open_connections(1) <= 1
    # The request hook stopped its call before sending; the response hook's was sent.
    assert len(server.requests) == 0 + 1 + 1 + 1  # (each loop: the refused call, the next)


def test_a_streams_response_hook_is_called_when_its_headers_arrive(sdk, server):
    statuses: List[int] = []
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key,
        event_hooks={"response": [lambda view: statuses.append(view.status_code)]},
    ) as client:
        stream = client.chat_completions_stream(messages=MESSAGES)
        assert statuses == [200]  # before any chunk is read
        stream.close()


def test_with_options_replaces_the_hooks_of_the_copy_only(sdk, server):
    first: List[Any] = []
    second: List[Any] = []
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, event_hooks={"request": [first.append]}
    ) as client:
        client.with_options(event_hooks={"request": [second.append]}).get_models()
        client.get_models()

    assert (len(first), len(second)) == (1, 1)


@pytest.mark.parametrize("hooks", [[print], {"request": [1]}, {"before": [print]}, "print"])
def test_bad_event_hooks_are_refused(sdk, hooks):
    with pytest.raises(sdk.ConfigurationError):
        sdk.WayGPTClient(event_hooks=hooks)


@pytest.mark.parametrize("where", ["request", "response", "stream restart"])
def test_a_waygpt_error_a_hook_raises_keeps_the_attempts_and_id_of_its_own_call(
    sdk, server, where
):
    server.script(path=MODELS, status=503, headers={"Retry-After": "0"}, times=2)
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=quick_retry(1)
    ) as other:
        with pytest.raises(sdk.InternalServerError) as earlier:
            other.get_models()  # another call's error: 2 attempts, its own id
    error = earlier.value
    assert error.attempts == 2 and error.client_request_id

    def raise_it(view: Any) -> None:
        if view.attempt == (2 if where == "stream restart" else 1):
            raise error

    hooks = {"response" if where == "response" else "request": [raise_it]}
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=quick_retry(),
        event_hooks=hooks,
    ) as client:
        with pytest.raises(sdk.InternalServerError) as caught:
            if where == "stream restart":
                server.script_stream_fault(after_events=0, cut="close")
                list(client.chat_completions_stream(messages=MESSAGES))
            else:
                client.get_models()

    assert caught.value is error
    assert (error.attempts, error.client_request_id) == (2, client_request_ids(server)[0])


class AsyncHook:
    """A hook object whose ``__call__`` is a coroutine function."""

    def __init__(self, seen: List[int]) -> None:
        self.seen = seen

    async def __call__(self, view: Any) -> None:
        self.seen.append(view.attempt)


async def async_hook(seen: List[int], view: Any) -> None:
    seen.append(view.attempt)


@pytest.mark.parametrize(
    "make_hook",
    [
        lambda seen: functools.partial(async_hook, seen),
        AsyncHook,
        lambda seen: functools.partial(AsyncHook(seen)),
    ],
    ids=["partial-of-async-def", "object-with-async-call", "partial-of-that-object"],
)
def test_an_async_hook_is_refused_by_the_sync_client_and_awaited_by_the_async_one(
    sdk, server, make_hook
):
    seen: List[int] = []
    options = {
        "api_url": server.url, "project_key": server.project_key,
        "event_hooks": {"request": [make_hook(seen)]},
    }
    if getattr(sdk, "is_async_facade", False):
        with sdk.WayGPTClient(**options) as client:
            client.get_models()
        assert seen == [1]
    else:  # it would be called, and its coroutine never run
        with pytest.raises(sdk.ConfigurationError, match="needs AsyncWayGPTClient"):
            sdk.WayGPTClient(**options)


def test_a_stream_started_again_keeps_its_client_request_id(sdk, client, server):
    server.script_stream_fault(after_events=0, cut="close")

    raw = client.with_raw_response.chat_completions_stream(messages=MESSAGES)
    raw.parse().collect()

    ids = client_request_ids(server)
    assert len(ids) == 2 and ids[0] == ids[1] == raw.client_request_id


def test_a_call_refused_before_the_network_claims_no_request_id(sdk):
    with sdk.WayGPTClient(api_url="http://127.0.0.1:1") as no_key:
        with pytest.raises(sdk.ConfigurationError) as caught:
            no_key.get_models()

    assert caught.value.attempts == 0
    assert caught.value.client_request_id is None


def test_header_names_echoing_a_secret_are_redacted_in_views_and_raw_headers(sdk, server):
    server.script(path=MODELS, body=["gpt-4o"], headers={f"X-{server.project_key}": "echo"},
                  times=2)
    seen: List[Any] = []
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, event_hooks={"response": [seen.append]}
    ) as client:
        raw = client.with_raw_response.get_models()

    for headers in (raw.headers, seen[0].headers):
        assert headers["X-[REDACTED]"] == "echo"
        for shown in (repr(headers), repr(list(headers)), repr(dict(headers))):
            assert server.project_key not in shown
        assert server.project_key.encode() not in pickle.dumps(headers)


def test_request_views_mask_the_credentials_a_caller_adds(sdk, hmac_server):
    added = {
        "Proxy-Authorization": "Basic dXNlcjpodW50ZXIy", "Cookie": "sessionid=c00k1e-value",
        "X-Api-Key": "caller-api-key-1", "X-Auth-Token": "caller-token-2", "X-Shop": "42",
    }
    seen: List[Any] = []
    with sdk.WayGPTClient(
        api_url=hmac_server.url, project_key=hmac_server.project_key,
        project_id=hmac_server.project_id, hmac_secret=hmac_server.hmac_secret, use_hmac=True,
    ) as client:
        hooked = client.with_options(
            extra_headers=added, event_hooks={"request": [seen.append], "response": [seen.append]}
        )
        hooked.get_models()

    sent = hmac_server.requests[0].headers
    assert all(sent.get(name.lower()) == value for name, value in added.items())  # as they are
    request, response = seen
    for headers in (request.headers, response.request_headers):
        for name in ("Proxy-Authorization", "Cookie", "X-Api-Key", "X-Auth-Token"):
            assert headers[name] == "[REDACTED]"
        assert headers["X-Shop"] == "42"
        assert headers["X-MB-Nonce"] == sent["x-mb-nonce"]  # the signature stays visible
        assert headers["X-MB-Signature"] == sent["x-mb-signature"]
        for shown in (repr(headers), repr(pickle.loads(pickle.dumps(headers)))):
            for value in (*added.values(), hmac_server.project_key):
                assert value == "42" or value not in shown


# -- a header sent twice: its first value, everywhere -------------------------------------

TWO_REQUEST_IDS = [
    ("X-Request-ID", "first"), ("X-Request-ID", "second"), ("Content-Type", "application/json")
]


def test_a_repeated_request_id_is_its_first_in_an_error_and_its_headers(sdk):
    answer = fixed_answer("500 Internal Server Error", TWO_REQUEST_IDS, b'{"detail": "boom"}')
    with RawServer(answer) as raw, sdk.WayGPTClient(
        api_url=raw.url, project_key="sk_live_x", max_retries=0, timeout=5
    ) as client:
        with pytest.raises(sdk.InternalServerError) as caught:
            client.get_models()

    assert caught.value.request_id == "first"
    assert caught.value.headers["X-Request-ID"] == "first"


def test_a_repeated_request_id_is_its_first_in_a_raw_response_and_a_hook_view(sdk):
    views: List[Any] = []
    answer = fixed_answer("200 OK", TWO_REQUEST_IDS, b'["gpt-4o"]')
    with RawServer(answer) as raw, sdk.WayGPTClient(
        api_url=raw.url, project_key="sk_live_x", max_retries=0, timeout=5,
        event_hooks={"response": [views.append]},
    ) as client:
        shown = client.with_raw_response.get_models()

    assert shown.request_id == shown.headers["x-request-id"] == "first"
    assert views[0].headers["X-Request-ID"] == "first"
