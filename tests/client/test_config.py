"""Configuration: WAYGPT_* environment fallbacks, the argument winning, and invalid settings.

The shared ``_clean_waygpt_environment`` fixture has removed any WAYGPT_* variable of the
developer's; each test sets only what it needs with ``monkeypatch``.
"""

from __future__ import annotations

import time

import pytest

SIGNATURE_HEADERS = ("x-mb-timestamp", "x-mb-nonce", "x-mb-signature")


def signed(request) -> bool:
    return all(name in request.headers for name in SIGNATURE_HEADERS)


# -- environment --------------------------------------------------------------------------


def test_env_api_url_and_project_key_are_used(sdk, server, monkeypatch):
    monkeypatch.setenv("WAYGPT_API_URL", server.url)
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", server.project_key)

    with sdk.WayGPTClient(max_retries=0) as client:
        assert "gpt-4o" in client.get_models()

    assert client.api_url == server.url
    assert server.last_request.headers["x-project-key"] == server.project_key


@pytest.mark.parametrize("flag", ["true", "TRUE", "True", "tRuE", "1", "yes", "On", " on "])
def test_env_hmac_settings_sign_requests(sdk, hmac_server, monkeypatch, flag):
    monkeypatch.setenv("WAYGPT_API_URL", hmac_server.url)
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", hmac_server.project_key)
    monkeypatch.setenv("WAYGPT_PROJECT_ID", hmac_server.project_id)
    monkeypatch.setenv("WAYGPT_HMAC_SECRET", hmac_server.hmac_secret)
    monkeypatch.setenv("WAYGPT_USE_HMAC", flag)

    with sdk.WayGPTClient(max_retries=0) as client:
        assert "gpt-4o" in client.get_models()  # the strict server verified the signature

    assert signed(hmac_server.last_request)


@pytest.mark.parametrize("flag", ["false", "FALSE", "0", "no", "off", ""])
def test_env_use_hmac_saying_no_leaves_signing_off(sdk, server, monkeypatch, flag):
    monkeypatch.setenv("WAYGPT_USE_HMAC", flag)

    with sdk.WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        client.get_models()

    assert not signed(server.last_request)


@pytest.mark.parametrize("flag", ["2", "enable", "y", "truee"])
def test_env_use_hmac_neither_yes_nor_no_is_refused_naming_the_variable(sdk, server, monkeypatch,
                                                                          flag):
    monkeypatch.setenv("WAYGPT_USE_HMAC", flag)

    with pytest.raises(sdk.ConfigurationError, match="WAYGPT_USE_HMAC"):
        sdk.WayGPTClient(api_url=server.url, project_key=server.project_key)
    assert server.requests == []


def test_arguments_win_over_the_environment(sdk, server, closed_port, monkeypatch):
    monkeypatch.setenv("WAYGPT_API_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", "sk_live_from_env")
    monkeypatch.setenv("WAYGPT_PROJECT_ID", "env-project")

    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, project_id="arg-project", max_retries=0
    ) as client:
        assert "gpt-4o" in client.get_models()

    assert client.project_id == "arg-project"
    assert server.last_request.headers["x-project-key"] == server.project_key


def test_hmac_arguments_win_over_a_wrong_env_secret(sdk, hmac_server, monkeypatch):
    monkeypatch.setenv("WAYGPT_HMAC_SECRET", "wrong-secret-from-env")
    monkeypatch.setenv("WAYGPT_PROJECT_ID", "11111111-1111-4111-8111-111111111111")

    with sdk.WayGPTClient(
        api_url=hmac_server.url,
        project_key=hmac_server.project_key,
        project_id=hmac_server.project_id,
        hmac_secret=hmac_server.hmac_secret,
        use_hmac=True,
        max_retries=0,
    ) as client:
        assert client.get_models()


def test_default_api_url_is_the_public_server(sdk):
    with sdk.WayGPTClient() as client:
        assert client.api_url == "https://app.waygpt.ru"


@pytest.mark.parametrize("suffix", ["/", "//"])
def test_trailing_slash_is_dropped(sdk, server, suffix):
    with sdk.WayGPTClient(
        api_url=server.url + suffix, project_key=server.project_key, max_retries=0
    ) as client:
        client.get_models()

    assert client.api_url == server.url
    assert server.last_request.path == "/api/v1/waygpt/models"


def test_trailing_slash_in_env_url_is_dropped(sdk, server, monkeypatch):
    monkeypatch.setenv("WAYGPT_API_URL", server.url + "/")

    with sdk.WayGPTClient(project_key=server.project_key) as client:
        client.get_models()

    assert server.last_request.path == "/api/v1/waygpt/models"


# -- invalid settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"use_hmac": True, "hmac_secret": "s"}, "project_id"),
        ({"use_hmac": True, "project_id": "p"}, "hmac_secret"),
        ({"api_url": "app.waygpt.ru"}, "api_url"),
        ({"api_url": "ftp://app.waygpt.ru"}, "api_url"),
        ({"api_url": "https://app.waygpt.ru\r\nX-Evil: 1"}, "api_url"),
        ({"project_key": "sk_live_x\r\nX-Evil: 1"}, "project_key"),
        ({"project_key": "sk_live_x\nX-Evil: 1"}, "project_key"),
        ({"project_id": "p\r\nX: 1", "hmac_secret": "s", "use_hmac": True}, "project_id"),
        ({"project_id": "p", "hmac_secret": "s\nx", "use_hmac": True}, "hmac_secret"),
    ],
)
def test_invalid_setting_raises_value_error_naming_it(sdk, kwargs, setting):
    with pytest.raises(ValueError, match=setting):
        sdk.WayGPTClient(**kwargs)


def test_use_hmac_without_id_or_secret_names_both(sdk):
    with pytest.raises(ValueError) as caught:
        sdk.WayGPTClient(use_hmac=True)
    assert "project_id" in str(caught.value) and "hmac_secret" in str(caught.value)


def test_env_use_hmac_without_secret_is_refused(sdk, monkeypatch):
    monkeypatch.setenv("WAYGPT_USE_HMAC", "true")
    monkeypatch.setenv("WAYGPT_PROJECT_ID", "p")

    with pytest.raises(ValueError, match="hmac_secret"):
        sdk.WayGPTClient()


def test_crlf_in_env_project_key_is_refused(sdk, monkeypatch):
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", "sk_live_x\r\nX-Evil: 1")

    with pytest.raises(ValueError, match="project_key"):
        sdk.WayGPTClient()


def test_configuration_error_is_a_value_error_and_a_waygpt_error(sdk):
    with pytest.raises(sdk.ConfigurationError) as caught:
        sdk.WayGPTClient(api_url="nope")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, sdk.WayGPTError)


# -- project key only where needed --------------------------------------------------------


def test_client_api_works_on_a_client_with_only_api_url(sdk, server):
    with sdk.WayGPTClient(server.url, max_retries=0) as client:
        client.client_login(server.user_email, server.user_password)
        projects = client.client_list_projects()

    assert [p["id"] for p in projects] == [server.project_id]
    assert all("x-project-key" not in r.headers for r in server.requests)


def test_project_key_method_without_key_raises_configuration_error_before_network(
    sdk, api_client, server
):
    with pytest.raises(sdk.ConfigurationError, match="project_key") as caught:
        api_client.get_models()

    assert isinstance(caught.value, ValueError)
    assert server.requests == []


# -- timeout and retries ------------------------------------------------------------------


def test_timeout_pair_is_accepted_and_its_read_part_applies(sdk, server):
    server.script(delay=2.0, body=["late"], path="/api/v1/waygpt/models")

    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, timeout=(3, 0.3), max_retries=0
    ) as client:
        started = time.monotonic()
        with pytest.raises(sdk.APITimeoutError):
            client.get_models()

    assert time.monotonic() - started < 1.5


def test_scalar_timeout_applies(sdk, server):
    server.script(delay=2.0, body=["late"], path="/api/v1/waygpt/models")

    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, timeout=0.3, max_retries=0
    ) as client:
        with pytest.raises(sdk.APITimeoutError):
            client.get_models()


@pytest.mark.parametrize(
    "timeout", [0, -1, "5", (1,), (1, 2, 3), (1, 0), (-1, 5), ("1", 2), True], ids=repr
)
def test_bad_timeout_is_rejected(sdk, timeout):
    with pytest.raises(ValueError, match="timeout"):
        sdk.WayGPTClient(timeout=timeout)


@pytest.mark.parametrize("max_retries", [-1, "3", 2.5, [3]], ids=repr)
def test_bad_max_retries_is_rejected(sdk, max_retries):
    with pytest.raises(ValueError, match="max_retries"):
        sdk.WayGPTClient(max_retries=max_retries)


def test_reference_constructor_signature_and_defaults(sdk):
    import inspect

    params = inspect.signature(sdk.WayGPTClient).parameters
    positional = [
        (name, p.default)
        for name, p in params.items()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    assert positional == [
        ("api_url", None),
        ("project_key", None),
        ("project_id", None),
        ("hmac_secret", None),
        ("use_hmac", False),
        ("timeout", 60),
        ("max_retries", 3),
    ]


@pytest.mark.parametrize("value", ["sk_live_x\n", "sk_live_x\r\n", "\rsk_live_x"])
def test_cr_or_lf_at_either_end_of_a_setting_is_refused_not_trimmed(sdk, value):
    with pytest.raises(ValueError, match="project_key"):
        sdk.WayGPTClient(api_url="http://127.0.0.1:9", project_key=value)


@pytest.mark.parametrize(
    "api_url",
    ["http://:80", "http://example.com:99999", "http://[::1", "http://example.com:port",
     "http://exa mple.com", "http://example.com:0", "http://bad\x00host"],
    ids=["no-host", "port-out-of-range", "unclosed-ipv6", "port-not-a-number",
         "space-in-host", "port-zero", "nul"],
)
def test_a_malformed_api_url_is_refused_when_the_client_is_made(sdk, api_url):
    with pytest.raises(sdk.ConfigurationError, match="api_url"):
        sdk.WayGPTClient(api_url=api_url)


def test_reassigning_api_url_checks_it_too(sdk, server):
    with sdk.WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        with pytest.raises(sdk.ConfigurationError, match="api_url"):
            client.api_url = "http://:80"
        assert client.api_url == server.url
        assert client.get_models()


@pytest.mark.parametrize(
    ("path", "base"),
    [("/api/v1/waygpt", ""), ("/api/v1/waygpt/", ""), ("/api/v1/client", ""), ("/api/v1", ""),
     ("/api", ""), ("/API/V1/WayGPT", ""), ("/api/v1/waygpt/models", ""),
     ("/waygpt-proxy/api/v1/waygpt", "/waygpt-proxy")],
)
def test_an_api_url_holding_the_api_path_is_refused_naming_the_base_url(
    sdk, server, monkeypatch, path, base
):
    with pytest.raises(sdk.ConfigurationError) as caught:
        sdk.WayGPTClient(api_url=server.url + path, project_key=server.project_key)
    message = str(caught.value)
    assert "api_url should be the server's base URL" in message
    assert "without /api/v1/waygpt" in message
    assert f"perhaps {server.url + base!r}" in message
    monkeypatch.setenv("WAYGPT_API_URL", server.url + path)  # the same from the environment
    with pytest.raises(sdk.ConfigurationError, match="base URL"):
        sdk.WayGPTClient(project_key=server.project_key)
    assert server.requests == []


@pytest.mark.parametrize("prefix", ["/waygpt-proxy", "/gateway/api-v1", "/api/v2", "/apis"])
def test_a_reverse_proxy_prefix_is_kept_before_every_path(sdk, server, prefix):
    with sdk.WayGPTClient(
        api_url=server.url + prefix, project_key=server.project_key, max_retries=0
    ) as client:
        assert client.api_url == server.url + prefix
        with pytest.raises(sdk.NotFoundError):  # the test server itself has no prefix
            client.get_models()
    assert server.last_request.path == prefix + "/api/v1/waygpt/models"
