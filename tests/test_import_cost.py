"""``import waygpt`` stays cheap, and the async client is an optional extra.

Each check runs a fresh interpreter, so that what earlier tests imported does not count.
``aiohttp`` is made unimportable there with ``sys.modules["aiohttp"] = None``, which is what
a machine without the extra looks like to ``import aiohttp``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


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


def test_lazily_imported_names_are_the_real_objects():
    import waygpt
    from waygpt import _chat_result, sse

    assert waygpt.SSEDecoder is sse.SSEDecoder
    assert waygpt.ServerSentEvent is sse.ServerSentEvent
    assert waygpt.ChatStreamResult is _chat_result.ChatStreamResult
    assert waygpt.collect_chat_stream is _chat_result.collect_chat_stream
