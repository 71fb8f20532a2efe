"""The wire request of each of the 21 reference methods, and what each returns.

Every test drives the real client against the local server and looks at what the server
received: method, raw path (with query), headers and the exact body.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable, Dict, List
from urllib.parse import parse_qsl

import pytest

from waygpt.testing import RecordedRequest, WayGPTTestServer

MESSAGES = [{"role": "user", "content": "hello world"}]
CHAT = "/api/v1/waygpt/chat/completions"


def only_request(server: WayGPTTestServer) -> RecordedRequest:
    received = server.requests
    assert len(received) == 1, [(r.method, r.path) for r in received]
    return received[0]


def media_type(request: RecordedRequest) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def assert_project_key_request(request: RecordedRequest, server: WayGPTTestServer) -> None:
    assert request.headers["x-project-key"] == server.project_key
    assert "authorization" not in request.headers


def assert_json_body(request: RecordedRequest, expected: Dict[str, Any]) -> None:
    assert media_type(request) == "application/json"
    assert request.json() == expected


def assert_jwt_request(request: RecordedRequest, jwt: str) -> None:
    assert request.headers["authorization"] == f"Bearer {jwt}"
    assert "x-project-key" not in request.headers


def use_case_id(client: Any, server: WayGPTTestServer, jwt: str, key: str = "support") -> str:
    """The id of one of the server's seeded use cases; the request log is cleared after."""
    items = client.client_list_use_cases(server.project_id, jwt)
    server.clear_requests()
    return str(next(item["id"] for item in items if item["key"] == key))


# -- chat ---------------------------------------------------------------------------------


def test_chat_completions_sends_model_and_messages_only_by_default(client, server):
    client.chat_completions(messages=MESSAGES)

    request = only_request(server)
    assert (request.method, request.path) == ("POST", CHAT)
    assert_project_key_request(request, server)
    assert_json_body(request, {"model": "auto", "messages": MESSAGES})


def test_chat_completions_sends_temperature_and_max_tokens_when_given_even_zero(client, server):
    client.chat_completions("gpt-4o", MESSAGES, temperature=0, max_tokens=7)

    assert_json_body(
        only_request(server),
        {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0, "max_tokens": 7},
    )


def test_chat_completions_sends_use_case_key(client, server):
    client.chat_completions(messages=MESSAGES, use_case="support")

    assert_json_body(
        only_request(server), {"model": "auto", "messages": MESSAGES, "use_case": "support"}
    )


def test_chat_completions_use_case_id_alias_is_sent_as_use_case(client, server):
    client.chat_completions("auto", MESSAGES, "support")  # positional, as in the reference

    body = only_request(server).json()
    assert body["use_case"] == "support"
    assert "use_case_id" not in body


@pytest.mark.parametrize(
    "kwargs",
    [
        {"use_case": " support "},
        {"use_case_id": "\tsupport\n"},
        {"use_case": "", "use_case_id": " support"},
    ],
    ids=["use_case", "use_case_id", "empty-use_case-then-alias"],
)
def test_chat_completions_use_case_is_stripped_as_the_reference_does(client, server, kwargs):
    client.chat_completions(messages=MESSAGES, **kwargs)

    assert_json_body(
        only_request(server), {"model": "auto", "messages": MESSAGES, "use_case": "support"}
    )


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "spaces"])
def test_chat_completions_empty_use_case_is_not_sent(client, server, value):
    client.chat_completions(messages=MESSAGES, use_case=value)

    assert_json_body(only_request(server), {"model": "auto", "messages": MESSAGES})


def test_chat_completions_stream_strips_the_use_case_too(client, server):
    list(client.chat_completions_stream(messages=MESSAGES, use_case=" support "))

    assert only_request(server).json()["use_case"] == "support"


def test_messages_given_as_a_generator_are_sent_as_given(client, server):
    client.chat_completions(messages=(dict(m) for m in MESSAGES))

    assert_json_body(only_request(server), {"model": "auto", "messages": MESSAGES})


def test_messages_given_as_a_tuple_are_sent_as_a_list(client, server):
    client.chat_completions(messages=tuple(MESSAGES))

    assert only_request(server).json()["messages"] == MESSAGES


@pytest.mark.parametrize(
    "messages",
    [iter([]), {"role": "user", "content": "x"}, "hello", [("role", "user")]],
    ids=["empty-generator", "one-dict", "a-string", "not-dicts"],
)
def test_bad_messages_are_refused_before_the_network(client, server, messages):
    with pytest.raises(ValueError, match="messages"):
        client.chat_completions(messages=messages)

    assert server.requests == []


def test_chat_completions_extra_kwargs_go_into_the_body(client, server):
    client.chat_completions(
        messages=MESSAGES, top_p=0.5, user="user-42", response_format={"type": "json_object"}
    )

    assert_json_body(
        only_request(server),
        {
            "model": "auto",
            "messages": MESSAGES,
            "top_p": 0.5,
            "user": "user-42",
            "response_format": {"type": "json_object"},
        },
    )


def test_json_body_is_compact_utf8_without_ascii_escapes(client, server):
    client.chat_completions(messages=[{"role": "user", "content": "Привет, мир! ёЁ €"}])

    body = only_request(server).body
    assert "Привет, мир! ёЁ €".encode() in body
    assert b"\\u" not in body
    compact = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"))
    assert body == compact.encode("utf-8")


def test_chat_completions_with_stream_true_yields_chunk_dicts(client, server):
    chunks = list(client.chat_completions(messages=MESSAGES, stream=True))

    assert chunks and all(isinstance(chunk, dict) for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Echo: hello world"
    request = only_request(server)
    assert (request.method, request.path) == ("POST", CHAT)
    assert_json_body(request, {"model": "auto", "messages": MESSAGES, "stream": True})


def test_chat_completions_stream_yields_chunk_dicts_and_forwards_options(client, server):
    chunks = list(
        client.chat_completions_stream(
            messages=MESSAGES, use_case="support", temperature=0.2, seed=1
        )
    )

    assert chunks and all(isinstance(chunk, dict) for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert_json_body(
        only_request(server),
        {
            "model": "auto",
            "messages": MESSAGES,
            "use_case": "support",
            "temperature": 0.2,
            "stream": True,
            "seed": 1,
        },
    )


# -- media --------------------------------------------------------------------------------


def test_image_generations_sends_prompt_size_and_n_by_default(client, server):
    client.image_generations("a red fox")

    request = only_request(server)
    assert (request.method, request.path) == ("POST", "/api/v1/waygpt/images/generations")
    assert_project_key_request(request, server)
    assert_json_body(request, {"prompt": "a red fox", "size": "1024x1024", "n": 1})



@pytest.mark.parametrize(
    ("method", "typo", "meant"),
    [
        ("chat_completions", "temprature", "temperature"),
        ("chat_completions", "max_token", "max_tokens"),
        ("chat_completions", "use_cases", "use_case"),
        ("chat_completions_stream", "max_token", "max_tokens"),
        ("image_generations", "sizes", "size"),
        ("video_generations", "durations", "duration"),
    ],
)
def test_a_keyword_that_is_a_typo_of_a_parameter_is_refused_naming_it(
    client, server, method, typo, meant
):
    arguments = {"messages": MESSAGES} if method.startswith("chat") else {"prompt": "Закат"}
    with pytest.raises(TypeError, match=f"{typo}.*did you mean '{meant}'"):
        getattr(client, method)(**arguments, **{typo: 1})
    assert server.requests == []


def test_openai_fields_are_not_taken_for_typos(client, server):
    fields = {"top_p": 0.5, "stop": ["\n"], "seed": 1, "user": "u1", "n": 1,
              "max_completion_tokens": 5, "stream_options": {"include_usage": True},
              "response_format": {"type": "text"}, "store": False}
    client.chat_completions(messages=MESSAGES, **fields)

    body = json.loads(server.last_request.body)
    assert {key: body[key] for key in fields} == fields

def test_image_generations_sends_model_and_extra_kwargs(client, server):
    client.image_generations("a red fox", "dall-e-3", "512x512", 2, quality="hd")

    assert_json_body(
        only_request(server),
        {"prompt": "a red fox", "model": "dall-e-3", "size": "512x512", "n": 2, "quality": "hd"},
    )


def test_video_generations_sends_only_prompt_by_default(client, server):
    client.video_generations("waves at night")

    request = only_request(server)
    assert (request.method, request.path) == ("POST", "/api/v1/waygpt/videos/generations")
    assert_project_key_request(request, server)
    assert_json_body(request, {"prompt": "waves at night"})


def test_video_generations_sends_model_duration_and_extra_kwargs(client, server):
    client.video_generations("waves", "kling-1.6", 5, aspect_ratio="16:9")

    assert_json_body(
        only_request(server),
        {"prompt": "waves", "model": "kling-1.6", "duration": 5, "aspect_ratio": "16:9"},
    )


def test_get_media_job_gets_the_job_path(client, server):
    job_id = client.video_generations("waves")["job_id"]
    server.clear_requests()

    job = client.get_media_job(job_id)

    request = only_request(server)
    assert (request.method, request.path) == ("GET", f"/api/v1/waygpt/media/jobs/{job_id}")
    assert_project_key_request(request, server)
    assert request.body == b""
    assert job["job_id"] == job_id


def test_cancel_media_job_posts_to_the_cancel_path_without_body(client, server):
    job_id = client.video_generations("waves")["job_id"]
    server.clear_requests()

    job = client.cancel_media_job(job_id)

    request = only_request(server)
    assert (request.method, request.path) == (
        "POST",
        f"/api/v1/waygpt/media/jobs/{job_id}/cancel",
    )
    assert_project_key_request(request, server)
    assert request.body == b""
    assert job["status"] == "cancelled"


# -- catalogue ----------------------------------------------------------------------------


def test_get_models_gets_the_models_path(client, server):
    models = client.get_models()

    request = only_request(server)
    assert (request.method, request.path) == ("GET", "/api/v1/waygpt/models")
    assert_project_key_request(request, server)
    assert "gpt-4o-mini" in models


def test_get_models_full_gets_the_full_models_path(client, server):
    models = client.get_models_full()

    request = only_request(server)
    assert (request.method, request.path) == ("GET", "/api/v1/waygpt/models/full")
    assert_project_key_request(request, server)
    assert {"id", "name", "provider"} <= set(models[0])


def test_get_use_cases_sends_no_query_by_default(client, server):
    client.get_use_cases()

    request = only_request(server)
    assert (request.method, request.path) == ("GET", "/api/v1/waygpt/use-cases")
    assert_project_key_request(request, server)


def test_get_use_cases_detailed_sends_detailed_true_query(client, server):
    use_cases = client.get_use_cases(detailed=True)

    assert only_request(server).path == "/api/v1/waygpt/use-cases?detailed=true"
    assert all("config" in item for item in use_cases)


def test_create_widget_token_sends_default_ttl(client, server):
    client.create_widget_token()

    request = only_request(server)
    assert (request.method, request.path) == ("POST", "/api/v1/widget/token")
    assert_project_key_request(request, server)
    assert_json_body(request, {"ttl_seconds": 600})


def test_create_widget_token_sends_ttl_and_site_domain(client, server):
    client.create_widget_token(120, "shop.example.com")

    assert_json_body(
        only_request(server), {"ttl_seconds": 120, "site_domain": "shop.example.com"}
    )


# -- Client API ---------------------------------------------------------------------------


def test_client_login_posts_a_form_without_project_key(client, server):
    client.client_login(server.user_email, server.user_password)

    request = only_request(server)
    assert (request.method, request.path) == ("POST", "/api/v1/auth/login/access-token")
    assert media_type(request) == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(request.body.decode("ascii"))) == {
        "username": server.user_email,
        "password": server.user_password,
    }
    assert "x-project-key" not in request.headers
    assert "authorization" not in request.headers


def test_client_login_form_encodes_special_characters(client, server):
    server.add_user("a+b@example.com", "p&ss=w0rd/ä")

    client.client_login("a+b@example.com", "p&ss=w0rd/ä")

    form = dict(parse_qsl(only_request(server).body.decode("ascii")))
    assert form == {"username": "a+b@example.com", "password": "p&ss=w0rd/ä"}


def test_client_list_projects_gets_projects_with_bearer(client, server, token):
    projects = client.client_list_projects(token)

    request = only_request(server)
    assert (request.method, request.path) == ("GET", "/api/v1/client/projects")
    assert_jwt_request(request, token)
    assert [p["id"] for p in projects] == [server.project_id]


def test_client_get_project_gets_the_settings_path(client, server, token):
    project = client.client_get_project(server.project_id, token)

    request = only_request(server)
    assert (request.method, request.path) == (
        "GET",
        f"/api/v1/client/projects/{server.project_id}/settings",
    )
    assert_jwt_request(request, token)
    assert project["id"] == server.project_id


def test_client_create_project_posts_the_name(client, server, token):
    client.client_create_project("Магазин", token)

    request = only_request(server)
    assert (request.method, request.path) == ("POST", "/api/v1/client/projects")
    assert_jwt_request(request, token)
    assert_json_body(request, {"name": "Магазин"})


def test_client_update_project_puts_only_the_given_fields(client, server, token):
    client.client_update_project(
        server.project_id, token, name="Renamed", hmac_required=False, rate_limit_rpm=0
    )

    request = only_request(server)
    assert (request.method, request.path) == (
        "PUT",
        f"/api/v1/client/projects/{server.project_id}",
    )
    assert_jwt_request(request, token)
    assert_json_body(request, {"name": "Renamed", "hmac_required": False, "rate_limit_rpm": 0})


def test_client_update_project_sends_every_field_when_all_are_given(client, server, token):
    client.client_update_project(
        server.project_id, token, "N", True, ["gpt-4o"], ["example.com"], True, 10, 100
    )

    assert only_request(server).json() == {
        "name": "N",
        "is_active": True,
        "allowed_models": ["gpt-4o"],
        "allowed_domains": ["example.com"],
        "hmac_required": True,
        "rate_limit_rpm": 10,
        "rate_limit_rpd": 100,
    }


def test_client_delete_project_deletes_the_project_path(client, server, token):
    created = client.client_create_project("temp", token)
    server.clear_requests()

    client.client_delete_project(created["id"], token)

    request = only_request(server)
    assert (request.method, request.path) == (
        "DELETE",
        f"/api/v1/client/projects/{created['id']}",
    )
    assert_jwt_request(request, token)
    assert request.body == b""


def test_client_list_use_cases_gets_the_use_cases_path(client, server, token):
    items = client.client_list_use_cases(server.project_id, token)

    request = only_request(server)
    assert (request.method, request.path) == (
        "GET",
        f"/api/v1/client/projects/{server.project_id}/use-cases",
    )
    assert_jwt_request(request, token)
    assert {item["key"] for item in items} >= {"support", "catalog"}


def test_client_get_use_case_lists_the_use_cases_and_picks_one(client, server, token):
    wanted = use_case_id(client, server, token, "catalog")

    item = client.client_get_use_case(server.project_id, wanted, token)

    request = only_request(server)
    assert (request.method, request.path) == (
        "GET",
        f"/api/v1/client/projects/{server.project_id}/use-cases",
    )
    assert_jwt_request(request, token)
    assert item["id"] == wanted and item["key"] == "catalog"


def test_client_create_use_case_posts_key_name_kind_and_is_active(client, server, token):
    client.client_create_use_case(server.project_id, token, "faq", "FAQ bot")

    request = only_request(server)
    assert (request.method, request.path) == (
        "POST",
        f"/api/v1/client/projects/{server.project_id}/use-cases",
    )
    assert_jwt_request(request, token)
    assert_json_body(request, {"key": "faq", "name": "FAQ bot", "kind": "chat", "is_active": True})


def test_client_create_use_case_sends_config_when_given(client, server, token):
    config = {"system_prompt": "Будь краток", "models": [{"model_id": "gpt-4o", "priority": 1}]}

    client.client_create_use_case(
        server.project_id, token, "faq", "FAQ", "multi", config, False
    )

    assert only_request(server).json() == {
        "key": "faq",
        "name": "FAQ",
        "kind": "multi",
        "is_active": False,
        "config": config,
    }


def test_client_update_use_case_puts_only_the_given_fields(client, server, token):
    target = use_case_id(client, server, token)

    client.client_update_use_case(server.project_id, target, token, name="Help", is_active=False)

    request = only_request(server)
    assert (request.method, request.path) == (
        "PUT",
        f"/api/v1/client/projects/{server.project_id}/use-cases/{target}",
    )
    assert_jwt_request(request, token)
    assert_json_body(request, {"name": "Help", "is_active": False})


def test_client_delete_use_case_deletes_the_use_case_path(client, server, token):
    target = use_case_id(client, server, token)

    client.client_delete_use_case(server.project_id, target, token)

    request = only_request(server)
    assert (request.method, request.path) == (
        "DELETE",
        f"/api/v1/client/projects/{server.project_id}/use-cases/{target}",
    )
    assert_jwt_request(request, token)
    assert request.body == b""


# -- return values ------------------------------------------------------------------------

PID = "00000000-0000-4000-8000-000000000001"  # the test server's default project id
ANSWER_DICT: Dict[str, Any] = {"id": "x-1", "note": "Ответ", "nested": {"list": [1, 2.5, None]}}
ANSWER_LIST: List[Any] = ["gpt-4o", {"id": "Модель"}, 3]

RETURNS: List[Any] = [
    ("chat_completions", CHAT, ANSWER_DICT, lambda c, t: c.chat_completions(messages=MESSAGES)),
    (
        "image_generations",
        "/api/v1/waygpt/images/generations",
        ANSWER_DICT,
        lambda c, t: c.image_generations("fox"),
    ),
    (
        "video_generations",
        "/api/v1/waygpt/videos/generations",
        ANSWER_DICT,
        lambda c, t: c.video_generations("waves"),
    ),
    (
        "get_media_job",
        "/api/v1/waygpt/media/jobs/job-1",
        ANSWER_DICT,
        lambda c, t: c.get_media_job("job-1"),
    ),
    (
        "cancel_media_job",
        "/api/v1/waygpt/media/jobs/job-1/cancel",
        ANSWER_DICT,
        lambda c, t: c.cancel_media_job("job-1"),
    ),
    ("get_models", "/api/v1/waygpt/models", ANSWER_LIST, lambda c, t: c.get_models()),
    (
        "get_models_full",
        "/api/v1/waygpt/models/full",
        ANSWER_LIST,
        lambda c, t: c.get_models_full(),
    ),
    ("get_use_cases", "/api/v1/waygpt/use-cases", ANSWER_LIST, lambda c, t: c.get_use_cases()),
    (
        "create_widget_token",
        "/api/v1/widget/token",
        ANSWER_DICT,
        lambda c, t: c.create_widget_token(),
    ),
    (
        "client_list_projects",
        "/api/v1/client/projects",
        ANSWER_LIST,
        lambda c, t: c.client_list_projects(t),
    ),
    (
        "client_get_project",
        f"/api/v1/client/projects/{PID}/settings",
        ANSWER_DICT,
        lambda c, t: c.client_get_project(PID, t),
    ),
    (
        "client_create_project",
        "/api/v1/client/projects",
        ANSWER_DICT,
        lambda c, t: c.client_create_project("p", t),
    ),
    (
        "client_update_project",
        f"/api/v1/client/projects/{PID}",
        ANSWER_DICT,
        lambda c, t: c.client_update_project(PID, t, name="n"),
    ),
    (
        "client_delete_project",
        f"/api/v1/client/projects/{PID}",
        ANSWER_DICT,
        lambda c, t: c.client_delete_project(PID, t),
    ),
    (
        "client_list_use_cases",
        f"/api/v1/client/projects/{PID}/use-cases",
        ANSWER_LIST,
        lambda c, t: c.client_list_use_cases(PID, t),
    ),
    (
        "client_create_use_case",
        f"/api/v1/client/projects/{PID}/use-cases",
        ANSWER_DICT,
        lambda c, t: c.client_create_use_case(PID, t, "k", "n"),
    ),
    (
        "client_update_use_case",
        f"/api/v1/client/projects/{PID}/use-cases/uc-1",
        ANSWER_DICT,
        lambda c, t: c.client_update_use_case(PID, "uc-1", t, name="n"),
    ),
    (
        "client_delete_use_case",
        f"/api/v1/client/projects/{PID}/use-cases/uc-1",
        ANSWER_DICT,
        lambda c, t: c.client_delete_use_case(PID, "uc-1", t),
    ),
]


@pytest.mark.parametrize(
    ("path", "answer", "call"),
    [pytest.param(path, answer, call, id=name) for name, path, answer, call in RETURNS],
)
def test_method_returns_the_parsed_json_answer(
    client: Any,
    server: WayGPTTestServer,
    token: str,
    path: str,
    answer: Any,
    call: Callable[[Any, str], Any],
) -> None:
    assert server.project_id == PID
    server.script(body=answer, path=path)

    assert call(client, token) == answer
    assert not server.pending_scripts  # the scripted answer was the one returned


# -- signatures ---------------------------------------------------------------------------

REQUIRED = object()  # no default in the reference (the SDK may add one, e.g. jwt_token=None)
CHAT_PARAMS = [
    ("model", "auto"),
    ("messages", None),
    ("use_case_id", None),
    ("use_case", None),
    ("temperature", None),
    ("max_tokens", None),
]
JWT = ("jwt_token", REQUIRED)
REFERENCE_SIGNATURES: Dict[str, List[Any]] = {
    "chat_completions": [*CHAT_PARAMS, ("stream", False), "**"],
    "chat_completions_stream": [*CHAT_PARAMS, "**"],
    "image_generations": [
        ("prompt", REQUIRED),
        ("model", None),
        ("size", "1024x1024"),
        ("n", 1),
        "**",
    ],
    "video_generations": [("prompt", REQUIRED), ("model", None), ("duration", None), "**"],
    "get_media_job": [("job_id", REQUIRED)],
    "cancel_media_job": [("job_id", REQUIRED)],
    "get_models": [],
    "get_models_full": [],
    "get_use_cases": [("detailed", False)],
    "create_widget_token": [("ttl_seconds", 600), ("site_domain", None)],
    "client_login": [("email", REQUIRED), ("password", REQUIRED)],
    "client_list_projects": [JWT],
    "client_get_project": [("project_id", REQUIRED), JWT],
    "client_create_project": [("name", REQUIRED), JWT],
    "client_update_project": [
        ("project_id", REQUIRED),
        JWT,
        *[
            (name, None)
            for name in (
                "name",
                "is_active",
                "allowed_models",
                "allowed_domains",
                "hmac_required",
                "rate_limit_rpm",
                "rate_limit_rpd",
            )
        ],
    ],
    "client_delete_project": [("project_id", REQUIRED), JWT],
    "client_list_use_cases": [("project_id", REQUIRED), JWT],
    "client_get_use_case": [("project_id", REQUIRED), ("use_case_id", REQUIRED), JWT],
    "client_create_use_case": [
        ("project_id", REQUIRED),
        JWT,
        ("key", REQUIRED),
        ("name", REQUIRED),
        ("kind", "chat"),
        ("config", None),
        ("is_active", True),
    ],
    "client_update_use_case": [
        ("project_id", REQUIRED),
        ("use_case_id", REQUIRED),
        JWT,
        *[(name, None) for name in ("key", "name", "kind", "config", "is_active")],
    ],
    "client_delete_use_case": [("project_id", REQUIRED), ("use_case_id", REQUIRED), JWT],
}


@pytest.mark.parametrize("name", sorted(REFERENCE_SIGNATURES))
def test_method_keeps_the_reference_parameters_order_and_defaults(sdk, name):
    params = list(inspect.signature(getattr(sdk.WayGPTClient, name)).parameters.values())[1:]
    got: List[Any] = []
    for param in params:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            got.append("**")
        elif param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            got.append((param.name, param.default))
    expected = REFERENCE_SIGNATURES[name]
    assert [p if p == "**" else p[0] for p in got] == [
        p if p == "**" else p[0] for p in expected
    ]
    for (param, default), (_, wanted) in zip(
        (p for p in got if p != "**"), (p for p in expected if p != "**")
    ):
        if wanted is not REQUIRED:
            assert default == wanted, (name, param)
