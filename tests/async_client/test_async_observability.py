"""What only the async client has to get right about observability: ``async def`` hooks, raw
responses awaited, and ``with_raw_response`` from many tasks at once.

Everything both clients share (raw responses, request ids, plain hooks) is pinned in
``tests/client/test_observability.py``, which also runs against the async client
(``WAYGPT_SDK=async``); OpenTelemetry spans in ``tests/observability/test_otel.py``. Over
real HTTP against ``waygpt.testing``, each test on a fresh event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Tuple

import pytest

pytest.importorskip("aiohttp")

from urllib3.util.retry import Retry

from waygpt import AsyncChatStream, AsyncWayGPTClient
from waygpt._observe import RawResponse
from waygpt.retry import default_retry
from waygpt.testing import WayGPTTestServer, sse_event

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello there"}]


def quick_retry(total: int = 3) -> Retry:
    return default_retry(total, backoff_factor=0)


def make(server: WayGPTTestServer, **options: Any) -> AsyncWayGPTClient:
    options.setdefault("max_retries", quick_retry())
    return AsyncWayGPTClient(
        api_url=server.url, project_key=server.project_key, timeout=10, **options
    )


async def open_connections(server: WayGPTTestServer, expected: int, timeout: float = 5) -> int:
    """The server's open connections once they are ``expected`` (or after ``timeout``),
    waiting without blocking the loop, which has to run for a closed socket to close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.open_connections != expected and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return server.open_connections


class HookError(Exception):
    pass


# -- hooks -----------------------------------------------------------------------------------


def test_plain_and_async_hooks_are_awaited_in_order_at_every_attempt(server):
    seen: List[Tuple[str, int, int]] = []

    def plain_request(view: Any) -> None:
        seen.append(("plain request", view.attempt, len(server.requests)))

    async def async_request(view: Any) -> None:
        await asyncio.sleep(0.01)  # the request waits for it: not sent yet when it returns
        seen.append(("async request", view.attempt, len(server.requests)))

    async def async_response(view: Any) -> None:
        await asyncio.sleep(0.01)
        seen.append(("async response", view.attempt, view.status_code))

    def plain_response(view: Any) -> None:
        seen.append(("plain response", view.attempt, view.status_code))

    server.script(path=MODELS, status=503, headers={"Retry-After": "0"})
    hooks = {
        "request": [plain_request, async_request],
        "response": [async_response, plain_response],
    }

    async def main() -> None:
        async with make(server, event_hooks=hooks) as client:
            await client.get_models()

    asyncio.run(main())

    assert seen == [
        ("plain request", 1, 0), ("async request", 1, 0),
        ("async response", 1, 503), ("plain response", 1, 503),
        ("plain request", 2, 1), ("async request", 2, 1),
        ("async response", 2, 200), ("plain response", 2, 200),
    ]


async def call(client: AsyncWayGPTClient, method: str) -> Any:
    if method == "get_models":
        return await client.get_models()
    return await client.chat_completions_stream(messages=MESSAGES)


@pytest.mark.parametrize("stage", ["request", "response"])
@pytest.mark.parametrize("method", ["get_models", "chat_completions_stream"])
def test_an_async_hooks_exception_reaches_the_caller_unchanged(server, stage, method):
    raised = HookError("stop here")

    async def refuse(view: Any) -> None:
        await asyncio.sleep(0)
        raise raised

    async def main() -> BaseException:
        async with make(server, event_hooks={stage: [refuse]}) as client:
            with pytest.raises(HookError) as caught:
                await call(client, method)
            return caught.value

    error = asyncio.run(main())

    assert error is raised
    assert error.__cause__ is None and error.__context__ is None
    assert len(server.requests) == (0 if stage == "request" else 1)


# An answer too long to be buffered whole while its hook runs. (A short one may have arrived
# whole by then, and its connection gone back to the pool: open, but not left half-read.)
LONG = 8 * 1024 * 1024


@pytest.mark.parametrize("method", ["get_models", "chat_completions_stream"])
def test_an_async_response_hooks_exception_leaves_no_connection_open(server, method):
    if method == "get_models":
        server.script(path=MODELS, body=[" " * LONG])
    else:
        server.script(path=CHAT, chunks=[b": " + b"x" * LONG + b"\n\n", sse_event("[DONE]")],
                      content_type="text/event-stream")

    async def refuse(view: Any) -> None:
        await asyncio.sleep(0)
        raise HookError("stop here")

    async def main() -> int:
        client = make(server, event_hooks={"response": [refuse]})
        try:
            with pytest.raises(HookError):
                await call(client, method)
            return await open_connections(server, 0)
        finally:
            await client.close()

    assert asyncio.run(main()) == 0


def test_a_hook_that_raises_at_the_second_attempt_stops_the_call_there(server):
    server.script(path=MODELS, status=503, headers={"Retry-After": "0"}, times=3)

    async def refuse_a_retry(view: Any) -> None:
        if view.attempt > 1:
            raise HookError(f"attempt {view.attempt}")

    async def main() -> None:
        async with make(server, event_hooks={"request": [refuse_a_retry]}) as client:
            with pytest.raises(HookError, match="attempt 2"):
                await client.get_models()

    asyncio.run(main())
    assert len(server.requests) == 1


# -- raw responses, awaited -------------------------------------------------------------------


def test_an_awaited_raw_response_has_the_calls_status_headers_and_value(server):
    async def main() -> Tuple[Any, Any]:
        async with make(server) as client:
            raw = await client.with_raw_response.get_models()
            return raw, await client.get_models()

    raw, models = asyncio.run(main())

    assert isinstance(raw, RawResponse)
    assert raw.status_code == 200
    assert raw.parse() == models
    assert raw.request_id and raw.request_id == raw.headers["x-request-id"]
    assert raw.attempts == 1
    assert raw.client_request_id == server.requests[0].headers["x-client-request-id"]


def test_a_raw_stream_is_returned_with_its_headers_before_its_first_chunk(server):
    # The headers and a comment at once; the first chunk 30 s later, so a raw response that
    # waited for it would not come within the 10 s given.
    first = sse_event({"choices": [{"index": 0, "delta": {"content": "x"}}]})
    server.script(
        path=CHAT, chunks=[b": keep-alive\n\n", first, sse_event("[DONE]")],
        content_type="text/event-stream", chunk_delay=30,
    )

    async def main() -> Any:
        async with make(server) as client:
            raw = await asyncio.wait_for(
                client.with_raw_response.chat_completions_stream(messages=MESSAGES), 10
            )
            await raw.parse().close()
            return raw

    raw = asyncio.run(main())

    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.request_id
    assert isinstance(raw.parse(), AsyncChatStream) and raw.parse() is raw.parse()
    assert raw.elapsed < 10


def test_a_raw_streams_parse_is_the_stream_to_read(server):
    async def main() -> Tuple[Any, str]:
        async with make(server) as client:
            raw = await client.with_raw_response.chat_completions_stream(messages=MESSAGES)
            async with raw.parse() as stream:
                text = (await stream.collect()).text
            return raw, text

    raw, text = asyncio.run(main())

    assert text == "Echo: hello there"
    assert raw.attempts == 1 and raw.parse().closed


def test_with_raw_response_from_50_concurrent_tasks_gives_each_task_its_own_call(server):
    async def raw_call(client: AsyncWayGPTClient, index: int) -> Any:
        await asyncio.sleep(0.001 * (index % 7))  # the tasks' calls interleave
        return await client.with_raw_response.chat_completions(
            messages=[{"role": "user", "content": f"task {index}"}]
        )

    async def main() -> List[Any]:
        async with make(server) as client:
            # Plain calls in between: a recording shared between tasks would pick them up.
            results = await asyncio.gather(
                *(raw_call(client, index) for index in range(50)),
                *(client.get_models() for _ in range(20)),
            )
        return results[:50]

    raws = asyncio.run(main())

    sent = {
        request.headers["x-client-request-id"]: request.json()
        for request in server.requests if request.path_only == CHAT
    }
    for index, raw in enumerate(raws):
        assert raw.parse()["choices"][0]["message"]["content"] == f"Echo: task {index}"
        assert sent[raw.client_request_id]["messages"][0]["content"] == f"task {index}"
        assert raw.attempts == 1
    assert len({raw.request_id for raw in raws}) == 50
    assert len({raw.client_request_id for raw in raws}) == 50
