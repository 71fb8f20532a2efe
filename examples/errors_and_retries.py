"""Errors and retries: what is retried, what is raised, and how to tell failures apart.

    export WAYGPT_PROJECT_KEY=sk_live_...
    WAYGPT_LOG=info python examples/errors_and_retries.py     # log each retry to stderr

    python examples/errors_and_retries.py --demo    # scripted failures on a local test server

Every failure is a ``WayGPTError``; the subclass says what happened. 429 and 5xx answers and
failed connection attempts are retried (``max_retries``, default 3), honouring Retry-After.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from waygpt import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    UnprocessableEntityError,
    WayGPTClient,
    WayGPTError,
)
from waygpt.retry import default_retry


def describe(exc: WayGPTError) -> str:
    extra = f", retry_after={exc.retry_after}" if isinstance(exc, RateLimitError) else ""
    return (
        f"{type(exc).__name__}: status={exc.status_code} message={exc.message!r}"
        f" request_id={exc.request_id}{extra}"
    )


def check_setup(client: WayGPTClient) -> int:
    """What a real application might do at start-up: fail early with a clear reason."""
    try:
        models = client.get_models()
    except AuthenticationError:
        print("the project key is wrong or revoked (401)", file=sys.stderr)
        return 1
    except APIConnectionError as exc:
        print(f"no connection to {client.api_url}: {exc}", file=sys.stderr)
        return 1
    except APIStatusError as exc:
        print(f"the server refused: {describe(exc)}", file=sys.stderr)
        return 1
    print(f"connected to {client.api_url}: {len(models)} models")
    return 0


def demo() -> None:
    from waygpt.testing import WayGPTTestServer

    with WayGPTTestServer() as server:
        # backoff_factor=0: the demo does not sleep between attempts. The default policy
        # (max_retries=3) waits about 0.5-1 s, then 1-2 s, then 2-4 s.
        quick = default_retry(3, backoff_factor=0)
        client = WayGPTClient(api_url=server.url, project_key=server.project_key,
                              max_retries=quick)

        # 1. Two 503s, then success: the caller never sees the failures.
        server.script(status=503, body={"detail": "overloaded"}, times=2)
        client.get_models()
        print(f"503, 503, 200 -> ok after {len(server.requests)} attempts")

        # 2. 429 with a short Retry-After is waited for and retried...
        server.clear_requests()
        server.script(status=429, headers={"Retry-After": "0"}, body={"detail": "slow down"})
        client.get_models()
        print(f"429 (Retry-After: 0), 200 -> ok after {len(server.requests)} attempts")

        # ...but a Retry-After over 60 s is raised at once, so the caller decides.
        server.script(status=429, headers={"Retry-After": "300"}, body={"detail": "quota"})
        try:
            client.get_models()
        except RateLimitError as exc:
            print("429 (Retry-After: 300) ->", describe(exc))

        # 3. When the retries run out, the last status is raised, not a vague network error.
        server.script(status=502, body="<html><body>502 Bad Gateway</body></html>", times=4)
        try:
            client.get_models()
        except APIStatusError as exc:
            print("502 x4 ->", describe(exc))

        # 4. Client errors are never retried.
        for status, cls in ((400, BadRequestError), (404, NotFoundError),
                            (422, UnprocessableEntityError)):
            server.script(status=status, body={"detail": f"scripted {status}"})
            try:
                client.get_models()
            except cls as exc:
                print(f"{status} ->", describe(exc))

        # 5. A wrong key: the test server itself answers 401.
        with WayGPTClient(api_url=server.url, project_key="sk_live_wrong") as wrong:
            try:
                wrong.get_models()
            except AuthenticationError as exc:
                print("bad key ->", describe(exc))
        client.close()

    # 6. Nothing listening any more: connection refused. (With max_retries > 0, failed
    #    connection attempts are retried first; here retries are off.)
    with WayGPTClient(api_url=client.api_url, project_key="k", max_retries=0) as gone:
        try:
            gone.get_models()
        except APIConnectionError as exc:
            print("server down ->", describe(exc))
        print("check_setup() exit code:", check_setup(gone))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Typed errors and retries.")
    parser.add_argument(
        "--demo", action="store_true", help="run against a local test server (no network)"
    )
    args = parser.parse_args(argv)
    if args.demo:
        demo()
        return 0
    if not os.environ.get("WAYGPT_PROJECT_KEY"):
        parser.error("set WAYGPT_PROJECT_KEY (and WAYGPT_API_URL if needed), or use --demo")
    with WayGPTClient(max_retries=3, timeout=(5, 60)) as client:
        return check_setup(client)


if __name__ == "__main__":
    sys.exit(main())
