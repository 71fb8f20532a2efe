"""Fixtures and helpers of the reliability suite (faults, load, hostile answers, fuzzing).

Everything here runs against the in-process ``WayGPTTestServer`` on 127.0.0.1, and every
wait is bounded: no test can hang, and none asserts on timings beyond loose upper bounds.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

from waygpt.testing import WayGPTTestServer


@pytest.fixture
def plain_client(sdk: ModuleType, server: WayGPTTestServer) -> Iterator[Any]:
    """A client that sends every request once (no retries), with a 5 s timeout."""
    with sdk.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=5
    ) as created:
        yield created


@pytest.fixture
def typed(sdk: ModuleType) -> Callable[[Callable[[], Any]], Any]:
    """``typed(call)``: the call's result, or the SDK error it raised.

    Any other exception fails the test: a caller must only ever meet a ``WayGPTError``.
    """

    def run(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except sdk.WayGPTError as error:
            return error
        except Exception as error:  # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"{type(error).__module__}.{type(error).__name__} escaped: {error!r}")

    return run
