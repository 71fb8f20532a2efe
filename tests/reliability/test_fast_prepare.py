"""The client's own request preparation sends exactly what ``requests.Request.prepare()`` would.

To save CPU per call, the client prepares its base URL once and builds each
``PreparedRequest`` directly instead of going through ``requests.Request(...).prepare()``.
Here a recording session captures what each method hands to ``send`` and compares it, field
by field and header by header (order included), with what requests prepares from the same
method, URL, headers and body, for base URLs of every shape.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import pytest
import requests

import waygpt

JWT = "eyJhbGciOiJIUzI1NiJ9.e30.sig"
MESSAGES = [{"role": "user", "content": "Привет, мир"}]

API_URLS = [
    "http://127.0.0.1:8080",
    "https://app.waygpt.ru",
    "https://app.waygpt.ru/",
    "HTTPS://App.WayGPT.RU:443/Prefix/v2",
    "http://localhost",
    "http://[::1]:9000/api-gw",
    "http://xn--e1afmkfd.xn--p1ai:8000/root",
    "https://gw.example.com/a%20b/c~d",
]

# (name, call, method, target: the path and query the call must reach)
CALLS: List[Tuple[str, Callable[[Any], Any], str, str]] = [
    ("get_models", lambda c: c.get_models(), "GET", "/api/v1/waygpt/models"),
    (
        "get_use_cases",
        lambda c: c.get_use_cases(detailed=True),
        "GET",
        "/api/v1/waygpt/use-cases?detailed=true",
    ),
    (
        "chat",
        lambda c: c.chat_completions(messages=MESSAGES, temperature=0.2, extra="é"),
        "POST",
        "/api/v1/waygpt/chat/completions",
    ),
    (
        "chat_stream",
        lambda c: c.chat_completions(messages=MESSAGES, stream=True),
        "POST",
        "/api/v1/waygpt/chat/completions",
    ),
    (
        "cancel_media_job",
        lambda c: c.cancel_media_job("a b..c?d#e"),  # ("/" is refused: test_path_ids.py)
        "POST",
        "/api/v1/waygpt/media/jobs/a%20b..c%3Fd%23e/cancel",
    ),
    (
        "get_media_job",
        lambda c: c.get_media_job("Проект~1"),
        "GET",
        "/api/v1/waygpt/media/jobs/%D0%9F%D1%80%D0%BE%D0%B5%D0%BA%D1%82~1",
    ),
    (
        "login",
        lambda c: c.client_login("me@example.com", "p&ss=w rd"),
        "POST",
        "/api/v1/auth/login/access-token",
    ),
    (
        "delete_project",
        lambda c: c.client_delete_project("p1", JWT),
        "DELETE",
        "/api/v1/client/projects/p1",
    ),
    (
        "update_project",
        lambda c: c.client_update_project("p1", JWT, name="Новый"),
        "PUT",
        "/api/v1/client/projects/p1",
    ),
    ("widget", lambda c: c.create_widget_token(ttl_seconds=60), "POST", "/api/v1/widget/token"),
]


class _Captured(Exception):
    """Raised by the recording session once it holds the request (nothing is sent)."""


class _RecordingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.sent: List[requests.PreparedRequest] = []

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent.append(request)
        raise _Captured()


def _capture(api_url: str, call: Callable[[Any], Any], use_hmac: bool) -> requests.PreparedRequest:
    session = _RecordingSession()
    client = waygpt.WayGPTClient(
        api_url=api_url,
        project_key="sk_live_prepare",
        project_id="00000000-0000-4000-8000-000000000001",
        hmac_secret="secret",
        use_hmac=use_hmac,
        max_retries=0,
        session=session,
    )
    with pytest.raises(waygpt.APIConnectionError):
        call(client)
    assert len(session.sent) == 1
    return session.sent[0]


def _without_signature(headers: Any) -> List[Tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if not k.lower().startswith("x-mb-")]


@pytest.mark.parametrize("use_hmac", [False, True], ids=["plain", "hmac"])
@pytest.mark.parametrize("name, call, method, target", CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("api_url", API_URLS)
def test_prepared_request_is_what_requests_would_prepare(
    api_url: str, name: str, call: Callable[[Any], Any], method: str, target: str,
    use_hmac: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:
        if "@" not in api_url:  # the fast path must not fall back to requests' preparation

            def refuse(self: Any) -> None:
                raise AssertionError("requests.Request.prepare() was called")

            patch.setattr(requests.Request, "prepare", refuse)
        sent = _capture(api_url, call, use_hmac)

    # What requests prepares from the same inputs: the headers the client chose (without
    # the Content-Length that preparation adds, and the signature added after it).
    given = {k: v for k, v in _without_signature(sent.headers) if k != "Content-Length"}
    base = api_url.rstrip("/")
    reference = requests.Request(method, base + target, headers=given, data=sent.body).prepare()

    assert sent.method == reference.method
    assert sent.url == reference.url
    assert sent.body == reference.body
    if "@" in api_url:  # the Authorization requests derives from the URL moves in the order
        assert dict(_without_signature(sent.headers)) == dict(reference.headers.items())
    else:
        assert _without_signature(sent.headers) == list(reference.headers.items())
    assert sent.path_url == reference.path_url
    if use_hmac and target.startswith(("/api/v1/waygpt/", "/api/v1/widget/")):
        assert {"X-MB-Timestamp", "X-MB-Nonce", "X-MB-Signature"} <= set(sent.headers)


def test_assigning_a_new_api_url_is_honoured() -> None:
    session = _RecordingSession()
    client = waygpt.WayGPTClient(
        api_url="http://127.0.0.1:1", project_key="sk_live_x", max_retries=0, session=session
    )
    with pytest.raises(waygpt.APIConnectionError):
        client.get_models()
    client.api_url = "http://127.0.0.2:2/base"
    with pytest.raises(waygpt.APIConnectionError):
        client.get_models()

    urls: List[Optional[str]] = [r.url for r in session.sent]
    assert urls == [
        "http://127.0.0.1:1/api/v1/waygpt/models",
        "http://127.0.0.2:2/base/api/v1/waygpt/models",
    ]
