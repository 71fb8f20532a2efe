"""Testing your own application with ``waygpt.testing``: no account, no network, no mocks.

``summarize_ticket`` below stands for your application code. The ``test_*`` functions test
it against ``WayGPTTestServer``, a real HTTP server on 127.0.0.1 that speaks the WayGPT
protocol, records every request and can be scripted to fail.

    python examples/testing_your_app.py --demo           # run the tests below, print results
    pytest examples/testing_your_app.py                  # the same tests under pytest
    WAYGPT_PROJECT_KEY=sk_live_... python examples/testing_your_app.py "ticket text"
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Iterator, List, Optional

from waygpt import APIConnectionError, InternalServerError, RateLimitError, WayGPTClient
from waygpt.retry import default_retry
from waygpt.testing import WayGPTTestServer

FALLBACK = "(summary unavailable)"


# -- the application code under test ------------------------------------------------------


def summarize_ticket(client: WayGPTClient, ticket: str) -> str:
    """A one-line summary of a support ticket, or FALLBACK when WayGPT cannot answer now."""
    try:
        reply = client.chat_completions(
            messages=[
                {"role": "system", "content": "Summarise the ticket in one line."},
                {"role": "user", "content": ticket},
            ],
            use_case="support",
            max_tokens=60,
        )
    except (RateLimitError, InternalServerError, APIConnectionError):
        return FALLBACK
    return str(reply["choices"][0]["message"]["content"]).strip()


# -- the tests ----------------------------------------------------------------------------


def make_client(server: WayGPTTestServer, retries: int = 3) -> WayGPTClient:
    """A client for the test server; backoff 0 so retried tests do not sleep."""
    no_sleep = default_retry(retries, backoff_factor=0)
    return WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=no_sleep, timeout=5
    )


def test_sends_the_ticket_with_its_use_case(server: WayGPTTestServer) -> None:
    with make_client(server) as client:
        summary = summarize_ticket(client, "Письмо для входа так и не пришло")
    assert summary == "Echo: Письмо для входа так и не пришло"  # the test server echoes
    sent = server.last_request
    assert sent is not None and sent.path == "/api/v1/waygpt/chat/completions"
    assert sent.headers["x-project-key"] == server.project_key
    body = sent.json()
    assert body["use_case"] == "support" and body["max_tokens"] == 60
    assert body["messages"][-1]["content"] == "Письмо для входа так и не пришло"


def test_uses_the_answer_the_server_gives(server: WayGPTTestServer) -> None:
    server.script(
        path="/api/v1/waygpt/chat/completions",
        body={"choices": [{"index": 0, "message": {"role": "assistant",
                                                   "content": "  Password e-mail missing \n"}}]},
    )
    with make_client(server) as client:
        assert summarize_ticket(client, "...") == "Password e-mail missing"


def test_a_busy_server_is_retried(server: WayGPTTestServer) -> None:
    server.script(status=503, body={"detail": "overloaded"}, times=2)
    with make_client(server) as client:
        assert summarize_ticket(client, "hello").startswith("Echo:")
    assert len(server.requests) == 3  # two 503s, then the answer


def test_falls_back_on_a_long_rate_limit(server: WayGPTTestServer) -> None:
    # Retry-After above the SDK's 60 s cap is not waited for: the 429 is raised at once.
    server.script(status=429, headers={"Retry-After": "120"}, body={"detail": "Too many"})
    with make_client(server) as client:
        assert summarize_ticket(client, "hello") == FALLBACK
    assert len(server.requests) == 1


def test_falls_back_when_the_server_is_down(server: WayGPTTestServer) -> None:
    client = make_client(server, retries=0)
    server.stop()  # nothing listens on that port any more: connection refused
    with client:
        assert summarize_ticket(client, "hello") == FALLBACK


TESTS: List[Callable[[WayGPTTestServer], None]] = [
    test_sends_the_ticket_with_its_use_case,
    test_uses_the_answer_the_server_gives,
    test_a_busy_server_is_retried,
    test_falls_back_on_a_long_rate_limit,
    test_falls_back_when_the_server_is_down,
]

try:  # under pytest, each test gets a fresh server from this fixture
    import pytest
except ImportError:  # pragma: no cover - running as a plain script without pytest
    pass
else:

    @pytest.fixture
    def server() -> Iterator[WayGPTTestServer]:
        with WayGPTTestServer() as running:
            yield running


def run_tests() -> int:
    failed = 0
    for test in TESTS:
        with WayGPTTestServer() as server:
            try:
                test(server)
            except AssertionError as exc:
                failed += 1
                print(f"FAIL {test.__name__}: {exc!r}")
            else:
                print(f"ok   {test.__name__}")
    print(f"{len(TESTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Test an application with waygpt.testing.")
    parser.add_argument("ticket", nargs="?", default="Письмо для входа так и не пришло")
    parser.add_argument(
        "--demo", action="store_true", help="run the tests against local test servers"
    )
    args = parser.parse_args(argv)
    if args.demo:
        return run_tests()
    if not os.environ.get("WAYGPT_PROJECT_KEY"):
        parser.error("set WAYGPT_PROJECT_KEY to summarise a ticket for real, or use --demo")
    with WayGPTClient() as client:
        print(summarize_ticket(client, args.ticket))
    return 0


if __name__ == "__main__":
    sys.exit(main())
