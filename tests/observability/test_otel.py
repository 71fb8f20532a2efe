"""OpenTelemetry spans (``waygpt[otel]``): one ``CLIENT`` span per logical call, for both clients.

Over real HTTP against ``waygpt.testing``, with ``opentelemetry-sdk``'s in-memory exporter on
the global tracer provider (which a process can set only once: once for this module, the
exporter cleared before each test). Most tests run for the sync client and, through
``tests/async_adapter.py``, for a real ``AsyncWayGPTClient``; the exits only an async stream
has (a cancelled task, ``async with``, an abandoned ``async for``) are driven natively.

A span ended twice would not be exported twice: the SDK logs "Calling end() on an ended span."
instead (and "Setting attribute on ended span." for a late attribute), so every test also
checks that no such warning was logged.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from types import ModuleType
from typing import Any, Dict, Iterator, List

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from urllib3.util.retry import Retry

import waygpt
from waygpt.retry import default_retry
from waygpt.testing import WayGPTTestServer, sse_event

CHAT = "/api/v1/waygpt/chat/completions"
MODELS = "/api/v1/waygpt/models"
PROMPT = "a secret plan for tuesday"
MESSAGES = [{"role": "user", "content": PROMPT}]
ANSWER = "Echo: " + PROMPT  # what the test server answers
ENDED = "ended span"  # the SDK's warnings: "Calling end() on an ended span.", ...


def quick_retry(total: int = 3, backoff_factor: float = 0) -> Retry:
    return default_retry(total, backoff_factor=backoff_factor)


# -- the exporter, the clients -----------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    # A client made before the provider is set: the tracer waygpt looked up (and keeps) then
    # must follow the provider set afterwards.
    waygpt.WayGPTClient(api_url="http://127.0.0.1:9", project_key="sk_live_x").close()
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    current = trace.get_tracer_provider()
    if current is not provider:  # an earlier test of this process set one: export from it
        if not hasattr(current, "add_span_processor"):
            pytest.skip(f"another tracer provider is set in this process: {current!r}")
        current.add_span_processor(processor)
    yield memory
    processor.shutdown()  # the spans of later tests in this process are not kept


class Spans:
    """The spans ended so far in this test, and a check that none was ended twice."""

    def __init__(self, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> None:
        self._exporter = exporter
        self._caplog = caplog

    def all(self) -> List[ReadableSpan]:
        late = [r.getMessage() for r in self._caplog.records if ENDED in r.getMessage()]
        assert not late, late  # a span ended twice, or changed after its end
        return list(self._exporter.get_finished_spans())

    def one(self) -> ReadableSpan:
        """The one span of the test's one call: a CLIENT span, ended."""
        spans = self.all()
        assert len(spans) == 1, [span.name for span in spans]
        span = spans[0]
        assert span.kind is SpanKind.CLIENT
        assert span.end_time is not None and span.end_time >= span.start_time
        return span


@pytest.fixture(autouse=True)
def spans(exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> Iterator[Spans]:
    gc.collect()  # what an earlier test left to the collector ends before this one starts
    exporter.clear()
    caplog.set_level(logging.WARNING, logger="opentelemetry")
    recorder = Spans(exporter, caplog)
    yield recorder
    gc.collect()
    recorder.all()  # nothing this test started was ended twice, even late


@pytest.fixture(params=["sync", "async"])
def sdk(request: pytest.FixtureRequest) -> ModuleType:
    """``waygpt``, or the same surface over a real ``AsyncWayGPTClient`` (async_adapter)."""
    if request.param == "sync":
        return waygpt
    pytest.importorskip("aiohttp")
    import async_adapter

    return async_adapter.module()


def make(sdk: ModuleType, server: WayGPTTestServer, **options: Any) -> Any:
    options.setdefault("max_retries", quick_retry())
    options.setdefault("timeout", 10)
    return sdk.WayGPTClient(api_url=server.url, project_key=server.project_key, **options)


@pytest.fixture
def client(sdk: ModuleType, server: WayGPTTestServer) -> Iterator[Any]:
    with make(sdk, server) as created:
        yield created


def port_of(server: WayGPTTestServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def retries(span: ReadableSpan) -> List[Dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == "retry"]


def failed_with(span: ReadableSpan, error: BaseException) -> None:
    assert span.attributes["error.type"] == type(error).__name__
    assert span.status.status_code is StatusCode.ERROR


def succeeded(span: ReadableSpan) -> None:
    assert "error.type" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET


def scripted_stream(server: WayGPTTestServer, chunks: List[Dict[str, Any]], **options: Any) -> None:
    """The next chat stream is these chunks, then ``[DONE]``."""
    server.script(
        path=CHAT, chunks=[*(sse_event(chunk) for chunk in chunks), sse_event("[DONE]")],
        content_type="text/event-stream", **options,
    )


def content(text: str, **fields: Any) -> Dict[str, Any]:
    return {"id": "chatcmpl-1", "model": "gpt-4o", **fields,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def slow_stream(server: WayGPTTestServer) -> None:
    """The next chat stream: one chunk, then nothing for 30 s (the server's stop ends it)."""
    scripted_stream(server, [content("Hi"), content(" there")], chunk_delay=30)


# -- one span per logical call, named and described by the GenAI conventions -------------------


def test_a_chat_call_is_one_client_span_with_the_genai_attributes(client, server, spans):
    answer = client.chat_completions(
        model="gpt-4o", messages=MESSAGES, temperature=0.5, max_tokens=50
    )

    span = spans.one()
    assert span.name == "chat gpt-4o"
    assert span.instrumentation_scope.name == "waygpt"
    assert span.instrumentation_scope.version == waygpt.__version__
    attributes = dict(span.attributes)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "waygpt",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.response.model": answer["model"],
        "gen_ai.response.id": answer["id"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": answer["usage"]["prompt_tokens"],
        "gen_ai.usage.output_tokens": answer["usage"]["completion_tokens"],
        "server.address": "127.0.0.1",
        "server.port": port_of(server),
        "http.response.status_code": 200,
    }
    assert span.events == ()
    succeeded(span)


def test_the_response_model_is_the_one_that_answered(client, spans):
    answer = client.chat_completions(model="auto", messages=MESSAGES)

    span = spans.one()
    assert span.name == "chat auto"
    assert span.attributes["gen_ai.request.model"] == "auto"
    assert span.attributes["gen_ai.response.model"] == answer["model"] != "auto"


def test_an_image_generation_span_is_generate_content(client, spans):
    client.image_generations("a red fox", model="dall-e-3")

    span = spans.one()
    assert span.name == "generate_content dall-e-3"
    assert span.attributes["gen_ai.operation.name"] == "generate_content"
    assert span.attributes["gen_ai.request.model"] == "dall-e-3"
    assert span.attributes["gen_ai.response.model"] == "dall-e-3"
    succeeded(span)


def test_a_video_generation_span_is_generate_content(client, spans):
    client.video_generations("a red fox", model="kling-v1")

    span = spans.one()
    assert span.name == "generate_content kling-v1"
    assert span.attributes["gen_ai.operation.name"] == "generate_content"
    assert span.attributes["gen_ai.request.model"] == "kling-v1"


def test_a_call_without_a_model_is_named_for_its_method(client, server, spans):
    client.get_models()

    span = spans.one()
    assert span.name == "get_models"
    assert span.attributes["gen_ai.operation.name"] == "get_models"
    assert span.attributes["gen_ai.provider.name"] == "waygpt"
    assert span.attributes["server.port"] == port_of(server)
    assert "gen_ai.request.model" not in span.attributes
    succeeded(span)


def test_each_call_of_a_method_that_makes_several_is_its_own_span(client, spans):
    job = client.video_generations("a red fox")
    client.wait_for_media_job(job["job_id"], poll_interval=0.01)

    names = [span.name for span in spans.all()]
    assert names[0] == "generate_content"
    assert len(names) >= 3 and set(names[1:]) == {"get_media_job"}


# -- retries, a clock correction, a restarted stream: still one span ----------------------------


def test_a_retried_call_is_one_span_with_one_retry_event_per_retry(client, server, spans):
    server.script(path=MODELS, status=503, headers={"Retry-After": "0"}, times=2)

    client.get_models()

    span = spans.one()
    assert retries(span) == [
        {"waygpt.retry.attempt": 1, "waygpt.retry.reason": "HTTP 503", "waygpt.retry.delay": 0.0},
        {"waygpt.retry.attempt": 2, "waygpt.retry.reason": "HTTP 503", "waygpt.retry.delay": 0.0},
    ]
    assert span.attributes["http.response.status_code"] == 200
    succeeded(span)


def test_a_call_failing_after_its_retries_is_one_span_with_its_retry_events(sdk, spans):
    client = sdk.WayGPTClient(
        api_url=f"http://127.0.0.1:{closed_port()}", project_key="sk_live_x",
        max_retries=quick_retry(2), timeout=5,
    )
    with client, pytest.raises(waygpt.APIConnectionError) as raised:
        client.get_models()

    span = spans.one()
    assert [event["waygpt.retry.attempt"] for event in retries(span)] == [1, 2]
    assert {event["waygpt.retry.reason"] for event in retries(span)} == {"APIConnectionError"}
    failed_with(span, raised.value)


def test_a_clock_corrected_call_is_one_span(sdk, spans):
    with WayGPTTestServer(require_hmac=True, clock_offset=900) as server:
        client = sdk.WayGPTClient(
            api_url=server.url, project_key=server.project_key, project_id=server.project_id,
            hmac_secret=server.hmac_secret, use_hmac=True, max_retries=0, timeout=10,
        )
        with client:
            client.chat_completions(model="gpt-4o", messages=MESSAGES)
        assert len(server.requests) == 2  # refused for its clock, then signed again

    span = spans.one()
    assert span.name == "chat gpt-4o"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    succeeded(span)


def test_a_restarted_stream_is_one_span_with_a_retry_event(client, server, spans):
    server.script_stream_fault(after_events=0, cut="close")

    with client.chat_completions_stream(model="gpt-4o", messages=MESSAGES) as stream:
        text = stream.collect().text

    assert text == ANSWER and len(server.requests) == 2
    span = spans.one()
    assert [event["waygpt.retry.attempt"] for event in retries(span)] == [1]
    assert span.attributes["gen_ai.usage.output_tokens"] == len(ANSWER.split())
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    succeeded(span)


# -- failures ------------------------------------------------------------------------------------


def test_a_refused_call_has_error_type_and_an_error_status(sdk, server, spans):
    server.script(path=MODELS, status=429, body={"detail": "slow down"})

    with make(sdk, server, max_retries=0) as client, pytest.raises(waygpt.RateLimitError) as raised:
        client.get_models()

    span = spans.one()
    assert span.attributes["error.type"] == "RateLimitError"
    assert span.attributes["http.response.status_code"] == 429
    failed_with(span, raised.value)
    assert retries(span) == []


def test_a_refused_connection_has_error_type_and_an_error_status(sdk, spans):
    client = sdk.WayGPTClient(
        api_url=f"http://127.0.0.1:{closed_port()}", project_key="sk_live_x", max_retries=0,
        timeout=5,
    )
    with client, pytest.raises(waygpt.APIConnectionError) as raised:
        client.chat_completions(model="gpt-4o", messages=MESSAGES)

    span = spans.one()
    assert span.name == "chat gpt-4o"
    assert span.attributes["error.type"] == "APIConnectionError"
    assert "http.response.status_code" not in span.attributes
    assert span.attributes["server.address"] == "127.0.0.1"
    failed_with(span, raised.value)


def test_a_stream_refused_before_its_events_has_error_type(client, server, spans):
    server.script(path=CHAT, status=400, body={"detail": "no"})

    with pytest.raises(waygpt.BadRequestError) as raised:
        client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)

    failed_with(spans.one(), raised.value)


# -- content: never recorded unless asked -------------------------------------------------------


def every_value(spans: List[ReadableSpan]) -> str:
    values = [str(value) for span in spans for value in span.attributes.values()]
    values += [str(value) for span in spans for event in span.events
               for value in (event.attributes or {}).values()]
    return "\n".join(values)


def make_calls(client: Any) -> None:
    client.chat_completions(model="gpt-4o", messages=MESSAGES)
    with client.chat_completions_stream(model="gpt-4o", messages=MESSAGES) as stream:
        stream.collect()
    client.image_generations(PROMPT)


def test_no_prompt_or_answer_is_recorded_by_default(client, spans):
    make_calls(client)

    recorded = spans.all()
    assert len(recorded) == 3
    assert "tuesday" not in every_value(recorded)
    for span in recorded:
        assert not [key for key in span.attributes if "messages" in key]


def test_prompts_and_answers_are_recorded_when_capture_content_is_on(
    sdk, server, spans, monkeypatch
):
    monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", "true")
    with make(sdk, server) as client:
        make_calls(client)

    chat, stream, image = spans.all()
    for span in (chat, stream):
        assert json.loads(span.attributes["gen_ai.input.messages"]) == MESSAGES
        assert json.loads(span.attributes["gen_ai.output.messages"]) == [
            {"role": "assistant", "content": ANSWER}
        ]
    assert json.loads(image.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "content": PROMPT}
    ]


def test_capture_content_is_read_when_the_client_is_made(sdk, server, spans, monkeypatch):
    with make(sdk, server) as before:
        monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", "true")
        with make(sdk, server) as after:
            monkeypatch.delenv("WAYGPT_OTEL_CAPTURE_CONTENT")
            before.chat_completions(model="gpt-4o", messages=MESSAGES)
            after.chat_completions(model="gpt-4o", messages=MESSAGES)
            after.with_options(timeout=9).chat_completions(model="gpt-4o", messages=MESSAGES)

    first, second, copy = spans.all()
    assert "gen_ai.input.messages" not in first.attributes
    assert "gen_ai.input.messages" in second.attributes
    assert "gen_ai.input.messages" in copy.attributes  # a copy keeps its client's setting


@pytest.mark.parametrize("value", ["", "false", "1", "yes"])
def test_capture_content_needs_true(sdk, server, spans, monkeypatch, value):
    monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", value)
    with make(sdk, server) as client:
        client.chat_completions(model="gpt-4o", messages=MESSAGES)

    assert "tuesday" not in every_value(spans.all())


def test_no_credential_is_recorded_even_with_capture_content(sdk, server, spans, monkeypatch):
    monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", "true")
    with make(sdk, server) as client:
        client.client_login(server.user_email, server.user_password)
        client.client_list_projects()
        client.create_widget_token()

    recorded = every_value(spans.all())
    for secret in (server.user_password, server.project_key, client.jwt_token):
        assert secret not in recorded


# -- streams: one span, ended exactly once, however the stream ends ------------------------------


def test_a_stream_read_to_its_end_has_usage_from_its_last_chunk(client, server, spans):
    scripted_stream(server, [
        content("Hel", usage={"prompt_tokens": 1, "completion_tokens": 1}),
        content("lo", usage={"prompt_tokens": 3, "completion_tokens": 2}),
        {"id": "chatcmpl-1", "model": "gpt-4o-2024", "usage": {"prompt_tokens": 5,
         "completion_tokens": 7}, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ])

    stream = client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
    chunks = list(stream)

    assert len(chunks) == 3
    span = spans.one()  # ended when the stream ended (the stream is not collected yet)
    assert span.name == "chat gpt-4o"
    assert span.attributes["gen_ai.usage.input_tokens"] == 5
    assert span.attributes["gen_ai.usage.output_tokens"] == 7
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-2024"
    assert span.attributes["gen_ai.response.id"] == "chatcmpl-1"
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.attributes["http.response.status_code"] == 200
    succeeded(span)


def test_a_streams_time_to_first_chunk_is_the_wait_for_its_first_chunk(client, server, spans):
    # The headers and a keep-alive comment at once, the first chunk 0.5 s later.
    server.script(
        path=CHAT, chunks=[b": keep-alive\n\n", sse_event(content("Hi")), sse_event("[DONE]")],
        content_type="text/event-stream", chunk_delay=0.5,
    )

    started = time.monotonic()
    stream = client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
    next(stream)
    waited = time.monotonic() - started
    list(stream)

    first = spans.one().attributes["gen_ai.response.time_to_first_chunk"]
    assert 0.4 < first <= waited


def test_a_stream_closed_before_its_first_chunk_ends_its_span_once(client, spans):
    stream = client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
    stream.close()
    stream.close()

    span = spans.one()
    assert "gen_ai.response.time_to_first_chunk" not in span.attributes
    assert span.attributes["http.response.status_code"] == 200
    succeeded(span)


def test_a_stream_closed_after_its_first_chunk_ends_its_span_once(client, spans):
    stream = client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
    next(stream)
    stream.close()
    stream.close()

    span = spans.one()
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    # The rest of the stream (the finish and the usage) arrived in the same read, but was
    # never handed out: the span does not claim it.
    assert "gen_ai.usage.output_tokens" not in span.attributes
    assert "gen_ai.response.finish_reasons" not in span.attributes
    succeeded(span)


def test_a_stream_left_by_a_with_block_ends_its_span_once(client, spans):
    with client.chat_completions_stream(model="gpt-4o", messages=MESSAGES) as stream:
        next(stream)
        assert spans.all() == []  # still open in the block

    succeeded(spans.one())


def test_an_in_stream_error_ends_the_span_once_with_its_error_type(client, server, spans):
    server.script_stream_fault(after_events=2, error_code=400)

    stream = client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(waygpt.BadRequestError) as raised:
        for _ in stream:
            pass

    span = spans.one()
    failed_with(span, raised.value)
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    stream.close()  # closing it afterwards ends nothing more


def test_an_in_stream_error_before_content_ends_the_span_once(client, server, spans):
    server.script_stream_fault(after_events=0, error_code=401)

    with pytest.raises(waygpt.AuthenticationError) as raised:
        list(client.chat_completions_stream(model="gpt-4o", messages=MESSAGES))

    span = spans.one()
    failed_with(span, raised.value)
    assert "gen_ai.response.time_to_first_chunk" not in span.attributes


def test_a_stream_interrupted_after_content_ends_its_span_once(client, server, spans):
    server.script_stream_fault(after_events=2, cut="reset")

    with pytest.raises(waygpt.StreamInterruptedError) as raised:
        with client.chat_completions_stream(model="gpt-4o", messages=MESSAGES) as stream:
            for _ in stream:
                pass

    span = spans.one()
    assert span.attributes["error.type"] == "StreamInterruptedError"
    failed_with(span, raised.value)
    assert retries(span) == []  # nothing is retried after content


def test_a_sync_stream_left_by_break_and_dropped_ends_its_span_once(server, spans):
    with make(waygpt, server) as client:
        for _ in client.chat_completions_stream(model="gpt-4o", messages=MESSAGES):
            break
        gc.collect()

        span = spans.one()
        assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
        succeeded(span)


def test_a_sync_stream_never_iterated_and_dropped_ends_its_span_once(server, spans):
    with make(waygpt, server) as client:
        client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
        gc.collect()

        succeeded(spans.one())


def test_a_sync_stream_closed_from_another_thread_ends_its_span_once(server, spans):
    slow_stream(server)
    with make(waygpt, server) as client:
        stream = client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
        next(stream)  # the first chunk; the next one is 30 s away
        reader = threading.Thread(target=lambda: list(stream))
        reader.start()
        time.sleep(0.3)  # the reader waits in its read
        stream.close()
        reader.join(10)
        assert not reader.is_alive()

    succeeded(spans.one())


# -- what only an async stream has -------------------------------------------------------------


def run_async(server: WayGPTTestServer, scenario: Any, **options: Any) -> Any:
    """``scenario(client)`` on a fresh event loop, with an AsyncWayGPTClient for ``server``."""
    pytest.importorskip("aiohttp")

    async def main() -> Any:
        options.setdefault("max_retries", quick_retry())
        async with waygpt.AsyncWayGPTClient(
            api_url=server.url, project_key=server.project_key, timeout=10, **options
        ) as client:
            return await scenario(client)

    return asyncio.run(main())


def test_an_async_stream_left_by_break_and_dropped_ends_its_span_once(server, spans):
    async def scenario(client: Any) -> None:
        async for _ in await client.chat_completions_stream(model="gpt-4o", messages=MESSAGES):
            break
        gc.collect()
        succeeded(spans.one())

    run_async(server, scenario)


def test_an_async_stream_left_by_async_with_ends_its_span_once(server, spans):
    async def scenario(client: Any) -> None:
        async with await client.chat_completions_stream(model="gpt-4o", messages=MESSAGES) as s:
            await s.__anext__()
            assert spans.all() == []
        succeeded(spans.one())

    run_async(server, scenario)


def test_an_async_stream_whose_task_is_cancelled_ends_its_span_once(server, spans):
    slow_stream(server)

    async def scenario(client: Any) -> None:
        stream = await client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)

        async def read() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(read())
        await asyncio.sleep(0.5)  # it has the first chunk and waits for the next
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        span = spans.one()
        assert span.attributes["error.type"] == "cancelled"
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
        await stream.close()  # closing it afterwards ends nothing more

    run_async(server, scenario)


def test_an_async_stream_closed_by_another_task_ends_its_span_once(server, spans):
    slow_stream(server)

    async def scenario(client: Any) -> None:
        stream = await client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
        await stream.__anext__()
        reader = asyncio.create_task(stream.collect())
        await asyncio.sleep(0.3)  # the reader waits for the next chunk
        await stream.close()
        await asyncio.wait_for(reader, 10)
        succeeded(spans.one())

    run_async(server, scenario)


def test_an_async_call_whose_task_is_cancelled_ends_its_span_once(server, spans):
    server.script(path=MODELS, body=["gpt-4o"], delay=30)

    async def scenario(client: Any) -> None:
        task = asyncio.create_task(client.get_models())
        await asyncio.sleep(0.5)  # its request is sent, its answer awaited
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        span = spans.one()
        assert span.attributes["error.type"] == "cancelled"
        assert span.status.status_code is StatusCode.ERROR

    run_async(server, scenario)


def test_an_async_stream_cancelled_before_its_headers_ends_its_span_once(server, spans):
    server.script(path=CHAT, chunks=[sse_event("[DONE]")], content_type="text/event-stream",
                  delay=30)

    async def scenario(client: Any) -> None:
        task = asyncio.create_task(
            client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
        )
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert spans.one().attributes["error.type"] == "cancelled"

    run_async(server, scenario)


def test_an_async_stream_cancelled_while_it_waits_to_start_again_ends_its_span_once(
    server, spans
):
    server.script_stream_fault(after_events=0, cut="close")

    async def scenario(client: Any) -> None:
        stream = await client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
        task = asyncio.create_task(stream.__anext__())
        await asyncio.sleep(1.0)  # the stream was cut; it waits 10 s or more to start again
        assert len(server.requests) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        del stream
        gc.collect()
        assert spans.one().attributes["error.type"] == "cancelled"

    run_async(server, scenario, max_retries=quick_retry(3, backoff_factor=20))


def test_a_sync_stream_interrupted_while_it_waits_to_start_again_ends_its_span_once(
    server, spans, monkeypatch
):
    # The sync stream's equivalent of a cancellation: what its wait before the restart (on an
    # Event that close() sets) raises in this thread.
    server.script_stream_fault(after_events=0, cut="close")
    this_thread = threading.current_thread()
    real_wait = threading.Event.wait

    def interrupted(event: threading.Event, timeout: Any = None) -> bool:
        if timeout is None or threading.current_thread() is not this_thread:
            return real_wait(event, timeout)
        raise KeyboardInterrupt

    with make(waygpt, server) as client:
        stream = client.chat_completions_stream(model="gpt-4o", messages=MESSAGES)
        monkeypatch.setattr(threading.Event, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt):
            next(stream)

    span = spans.one()
    assert span.attributes["error.type"] == "KeyboardInterrupt"
    assert [event["waygpt.retry.attempt"] for event in retries(span)] == [1]


# -- hooks, nesting -------------------------------------------------------------------------------


class HookError(Exception):
    pass


def test_a_call_stopped_by_its_hook_has_the_hooks_error_type(sdk, server, spans):
    def refuse(view: Any) -> None:
        raise HookError("no")

    with make(sdk, server, event_hooks={"response": [refuse]}) as client:
        with pytest.raises(HookError):
            client.get_models()

    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "HookError"


def test_a_call_stopped_by_its_hook_ends_its_span_once_with_an_error(sdk, server, spans):
    def refuse(view: Any) -> None:
        raise HookError("no")

    with make(sdk, server, event_hooks={"request": [refuse]}) as client:
        with pytest.raises(HookError):
            client.get_models()

    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert "error.type" in span.attributes


def test_a_calls_span_is_a_child_of_the_current_span(server, spans):
    tracer = trace.get_tracer("test")
    with make(waygpt, server) as client, tracer.start_as_current_span("sync parent") as parent:
        client.get_models()

    async def scenario(client: Any) -> Any:
        with tracer.start_as_current_span("async parent") as parent:
            async with await client.chat_completions_stream(messages=MESSAGES) as stream:
                await stream.collect()
            return parent

    async_parent = run_async(server, scenario)

    call, parent_span, stream_span, async_parent_span = spans.all()
    assert call.parent.span_id == parent.get_span_context().span_id
    assert stream_span.parent.span_id == async_parent.get_span_context().span_id
    assert call.context.trace_id == parent_span.context.trace_id
    assert stream_span.context.trace_id == async_parent_span.context.trace_id


# -- the tracer, looked up once ------------------------------------------------------------------


def test_a_provider_set_after_the_first_client_was_made_gets_the_spans(server):
    # A fresh interpreter: the first client is made (and the tracer looked up) before any
    # provider is set, as an application that configures tracing late would do.
    code = f"""
        import waygpt
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from waygpt._core import Deadline
        from waygpt._endpoints import Endpoints

        client = waygpt.WayGPTClient(api_url={server.url!r}, project_key={server.project_key!r})
        client.get_models()  # no provider yet: no span is built
        state = client._call_state(Endpoints.get_models())
        next(client._steps(Endpoints.get_models(), Deadline(30), state))
        print(type(state.span).__name__)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        client.get_models()
        waygpt.WayGPTClient(api_url={server.url!r}, project_key={server.project_key!r}).get_models()
        print([span.name for span in exporter.get_finished_spans()])
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["NoSpan", "['get_models', 'get_models']"]


# -- the server's texts in a span are redacted ----------------------------------------------------


@pytest.mark.parametrize("kind", ["call", "stream"])
def test_the_servers_texts_in_a_span_hide_an_echoed_key(sdk, server, spans, monkeypatch, kind):
    monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", "true")
    key = server.project_key
    echo = {"id": f"chatcmpl-{key}", "model": f"gpt-{key}", "usage": {"prompt_tokens": 1,
            "completion_tokens": 1}}
    if kind == "call":
        choice = {"index": 0, "message": {"role": "assistant", "content": f"your key: {key}"},
                  "finish_reason": f"stop {key}"}
        server.script(path=CHAT, body={**echo, "choices": [choice]})
    else:
        scripted_stream(server, [
            {**echo, "choices": [{"index": 0, "delta": {"content": f"your key: {key[:20]}"}}]},
            {**echo, "choices": [{"index": 0, "delta": {"content": key[20:]},
                                  "finish_reason": f"stop {key}"}]},
        ])

    with make(sdk, server) as client:
        if kind == "call":
            client.chat_completions(model="gpt-4o", messages=MESSAGES)
        else:
            list(client.chat_completions_stream(model="gpt-4o", messages=MESSAGES))

    span = spans.one()
    assert span.attributes["gen_ai.response.id"] == "chatcmpl-[REDACTED]"
    assert span.attributes["gen_ai.response.model"] == "gpt-[REDACTED]"
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop [REDACTED]",)
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "content": "your key: [REDACTED]"}
    ]
    assert key not in every_value([span])


# -- tracing never changes what a call does -------------------------------------------------------


class ProcessorFault(Exception):
    pass


class FailingProcessor:
    """A span processor whose ``on_start`` or ``on_end`` raises, when told to."""

    def __init__(self) -> None:
        self.fails_in = ""
        self.open = 0  # spans started and not ended yet

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.open += 1
        if self.fails_in == "on_start":
            raise ProcessorFault("on_start")

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.open -= 1
        if self.fails_in == "on_end":
            raise ProcessorFault("on_end")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@pytest.fixture(scope="module")
def failing_processor(exporter: InMemorySpanExporter) -> FailingProcessor:
    processor = FailingProcessor()
    trace.get_tracer_provider().add_span_processor(processor)  # after the exporter's
    return processor


@pytest.fixture
def failing(failing_processor: FailingProcessor) -> Iterator[FailingProcessor]:
    yield failing_processor
    failing_processor.fails_in = ""


@pytest.mark.parametrize("where", ["on_start", "on_end"])
@pytest.mark.parametrize("kind", ["call", "stream"])
def test_a_span_processor_that_raises_leaves_the_call_its_answer(
    sdk, server, failing, caplog, where, kind
):
    failing.fails_in = where
    caplog.set_level(logging.WARNING, logger="waygpt")
    with make(sdk, server, max_retries=0) as client:
        if kind == "call":
            answer = client.chat_completions(model="gpt-4o", messages=MESSAGES)
            text = answer["choices"][0]["message"]["content"]
        else:
            with client.chat_completions_stream(model="gpt-4o", messages=MESSAGES) as stream:
                text = stream.collect().text

    assert text == ANSWER
    warnings = [r.getMessage() for r in caplog.records if r.name == "waygpt"]
    assert len(warnings) == 1 and "ProcessorFault" in warnings[0], warnings
    assert where not in warnings[0]  # the type only: an exception's text may hold anything


def test_a_circular_message_raises_type_error_with_capture_on(sdk, server, spans, monkeypatch,
                                                               caplog):
    monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", "true")
    message: Dict[str, Any] = {"role": "user", "content": "x"}
    message["self"] = message

    with make(sdk, server) as client, pytest.raises(TypeError, match="JSON-serialisable"):
        client.chat_completions(model="gpt-4o", messages=[message])

    assert server.requests == []
    assert spans.one().attributes["error.type"] == "TypeError"
    assert not [r for r in caplog.records if r.name == "waygpt"]


# -- a span's size is flat, whatever the length of a stream ---------------------------------------


def packed_stream(server: WayGPTTestServer, chunks: Iterator[Dict[str, Any]]) -> None:
    """The next chat stream is these chunks, then ``[DONE]``, written in a few large pieces."""
    body = b"".join(sse_event(chunk) for chunk in chunks) + sse_event("[DONE]")
    pieces = [body[start:start + 65536] for start in range(0, len(body), 65536)]
    server.script(path=CHAT, chunks=pieces, content_type="text/event-stream")


def test_a_long_stream_records_one_finish_reason_per_choice(client, server, spans):
    packed_stream(server, (
        {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [
            {"index": n % 2, "delta": {"content": "x"}, "finish_reason": ("stop", "length")[n % 2]}
        ]} for n in range(20_000)
    ))

    for _ in client.chat_completions_stream(model="gpt-4o", messages=MESSAGES):
        pass

    assert spans.one().attributes["gen_ai.response.finish_reasons"] == ("stop", "length")


def test_a_captured_answer_is_cut_at_one_million_characters(sdk, server, spans, monkeypatch):
    monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", "true")
    packed_stream(server, (content("y" * 16384) for _ in range(70)))  # 1,146,880 characters

    with make(sdk, server) as client:
        for _ in client.chat_completions_stream(model="gpt-4o", messages=MESSAGES):
            pass

    captured = json.loads(spans.one().attributes["gen_ai.output.messages"])
    assert captured == [{"role": "assistant", "content": "y" * 1024 * 1024}]


def test_a_traced_streams_memory_does_not_grow_with_its_chunks(sdk, server, spans, monkeypatch):
    monkeypatch.setenv("WAYGPT_OTEL_CAPTURE_CONTENT", "true")

    def peak_growth(count: int) -> int:
        """Bytes the process held at most while a traced stream of ``count`` chunks was read
        (each with its finish reason and two characters to capture), beyond its start."""
        packed_stream(server, (
            {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [
                {"index": 0, "delta": {"content": f"{n % 100:02}"}, "finish_reason": "length"}
            ]} for n in range(count)
        ))
        tracemalloc.start()
        try:
            if sdk is waygpt:
                with make(sdk, server) as client:
                    for _ in client.chat_completions_stream(model="gpt-4o", messages=MESSAGES):
                        pass
            else:  # in its own event loop: the adapter's thread hop per chunk is slow here
                run_async(server, read_async)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    async def read_async(client: Any) -> None:
        async for _ in await client.chat_completions_stream(model="gpt-4o", messages=MESSAGES):
            pass

    short, long = peak_growth(2_000), peak_growth(40_000)
    print(short, long)

    # Kept per chunk, 38,000 more chunks would be about 4 MB more (a reason and a piece of
    # text each); what a span keeps of them is their last reason and 76,000 characters.
    assert long - short < 1_500_000, (short, long)
    assert len(spans.all()) == 2


def test_a_call_refused_from_a_second_event_loop_leaves_no_span_open(server, spans, failing):
    pytest.importorskip("aiohttp")
    import threading

    client = waygpt.AsyncWayGPTClient(api_url=server.url, project_key=server.project_key)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(client.get_models(), loop).result(20)
        opened = failing.open
        with pytest.raises(waygpt.ConfigurationError, match="one AsyncWayGPTClient per event"):
            asyncio.run(client.get_models())
        assert failing.open == opened
    finally:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert len(spans.all()) == 1  # the first loop's call
