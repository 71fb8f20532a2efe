"""A kept-alive connection the server closed is replaced without the caller noticing.

The server answers normally, then closes the socket without announcing it
(``close_connection=True``: no ``Connection: close`` header), so the client pools a
connection that is already dead or about to die. The next call must succeed on a new one:

* when the close has happened before the next call, urllib3 sees the dead socket when it
  takes the connection from the pool and opens another;
* when the next call is sent at the very moment the server closes (the race every
  keep-alive client meets), the server's end answers nothing at all; the SDK replays an
  idempotent request once, at once, with a fresh signature.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello"}]
RACE_ROUNDS = 300
SETTLE = 0.3  # seconds for the server thread to finish closing (no assertion depends on it)


@pytest.fixture
def signed_client(make_signed_client: Any, hmac_server: WayGPTTestServer) -> Iterator[Any]:
    """No retries at all: whatever succeeds here is the stale-connection handling alone."""
    with make_signed_client(hmac_server, max_retries=0, timeout=5) as created:
        yield created


def _nonces(server: WayGPTTestServer) -> list:
    return [r.headers.get("x-mb-nonce") for r in server.requests]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_models(),
        lambda c: c.chat_completions(messages=MESSAGES),
        lambda c: c.create_widget_token(),
        lambda c: list(c.chat_completions(messages=MESSAGES, stream=True)),
    ],
    ids=["get", "post", "post_widget", "stream"],
)
def test_a_connection_closed_between_calls_is_replaced(
    typed, signed_client, hmac_server, call
):
    hmac_server.script(path=MODELS, body=["gpt-test"], close_connection=True)
    assert signed_client.get_models() == ["gpt-test"]
    time.sleep(SETTLE)  # the server closes its end "in the meantime"

    result = typed(lambda: call(signed_client))

    assert not isinstance(result, Exception), result
    assert hmac_server.connections_opened == 2
    nonces = _nonces(hmac_server)
    assert len(set(nonces)) == len(nonces) == 2


def test_a_stream_that_ends_with_the_server_closing_leaves_a_usable_client(
    typed, signed_client, hmac_server
):
    hmac_server.script(
        method="POST",
        path=CHAT,
        chunks=[
            b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n',
            b"data: [DONE]\n\n",
        ],
        content_type="text/event-stream",
        close_connection=True,
    )
    assert len(list(signed_client.chat_completions(messages=MESSAGES, stream=True))) == 1
    time.sleep(SETTLE)

    assert typed(signed_client.get_models)
    assert typed(lambda: signed_client.chat_completions(messages=MESSAGES))["choices"]


def test_reusing_a_connection_the_moment_the_server_closes_it_never_fails(
    typed, signed_client, hmac_server
):
    """No pause between the two calls: the close and the next request cross on the wire."""
    for _ in range(RACE_ROUNDS):
        hmac_server.script(path=MODELS, body=["gpt-test"], close_connection=True)
        assert typed(signed_client.get_models) == ["gpt-test"]
        result = typed(signed_client.get_models)
        assert not isinstance(result, Exception), result

    # Every stale request was sent again with a new nonce; the server accepted them all.
    nonces = _nonces(hmac_server)
    assert len(set(nonces)) == len(nonces)
    assert hmac_server.connections_opened >= RACE_ROUNDS


def test_a_reset_on_a_fresh_connection_is_not_replayed(sdk, typed, signed_client, hmac_server):
    """A server that drops the request with a RST is an error, not a stale connection."""
    hmac_server.script(path=MODELS, reset=True)

    error = typed(signed_client.get_models)

    assert type(error) is sdk.APIConnectionError
    assert len(hmac_server.requests) == 1
