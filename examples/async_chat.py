"""The async client: a call, a stream, five questions at once, a typed error, a cancelled task.

    pip install "waygpt[aiohttp]"
    export WAYGPT_PROJECT_KEY=sk_live_...
    python examples/async_chat.py "Расскажи короткую сказку про кота"

    python examples/async_chat.py --demo   # local test server, no network

``AsyncWayGPTClient`` has the methods of ``WayGPTClient``, each ``async``. One client serves
every task of the program; it opens its connections at the first call, inside the running
event loop, and ``async with`` closes them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import time
from typing import Any, Dict, List, Optional

from waygpt import APIStatusError, AsyncWayGPTClient, RateLimitError

INSTALL_HINT = 'this example needs aiohttp, an optional extra: pip install "waygpt[aiohttp]"'


def ask(text: str) -> List[Dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def plain_call(client: AsyncWayGPTClient, prompt: str) -> None:
    reply = await client.chat_completions(messages=ask(prompt))
    print("answer:", reply["choices"][0]["message"]["content"])


async def streamed(client: AsyncWayGPTClient, prompt: str) -> None:
    # The first await waits for the stream's headers (an HTTP error raises here); the
    # async with block releases the connection however the loop is left.
    print("stream: ", end="")
    async with await client.chat_completions_stream(messages=ask(prompt)) as stream:
        async for text in stream.text():
            print(text, end="", flush=True)
    print()


async def five_at_once(client: AsyncWayGPTClient) -> None:
    questions = [
        "Что такое SSE?",
        "Что такое HMAC?",
        "Что такое JWT?",
        "Что такое asyncio?",
        "Что такое aiohttp?",
    ]

    async def one(question: str) -> str:
        reply = await client.chat_completions(messages=ask(question), max_tokens=100)
        return str(reply["choices"][0]["message"]["content"])

    started = time.monotonic()
    # One client, five tasks, each on its own pooled connection.
    answers = await asyncio.gather(*(one(q) for q in questions))
    print(f"{len(answers)} answers in {time.monotonic() - started:.2f} s:")
    for question, answer in zip(questions, answers):
        print(f"  {question} -> {answer[:60]}")


async def typed_error(client: AsyncWayGPTClient) -> None:
    """Failures are the sync client's classes; aiohttp's exceptions never escape."""
    try:
        await client.chat_completions(messages=ask("Привет"), use_case="no-such-use-case")
    except RateLimitError as exc:
        print(f"RateLimitError: {exc} (retry after {exc.retry_after} s)")
    except APIStatusError as exc:
        print(f"{type(exc).__name__}: status={exc.status_code} message={exc.message!r}")


async def cancelled_task(client: AsyncWayGPTClient, prompt: str, after: float) -> None:
    """Cancelling a task mid-stream releases its connection; CancelledError goes through."""
    parts: List[str] = []

    async def read() -> None:
        async with await client.chat_completions_stream(messages=ask(prompt)) as stream:
            async for text in stream.text():
                parts.append(text)

    task = asyncio.create_task(read())
    await asyncio.sleep(after)
    task.cancel()  # what asyncio.timeout(), a "stop" button or a shut-down server does
    try:
        await task
    except asyncio.CancelledError:
        print(f"cancelled after {after:g} s, having read {''.join(parts)!r}")
    else:
        print(f"finished within {after:g} s: {''.join(parts)!r}")


async def run(client: AsyncWayGPTClient, prompt: str) -> None:
    await plain_call(client, prompt)
    await streamed(client, prompt)
    await five_at_once(client)
    await typed_error(client)
    await cancelled_task(client, "Напиши длинное стихотворение про море", after=1.0)


async def run_demo(prompt: str) -> None:
    from waygpt.testing import WayGPTTestServer, sse_event

    # Every stream ends with a usage-only chunk, as a real server's may.
    with WayGPTTestServer(always_include_usage=True) as server:
        async with AsyncWayGPTClient(api_url=server.url, project_key=server.project_key) as client:
            await plain_call(client, prompt)
            await streamed(client, prompt)
            await five_at_once(client)
            await typed_error(client)  # the test server knows no such use case: 404
            # A 429 whose Retry-After is over 60 s is raised at once, not waited for.
            server.script(status=429, headers={"Retry-After": "120"},
                          body={"detail": "Too many requests"})
            await typed_error(client)
            # A slow stream, one word every 0.3 s, so that the cancel lands in the middle.
            words = ["Шумит", " море,", " плещут", " волны,", " чайки", " кричат"]
            server.script(
                path="/api/v1/waygpt/chat/completions",
                chunks=[sse_event({"choices": [{"index": 0, "delta": {"content": w}}]})
                        for w in words],
                chunk_delay=0.3,
                content_type="text/event-stream",
            )
            await cancelled_task(client, "Напиши стихотворение про море", after=1.0)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="The async client, on aiohttp.")
    parser.add_argument("prompt", nargs="?", default="Расскажи короткую сказку про кота")
    parser.add_argument(
        "--demo", action="store_true", help="run against a local test server (no network)"
    )
    args = parser.parse_args(argv)
    if not args.demo and not os.environ.get("WAYGPT_PROJECT_KEY"):
        parser.error("set WAYGPT_PROJECT_KEY (and WAYGPT_API_URL if needed), or use --demo")
    # Without the extra, importing AsyncWayGPTClient works and creating one raises
    # ImportError with the same hint.
    if importlib.util.find_spec("aiohttp") is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    if args.demo:
        asyncio.run(run_demo(args.prompt))
        return 0

    async def real() -> None:
        # The read timeout is the longest silence allowed between two pieces of a stream.
        async with AsyncWayGPTClient(timeout=(10, 120)) as client:
            await run(client, args.prompt)

    asyncio.run(real())
    return 0


if __name__ == "__main__":
    sys.exit(main())
