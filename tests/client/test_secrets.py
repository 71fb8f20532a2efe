"""Secrets (project key, HMAC secret, JWT, password) stay out of repr, errors and logs."""

from __future__ import annotations

import json
import logging
import pickle
import re
import threading
import time
from typing import Any, List
from urllib.parse import quote, quote_plus

import pytest

from waygpt.errors import ERROR_BODY_LIMIT
from waygpt.testing import WayGPTTestServer, sse_event

MODELS = "/api/v1/waygpt/models"
LOGIN = "/api/v1/auth/login/access-token"
MESSAGES = [{"role": "user", "content": "x"}]

# What a 401 to a project-key request adds to the server's message.
KEY_HINT = " (check WAYGPT_PROJECT_KEY or the project_key argument)"


def secrets_of(server: WayGPTTestServer, *more: str) -> List[str]:
    return [server.project_key, server.hmac_secret, server.user_password, *more]


def assert_clean(text: str, secrets: List[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"secret {secret[:6]}... leaked into {text[:200]!r}"


def error_texts(error: BaseException) -> List[str]:
    return [str(error), repr(error), str(error.args), getattr(error, "message", "")]


def test_repr_of_a_client_hides_key_secret_and_jwt(make_signed_client, server):
    with make_signed_client(server) as client:
        login = client.client_login(server.user_email, server.user_password)

        for text in (repr(client), str(client)):
            assert_clean(text, secrets_of(server, login["access_token"]))


def test_error_echoing_the_project_key_hides_it(sdk, no_retry_client, server):
    server.script(
        status=401,
        body={"detail": f"Invalid project key {server.project_key}"},
        path=MODELS,
    )

    with pytest.raises(sdk.AuthenticationError) as caught:
        no_retry_client.get_models()

    for text in [*error_texts(caught.value), caught.value.body]:
        assert_clean(text, [server.project_key])


def test_error_echoing_the_hmac_secret_hides_it(sdk, hmac_client, hmac_server):
    hmac_server.script(
        status=403, body=f"signature computed with {hmac_server.hmac_secret} failed", path=MODELS
    )

    with pytest.raises(sdk.PermissionDeniedError) as caught:
        hmac_client.get_models()

    for text in [*error_texts(caught.value), caught.value.body]:
        assert_clean(text, [hmac_server.hmac_secret])


def test_error_echoing_the_jwt_hides_it(sdk, client, server, token):
    server.script(status=400, body={"message": f"bad token {token}"}, path="/api/v1/client/*")

    with pytest.raises(sdk.BadRequestError) as caught:
        client.client_list_projects(token)

    for text in [*error_texts(caught.value), caught.value.body]:
        assert_clean(text, [token])


def test_each_calls_own_jwt_is_hidden_when_the_calls_change_tokens(sdk, client, server):
    first, second = server.issue_token(), server.issue_token()
    assert first != second
    for token in (first, second, first):
        server.script(status=400, body={"message": f"bad token {token}"}, path="/api/v1/client/*")

        with pytest.raises(sdk.BadRequestError) as caught:
            client.client_list_projects(token)

        for text in [*error_texts(caught.value), caught.value.body]:
            assert_clean(text, [token])


def test_error_echoing_the_remembered_jwt_hides_it(sdk, api_client, server):
    login = api_client.client_login(server.user_email, server.user_password)
    server.script(status=404, body={"detail": f"nothing for {login['token']}"})

    with pytest.raises(sdk.NotFoundError) as caught:
        api_client.client_list_projects()

    for text in error_texts(caught.value):
        assert_clean(text, [login["token"]])


def test_login_error_echoing_the_password_hides_it(sdk, api_client, server):
    password = "correct-horse-battery-staple"
    server.script(
        status=400,
        body={"detail": f"Incorrect password {password} for {server.user_email}"},
        path="/api/v1/auth/login/access-token",
    )

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, password)

    for text in [*error_texts(caught.value), caught.value.body]:
        assert_clean(text, [password])


def test_logs_at_debug_hold_no_secret(sdk, make_signed_client, server, caplog, make_retry):
    caplog.set_level(logging.DEBUG)
    with make_signed_client(server, max_retries=make_retry()) as client:
        server.script(status=503, headers={"Retry-After": "0"}, path=MODELS)
        client.get_models()
        login = client.client_login(server.user_email, server.user_password)
        client.client_list_projects()
        server.script(status=401, body={"detail": f"key {server.project_key}"}, path=MODELS)
        with pytest.raises(sdk.AuthenticationError):
            client.get_models()

    ours = [r for r in caplog.records if r.name == "waygpt" or r.name.startswith("waygpt.")]
    assert ours, "the client logged nothing at DEBUG: this test would prove nothing"
    for record in caplog.records:
        assert_clean(record.getMessage(), secrets_of(server, login["token"]))


def test_connection_error_message_holds_no_secret(sdk, closed_port):
    key = "sk_live_secret_key_for_connection_test"
    with sdk.WayGPTClient(
        api_url=f"http://127.0.0.1:{closed_port}", project_key=key, max_retries=0
    ) as client:
        with pytest.raises(sdk.APIConnectionError) as caught:
            client.get_models()

    for text in error_texts(caught.value):
        assert_clean(text, [key])


def test_configuration_error_does_not_echo_the_secret(sdk):
    secret = "super-secret-hmac-value\nX: 1"

    with pytest.raises(ValueError) as caught:
        sdk.WayGPTClient(project_id="p", hmac_secret=secret, use_hmac=True)

    assert_clean(str(caught.value), ["super-secret-hmac-value"])


def test_invalid_json_success_answer_echoing_the_key_hides_it(sdk, no_retry_client, server):
    server.script(status=200, body=f"<html>debug: x-project-key={server.project_key}</html>")

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        no_retry_client.get_models()

    for text in [*error_texts(caught.value), caught.value.body or ""]:
        assert_clean(text, [server.project_key])


def test_invalid_json_login_answer_echoing_the_password_hides_it(sdk, api_client, server):
    server.script(
        status=200,
        body=f"username={server.user_email}&password={server.user_password}",
        path="/api/v1/auth/login/access-token",
    )

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        api_client.client_login(server.user_email, server.user_password)

    for text in [*error_texts(caught.value), caught.value.body or ""]:
        assert_clean(text, [server.user_password])


def test_error_event_in_a_stream_echoing_the_key_hides_it(sdk, no_retry_client, server):
    echo = {"error": {"message": f"bad key {server.project_key}", "code": 401}}
    server.script(chunks=[sse_event(echo)], content_type="text/event-stream")

    with pytest.raises(sdk.WayGPTError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    for text in error_texts(caught.value):
        assert_clean(text, [server.project_key])



def test_a_partial_answer_echoing_the_key_is_hidden_in_the_error(sdk, no_retry_client, server):
    echoed = {"choices": [{"index": 0, "delta": {"content": f"your key: {server.project_key}"}}]}
    server.script(chunks=[sse_event(echoed)], content_type="text/event-stream", cut="reset")
    handed_out = []

    with pytest.raises(sdk.StreamInterruptedError) as caught:
        for chunk in no_retry_client.chat_completions_stream(messages=MESSAGES):
            handed_out.append(chunk)

    assert server.project_key in str(handed_out)  # the caller saw the answer as it came
    assert caught.value.partial.text == "your key: [REDACTED]"
    assert server.project_key.encode() not in pickle.dumps(caught.value)

def test_a_partial_tool_call_echoing_the_key_is_hidden_in_the_error(
    sdk, no_retry_client, server
):
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "login", "arguments": f'{{"key": "{server.project_key}"}}'}}
    echoed = {"choices": [{"index": 0, "delta": {"content": "a", "tool_calls": [call]}}]}
    server.script(chunks=[sse_event(echoed)], content_type="text/event-stream", cut="reset")

    with pytest.raises(sdk.StreamInterruptedError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    arguments = caught.value.partial.tool_calls[0]["function"]["arguments"]
    assert arguments == '{"key": "[REDACTED]"}'
    assert server.project_key.encode() not in pickle.dumps(caught.value)


def test_bad_stream_data_echoing_the_key_hides_it(sdk, no_retry_client, server):
    line = f"data: not json {server.project_key}\n\n".encode()
    server.script(chunks=[line], content_type="text/event-stream")

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        list(no_retry_client.chat_completions(messages=MESSAGES, stream=True))

    for text in error_texts(caught.value):
        assert_clean(text, [server.project_key])


# -- nothing reachable from an error holds a secret ------------------------------------------


def reachable(error: BaseException) -> List[Any]:
    """Every value reachable from ``error``: attributes, nested containers, chained errors."""
    found: List[Any] = []
    pending: List[Any] = [error]
    seen: set = set()
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        found.append(value)
        if isinstance(value, BaseException):
            pending += [value.__cause__, value.__context__, *value.args, *vars(value).values()]
        elif isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, (list, tuple, set)):
            pending += list(value)
        elif hasattr(value, "items") and not isinstance(value, (str, bytes)):
            pending += [item for pair in value.items() for item in pair]
    return found


def assert_nothing_reachable(error: BaseException, secrets: List[str]) -> None:
    texts = [str(error), repr(error)]
    for value in reachable(error):
        texts.append(value if isinstance(value, str) else repr(value))
    for text in texts:
        assert_clean(text, secrets)
    dumped = pickle.dumps(error)
    for secret in secrets:
        assert secret.encode() not in dumped, f"secret {secret[:6]}... is in the pickle"


def test_an_error_body_echoing_every_secret_in_nested_json_and_headers_hides_them(
    sdk, make_signed_client, server
):
    with make_signed_client(server, max_retries=0) as client:
        login = client.client_login(server.user_email, server.user_password)
        # (The password was sent with the login only; a later call has nothing to echo.)
        secrets = [server.project_key, server.hmac_secret, login["token"]]
        echo = {
            "detail": "denied",
            "echo": {"key": server.project_key, "nested": [{"jwt": login["token"]}]},
            server.hmac_secret: [server.project_key],
        }
        server.script(
            status=403,
            body=echo,
            headers={"X-Echo-Key": server.project_key, "X-Echo-Jwt": login["token"]},
            path="/api/v1/client/projects",
        )

        with pytest.raises(sdk.PermissionDeniedError) as caught:
            client.client_list_projects()

    assert caught.value.response["detail"] == "denied"  # the rest of the answer is kept
    assert_nothing_reachable(caught.value, secrets)


def test_a_success_body_of_the_wrong_shape_echoing_the_key_hides_it(sdk, no_retry_client, server):
    server.script(status=200, body={"key": server.project_key}, path=MODELS)

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        no_retry_client.get_models()  # a list is expected

    assert_nothing_reachable(caught.value, [server.project_key])


def test_an_in_stream_error_echoing_the_key_in_its_payload_hides_it(sdk, no_retry_client, server):
    request = {"x-project-key": server.project_key}
    echo = {"error": {"message": "no", "code": 429, "request": request}}
    server.script(chunks=[sse_event(echo)], content_type="text/event-stream")

    with pytest.raises(sdk.RateLimitError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert_nothing_reachable(caught.value, [server.project_key])


def test_a_json_escaped_secret_in_an_error_body_is_hidden(sdk, api_client, server):
    password = 'pa"ss\\wörd-2026'
    server.add_user("quote@example.com", password)
    server.script(
        status=400,
        body={"detail": f"bad password {password}"},
        path="/api/v1/auth/login/access-token",
    )

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login("quote@example.com", password)

    assert_nothing_reachable(caught.value, [password, json.dumps(password)[1:-1]])


def test_a_connection_error_has_no_chained_library_exception(sdk, closed_port):
    with sdk.WayGPTClient(
        api_url=f"http://127.0.0.1:{closed_port}", project_key="sk_live_chain", max_retries=0
    ) as client:
        with pytest.raises(sdk.APIConnectionError) as caught:
            client.get_models()

    for value in reachable(caught.value):
        if isinstance(value, BaseException):
            assert isinstance(value, sdk.WayGPTError), repr(value)


def test_credentials_in_api_url_are_refused_without_echoing_them(sdk):
    with pytest.raises(sdk.ConfigurationError) as caught:
        sdk.WayGPTClient(api_url="https://user:hunter2-secret@gw.example.com")

    assert "credentials" in caught.value.message
    assert_nothing_reachable(caught.value, ["hunter2-secret"])


def test_credentials_in_the_env_api_url_are_refused(sdk, monkeypatch):
    monkeypatch.setenv("WAYGPT_API_URL", "https://admin:pw-in-env@gw.example.com")

    with pytest.raises(sdk.ConfigurationError) as caught:
        sdk.WayGPTClient()

    assert "pw-in-env" not in str(caught.value)


# -- a text is cut only after its secrets are replaced ---------------------------------------


def assert_no_prefix(texts: List[str], secret: str) -> None:
    """No text ends with (or holds) the start of ``secret``: what a cut through it leaves."""
    for text in texts:
        assert secret[:5] not in text, f"the start of {secret[:5]}... is in {text[-80:]!r}"


def test_a_key_across_the_message_limit_leaves_no_part_of_itself(sdk, no_retry_client, server):
    detail = "x" * 490 + server.project_key + " was refused"  # the cut at 497 falls inside it
    server.script(status=401, body={"detail": detail}, path=MODELS)

    with pytest.raises(sdk.AuthenticationError) as caught:
        no_retry_client.get_models()

    message = caught.value.message
    assert message.startswith("x" * 490) and message.endswith("..." + KEY_HINT)
    assert_no_prefix(error_texts(caught.value), server.project_key)


def test_a_key_across_the_error_body_limit_leaves_no_part_of_itself(
    sdk, no_retry_client, server
):
    server.script(status=500, body="y" * (ERROR_BODY_LIMIT - 6) + server.project_key + "z" * 100)

    with pytest.raises(sdk.InternalServerError) as caught:
        no_retry_client.get_models()

    assert len(caught.value.body.encode()) <= ERROR_BODY_LIMIT
    assert caught.value.body.startswith("y" * (ERROR_BODY_LIMIT - 6))
    assert_no_prefix([caught.value.body], server.project_key)


def test_a_key_across_the_snippet_of_a_non_json_answer_leaves_no_part_of_itself(
    sdk, no_retry_client, server
):
    server.script(status=200, body="w" * 193 + server.project_key, path=MODELS)

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        no_retry_client.get_models()

    assert "w" * 193 in caught.value.message
    assert_no_prefix(error_texts(caught.value), server.project_key)


def test_a_key_across_the_body_limit_of_a_non_json_answer_leaves_no_part_of_itself(
    sdk, no_retry_client, server
):
    server.script(status=200, body="v" * (ERROR_BODY_LIMIT - 6) + server.project_key, path=MODELS)

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        no_retry_client.get_models()

    assert len(caught.value.body.encode()) <= ERROR_BODY_LIMIT
    assert_no_prefix([caught.value.body], server.project_key)


def test_a_key_across_the_limit_of_an_in_stream_error_leaves_no_part_of_itself(
    sdk, no_retry_client, server
):
    echo = {"error": {"message": "u" * 490 + server.project_key, "code": 500}}
    server.script(chunks=[sse_event(echo)], content_type="text/event-stream")

    with pytest.raises(sdk.InternalServerError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.message.startswith("u" * 490)
    assert_no_prefix(error_texts(caught.value), server.project_key)


def test_a_key_across_the_snippet_of_bad_stream_data_leaves_no_part_of_itself(
    sdk, no_retry_client, server
):
    line = f"data: {'t' * 190}{server.project_key}\n\n".encode()
    server.script(chunks=[line], content_type="text/event-stream")

    with pytest.raises(sdk.APIResponseValidationError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert "t" * 190 in caught.value.message
    assert_no_prefix(error_texts(caught.value), server.project_key)


# -- the forms in which a server echoes a secret ---------------------------------------------

# Secrets with what encoders change: "/", "+", "=", spaces, non-ASCII (two, three and four
# UTF-8 bytes; the last a surrogate pair in JSON). The key and the JWT go in headers, so they
# are ASCII; the JWT's last part is standard base64, as in some opaque tokens.
ECHO_KEY = "sk_live_Zq/9+Xr=Tw_4kP2mN"
ECHO_HMAC = "hmac/секрет+ключ=2026 ok"
ECHO_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln/bmF0+dXJl=="
ECHO_PASSWORD = "pässwörd/+= €uro 🔑 key"
ECHOED = [ECHO_KEY, ECHO_HMAC, ECHO_JWT, ECHO_PASSWORD]


def lower_hex(text: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda found: found.group().lower(), text)


def json_escaped(value: str) -> str:
    return json.dumps(value)[1:-1]


def every_unit_escaped(value: str) -> str:
    """Every UTF-16 code unit as \\uXXXX, as JSON writes it (a pair for "🔑")."""
    units = value.encode("utf-16-be")
    return "".join(f"\\u{units[i] << 8 | units[i + 1]:04X}" for i in range(0, len(units), 2))


def json_list(parts: List[str]) -> str:
    return '{"detail": "denied", "echo": ["' + '", "'.join(parts) + '"]}'


def query(parts: List[str]) -> str:
    return "denied: " + "&".join(f"v{index}={part}" for index, part in enumerate(parts))


# (how one value is written, the answer that holds them all, its Content-Type)
ENCODINGS = {
    # PHP's json_encode: "/" as "\/", non-ASCII as \uXXXX.
    "php-json": (lambda s: json_escaped(s).replace("/", "\\/"), json_list, "application/json"),
    # An encoder that escapes every character, ASCII ones too.
    "json-every-character": (lambda s: every_unit_escaped(s), json_list, "application/json"),
    # Python's json.dumps: non-ASCII as \uxxxx (lowercase hex), "/" as it is.
    "json-ascii": (json_escaped, json_list, "application/json"),
    # A JSON string written as it is: only quotes and backslashes escaped.
    "json-utf8": (lambda s: json.dumps(s, ensure_ascii=False)[1:-1], json_list,
                  "application/json"),
    "percent-uppercase": (lambda s: quote(s, safe=""), query, "text/plain"),
    "percent-lowercase": (lambda s: lower_hex(quote(s, safe="")), query, "text/plain"),
    "form-plus-lowercase": (lambda s: lower_hex(quote_plus(s)), query, "text/plain"),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_secret_echoed_in_an_encoded_form_is_hidden(sdk, server, encoding):
    one, answer, content_type = ENCODINGS[encoding]
    server.script(
        status=400,
        body=answer([one(secret) for secret in ECHOED]),
        content_type=content_type,
        path=LOGIN,
    )
    with sdk.WayGPTClient(
        api_url=server.url,
        project_key=ECHO_KEY,
        project_id=server.project_id,
        hmac_secret=ECHO_HMAC,
        use_hmac=True,
        max_retries=0,
        timeout=5,
    ) as client:
        client.jwt_token = ECHO_JWT
        with pytest.raises(sdk.BadRequestError) as caught:
            client.client_login("someone@example.com", ECHO_PASSWORD)

    assert "denied" in caught.value.body  # the server's own words are kept
    assert_nothing_reachable(caught.value, [*ECHOED, *(one(secret) for secret in ECHOED)])


# -- the server's own words are not taken for secrets ----------------------------------------


def test_a_short_password_inside_a_word_of_the_message_is_left_alone(sdk, api_client, server):
    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, "rre")  # the server's "Incorrect ..."

    assert caught.value.message == "Incorrect email or password"
    assert caught.value.response == {"detail": "Incorrect email or password"}


def test_a_short_key_that_is_a_word_of_the_message_is_left_alone(sdk, server):
    with sdk.WayGPTClient(api_url=server.url, project_key="key", max_retries=0) as client:
        with pytest.raises(sdk.AuthenticationError) as caught:
            client.get_models()

    assert caught.value.message == "Invalid project key" + KEY_HINT
    assert json.loads(caught.value.body) == {"detail": "Invalid project key"}


def test_a_short_password_echoed_as_a_token_is_hidden(sdk, api_client, server):
    echo = {"detail": "Incorrect password rre", "form": "username=u&password=rre"}
    server.script(status=400, body=echo, path=LOGIN)

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, "rre")

    assert caught.value.message == "Incorrect password [REDACTED]"
    assert caught.value.response == {
        "detail": "Incorrect password [REDACTED]",
        "form": "username=u&password=[REDACTED]",
    }


def test_a_password_that_is_a_word_of_the_messages_is_hidden_only_as_a_value(
    sdk, api_client, server
):
    echo = {
        "detail": "Incorrect email or password",  # the word: kept
        "sentence": "the password password is wrong",  # a value in a sentence: taken as a word
        "form": "username=u&password=password",  # after "=": a value
        "quoted": "rejected 'password'",  # quoted: a value
        "value": "password",  # the whole string: a value
    }
    server.script(status=400, body=echo, path=LOGIN)

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, "password")

    assert caught.value.message == "Incorrect email or password"
    assert caught.value.response == {
        "detail": "Incorrect email or password",
        "sentence": "the password password is wrong",
        "form": "username=u&password=[REDACTED]",
        "quoted": "rejected '[REDACTED]'",
        "value": "[REDACTED]",
    }


def test_a_secret_of_11_characters_inside_a_longer_word_is_left_alone(sdk, api_client, server):
    server.script(status=400, body={"detail": "no user xabcdefgh123y"}, path=LOGIN)

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, "abcdefgh123")

    assert caught.value.message == "no user xabcdefgh123y"


def test_a_secret_of_12_characters_is_hidden_even_inside_a_longer_word(sdk, api_client, server):
    server.script(status=400, body={"detail": "no user xabcdefgh1234y"}, path=LOGIN)

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, "abcdefgh1234")

    assert caught.value.message == "no user x[REDACTED]y"


def test_a_secret_under_3_characters_is_not_replaced(sdk, api_client, server):
    server.script(status=400, body={"detail": "Incorrect password ab"}, path=LOGIN)

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, "ab")

    assert caught.value.message == "Incorrect password ab"


# -- the secrets a call sent, whatever the client holds by the time it fails -----------------


def test_a_jwt_replaced_while_a_call_waits_is_hidden_in_that_calls_error(sdk, api_client, server):
    old = api_client.client_login(server.user_email, server.user_password)["token"]
    server.script(
        status=401, body={"detail": f"token {old} has expired"}, delay=1.0,
        path="/api/v1/client/projects",
    )
    caught: List[BaseException] = []

    def list_projects() -> None:
        try:
            api_client.client_list_projects()  # sends the old token
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            caught.append(error)

    waiting = threading.Thread(target=list_projects)
    waiting.start()
    for _ in range(500):  # the request has reached the server, which waits 1 s to answer
        if server.requests and server.requests[-1].path == "/api/v1/client/projects":
            break
        time.sleep(0.01)
    new = api_client.client_login(server.user_email, server.user_password)["token"]
    waiting.join(30)

    assert new != old and api_client.jwt_token == new
    assert len(caught) == 1 and isinstance(caught[0], sdk.AuthenticationError), caught
    assert "has expired" in caught[0].message
    assert_nothing_reachable(caught[0], [old])


def test_an_in_stream_errors_request_id_echoing_the_key_is_hidden(sdk, no_retry_client, server):
    echo = {"error": {"message": "no", "code": 400}}
    server.script(
        chunks=[sse_event(echo)], content_type="text/event-stream",
        headers={"X-Request-ID": f"req-{server.project_key}"},
    )

    with pytest.raises(sdk.BadRequestError) as caught:
        list(no_retry_client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.request_id == "req-[REDACTED]"
    assert_nothing_reachable(caught.value, [server.project_key])


def test_a_short_password_echoed_in_ansi_colour_codes_is_hidden(sdk, api_client, server):
    echo = {"detail": "Incorrect password \x1b[31mhunter2x\x1b[0m", "plain": "xhunter2x"}
    server.script(status=400, body=echo, path=LOGIN)

    with pytest.raises(sdk.BadRequestError) as caught:
        api_client.client_login(server.user_email, "hunter2x")

    assert caught.value.message == "Incorrect password \x1b[31m[REDACTED]\x1b[0m"
    assert caught.value.response["plain"] == "xhunter2x"  # inside a word: still left alone
    assert_nothing_reachable(caught.value, ["\x1b[31mhunter2x", "mhunter2x\x1b"])
