"""What only the async client has to get right: tasks, cancellation, concurrency, the loop.

Everything the sync client pins is pinned for the async one by running ``tests/client``
against it (``WAYGPT_SDK=async``, see ``tests/async_adapter.py``); these tests add what a
blocking facade cannot show: cancelled tasks, 200 concurrent tasks on one client, no
blocking call on the event loop, a fork, and the async forms of the API.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import sys
import threading
from typing import Any, Dict, List

import pytest

pytest.importorskip("aiohttp")

import waygpt
from waygpt import AsyncWayGPTClient, WayGPTClient
from waygpt.testing import WayGPTTestServer, sse_event

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]
DONE = b"data: [DONE]\n\n"


def make(server: WayGPTTestServer, **options: Any) -> AsyncWayGPTClient:
    options.setdefault("timeout", 10)
    return AsyncWayGPTClient(api_url=server.url, project_key=server.project_key, **options)


def signed(server: WayGPTTestServer, **options: Any) -> AsyncWayGPTClient:
    return make(
        server,
        project_id=server.project_id,
        hmac_secret=server.hmac_secret,
        use_hmac=True,
        **options,
    )


async def open_connections(server: WayGPTTestServer, expected: int, timeout: float = 5) -> int:
    """The server's open connections once they are ``expected`` (or after ``timeout``),
    waiting without blocking the loop, which has to run for a closed socket to close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.open_connections != expected and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return server.open_connections


def chunk(text: str) -> Dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


# -- the same surface ---------------------------------------------------------------------


def public_methods(cls: type) -> Dict[str, Any]:
    return {
        name: value
        for name, value in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_async_client_has_every_method_of_the_sync_client_with_its_signature():
    sync, asynchronous = public_methods(WayGPTClient), public_methods(AsyncWayGPTClient)
    assert sorted(sync) == sorted(asynchronous)
    for name, method in sync.items():
        assert shape(asynchronous[name]) == shape(method), name
    assert shape(AsyncWayGPTClient) == shape(WayGPTClient)


def shape(function: Any) -> List[Any]:
    """Names, kinds and defaults of the parameters (annotations differ: a requests session
    for one client, an aiohttp one for the other)."""
    parameters = inspect.signature(function).parameters.values()
    return [(p.name, p.kind, p.default) for p in parameters]


def test_every_api_method_is_a_coroutine_function():
    plain = {"with_options"}
    for name, method in public_methods(AsyncWayGPTClient).items():
        assert inspect.iscoroutinefunction(method) is (name not in plain), name


def test_the_async_client_reads_the_same_environment(monkeypatch, server):
    monkeypatch.setenv("WAYGPT_API_URL", server.url)
    monkeypatch.setenv("WAYGPT_PROJECT_KEY", server.project_key)

    async def main() -> List[str]:
        async with AsyncWayGPTClient() as client:
            return await client.get_models()

    assert asyncio.run(main())


def test_the_client_is_made_outside_an_event_loop_and_used_inside_one(server):
    client = make(server)  # no running loop here: the aiohttp session is made later

    async def main() -> Any:
        try:
            return await client.get_models()
        finally:
            await client.close()

    assert asyncio.run(main())


# -- streams --------------------------------------------------------------------------------


def test_await_chat_completions_with_stream_true_gives_an_async_chat_stream(server):
    server.script(method="POST", path=CHAT, chunks=[sse_event(chunk("a")), sse_event(chunk("b")),
                                                    DONE], content_type="text/event-stream")

    async def main() -> Any:
        async with make(server) as client:
            stream = await client.chat_completions(messages=MESSAGES, stream=True)
            assert isinstance(stream, waygpt.AsyncChatStream)
            async with stream:
                return [c["choices"][0]["delta"]["content"] async for c in stream]

    assert asyncio.run(main()) == ["a", "b"]


def test_an_http_error_before_the_stream_raises_at_the_await(server):
    server.script(method="POST", path=CHAT, status=429, body={"detail": "slow down"})

    async def main() -> None:
        async with make(server, max_retries=0) as client:
            with pytest.raises(waygpt.RateLimitError):
                await client.chat_completions_stream(messages=MESSAGES)

    asyncio.run(main())


def test_collect_reads_the_rest_and_closes(server):
    async def main() -> Any:
        async with make(server) as client:
            stream = await client.chat_completions_stream(messages=MESSAGES)
            result = await stream.collect()
            assert stream.closed
            return result

    result = asyncio.run(main())
    assert result.text == "Echo: hello"


# -- cancellation -------------------------------------------------------------------------


def test_a_task_cancelled_mid_call_releases_its_connection(server):
    server.script(path=MODELS, delay=5)

    async def main() -> None:
        async with make(server) as client:
            task = asyncio.create_task(client.get_models())
            while server.open_connections == 0:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await open_connections(server, 0) == 0
            assert await client.get_models()  # the client is fine afterwards

    asyncio.run(main())


def test_a_task_cancelled_mid_stream_releases_its_connection(server):
    server.script(
        method="POST", path=CHAT,
        chunks=[sse_event(chunk("a")), sse_event(chunk("b")), sse_event(chunk("c")), DONE],
        # (The server sees the close when it next writes: 1 s later, not at the end.)
        chunk_delay=1, content_type="text/event-stream",
    )
    received: List[Any] = []

    async def consume(client: AsyncWayGPTClient) -> None:
        async for item in await client.chat_completions_stream(messages=MESSAGES):
            received.append(item)

    async def main() -> None:
        async with make(server) as client:
            task = asyncio.create_task(consume(client))
            while not received:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # now waiting for "b"
            task.cancel()
            connections = client._transport._session.connector
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not connections._acquired  # released at once, not at garbage collection
            assert await open_connections(server, 0) == 0

    asyncio.run(main())
    assert len(received) == 1


def test_a_stream_cancelled_while_it_waits_for_the_end_after_done_is_closed(monkeypatch):
    import socket

    from raw_server import RawServer
    from waygpt import _aiohttp_transport

    # The wait after [DONE] for the end of the body is short (0.1 s); made long here, so that
    # the task is surely cancelled inside it.
    monkeypatch.setattr(_aiohttp_transport, "_DRAIN_SECONDS", 30)
    event = sse_event(chunk("a")) + DONE

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(event), event))
        for _ in range(300):  # the last chunk never comes (for 30 s at most)
            if raw.stopping():
                return
            threading.Event().wait(0.1)

    raw = RawServer(handler)
    received: List[Any] = []
    streams: List[Any] = []

    async def consume(client: AsyncWayGPTClient) -> None:
        stream = await client.chat_completions_stream(messages=MESSAGES)
        streams.append(stream)
        async for item in stream:
            received.append(item)

    async def main() -> None:
        async with AsyncWayGPTClient(api_url=raw.url, project_key="sk_live_x") as client:
            task = asyncio.create_task(consume(client))
            while not received:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # now waiting for the end of the body
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert streams[0].closed
            assert not client._transport._session.connector._acquired  # released, not at GC

    with raw:
        gc.disable()  # a finaliser must not be what closes it
        try:
            asyncio.run(main())
        finally:
            gc.enable()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+")
def test_an_asyncio_timeout_around_a_call_is_the_callers_to_see(server):
    server.script(path=MODELS, delay=5)

    async def main() -> None:
        async with make(server) as client:
            with pytest.raises(TimeoutError) as caught:
                async with asyncio.timeout(0.3):  # type: ignore[attr-defined]
                    await client.get_models()
            assert not isinstance(caught.value, waygpt.WayGPTError)
            assert await open_connections(server, 0) == 0

    asyncio.run(main())


def test_total_timeout_bounds_the_wait_for_a_streams_headers(server):
    server.script(method="POST", path=CHAT, delay=5, chunks=[DONE],
                  content_type="text/event-stream")

    async def main() -> None:
        async with make(server, total_timeout=0.5, max_retries=0) as client:
            with pytest.raises(waygpt.APITimeoutError, match="total_timeout"):
                await client.chat_completions_stream(messages=MESSAGES)

    asyncio.run(main())


# -- many tasks on one client -------------------------------------------------------------


def test_200_concurrent_tasks_with_hmac_and_faults_get_only_their_own_answers():
    from waygpt.retry import default_retry

    retry = default_retry(6, backoff_factor=0).new(allowed_methods=("GET", "POST"))
    with WayGPTTestServer(require_hmac=True) as server:
        server.script(status=429, headers={"Retry-After": "0"}, times=25)
        server.script(status=503, body="<html>busy</html>", times=25)
        server.script(reset=True, path=MODELS, times=10)

        async def one(client: AsyncWayGPTClient, index: int) -> Any:
            try:
                if index % 4 == 0:
                    return "models", await client.get_models()
                text = f"task-{index}"
                reply = await client.chat_completions(messages=[{"role": "user", "content": text}])
                return text, reply["choices"][0]["message"]["content"]
            except waygpt.WayGPTError as error:
                return "error", error

        async def main() -> List[Any]:
            async with signed(server, max_retries=retry) as client:
                results = await asyncio.gather(*(one(client, i) for i in range(200)))
            return list(results)

        results = asyncio.run(main())
        assert server.wait_for_open_connections(0) == 0

    wrong = [r for r in results if r[0].startswith("task-") and r[1] != f"Echo: {r[0]}"]
    errors = [r[1] for r in results if r[0] == "error"]
    assert wrong == []
    assert all(isinstance(e, waygpt.APIConnectionError) for e in errors), errors  # resets only
    assert len(errors) <= 10
    nonces = [r.headers.get("x-mb-nonce") for r in server.requests]
    assert len(nonces) == len(set(nonces)) >= 200 + 50


def test_by_default_300_streams_are_all_under_way_at_once():
    streams = 300  # past aiohttp's default pool of 100 connections
    first = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
    held = {"now": 0, "most": 0}

    async def main() -> List[str]:
        release = asyncio.Event()

        async def one_stream(reader: Any, writer: Any) -> None:
            # A stream per connection, ended only once every stream has its first event.
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % (len(first) + len(DONE)) + first)
            held["now"] += 1
            held["most"] = max(held["most"], held["now"])
            if held["now"] == streams:
                release.set()
            try:
                await asyncio.wait_for(release.wait(), 20)
            except asyncio.TimeoutError:
                pass
            writer.write(DONE)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(one_stream, "127.0.0.1", 0, backlog=streams)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with AsyncWayGPTClient(api_url=url, project_key="sk_live_x") as client:

                async def read() -> str:
                    stream = await client.chat_completions_stream(messages=MESSAGES)
                    return (await stream.collect()).text

                return list(await asyncio.gather(*(read() for _ in range(streams))))
        finally:
            server.close()

    assert asyncio.run(main()) == ["Hi"] * streams
    assert held["most"] == streams


# -- the event loop is never blocked ------------------------------------------------------


def test_no_call_blocks_the_event_loop(server, caplog):
    caplog.set_level(logging.WARNING, logger="asyncio")
    # Slow answers, so that a blocking wait for the network would hold the loop far longer
    # than the threshold below, which is set well above what a loaded machine's scheduling
    # adds to an ordinary step (tens of ms).
    server.script(status=503, headers={"Retry-After": "0"}, path=MODELS, delay=0.6)
    server.script(path=MODELS, body=["gpt-4o"], delay=0.6)
    server.script(method="POST", path=CHAT, chunks=[sse_event(chunk("a")), DONE],
                  chunk_delay=0.6, content_type="text/event-stream")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.3
        async with signed(server) as client:
            await client.get_models()
            stream = await client.chat_completions_stream(messages=MESSAGES)
            await stream.collect()
            for _ in range(20):
                await client.get_models()
                await client.chat_completions(messages=[{"role": "user", "content": "Привет"}])
                stream = await client.chat_completions_stream(messages=MESSAGES)
                await stream.collect()
            await client.client_login(server.user_email, server.user_password)
            await client.client_list_projects()
            job = await client.video_generations("закат")
            await client.wait_for_media_job(job["job_id"], poll_interval=0.01)

    asyncio.run(main(), debug=True)
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert slow == []


# -- media jobs -----------------------------------------------------------------------------


def test_wait_for_media_job_takes_a_plain_or_an_async_on_update():
    seen: List[str] = []

    async def note(job: Any) -> None:
        await asyncio.sleep(0)
        seen.append("async:" + job["status"])

    async def main() -> None:
        with WayGPTTestServer(job_steps=2) as server:
            async with make(server) as client:
                job = await client.video_generations("закат")
                await client.wait_for_media_job(job["job_id"], poll_interval=0.01, on_update=note)
                job = await client.video_generations("рассвет")
                await client.wait_for_media_job(
                    job["job_id"], poll_interval=0.01, on_update=lambda j: seen.append(j["status"])
                )

    asyncio.run(main())
    assert seen[0].startswith("async:") and seen[-1] == "completed"
    assert "async:completed" in seen


# -- a forked child -------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_never_uses_the_parents_connections(server):
    client = make(server)

    async def echo(who: str, calls: int = 50) -> int:
        wrong = 0
        for index in range(calls):
            text = f"{who}-{index}"
            reply = await client.chat_completions(messages=[{"role": "user", "content": text}])
            wrong += reply["choices"][0]["message"]["content"] != f"Echo: {text}"
        return wrong

    async def warm_up_then_echo() -> int:
        await client.get_models()  # a pooled connection, in this loop, before the fork
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                # The child starts inside the parent's running loop: leave it for a new one,
                # as a forked worker (gunicorn, celery) runs its own loop.
                asyncio._set_running_loop(None)
                code = min(asyncio.run(echo("child")), 98)
            finally:
                os._exit(code)
        wrong = await echo("parent")
        _, status = os.waitpid(pid, 0)
        await client.close()
        return wrong * 100 + os.waitstatus_to_exitcode(status)

    assert asyncio.run(warm_up_then_echo()) == 0
    assert server.connections_opened == 2  # the parent's one, and the child's own


# -- other event loops, a caller's session ---------------------------------------------------


def test_a_client_used_from_one_asyncio_run_after_another_leaves_no_connection_open(server):
    import gc

    client = make(server)
    for _ in range(10):
        assert asyncio.run(client.get_models())  # each run is a new event loop, then closed
    gc.collect()  # what the loops left behind is closed by its own finalisers

    assert server.wait_for_open_connections(1) <= 1  # the last loop's, at most
    assert server.connections_opened == 10


ONE_PER_LOOP = "one AsyncWayGPTClient per event loop"


def test_a_call_from_a_second_running_loop_is_refused_with_the_rule(server):
    client = make(server)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_first_loop(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(20)

    try:
        assert on_first_loop(client.get_models())
        with pytest.raises(waygpt.ConfigurationError, match=ONE_PER_LOOP):
            asyncio.run(asyncio.wait_for(client.get_models(), 20))
        with pytest.raises(waygpt.ConfigurationError, match=ONE_PER_LOOP):
            asyncio.run(asyncio.wait_for(client.close(), 20))
        assert len(server.requests) == 1  # nothing was sent from the second loop
        assert on_first_loop(client.get_models())  # its connection was left alone
        assert server.connections_opened == 1
    finally:
        on_first_loop(client.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def calls_while_another_loop_calls(
    client: AsyncWayGPTClient, barriers: List[threading.Barrier], seen: List[str]
) -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, barriers[0].wait)  # both loops run from here ...
    for _ in range(20):
        try:
            await asyncio.wait_for(client.get_models(), 20)
            seen.append("answer")
        except waygpt.ConfigurationError as error:
            seen.append("the rule" if ONE_PER_LOOP in str(error) else repr(error))
        except BaseException as error:  # noqa: BLE001 - a hang, a transport error
            seen.append(repr(error))
    await loop.run_in_executor(None, barriers[1].wait)  # ... to here
    try:
        await client.close()
    except waygpt.ConfigurationError:
        pass  # the other loop's session, which it closes


def test_two_running_loops_calling_one_client_get_answers_or_the_rule_never_a_hang(server):
    for _ in range(10):
        client = make(server, total_timeout=20)
        barriers = [threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)]
        outcomes: Dict[str, List[str]] = {"a": [], "b": []}
        threads = [
            threading.Thread(
                target=asyncio.run,
                args=(calls_while_another_loop_calls(client, barriers, seen),),
                daemon=True,
            )
            for seen in outcomes.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

        assert not any(thread.is_alive() for thread in threads)
        kinds = sorted(sorted(set(seen)) for seen in outcomes.values())
        assert kinds == [["answer"], ["the rule"]], outcomes  # the first loop's, the other's


def test_a_callers_session_is_used_and_its_raise_for_status_does_not_hide_the_error(server):
    import aiohttp

    async def main() -> None:
        async with aiohttp.ClientSession(
            raise_for_status=True, headers={"X-Shop": "demo"}
        ) as session:
            client = make(server, session=session, max_retries=0)
            assert await client.get_models()
            assert server.last_request.headers["x-shop"] == "demo"  # the session's headers
            server.script(status=401, body={"detail": "Invalid project key"})
            with pytest.raises(waygpt.AuthenticationError):
                await client.get_models()
            await client.close()  # the caller's session stays open
            assert not session.closed

    asyncio.run(main())
