"""The test server enforces a project's policy as PROTOCOL.md's "Project policy" describes.

Inactive projects, allowed models, allowed domains and rate limits; set through the Client API
(as an application's owner would) or the server's options. Driven over real HTTP with plain
requests, and with the SDK where an application would use it.
"""

import hashlib
import hmac
import secrets
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from waygpt import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    WayGPTClient,
)
from waygpt.testing import WayGPTTestServer

TIMEOUT = 5
API = "/api/v1/waygpt"
CHAT = API + "/chat/completions"
IMAGES = API + "/images/generations"
VIDEOS = API + "/videos/generations"
MODELS = API + "/models"
WIDGET = "/api/v1/widget/token"
NOT_FOUND = {"detail": "Модель не найдена"}


class FakeClock:
    """A clock the test moves by hand: rate-limit windows without waiting for them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer() as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def key(server: WayGPTTestServer, **extra: str) -> Dict[str, str]:
    return {"x-project-key": server.project_key, **extra}


def get(server: WayGPTTestServer, path: str, **headers: str) -> requests.Response:
    return requests.get(server.url + path, headers=key(server, **headers), timeout=TIMEOUT)


def post(
    server: WayGPTTestServer, path: str, body: Any, headers: Optional[Dict[str, str]] = None
) -> requests.Response:
    return requests.post(
        server.url + path, json=body, headers=headers or key(server), timeout=TIMEOUT
    )


def chat(model: str = "auto", **extra: Any) -> Dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "привет"}], **extra}


def update_project(
    server: WayGPTTestServer, project_id: Optional[str] = None, **fields: Any
) -> None:
    """Change a project's settings as its owner does: through the Client API."""
    r = requests.put(
        f"{server.url}/api/v1/client/projects/{project_id or server.project_id}",
        json=fields,
        headers={"Authorization": "Bearer " + server.issue_token()},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text


def create_project(server: WayGPTTestServer) -> Dict[str, Any]:
    r = requests.post(
        server.url + "/api/v1/client/projects",
        json={"name": "Second shop"},
        headers={"Authorization": "Bearer " + server.issue_token()},
        timeout=TIMEOUT,
    )
    project: Dict[str, Any] = r.json()
    return project


def signed_headers(
    server: WayGPTTestServer, method: str, target: str, secret: str
) -> Dict[str, str]:
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    canonical = "\n".join(
        [
            method,
            target,
            "sha256(body)=" + hashlib.sha256(b"").hexdigest(),
            "timestamp=" + timestamp,
            "nonce=" + nonce,
            "project=" + server.project_id,
        ]
    )
    signature = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return key(
        server, **{"X-MB-Timestamp": timestamp, "X-MB-Nonce": nonce, "X-MB-Signature": signature}
    )


def statuses(responses: List[requests.Response]) -> List[int]:
    return [r.status_code for r in responses]


# -- inactive project ------------------------------------------------------------------------


def test_inactive_project_gets_401_on_project_key_calls(server: WayGPTTestServer) -> None:
    update_project(server, is_active=False)

    for response in (
        get(server, MODELS),
        get(server, API + "/use-cases"),
        post(server, CHAT, chat()),
        post(server, WIDGET, {"ttl_seconds": 600}),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "Project is inactive"}
    # The owner still reaches the Client API, and can switch the project back on.
    update_project(server, is_active=True)
    assert get(server, MODELS).status_code == 200


def test_inactive_project_is_an_authentication_error_in_the_sdk(server: WayGPTTestServer) -> None:
    with WayGPTClient(api_url=server.url, project_key=server.project_key, max_retries=0) as client:
        client.client_update_project(server.project_id, server.issue_token(), is_active=False)
        with pytest.raises(AuthenticationError, match="Project is inactive"):
            client.get_models()


# -- models ----------------------------------------------------------------------------------


def test_a_model_outside_allowed_models_is_refused(server: WayGPTTestServer) -> None:
    update_project(server, allowed_models=["gpt-4o-mini", "kandinsky-3", "kling-1.6"])

    for path, body in (
        (CHAT, chat("gpt-4o")),
        (IMAGES, {"prompt": "кот", "model": "dall-e-3"}),
        (VIDEOS, {"prompt": "кот", "model": "gpt-4o"}),
    ):
        refused = post(server, path, body)
        assert refused.status_code == 404, path
        assert refused.json() == NOT_FOUND
    assert post(server, CHAT, chat("gpt-4o-mini")).json()["model"] == "gpt-4o-mini"
    assert post(server, IMAGES, {"prompt": "кот", "model": "kandinsky-3"}).status_code == 200
    assert post(server, VIDEOS, {"prompt": "кот", "model": "kling-1.6"}).status_code == 200


def test_a_model_that_does_not_exist_is_refused_the_same_way(server: WayGPTTestServer) -> None:
    for path, body in (
        (CHAT, chat("gpt-17-ultra")),
        (IMAGES, {"prompt": "кот", "model": "no-such-painter"}),
        (VIDEOS, {"prompt": "кот", "model": "Kling-1.6"}),  # ids are case-sensitive
    ):
        refused = post(server, path, body)
        assert refused.status_code == 404, path
        assert refused.json() == NOT_FOUND
    assert server.jobs == {}


def test_a_disallowed_model_is_a_not_found_error_in_the_sdk(server: WayGPTTestServer) -> None:
    with WayGPTClient(api_url=server.url, project_key=server.project_key, max_retries=0) as client:
        client.client_update_project(
            server.project_id, server.issue_token(), allowed_models=["gpt-4o"]
        )
        with pytest.raises(NotFoundError, match="Модель не найдена"):
            client.chat_completions(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )


def test_auto_picks_among_the_allowed_models(server: WayGPTTestServer) -> None:
    # Without a list, "auto" works as before.
    assert post(server, CHAT, chat()).json()["model"] == "gpt-4o-mini"
    assert post(server, IMAGES, {"prompt": "кот"}).json()["model"] == "dall-e-3"

    update_project(server, allowed_models=["claude-3-5-sonnet", "kandinsky-3"])
    assert post(server, CHAT, chat()).json()["model"] == "claude-3-5-sonnet"
    assert post(server, CHAT, chat(stream=True)).status_code == 200
    assert post(server, IMAGES, {"prompt": "кот", "model": "auto"}).json()["model"] == "kandinsky-3"
    assert post(server, IMAGES, {"prompt": "кот"}).json()["model"] == "kandinsky-3"
    # No allowed video model: nothing for "auto" to choose.
    assert post(server, VIDEOS, {"prompt": "кот"}).json() == NOT_FOUND


def test_auto_with_a_use_case_takes_the_use_case_models(server: WayGPTTestServer) -> None:
    # The owner's own use-case configuration is used as it is (docs/testing.md).
    update_project(server, allowed_models=["gpt-4o"])
    answer = post(server, CHAT, chat(use_case="support")).json()
    assert answer["model"] == "yandexgpt-pro"


def test_models_list_only_the_allowed_models(server: WayGPTTestServer) -> None:
    every = get(server, MODELS).json()
    assert len(every) == 11
    update_project(server, allowed_models=["kling-1.6", "gpt-4o", "not-in-the-catalogue"])

    assert get(server, MODELS).json() == ["gpt-4o", "kling-1.6"]  # catalogue order
    full = get(server, MODELS + "/full").json()
    assert [m["id"] for m in full] == ["gpt-4o", "kling-1.6"]
    assert full[0]["provider"] == "openai"
    update_project(server, allowed_models=[])
    assert get(server, MODELS).json() == every


PLUGIN_README_MODELS = {"yandex-art": "image", "kling-v1": "video", "gemini-2.0-flash-exp": "chat"}


def test_the_catalogue_holds_the_models_of_the_plugin_readme(server: WayGPTTestServer) -> None:
    assert set(PLUGIN_README_MODELS) <= set(get(server, MODELS).json())
    full = {m["id"]: m for m in get(server, MODELS + "/full").json()}
    for model, kind in PLUGIN_README_MODELS.items():
        assert full[model]["type"] == kind, model
        assert full[model]["name"] and full[model]["provider"], model


def test_the_plugin_readme_models_generate(server: WayGPTTestServer) -> None:
    image = post(server, IMAGES, {"prompt": "кот в космосе", "model": "yandex-art"})
    assert image.status_code == 200, image.text
    assert image.json()["model"] == "yandex-art"
    video = post(server, VIDEOS, {"prompt": "волны", "model": "kling-v1", "duration": 5})
    assert video.status_code == 200, video.text
    assert server.jobs[video.json()["job_id"]]["model"] == "kling-v1"
    picture = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    content = [{"type": "text", "text": "Что на картинке?"}, picture]
    messages = [{"role": "user", "content": content}]
    multimodal = {"model": "gemini-2.0-flash-exp", "messages": messages}
    answer = post(server, CHAT, multimodal)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "gemini-2.0-flash-exp"
    assert answer.json()["choices"][0]["message"]["content"] == "Echo: Что на картинке?"
    # What "auto" prefers is unchanged by the additions.
    assert post(server, CHAT, chat()).json()["model"] == "gpt-4o-mini"
    assert post(server, IMAGES, {"prompt": "кот"}).json()["model"] == "dall-e-3"
    video_job = post(server, VIDEOS, {"prompt": "кот"}).json()["job_id"]
    assert server.jobs[video_job]["model"] == "kling-1.6"


def test_allowed_models_applies_to_the_plugin_readme_models(server: WayGPTTestServer) -> None:
    update_project(server, allowed_models=["gpt-4o", "dall-e-3", "kling-1.6"])
    for path, body in (
        (IMAGES, {"prompt": "кот", "model": "yandex-art"}),
        (VIDEOS, {"prompt": "кот", "model": "kling-v1"}),
        (CHAT, chat("gemini-2.0-flash-exp")),
    ):
        refused = post(server, path, body)
        assert (refused.status_code, refused.json()) == (404, NOT_FOUND), path
    assert not set(PLUGIN_README_MODELS) & set(get(server, MODELS).json())

    update_project(server, allowed_models=["yandex-art", "kling-v1", "gemini-2.0-flash-exp"])
    assert get(server, MODELS).json() == ["gemini-2.0-flash-exp", "yandex-art", "kling-v1"]
    assert post(server, IMAGES, {"prompt": "кот"}).json()["model"] == "yandex-art"  # "auto"
    assert post(server, CHAT, chat()).json()["model"] == "gemini-2.0-flash-exp"


def test_server_options_set_the_default_project_policy() -> None:
    with WayGPTTestServer(allowed_models=["gpt-4o"], allowed_domains=["shop.example"]) as srv:
        assert get(srv, MODELS).json() == ["gpt-4o"]
        assert get(srv, MODELS, Origin="https://evil.example").status_code == 403
        settings = requests.get(
            f"{srv.url}/api/v1/client/projects/{srv.project_id}/settings",
            headers={"Authorization": "Bearer " + srv.issue_token()},
            timeout=TIMEOUT,
        ).json()
        assert settings["allowed_models"] == ["gpt-4o"]
        assert settings["allowed_domains"] == ["shop.example"]
        assert (settings["rate_limit_rpm"], settings["rate_limit_rpd"]) == (0, 0)
    with pytest.raises(ValueError):
        WayGPTTestServer(rate_limit_rpm=-1)
    with pytest.raises(TypeError):
        WayGPTTestServer(allowed_models="gpt-4o")  # type: ignore[arg-type]


# -- domains ---------------------------------------------------------------------------------


def test_a_widget_token_for_another_site_domain_is_403(server: WayGPTTestServer) -> None:
    update_project(server, allowed_domains=["shop.example.com", "https://Partner.example:8443"])

    refused = post(server, WIDGET, {"ttl_seconds": 600, "site_domain": "evil.example"})
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Domain 'evil.example' is not allowed for this project"}
    # A subdomain or the parent domain is another host: each host is listed on its own.
    for other in ("www.shop.example.com", "example.com"):
        assert post(server, WIDGET, {"site_domain": other}).status_code == 403, other
    # Case, scheme, port and path do not matter.
    for same in ("SHOP.example.com", "https://shop.example.com:8080/cart", "partner.example"):
        ok = post(server, WIDGET, {"site_domain": same})
        assert ok.status_code == 200, same
        assert ok.json()["site_domain"] == same
    assert post(server, WIDGET, {"ttl_seconds": 600}).status_code == 200  # no domain named


def test_a_request_from_a_foreign_origin_or_referer_is_403(server: WayGPTTestServer) -> None:
    update_project(server, allowed_domains=["shop.example.com"])

    refused = get(server, MODELS, Origin="https://evil.example")
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Domain 'evil.example' is not allowed for this project"}
    assert get(server, MODELS, Referer="https://evil.example/page").status_code == 403
    assert get(server, MODELS, Origin="null").status_code == 403  # an opaque origin
    assert post(server, CHAT, chat(), key(server, Origin="http://evil.example")).status_code == 403
    # The page's own domain (any case, any port) and a backend without the headers pass.
    assert get(server, MODELS, Origin="https://SHOP.example.com:8443").status_code == 200
    assert get(server, MODELS, Referer="http://shop.example.com/cart?x=1").status_code == 200
    assert get(server, MODELS).status_code == 200


# Read as a browser reads them (WHATWG URL parsing): what each names, and the host refused.
FOREIGN_ORIGINS = [
    ("https://evil.com\\@shop.example.com", "evil.com"),  # a backslash ends the host
    ("https://evil.com\\shop.example.com", "evil.com"),
    ("https:\\\\evil.com", "evil.com"),
    ("https:evil.com", "evil.com"),
    ("https://shop.example.com@evil.com", "evil.com"),  # the host follows the last "@"
    ("https://shop.example.com:pw@evil.com", "evil.com"),
    ("http://user@shop.example.com:80@evil.com", "evil.com"),
    ("https://shop.example.com.evil.com", "shop.example.com.evil.com"),
    ("https://www.shop.example.com", "www.shop.example.com"),
    ("https://EVIL.com", "evil.com"),
    ("wss://evil.com", "evil.com"),
    ("https://shop.example.com:99999", None),  # not a URL: no port that big
    ("https://shop.example.com:443evil.com", None),
    ("https://shop.example.com:evil.com", None),
    ("null", None),  # an opaque origin: a sandboxed page, a file:// page
    ("file:///home/shop.example.com/index.html", None),
    ("chrome-extension://shop.example.com", None),  # a non-special scheme: opaque too
    ("shop.example.com", None),  # a browser never sends a scheme-less value
    ("https://", None),
]
SAME_ORIGINS = [
    "https://shop.example.com",
    "https://SHOP.Example.COM",
    "HTTPS://shop.example.com",
    "https://shop.example.com.",
    "https://shop.example.com:8443",
    "http://shop.example.com:80/cart?x=1#top",
    "https://evil.com@shop.example.com",  # userinfo is not the host
    "https://shop.example.com#@evil.com",  # nor is a fragment
    "https://shop.example.com/..\\@evil.com",  # nor a path
    "https://shop%2Eexample.com",  # the host is percent-decoded
    "https://shop.exa\tmple.com",  # tabs inside are dropped
    "https:/\\/shop.example.com",
]


@pytest.mark.parametrize(("origin", "host"), FOREIGN_ORIGINS, ids=[o for o, _ in FOREIGN_ORIGINS])
def test_an_origin_is_read_as_a_browser_reads_it(
    server: WayGPTTestServer, origin: str, host: Optional[str]
) -> None:
    update_project(server, allowed_domains=["shop.example.com"])
    refused = get(server, MODELS, Origin=origin)
    assert refused.status_code == 403, refused.text
    named = origin if host is None else host
    assert refused.json() == {"detail": f"Domain '{named}' is not allowed for this project"}
    assert get(server, MODELS, Referer=origin + "/page").status_code == 403


@pytest.mark.parametrize("origin", SAME_ORIGINS)
def test_the_allowed_host_is_recognised_however_written(
    server: WayGPTTestServer, origin: str
) -> None:
    update_project(server, allowed_domains=["shop.example.com"])
    assert get(server, MODELS, Origin=origin).status_code == 200
    assert get(server, MODELS, Referer=origin).status_code == 200


def test_an_allowed_domain_entry_is_read_the_same_way(server: WayGPTTestServer) -> None:
    # An entry may be a bare domain (with a port) or a URL; it names one host either way.
    update_project(
        server, allowed_domains=["Shop.Example.com.:8443", "https://partner.example/shop"]
    )
    for origin in ("https://shop.example.com", "https://PARTNER.example:444"):
        assert get(server, MODELS, Origin=origin).status_code == 200, origin
    assert get(server, MODELS, Origin="https://example.com").status_code == 403


def test_a_site_domain_is_read_as_a_browser_reads_it(server: WayGPTTestServer) -> None:
    update_project(server, allowed_domains=["shop.example.com"])
    for foreign in ("evil.com\\@shop.example.com", "https://evil.com\\@shop.example.com",
                    "shop.example.com@evil.com", "shop.example.com:99999"):
        refused = post(server, WIDGET, {"site_domain": foreign})
        assert refused.status_code == 403, foreign
    for same in ("shop.example.com", "SHOP.example.com.", "shop.example.com:8443",
                 "https://shop.example.com/cart"):
        assert post(server, WIDGET, {"site_domain": same}).status_code == 200, same
    detail = post(server, WIDGET, {"site_domain": "evil.com\\@shop.example.com"}).json()
    assert detail == {"detail": "Domain 'evil.com' is not allowed for this project"}


def test_origin_null_is_accepted_without_allowed_domains(server: WayGPTTestServer) -> None:
    assert get(server, MODELS, Origin="null").status_code == 200
    assert get(server, MODELS, Origin="https://evil.com\\@shop.example.com").status_code == 200


def test_without_allowed_domains_every_origin_is_accepted(server: WayGPTTestServer) -> None:
    assert get(server, MODELS, Origin="https://anywhere.example").status_code == 200
    assert post(server, WIDGET, {"site_domain": "anywhere.example"}).status_code == 200


# -- rate limits -----------------------------------------------------------------------------


def test_rate_limit_rpm_answers_429_with_retry_after(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock) as srv:
        update_project(srv, rate_limit_rpm=2)
        assert statuses([get(srv, MODELS)]) == [200]
        clock.now += 20
        assert statuses([get(srv, MODELS)]) == [200]
        clock.now += 10
        refused = get(srv, MODELS)
        assert refused.status_code == 429
        assert refused.json() == {"detail": "Rate limit exceeded: 2 requests per minute"}
        assert refused.headers["Retry-After"] == "30"  # the first request leaves the window
        clock.now += 0.5
        assert get(srv, MODELS).headers["Retry-After"] == "30"  # 29.5 s, rounded up
        clock.now += 29
        assert get(srv, MODELS).headers["Retry-After"] == "1"  # whole seconds, at least 1
        clock.now += 0.5
        assert statuses([get(srv, MODELS), get(srv, MODELS)]) == [200, 429]
        assert get(srv, MODELS).headers["Retry-After"] == "20"


def test_rate_limit_rpd_answers_429_until_the_day_window_frees(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock, rate_limit_rpd=3) as srv:
        for _ in range(3):
            assert get(srv, MODELS).status_code == 200
            clock.now += 3600
        refused = get(srv, MODELS)
        assert refused.status_code == 429
        assert refused.json() == {"detail": "Rate limit exceeded: 3 requests per day"}
        assert refused.headers["Retry-After"] == str(86400 - 3 * 3600)
        clock.now += 86400 - 3 * 3600
        assert get(srv, MODELS).status_code == 200


def test_the_longer_wait_wins_when_both_limits_are_reached(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock, rate_limit_rpm=1, rate_limit_rpd=1) as srv:
        assert get(srv, MODELS).status_code == 200
        refused = get(srv, MODELS)
        assert refused.headers["Retry-After"] == "86400"
        assert "per day" in refused.json()["detail"]


def test_refused_requests_are_not_counted(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock, rate_limit_rpm=2) as srv:
        assert get(srv, MODELS).status_code == 200
        for _ in range(5):  # refused before the limiter: wrong key, foreign origin
            r = requests.get(srv.url + MODELS, headers={"x-project-key": "sk_x"}, timeout=TIMEOUT)
            assert r.status_code == 401
        update_project(srv, allowed_domains=["shop.example"])
        assert get(srv, MODELS, Origin="https://evil.example").status_code == 403
        assert get(srv, MODELS).status_code == 200
        clock.now += 30
        assert statuses([get(srv, MODELS) for _ in range(5)]) == [429] * 5
        clock.now += 30
        # The two admitted requests have left the window, and the 429s never entered it.
        assert statuses([get(srv, MODELS), get(srv, MODELS)]) == [200, 200]


def test_requests_made_before_a_limit_is_set_count(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock) as srv:
        assert statuses([get(srv, MODELS), get(srv, MODELS)]) == [200, 200]
        clock.now += 10
        update_project(srv, rate_limit_rpm=2)
        refused = get(srv, MODELS)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "50"


def test_rate_limits_count_each_project_on_its_own(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock, rate_limit_rpm=1) as srv:
        other = create_project(srv)
        update_project(srv, other["id"], rate_limit_rpm=1)
        other_key = {"x-project-key": other["api_key"]}
        assert get(srv, MODELS).status_code == 200
        assert get(srv, MODELS).status_code == 429
        r = requests.get(srv.url + MODELS, headers=other_key, timeout=TIMEOUT)
        assert r.status_code == 200
        r = requests.get(srv.url + MODELS, headers=other_key, timeout=TIMEOUT)
        assert r.status_code == 429


def test_retry_after_counts_down_on_the_real_clock() -> None:
    with WayGPTTestServer(rate_limit_rpm=1) as srv:
        assert get(srv, MODELS).status_code == 200
        refused = get(srv, MODELS)
        assert refused.status_code == 429
        # Loose bounds: the machine may be slow, but a minute window cannot free sooner.
        assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_rate_limit_is_a_rate_limit_error_with_retry_after_in_the_sdk(clock: FakeClock) -> None:
    with (
        WayGPTTestServer(rate_limit_clock=clock) as srv,
        WayGPTClient(api_url=srv.url, project_key=srv.project_key, max_retries=0) as client,
    ):
        client.client_update_project(srv.project_id, srv.issue_token(), rate_limit_rpm=1)
        client.get_models()
        with pytest.raises(RateLimitError) as caught:
            client.get_models()
        assert caught.value.retry_after == 60


def test_the_default_project_is_not_throttled(server: WayGPTTestServer) -> None:
    with requests.Session() as session:
        answers = [session.get(server.url + MODELS, headers=key(server)) for _ in range(120)]
    assert set(statuses(answers)) == {200}


def test_a_project_created_through_the_client_api_is_throttled(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock) as srv:
        created = create_project(srv)
        assert (created["rate_limit_rpm"], created["rate_limit_rpd"]) == (60, 10000)
        headers = {"x-project-key": created["api_key"]}
        with requests.Session() as session:
            answers = [session.get(srv.url + MODELS, headers=headers) for _ in range(61)]
        assert statuses(answers) == [200] * 60 + [429]


# -- the order of checks ---------------------------------------------------------------------


def test_inactive_is_checked_before_the_hmac_signature(server: WayGPTTestServer) -> None:
    update_project(server, is_active=False, hmac_required=True)
    r = get(server, MODELS)  # unsigned
    assert (r.status_code, r.json()["detail"]) == (401, "Project is inactive")


def test_hmac_is_checked_before_the_domain(server: WayGPTTestServer) -> None:
    update_project(server, allowed_domains=["shop.example"])
    headers = signed_headers(server, "GET", MODELS, secret="wrong-secret")
    headers["Origin"] = "https://evil.example"
    r = requests.get(server.url + MODELS, headers=headers, timeout=TIMEOUT)
    assert (r.status_code, r.json()["detail"]) == (403, "Invalid HMAC signature")


def test_the_domain_is_checked_before_the_rate_limit(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock, rate_limit_rpm=1) as srv:
        update_project(srv, allowed_domains=["shop.example"])
        assert get(srv, MODELS).status_code == 200
        r = get(srv, MODELS, Origin="https://evil.example")
        assert r.status_code == 403
        assert get(srv, MODELS).status_code == 429


def test_the_rate_limit_is_checked_before_the_body_and_model(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock, rate_limit_rpm=2) as srv:
        assert post(srv, CHAT, {"messages": "not a list"}).status_code == 422  # counted
        assert post(srv, CHAT, chat("no-such-model")).status_code == 404  # counted
        assert post(srv, CHAT, {"messages": "not a list"}).status_code == 429
        assert post(srv, CHAT, chat("no-such-model")).status_code == 429
        assert post(srv, WIDGET, {"site_domain": "x", "ttl_seconds": 1}).status_code == 429


def test_body_validation_comes_before_the_model_check(server: WayGPTTestServer) -> None:
    r = post(server, CHAT, chat("no-such-model", temperature=5))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "temperature"]


def test_scripts_answer_before_domain_and_rate_limit(clock: FakeClock) -> None:
    with WayGPTTestServer(rate_limit_clock=clock, rate_limit_rpm=1) as srv:
        update_project(srv, allowed_domains=["shop.example"], allowed_models=["gpt-4o"])
        srv.script(status=200, body=["scripted"], path=MODELS, times=3)
        assert get(srv, MODELS, Origin="https://evil.example").json() == ["scripted"]
        assert get(srv, MODELS).json() == ["scripted"]
        assert get(srv, MODELS).json() == ["scripted"]
        srv.script(status=200, body={"scripted": True}, path=CHAT)
        assert post(srv, CHAT, chat("gpt-4o-mini")).json() == {"scripted": True}
        # Scripted answers were not counted: the one slot is still free.
        assert statuses([get(srv, MODELS), get(srv, MODELS)]) == [200, 429]


def test_scripts_still_come_after_authentication(server: WayGPTTestServer) -> None:
    update_project(server, is_active=False)
    server.script(status=200, body=["scripted"], path=MODELS)
    assert get(server, MODELS).status_code == 401
    assert len(server.pending_scripts) == 1
