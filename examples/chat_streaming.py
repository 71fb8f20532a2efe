"""Streaming chat: print the answer token by token as it arrives.

    export WAYGPT_PROJECT_KEY=sk_live_...
    python examples/chat_streaming.py "Расскажи короткую сказку"

    python examples/chat_streaming.py --demo   # local test server, no network

Three ways to read a stream are shown: ``stream.text()`` in a ``with`` block for the text as
it arrives (the block releases the connection even if you stop early), ``collect()`` for the
whole text plus the finish reason and usage, and what happens when the server reports an
error mid-stream. The demo's server ends every stream with a usage-only chunk (no choices),
as a real one may; ``text()`` and ``collect()`` read it like any other.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from waygpt import APIConnectionError, WayGPTClient, WayGPTError


def stream_answer(client: WayGPTClient, prompt: str) -> None:
    messages = [{"role": "user", "content": prompt}]

    # 1. The text as it arrives: each piece of the answer, chunks without text skipped.
    with client.chat_completions_stream(messages=messages) as stream:
        for text in stream.text():
            print(text, end="", flush=True)
    print()

    # 2. The whole answer at once, with the finish reason and token usage.
    result = client.chat_completions(messages=messages, stream=True).collect()
    print(f"[{result.chunks} chunks, finish_reason={result.finish_reason}, usage={result.usage}]")


def stream_with_error(client: WayGPTClient) -> None:
    """An upstream failure mid-stream arrives as a typed error, not as a chunk."""
    try:
        with client.chat_completions_stream(messages=[{"role": "user", "content": "Hi"}]) as s:
            for text in s.text():
                print(text, end="", flush=True)
    except APIConnectionError as exc:  # the connection dropped or went silent too long
        print(f"\n[stream interrupted: {exc}]")
    except WayGPTError as exc:  # an error object inside the stream (typed by its status)
        print(f"\n[{type(exc).__name__} in the stream: {exc}]")


def run_demo(prompt: str) -> None:
    from waygpt.testing import WayGPTTestServer, sse_event

    # Every stream ends with a usage-only chunk, as a real server's may.
    with WayGPTTestServer(always_include_usage=True) as server:
        with WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
            stream_answer(client, prompt)
            # Script the next chat request: one token, then an error event from upstream.
            server.script(
                path="/api/v1/waygpt/chat/completions",
                chunks=[
                    sse_event({"choices": [{"index": 0, "delta": {"content": "Once upon"}}]}),
                    sse_event({"error": {"message": "upstream model failed", "code": 502}}),
                ],
                content_type="text/event-stream",
            )
            stream_with_error(client)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Stream a chat completion.")
    parser.add_argument("prompt", nargs="?", default="Расскажи короткую сказку про кота")
    parser.add_argument(
        "--demo", action="store_true", help="run against a local test server (no network)"
    )
    args = parser.parse_args(argv)

    if args.demo:
        run_demo(args.prompt)
        return 0
    if not os.environ.get("WAYGPT_PROJECT_KEY"):
        parser.error("set WAYGPT_PROJECT_KEY (and WAYGPT_API_URL if needed), or use --demo")
    # The read timeout is the longest silence allowed between two pieces of the stream.
    with WayGPTClient(timeout=(10, 120)) as client:
        stream_answer(client, args.prompt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
