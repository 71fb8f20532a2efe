"""Hostile path parameters never reach another endpoint.

Each ``job_id``/``project_id``/``use_case_id`` either travels as exactly one percent-encoded
path segment of the intended endpoint (the server then answers 404), or is refused with a
``ValueError`` before anything is sent.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Callable, Iterator, List, Optional, Tuple
from urllib.parse import unquote

import pytest

from waygpt.testing import WayGPTTestServer

PID = "00000000-0000-4000-8000-000000000001"  # the test server's default project
HOSTILE = [
    "../../client/projects",
    "a/b?x=1",
    "%2e%2e",
    "%2E%2E%2F",
    "..",
    ".",
    "",
    "a#fragment",
    "?detailed=true",
    "x/../../../waygpt/models",
    "id\r\nX-Injected: 1",
    " ",
    "Проект/1",
]
MUST_REFUSE = {"", ".", ".."}

V = "{value}"
# (name, call, the path it must reach: "{value}" marks the one segment the value fills)
CALLS: List[Any] = [
    ("get_media_job", lambda c, t, v: c.get_media_job(v), f"/api/v1/waygpt/media/jobs/{V}"),
    (
        "cancel_media_job",
        lambda c, t, v: c.cancel_media_job(v),
        f"/api/v1/waygpt/media/jobs/{V}/cancel",
    ),
    (
        "client_get_project",
        lambda c, t, v: c.client_get_project(v, t),
        f"/api/v1/client/projects/{V}/settings",
    ),
    (
        "client_update_project",
        lambda c, t, v: c.client_update_project(v, t, name="n"),
        f"/api/v1/client/projects/{V}",
    ),
    (
        "client_delete_project",
        lambda c, t, v: c.client_delete_project(v, t),
        f"/api/v1/client/projects/{V}",
    ),
    (
        "client_list_use_cases",
        lambda c, t, v: c.client_list_use_cases(v, t),
        f"/api/v1/client/projects/{V}/use-cases",
    ),
    (
        "client_create_use_case",
        lambda c, t, v: c.client_create_use_case(v, t, "k", "n"),
        f"/api/v1/client/projects/{V}/use-cases",
    ),
    (
        "client_get_use_case.project_id",
        lambda c, t, v: c.client_get_use_case(v, "support", t),
        f"/api/v1/client/projects/{V}/use-cases",
    ),
    (
        "client_get_use_case.use_case_id",
        lambda c, t, v: c.client_get_use_case(PID, v, t),
        f"/api/v1/client/projects/{PID}/use-cases",
    ),
    (
        "client_update_use_case.project_id",
        lambda c, t, v: c.client_update_use_case(v, "uc-1", t, name="n"),
        f"/api/v1/client/projects/{V}/use-cases/uc-1",
    ),
    (
        "client_update_use_case.use_case_id",
        lambda c, t, v: c.client_update_use_case(PID, v, t, name="n"),
        f"/api/v1/client/projects/{PID}/use-cases/{V}",
    ),
    (
        "client_delete_use_case.project_id",
        lambda c, t, v: c.client_delete_use_case(v, "uc-1", t),
        f"/api/v1/client/projects/{V}/use-cases/uc-1",
    ),
    (
        "client_delete_use_case.use_case_id",
        lambda c, t, v: c.client_delete_use_case(PID, v, t),
        f"/api/v1/client/projects/{PID}/use-cases/{V}",
    ),
]


@pytest.fixture(scope="module")
def shared(sdk: ModuleType) -> Iterator[Tuple[Any, WayGPTTestServer, str]]:
    """One server and client for the whole module: these tests change no state."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("WAYGPT_") and name != "WAYGPT_SDK_FILE":
                patch.delenv(name)
        with WayGPTTestServer() as running, sdk.WayGPTClient(
            api_url=running.url, project_key=running.project_key, max_retries=0, timeout=5
        ) as created:
            yield created, running, running.issue_token()


@pytest.fixture
def client(shared: Tuple[Any, WayGPTTestServer, str]) -> Any:
    shared[1].clear_requests()
    return shared[0]


@pytest.fixture
def server(shared: Tuple[Any, WayGPTTestServer, str]) -> WayGPTTestServer:
    return shared[1]


@pytest.fixture
def token(shared: Tuple[Any, WayGPTTestServer, str]) -> str:
    return shared[2]


def value_segment(expected: str, raw_path: str) -> Optional[str]:
    """The raw segment the value filled, after checking every other segment is unchanged."""
    want = expected.split("/")
    got = raw_path.split("/")
    assert len(got) == len(want), f"{raw_path!r} is not shaped like {expected!r}"
    found = None
    for expected_part, raw_part in zip(want, got):
        if expected_part == V:
            found = raw_part
        else:
            assert raw_part == expected_part, f"{raw_path!r} is not shaped like {expected!r}"
    return found


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize(
    ("call", "expected"), [pytest.param(call, path, id=name) for name, call, path in CALLS]
)
def test_hostile_path_parameter_stays_in_its_segment_or_is_refused(
    sdk: Any,
    client: Any,
    server: WayGPTTestServer,
    token: str,
    call: Callable[[Any, str, str], Any],
    expected: str,
    value: str,
) -> None:
    try:
        call(client, token, value)
    except ValueError:
        assert server.requests == [], "refused, yet a request was sent"
        return
    except sdk.NotFoundError:
        pass
    else:
        pytest.fail("a hostile id reached an endpoint that answered success")
    assert value not in MUST_REFUSE, f"{value!r} must be refused before the network"

    requests = server.requests
    assert len(requests) == 1
    raw = requests[0].path
    assert "?" not in raw and "#" not in raw and "\r" not in raw and "\n" not in raw
    segment = value_segment(expected, raw)
    if segment is not None:
        # Decoded once it is the value itself: "%2e%2e" cannot arrive as a dot segment.
        assert unquote(segment) == value


@pytest.mark.parametrize("value", sorted(MUST_REFUSE), ids=repr)
def test_empty_and_dot_ids_are_refused_with_value_error_before_the_network(
    client, server, token, value
):
    for call in (
        lambda: client.get_media_job(value),
        lambda: client.cancel_media_job(value),
        lambda: client.client_get_project(value, token),
        lambda: client.client_delete_use_case(PID, value, token),
    ):
        with pytest.raises(ValueError):
            call()
    assert server.requests == []


def test_an_ordinary_id_reaches_its_path_unchanged(client, server, token):
    created = client.client_create_use_case(PID, token, "k1", "n1")
    server.clear_requests()

    client.client_delete_use_case(PID, created["id"], token)

    assert server.requests[0].path == f"/api/v1/client/projects/{PID}/use-cases/{created['id']}"
