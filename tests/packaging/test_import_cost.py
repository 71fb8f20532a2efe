"""``import waygpt`` stays cheap, and the async client is an optional extra.

Each check runs a fresh interpreter, so that what earlier tests imported does not count.
``aiohttp`` is made unimportable there with ``sys.modules["aiohttp"] = None``, which is what
a machine without the extra looks like to ``import aiohttp``; ``opentelemetry`` likewise.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest


def run(code: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_waygpt_imports_neither_asyncio_nor_aiohttp_nor_dataclasses():
    # Measured on top of requests, which (on some Pythons) imports some of these itself.
    result = run(
        """
        import sys
        import requests
        before = set(sys.modules)
        import waygpt
        added = set(sys.modules) - before
        print(sorted(m for m in ("aiohttp", "asyncio", "dataclasses", "inspect", "uuid")
                     if m in added))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_async_client_imports_without_aiohttp_and_says_how_to_install_it():
    result = run(
        """
        import sys
        sys.modules["aiohttp"] = None  # not installed
        from waygpt import AsyncWayGPTClient, AsyncChatStream  # the names import
        try:
            AsyncWayGPTClient(project_key="sk_live_x")
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "waygpt[aiohttp]"' in result.stdout


def test_the_sync_client_works_without_aiohttp(server):
    result = run(
        f"""
        import sys
        sys.modules["aiohttp"] = None
        import waygpt
        client = waygpt.WayGPTClient(api_url={server.url!r}, project_key={server.project_key!r})
        print(client.get_models()[0])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_a_batch_with_the_sync_client_imports_neither_aiohttp_nor_asyncio(server, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "a", "url": "/v1/chat/completions", '
                      '"body": {"messages": [{"role": "user", "content": "hi"}]}}\n')
    result = run(
        f"""
        import sys
        sys.modules["aiohttp"] = None  # not installed
        import waygpt
        client = waygpt.WayGPTClient(api_url={server.url!r}, project_key={server.project_key!r})
        summary = waygpt.batch(client, {str(source)!r}, {str(tmp_path / "out.jsonl")!r})
        print(summary.succeeded, [m for m in ("asyncio", "aiohttp") if sys.modules.get(m)])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 []"


def test_lazily_imported_names_are_the_real_objects():
    import waygpt
    from waygpt import _chat_result, sse

    assert waygpt.SSEDecoder is sse.SSEDecoder
    assert waygpt.ServerSentEvent is sse.ServerSentEvent
    assert waygpt.ChatStreamResult is _chat_result.ChatStreamResult
    assert waygpt.collect_chat_stream is _chat_result.collect_chat_stream
    from waygpt import _batch

    assert waygpt.batch is _batch.batch and waygpt.BatchSummary is _batch.BatchSummary
    assert waygpt.BatchInputError is _batch.BatchInputError


def test_without_opentelemetry_a_call_imports_none_of_it_and_makes_no_span(server):
    result = run(
        f"""
        import sys
        sys.modules["opentelemetry"] = None  # not installed (waygpt[otel] is not)
        import waygpt
        from waygpt._endpoints import Endpoints
        client = waygpt.WayGPTClient(api_url={server.url!r}, project_key={server.project_key!r})
        client.get_models()
        with client.chat_completions_stream(messages=[{{"role": "user", "content": "hi"}}]) as s:
            s.collect()
        loaded = [name for name, module in sys.modules.items()
                  if name.startswith("opentelemetry") and module is not None]
        span = client._call_state(Endpoints.get_models()).span
        print(loaded, client._tracer, type(span).__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] None NoSpan"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its package is missing
        return False


@pytest.mark.skipif(not installed("opentelemetry.trace"), reason="opentelemetry is not installed")
def test_with_opentelemetry_import_waygpt_imports_none_of_it_until_a_client_is_made():
    result = run(
        """
        import sys
        import waygpt
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        waygpt.WayGPTClient(project_key="sk_live_x")
        print("opentelemetry.trace" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True"]


def test_structured_answers_import_none_of_pydantic_langchain_or_openai(server):
    result = run(
        f"""
        import sys
        import waygpt
        client = waygpt.WayGPTClient(api_url={server.url!r}, project_key={server.project_key!r})
        schema = {{"type": "object", "properties": {{"name": {{"type": "string"}}}}}}
        client.chat_completions_parse(
            messages=[{{"role": "user", "content": "'Kazan'"}}], response_format=schema
        )
        print(sorted(m for m in ("pydantic", "langchain_core", "openai") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_waygpt_langchain_without_langchain_core_says_what_to_install():
    result = run(
        """
        import sys
        sys.modules["langchain_core"] = None  # waygpt[langchain] is not installed
        try:
            import waygpt.langchain
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "waygpt[langchain]"' in result.stdout
