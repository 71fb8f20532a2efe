"""``WayGPTClient.wait_for_media_job``: completed, failed, cancelled and timed-out jobs."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any, Dict, Iterator, List

import pytest

from waygpt.testing import WayGPTTestServer


def job_path(job_id: str) -> str:
    return f"/api/v1/waygpt/media/jobs/{job_id}"


def polls(server: WayGPTTestServer, job_id: str) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path == job_path(job_id))


def test_completed_job_is_returned_and_each_change_reported(
    client: Any, server: WayGPTTestServer
) -> None:
    job_id = client.video_generations("Кот играет на балалайке")["job_id"]
    updates: List[Dict[str, Any]] = []
    job = client.wait_for_media_job(
        job_id, poll_interval=0.01, timeout=10, on_update=updates.append
    )
    assert job["status"] == "completed"
    assert job["result"]["url"].endswith(f"/media/videos/{job_id}.mp4")
    # The server's job moves one step per poll (3 steps by default).
    assert [(u["status"], u["progress"]) for u in updates] == [
        ("processing", 33),
        ("processing", 66),
        ("completed", 100),
    ]
    assert polls(server, job_id) == 3


def test_on_update_only_when_status_or_progress_changes(
    client: Any, server: WayGPTTestServer
) -> None:
    job_id = client.video_generations("кот")["job_id"]
    same = {"job_id": job_id, "status": "processing", "progress": 10}
    server.script(status=200, body=same, times=3, path=job_path(job_id))
    server.script(status=200, body={**same, "progress": 50}, times=2, path=job_path(job_id))
    updates: List[Dict[str, Any]] = []
    job = client.wait_for_media_job(
        job_id, poll_interval=0.01, timeout=10, on_update=updates.append
    )
    assert job["status"] == "completed"
    assert [u["progress"] for u in updates] == [10, 50, 33, 66, 100]
    assert polls(server, job_id) == 3 + 2 + 3


def test_a_raw_wait_describes_the_last_poll_even_when_on_update_calls_the_client(
    client: Any, server: WayGPTTestServer, sdk: ModuleType
) -> None:
    job_id = client.video_generations("кот")["job_id"]

    def on_update(job: Dict[str, Any]) -> Any:
        if getattr(sdk, "is_async_facade", False):
            return client.async_client.get_models()  # awaited by the async client
        return client.get_models()

    raw = client.with_raw_response.wait_for_media_job(
        job_id, poll_interval=0.01, timeout=10, on_update=on_update
    )

    assert raw.parse()["status"] == "completed"
    last_poll = [r for r in server.requests if r.path == job_path(job_id)][-1]
    assert raw.client_request_id == last_poll.headers["x-client-request-id"]
    assert server.requests[-1].path == "/api/v1/waygpt/models"  # the callback's, after it


def test_without_on_update(client: Any) -> None:
    job_id = client.video_generations("кот")["job_id"]
    assert client.wait_for_media_job(job_id, poll_interval=0.01)["status"] == "completed"


def test_failed_job_raises_with_the_job(
    client: Any, server: WayGPTTestServer, sdk: ModuleType
) -> None:
    job_id = client.video_generations("кот")["job_id"]
    client.get_media_job(job_id)
    server.fail_job(job_id, "Модель перегружена")
    with pytest.raises(sdk.MediaJobFailedError) as caught:
        client.wait_for_media_job(job_id, poll_interval=0.01, timeout=10)
    error = caught.value
    assert isinstance(error, sdk.MediaJobError) and isinstance(error, sdk.WayGPTError)
    assert error.job["status"] == "failed"
    assert error.job["error"] == "Модель перегружена"
    assert error.job["job_id"] == job_id
    assert str(error) == f"media job {job_id} failed: Модель перегружена"


def test_cancelled_job_raises(client: Any, sdk: ModuleType) -> None:
    job_id = client.video_generations("кот")["job_id"]
    client.cancel_media_job(job_id)
    updates: List[Dict[str, Any]] = []
    with pytest.raises(sdk.MediaJobFailedError) as caught:
        client.wait_for_media_job(job_id, poll_interval=0.01, timeout=10, on_update=updates.append)
    assert caught.value.job["status"] == "cancelled"
    assert str(caught.value) == f"media job {job_id} cancelled"
    assert [u["status"] for u in updates] == ["cancelled"]


def test_error_object_in_a_failed_job(
    client: Any, server: WayGPTTestServer, sdk: ModuleType
) -> None:
    job_id = client.video_generations("кот")["job_id"]
    body = {"job_id": job_id, "status": "failed", "error": {"message": "quota", "code": "q"}}
    server.script(status=200, body=body, path=job_path(job_id))
    with pytest.raises(sdk.MediaJobFailedError, match=r"failed: quota$"):
        client.wait_for_media_job(job_id, poll_interval=0.01, timeout=10)


@pytest.fixture
def slow_server() -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer(job_steps=10_000) as running:
        yield running


def test_timeout_raises_with_the_last_job(slow_server: WayGPTTestServer, sdk: ModuleType) -> None:
    with sdk.WayGPTClient(api_url=slow_server.url, project_key=slow_server.project_key) as client:
        job_id = client.video_generations("кот")["job_id"]
        started = time.monotonic()
        with pytest.raises(sdk.MediaJobTimeoutError) as caught:
            client.wait_for_media_job(job_id, poll_interval=0.05, timeout=0.3)
        elapsed = time.monotonic() - started
    error: Any = caught.value
    assert 0.3 <= elapsed < 2.0
    assert error.job["status"] == "processing"
    assert "not finished after 0.3 s" in str(error)
    assert not isinstance(error, sdk.MediaJobFailedError)
    assert isinstance(error, TimeoutError)
    # It kept polling until the deadline, then gave up: no more than a few extra polls.
    assert 3 <= polls(slow_server, job_id) <= 12


def test_unknown_job_raises_the_api_error(client: Any, sdk: ModuleType) -> None:
    with pytest.raises(sdk.NotFoundError):
        client.wait_for_media_job("no-such-job", poll_interval=0.01, timeout=1)


@pytest.mark.parametrize("kwargs", [{"poll_interval": 0}, {"timeout": 0}, {"timeout": -1}])
def test_bad_arguments(client: Any, server: WayGPTTestServer, kwargs: Dict[str, float]) -> None:
    with pytest.raises(ValueError):
        client.wait_for_media_job("job", **kwargs)
    assert server.requests == []
