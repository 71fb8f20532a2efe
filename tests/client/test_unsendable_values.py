"""Values that cannot go on the wire are refused where they enter, with the SDK's own errors.

A login answer's token that no header can carry, text with a lone surrogate (no UTF-8 form)
in a JSON body or a form, an ``api_url`` of only whitespace: each one is refused at once,
by a ``WayGPTError``, ``TypeError`` or ``ConfigurationError``, never a raw ``ValueError`` or
``UnicodeEncodeError`` later on, and never with a secret in the error.
"""

from __future__ import annotations

import pickle
import traceback
from types import ModuleType
from typing import Any

import pytest

from waygpt.testing import WayGPTTestServer

LOGIN = "/api/v1/auth/login/access-token"
LONE_SURROGATE = "caf\udce9"


def shown(error: BaseException) -> str:
    """Everything of an error a log or a traceback could show."""
    return "".join(
        (str(error), repr(error), repr(error.args), repr(vars(error)), repr(pickle.dumps(error)),
         *traceback.format_exception(type(error), error, error.__traceback__))
    )


# -- a login token that cannot go into a header -----------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["eyJ.secret-part\r\nX-Injected: 1", "eyJ.secret-part\nmore", "eyJ.secret-part\x00",
     "eyJ.secret-part\tmore", "eyJ.секрет-part", "   "],
    ids=["crlf", "lf", "nul", "tab", "non-ascii", "blank"],
)
def test_a_login_token_no_header_can_carry_is_refused_at_login(
    sdk: ModuleType, api_client: Any, server: WayGPTTestServer, token: str
) -> None:
    server.script(path=LOGIN, body={"access_token": token, "token_type": "bearer"})

    with pytest.raises(sdk.APIResponseValidationError) as refused:
        api_client.client_login(server.user_email, server.user_password)

    assert "access_token" in str(refused.value)
    if token.strip():
        assert "secret-part" not in shown(refused.value)
    assert api_client.jwt_token is None  # nothing kept to fail later calls
    with pytest.raises(sdk.ConfigurationError):  # "call client_login() first", not ValueError
        api_client.client_list_projects()


def test_a_login_token_with_surrounding_spaces_is_still_accepted(
    api_client: Any, server: WayGPTTestServer
) -> None:
    token = server.issue_token()
    server.script(path=LOGIN, body={"access_token": f" {token} ", "token_type": "bearer"})

    api_client.client_login(server.user_email, server.user_password)

    assert api_client.client_list_projects() is not None
    assert server.last_request.headers["authorization"] == f"Bearer {token}"


# -- a lone surrogate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat_completions(messages=[{"role": "user", "content": LONE_SURROGATE}]),
        lambda c: c.chat_completions(messages=[{"role": "user", "content": "hi"}],
                                     metadata={LONE_SURROGATE: 1}),
        lambda c: c.chat_completions_stream(messages=[{"role": "user", "content": "hi"}],
                                            user=LONE_SURROGATE),
        lambda c: c.image_generations(LONE_SURROGATE),
        lambda c: c.video_generations("a sunset", style=[LONE_SURROGATE]),
        lambda c: c.create_widget_token(site_domain=LONE_SURROGATE),
    ],
    ids=["message", "extra-key", "stream-field", "prompt", "nested", "widget"],
)
def test_a_lone_surrogate_in_a_json_body_is_a_type_error_before_the_network(
    client: Any, server: WayGPTTestServer, call: Any
) -> None:
    with pytest.raises(TypeError, match="lone surrogate") as refused:
        call(client)

    assert not isinstance(refused.value, UnicodeError)
    assert refused.value.__context__ is None
    assert server.requests == []


def test_a_lone_surrogate_in_a_login_password_is_a_type_error_that_hides_it(
    api_client: Any, server: WayGPTTestServer
) -> None:
    password = "hunter2-secret" + LONE_SURROGATE

    with pytest.raises(TypeError, match="lone surrogate") as refused:
        api_client.client_login(server.user_email, password)

    assert "hunter2-secret" not in shown(refused.value)
    assert server.requests == []


def test_a_lone_surrogate_in_an_id_is_a_value_error_before_the_network(
    client: Any, server: WayGPTTestServer
) -> None:
    with pytest.raises(ValueError, match="job_id"):
        client.get_media_job(LONE_SURROGATE)
    assert server.requests == []


# -- an api_url of only whitespace ---------------------------------------------------------------


@pytest.mark.parametrize("blank", [" ", "  \t ", "\u3000"])
def test_an_api_url_of_only_whitespace_is_refused(sdk: ModuleType, blank: str) -> None:
    with pytest.raises(sdk.ConfigurationError, match="api_url"):
        sdk.WayGPTClient(api_url=blank)


def test_a_waygpt_api_url_of_only_whitespace_is_refused(
    sdk: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYGPT_API_URL", "   ")
    with pytest.raises(sdk.ConfigurationError, match="api_url"):
        sdk.WayGPTClient()


def test_an_empty_waygpt_api_url_still_means_the_default(
    sdk: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYGPT_API_URL", "")  # as an env file's `WAYGPT_API_URL=` sets it
    with sdk.WayGPTClient() as client:
        assert client.api_url == "https://app.waygpt.ru"
