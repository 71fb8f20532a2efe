"""The Client API conveniences: a remembered login, reference-style positional tokens,
``client_get_use_case``, and a full project and use-case lifecycle."""

from __future__ import annotations

import pytest

from waygpt.testing import WayGPTTestServer

CHAT_MESSAGES = [{"role": "user", "content": "Сколько стоит доставка?"}]


def bearer_tokens(server: WayGPTTestServer):
    return [r.headers.get("authorization") for r in server.requests]


# -- login ----------------------------------------------------------------------------------


def test_client_login_remembers_the_token_for_later_calls(api_client, server):
    login = api_client.client_login(server.user_email, server.user_password)

    projects = api_client.client_list_projects()
    project = api_client.client_get_project(server.project_id)

    assert [p["id"] for p in projects] == [server.project_id]
    assert project["id"] == server.project_id
    assert bearer_tokens(server)[1:] == [f"Bearer {login['access_token']}"] * 2
    assert api_client.jwt_token == login["access_token"]


def test_jwt_token_passed_positionally_still_works(api_client, server, token):
    projects = api_client.client_list_projects(token)
    api_client.client_update_project(server.project_id, token, "Positional name")
    use_cases = api_client.client_list_use_cases(server.project_id, token)

    assert projects[0]["id"] == server.project_id
    assert api_client.client_get_project(server.project_id, token)["name"] == "Positional name"
    assert use_cases
    assert set(bearer_tokens(server)) == {f"Bearer {token}"}


def test_explicit_jwt_token_wins_over_the_remembered_one(api_client, server):
    api_client.client_login(server.user_email, server.user_password)
    other = server.issue_token()

    api_client.client_list_projects(other)

    assert server.last_request.headers["authorization"] == f"Bearer {other}"


def test_client_login_answer_adds_token_type_and_default_expires_in(api_client, server):
    login = api_client.client_login(server.user_email, server.user_password)

    assert login["token"] == login["access_token"]
    assert login["token_type"] == "bearer"
    assert login["expires_in"] == 3600


def test_client_login_keeps_expires_in_sent_by_the_server(sdk):
    with WayGPTTestServer(token_expires_in=120) as server, sdk.WayGPTClient(
        server.url, max_retries=0
    ) as client:
        login = client.client_login(server.user_email, server.user_password)

    assert login["expires_in"] == 120
    assert login["token"] == login["access_token"]


def test_client_login_keeps_the_servers_token_type(sdk, api_client, server):
    server.script(
        body={"access_token": "tok-123", "token_type": "Bearer", "expires_in": 60},
        path="/api/v1/auth/login/access-token",
    )

    login = api_client.client_login(server.user_email, server.user_password)

    assert login == {
        "access_token": "tok-123",
        "token_type": "Bearer",
        "expires_in": 60,
        "token": "tok-123",
    }


def test_client_login_with_a_wrong_password_raises_bad_request(sdk, api_client, server):
    with pytest.raises(sdk.BadRequestError):
        api_client.client_login(server.user_email, "wrong-password")

    assert api_client.jwt_token is None


def test_client_api_call_without_any_token_raises_before_the_network(sdk, api_client, server):
    with pytest.raises(sdk.ConfigurationError):
        api_client.client_list_projects()

    assert server.requests == []


def test_jwt_token_with_crlf_is_refused_before_the_network(api_client, server):
    with pytest.raises(ValueError):
        api_client.client_list_projects("tok\r\nX-Evil: 1")

    assert server.requests == []


def test_unknown_token_raises_authentication_error(sdk, api_client, server):
    with pytest.raises(sdk.AuthenticationError) as caught:
        api_client.client_list_projects("not-a-token-this-server-issued")

    assert caught.value.status_code == 401


# -- client_get_use_case --------------------------------------------------------------------


def test_client_get_use_case_picks_the_use_case_from_the_list(api_client, server, token):
    listed = api_client.client_list_use_cases(server.project_id, token)
    wanted = next(item for item in listed if item["key"] == "catalog")

    assert api_client.client_get_use_case(server.project_id, wanted["id"], token) == wanted


def test_client_get_use_case_raises_not_found_when_absent(sdk, api_client, server, token):
    with pytest.raises(sdk.NotFoundError) as caught:
        api_client.client_get_use_case(
            server.project_id, "99999999-9999-4999-8999-999999999999", token
        )

    assert caught.value.status_code == 404
    assert isinstance(caught.value, sdk.WayGPTError)


def test_client_get_use_case_of_a_missing_project_raises_not_found(sdk, api_client, token):
    with pytest.raises(sdk.NotFoundError):
        api_client.client_get_use_case("99999999-9999-4999-8999-999999999999", "x", token)


# -- lifecycle ------------------------------------------------------------------------------


def test_full_project_and_use_case_lifecycle(sdk, api_client, server):
    api_client.client_login(server.user_email, server.user_password)

    project = api_client.client_create_project("Интернет-магазин")
    pid = project["id"]
    assert api_client.client_get_project(pid)["name"] == "Интернет-магазин"
    assert pid in [p["id"] for p in api_client.client_list_projects()]

    updated = api_client.client_update_project(
        pid, name="Магазин", allowed_models=["gpt-4o-mini"], rate_limit_rpm=30
    )
    assert (updated["name"], updated["allowed_models"], updated["rate_limit_rpm"]) == (
        "Магазин",
        ["gpt-4o-mini"],
        30,
    )
    assert updated["is_active"] is True  # a field not given is left alone

    config = {"system_prompt": "Отвечай кратко", "models": [{"model_id": "gpt-4o", "priority": 1}]}
    use_case = api_client.client_create_use_case(
        pid, key="delivery", name="Доставка", config=config
    )
    ucid = use_case["id"]
    assert (use_case["kind"], use_case["is_active"], use_case["config"]) == ("chat", True, config)
    assert [u["id"] for u in api_client.client_list_use_cases(pid)] == [ucid]
    assert api_client.client_get_use_case(pid, ucid)["key"] == "delivery"

    # The new project's own key reaches the project-key API with the new use case.
    with sdk.WayGPTClient(server.url, project["api_key"], max_retries=0) as project_client:
        answer = project_client.chat_completions(messages=CHAT_MESSAGES, use_case="delivery")
        assert answer["model"] == "gpt-4o"

    renamed = api_client.client_update_use_case(pid, ucid, name="Доставка и оплата")
    assert (renamed["name"], renamed["key"]) == ("Доставка и оплата", "delivery")

    api_client.client_delete_use_case(pid, ucid)
    assert api_client.client_list_use_cases(pid) == []
    with pytest.raises(sdk.NotFoundError):
        api_client.client_get_use_case(pid, ucid)

    api_client.client_delete_project(pid)
    with pytest.raises(sdk.NotFoundError):
        api_client.client_get_project(pid)
    assert pid not in [p["id"] for p in api_client.client_list_projects()]


@pytest.mark.parametrize(
    "token",
    ["eyJhbGciOiJIUzI1NiJ9.тест.sig", "eyJhbGci\x00OiJIUzI1NiJ9.e30.sig", "tab\there"],
    ids=["non-ascii", "nul", "control"],
)
def test_a_jwt_that_cannot_go_into_a_header_is_refused_before_the_network(
    api_client, server, token
):
    with pytest.raises(ValueError, match="jwt_token"):
        api_client.client_list_projects(token)

    assert server.requests == []
