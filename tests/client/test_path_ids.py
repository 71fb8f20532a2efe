"""An id in a path reaches its own endpoint and no other, on a server that decodes ``%2F``.

Escaping an id is not enough: Starlette (under FastAPI, which the WayGPT server's error
shapes come from) decodes the path before routing, so ``victim/use-cases/x`` sent as
``victim%2Fuse-cases%2Fx`` would run *another* endpoint. Here a real FastAPI app under
uvicorn on 127.0.0.1 mirrors the Client API and media-job routes and records what reaches
it: a hostile id is refused before the network, a UUID or a short token reaches its route.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

TOKEN = "header.payload.signature"
UUID = uuid.UUID("0b7e6f3c-5a1d-4c36-9f5e-2d8e7a4b1c90")
SHORT = "p7Kq2"
HOSTILE_IDS = [
    "victim-project/use-cases/victim-use-case",
    "victim/use-cases/x",
    "/",
    "a\\b",
    "%2e%2e",
    "x%2Fy",
    "100%",
    "..",
    ".",
    "",
    "   ",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x7fb",
    "a\x85b",  # NEL, a C1 control character (category Cc)
    "caf\udce9",  # a lone surrogate: no UTF-8, so no URL
]

Seen = List[Tuple[Any, ...]]


def build_app(seen: Seen) -> Any:
    """The routes the SDK's id-taking methods use; each records that it ran, with its ids."""
    app = fastapi.FastAPI()
    client_api, media = "/api/v1/client/projects", "/api/v1/waygpt/media/jobs"

    @app.middleware("http")
    async def record_every_request(request: Any, call_next: Any) -> Any:
        seen.append(("request", request.method, request.scope.get("raw_path", b"").decode()))
        return await call_next(request)

    def ran(route: str, **ids: str) -> Dict[str, Any]:
        seen.append(("route", route, ids))
        return {"id": ids.get("use_case_id") or ids.get("project_id") or ids.get("job_id")}

    @app.get(client_api + "/{project_id}/settings")
    def get_project(project_id: str) -> Any:
        return ran("get_project", project_id=project_id)

    @app.put(client_api + "/{project_id}")
    def update_project(project_id: str) -> Any:
        return ran("update_project", project_id=project_id)

    @app.delete(client_api + "/{project_id}")
    def delete_project(project_id: str) -> Any:
        return ran("delete_project", project_id=project_id)

    @app.get(client_api + "/{project_id}/use-cases")
    def list_use_cases(project_id: str) -> Any:
        ran("list_use_cases", project_id=project_id)
        return [{"id": str(UUID), "key": "support"}, {"id": SHORT, "key": "sales"}]

    @app.post(client_api + "/{project_id}/use-cases")
    def create_use_case(project_id: str) -> Any:
        return ran("create_use_case", project_id=project_id)

    @app.put(client_api + "/{project_id}/use-cases/{use_case_id}")
    def update_use_case(project_id: str, use_case_id: str) -> Any:
        return ran("update_use_case", project_id=project_id, use_case_id=use_case_id)

    @app.delete(client_api + "/{project_id}/use-cases/{use_case_id}")
    def delete_use_case(project_id: str, use_case_id: str) -> Any:
        return ran("delete_use_case", project_id=project_id, use_case_id=use_case_id)

    @app.get(media + "/{job_id}")
    def get_media_job(job_id: str) -> Any:
        ran("get_media_job", job_id=job_id)
        return {"job_id": job_id, "status": "completed"}

    @app.post(media + "/{job_id}/cancel")
    def cancel_media_job(job_id: str) -> Any:
        return ran("cancel_media_job", job_id=job_id)

    return app


@pytest.fixture(scope="module")
def router() -> Iterator[SimpleNamespace]:
    """The FastAPI app under uvicorn, on 127.0.0.1 and a free port, quiet, in a thread."""
    seen: Seen = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        build_app(seen), log_level="critical", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, daemon=True, name="uvicorn"
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", seen=seen)
    finally:
        server.should_exit = True
        thread.join(20)
        listener.close()


@pytest.fixture
def app_client(sdk: ModuleType, router: SimpleNamespace) -> Iterator[Any]:
    router.seen.clear()
    with sdk.WayGPTClient(
        api_url=router.url, project_key="sk_test_ids", max_retries=0, timeout=10
    ) as created:
        yield created


# Every method that takes an id: (method, the id parameters it takes, a call with those ids,
# the route it must reach). Ids not under test are a valid short token.
Call = Callable[[Any, Dict[str, Any]], Any]
METHODS: Dict[str, Tuple[Tuple[str, ...], Call, str]] = {
    "client_get_project": (
        ("project_id",), lambda c, i: c.client_get_project(i["project_id"], TOKEN),
        "get_project"),
    "client_update_project": (
        ("project_id",), lambda c, i: c.client_update_project(i["project_id"], TOKEN, name="n"),
        "update_project"),
    "client_delete_project": (
        ("project_id",), lambda c, i: c.client_delete_project(i["project_id"], TOKEN),
        "delete_project"),
    "client_list_use_cases": (
        ("project_id",), lambda c, i: c.client_list_use_cases(i["project_id"], TOKEN),
        "list_use_cases"),
    "client_create_use_case": (
        ("project_id",),
        lambda c, i: c.client_create_use_case(i["project_id"], TOKEN, key="k", name="n"),
        "create_use_case"),
    "client_get_use_case": (
        ("project_id", "use_case_id"),
        lambda c, i: c.client_get_use_case(i["project_id"], i["use_case_id"], TOKEN),
        "list_use_cases"),
    "client_update_use_case": (
        ("project_id", "use_case_id"),
        lambda c, i: c.client_update_use_case(i["project_id"], i["use_case_id"], TOKEN, name="n"),
        "update_use_case"),
    "client_delete_use_case": (
        ("project_id", "use_case_id"),
        lambda c, i: c.client_delete_use_case(i["project_id"], i["use_case_id"], TOKEN),
        "delete_use_case"),
    "get_media_job": (("job_id",), lambda c, i: c.get_media_job(i["job_id"]), "get_media_job"),
    "cancel_media_job": (
        ("job_id",), lambda c, i: c.cancel_media_job(i["job_id"]), "cancel_media_job"),
    "wait_for_media_job": (
        ("job_id",), lambda c, i: c.wait_for_media_job(i["job_id"], poll_interval=0.01),
        "get_media_job"),
}
CASES = [(method, parameter) for method, (names, _, _) in METHODS.items() for parameter in names]


@pytest.mark.parametrize(("method", "parameter"), CASES)
def test_a_hostile_id_is_refused_before_the_network(app_client, router, method, parameter):
    names, call, _ = METHODS[method]
    for hostile in HOSTILE_IDS:
        ids = dict.fromkeys(names, SHORT)
        ids[parameter] = hostile
        with pytest.raises(ValueError) as refused:
            call(app_client, ids)
        assert parameter in str(refused.value), (hostile, str(refused.value))
        assert router.seen == [], f"{method}({parameter}={hostile!r}) reached {router.seen}"


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("good", [UUID, SHORT], ids=["uuid", "short-token"])
def test_a_uuid_or_a_short_token_reaches_its_own_route(app_client, router, method, good):
    names, call, route = METHODS[method]
    ids = dict.fromkeys(names, good)
    call(app_client, ids)

    routes = [entry for entry in router.seen if entry[0] == "route"]
    expected = {name: str(good) for name in names}
    if route == "list_use_cases":  # client_get_use_case lists, then picks the use case
        expected = {"project_id": str(good)}
    assert routes == [("route", route, expected)]


def test_a_large_int_id_is_still_accepted(app_client, router):
    app_client.get_media_job(12345)
    assert router.seen[-1] == ("route", "get_media_job", {"job_id": "12345"})
