"""Basic chat: one question, one answer, with the typed errors a real application handles.

    export WAYGPT_PROJECT_KEY=sk_live_...      # and WAYGPT_API_URL for another server
    python examples/chat_basic.py "Как дела?"

    python examples/chat_basic.py --demo       # no account, no network: a local test server
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from waygpt import (
    APIConnectionError,
    AuthenticationError,
    RateLimitError,
    WayGPTClient,
    WayGPTError,
)


def ask(client: WayGPTClient, question: str) -> int:
    # The models this project may use (the server picks one when model="auto").
    print("models:", ", ".join(client.get_models()))
    try:
        reply = client.chat_completions(
            model="auto",
            messages=[
                {"role": "system", "content": "Отвечай кратко."},
                {"role": "user", "content": question},
            ],
            temperature=0.3,
            max_tokens=200,
        )
    except AuthenticationError as exc:  # 401: wrong or revoked project key
        print(f"check WAYGPT_PROJECT_KEY: {exc}", file=sys.stderr)
        return 1
    except RateLimitError as exc:  # 429 that outlasted the retries
        print(f"rate limited, retry after {exc.retry_after} s: {exc}", file=sys.stderr)
        return 1
    except APIConnectionError as exc:  # no answer at all (refused, DNS, timeout)
        print(f"cannot reach {client.api_url}: {exc}", file=sys.stderr)
        return 1
    except WayGPTError as exc:  # anything else the SDK raises
        print(f"request failed: {exc}", file=sys.stderr)
        return 1

    message = reply["choices"][0]["message"]
    print(f"{reply['model']}: {message['content']}")
    usage = reply.get("usage") or {}
    print(f"tokens: {usage.get('prompt_tokens')} in, {usage.get('completion_tokens')} out")

    # A use case (configured in the WayGPT dashboard) brings its own prompt and models.
    reply = client.chat_completions(
        messages=[{"role": "user", "content": question}], use_case="support"
    )
    print(f"with use case 'support' ({reply['model']}): "
          f"{reply['choices'][0]['message']['content']}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Ask WayGPT one question.")
    parser.add_argument("question", nargs="?", default="Привет! Что ты умеешь?")
    parser.add_argument(
        "--demo", action="store_true", help="run against a local test server (no network)"
    )
    args = parser.parse_args(argv)

    if args.demo:
        from waygpt.testing import WayGPTTestServer

        with WayGPTTestServer() as server, WayGPTClient(
            api_url=server.url, project_key=server.project_key
        ) as client:
            return ask(client, args.question)

    if not os.environ.get("WAYGPT_PROJECT_KEY"):
        parser.error("set WAYGPT_PROJECT_KEY (and WAYGPT_API_URL if needed), or use --demo")
    with WayGPTClient() as client:  # every setting from the WAYGPT_* variables
        return ask(client, args.question)


if __name__ == "__main__":
    sys.exit(main())
