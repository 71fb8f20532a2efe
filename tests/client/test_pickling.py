"""Every error survives pickling: what multiprocessing and concurrent.futures do with it."""

from __future__ import annotations

import concurrent.futures
import inspect
import multiprocessing
import pickle
from typing import Any, List

import pytest

MODELS = "/api/v1/waygpt/models"


def error_classes(sdk: Any) -> List[type]:
    return [
        value
        for value in vars(sdk).values()
        if inspect.isclass(value) and issubclass(value, sdk.WayGPTError)
    ]


def public_state(error: BaseException) -> Any:
    return (type(error), str(error), repr(error), error.args, vars(error))


def test_every_error_class_round_trips_with_its_attributes(sdk):
    classes = error_classes(sdk)
    assert len(classes) >= 15
    for cls in classes:
        if issubclass(cls, sdk.MediaJobError):
            error = cls("media job j1 failed: boom", {"job_id": "j1", "status": "failed"})
        elif issubclass(cls, sdk.APIStatusError):
            error = cls(
                "quota exceeded",
                429,
                {"detail": "quota exceeded"},
                headers={"Retry-After": "3"},
                body='{"detail": "quota exceeded"}',
                request_id="req-1",
            )
        else:
            error = cls("it broke", None, None)

        copy = pickle.loads(pickle.dumps(error))

        assert public_state(copy) == public_state(error), cls.__name__


def test_a_real_status_error_round_trips(sdk, no_retry_client, server):
    server.script(status=404, body={"detail": "нет такой модели"}, path=MODELS)
    with pytest.raises(sdk.NotFoundError) as caught:
        no_retry_client.get_models()

    copy = pickle.loads(pickle.dumps(caught.value))

    assert type(copy) is sdk.NotFoundError
    assert (copy.status_code, copy.message) == (404, "нет такой модели")
    assert str(copy) == "[404] нет такой модели"
    assert copy.response == {"detail": "нет такой модели"}
    assert copy.headers == caught.value.headers


def test_a_rate_limit_error_keeps_retry_after(sdk):
    error = sdk.RateLimitError("slow down", 429, retry_after=7.0)
    assert pickle.loads(pickle.dumps(error)).retry_after == 7.0


def _raise_not_found(status: int) -> None:
    import waygpt

    raise waygpt.NotFoundError("no such job", status, {"detail": "no such job"})


def test_a_worker_error_reaches_a_multiprocessing_pool(sdk):
    if sdk.__name__ != "waygpt":
        pytest.skip("the worker imports the package")
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result = pool.map_async(_raise_not_found, [404])
        with pytest.raises(sdk.NotFoundError) as caught:
            result.get(timeout=60)  # before the fix: hangs forever
    assert caught.value.status_code == 404


def test_a_worker_error_reaches_a_process_pool_executor(sdk):
    if sdk.__name__ != "waygpt":
        pytest.skip("the worker imports the package")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(_raise_not_found, 404)
        with pytest.raises(sdk.NotFoundError):  # before the fix: BrokenProcessPool
            future.result(timeout=60)
