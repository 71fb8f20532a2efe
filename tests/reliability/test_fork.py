"""A forked child never uses, nor shuts down, a connection its parent opened.

What gunicorn ``--preload``, celery prefork workers and ``multiprocessing`` pools do: the
client is made (and used once) in the parent, then the process forks. Parent and child must
each get their own answers, and the parent's pooled connection must outlive the child.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from typing import Any, List

import pytest

import waygpt
from waygpt.testing import WayGPTTestServer

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

CALLS = 100
ROUNDS = 3


def wrong_answers(client: Any, who: str, calls: int = CALLS) -> int:
    """How many of ``calls`` echo requests got someone else's answer, or an error."""
    wrong = 0
    for index in range(calls):
        text = f"{who}-{index}"
        try:
            reply = client.chat_completions(messages=[{"role": "user", "content": text}])
        except waygpt.WayGPTError:
            wrong += 1
            continue
        if reply["choices"][0]["message"]["content"] != f"Echo: {text}":
            wrong += 1
    return wrong


def fork_and_call(client: Any) -> tuple[int, int]:
    """Parent and child make CALLS echo calls at the same time; their wrong answers."""
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 99
        try:
            code = min(wrong_answers(client, f"child-{os.getpid()}"), 98)
        finally:
            os._exit(code)
    parent_wrong = wrong_answers(client, "parent")
    _, status = os.waitpid(pid, 0)
    return parent_wrong, os.waitstatus_to_exitcode(status)


def test_parent_and_child_each_get_their_own_answers(server: WayGPTTestServer):
    with waygpt.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=10
    ) as client:
        client.get_models()  # a kept-alive connection in the pool before the fork
        for _ in range(ROUNDS):
            parent_wrong, child_wrong = fork_and_call(client)
            assert (parent_wrong, child_wrong) == (0, 0)

        # The parent kept its one connection throughout; each child opened its own.
        assert server.connections_opened == 1 + ROUNDS


def test_a_signed_client_survives_forks_with_fresh_nonces(hmac_server: WayGPTTestServer):
    with waygpt.WayGPTClient(
        api_url=hmac_server.url,
        project_key=hmac_server.project_key,
        project_id=hmac_server.project_id,
        hmac_secret=hmac_server.hmac_secret,
        use_hmac=True,
        max_retries=0,
        timeout=10,
    ) as client:
        client.get_models()
        parent_wrong, child_wrong = fork_and_call(client)

    assert (parent_wrong, child_wrong) == (0, 0)
    nonces = [r.headers["x-mb-nonce"] for r in hmac_server.requests]
    assert len(nonces) == len(set(nonces)) == 1 + 2 * CALLS


def test_a_callers_session_gets_new_pools_in_the_child(server: WayGPTTestServer):
    import requests

    session = requests.Session()
    with waygpt.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=10,
        session=session,
    ) as client:
        client.get_models()
        parent_wrong, child_wrong = fork_and_call(client)
        assert (parent_wrong, child_wrong) == (0, 0)
        assert server.connections_opened == 2
    session.close()


def test_children_that_seed_random_alike_send_different_client_request_ids(
    server: WayGPTTestServer,
):
    with waygpt.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=10
    ) as client:
        client.get_models()
        children = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:  # the child: report through the exit code, never return into pytest
                code = 1
                try:
                    random.seed(1)  # as each worker of a pool may, from one initialiser
                    client.get_models()
                    code = 0
                finally:
                    os._exit(code)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]

    assert codes == [0, 0]
    ids = [r.headers.get("x-client-request-id") for r in server.requests]
    assert len(ids) == len(set(ids)) == 3, ids


# -- a multiprocessing pool started with fork after a warm-up call ---------------------------

_pool_client: Any = None


def _pool_echo(index: int) -> str:
    reply = _pool_client.chat_completions(messages=[{"role": "user", "content": f"job-{index}"}])
    return str(reply["choices"][0]["message"]["content"])


def test_a_fork_pool_after_a_warm_up_call_loses_no_answer(server: WayGPTTestServer):
    global _pool_client
    _pool_client = waygpt.WayGPTClient(
        api_url=server.url, project_key=server.project_key, max_retries=0, timeout=10
    )
    try:
        _pool_client.get_models()  # the warm-up call that used to be shared by every worker
        context = multiprocessing.get_context("fork")
        with context.Pool(4) as pool:
            answers: List[str] = pool.map(_pool_echo, range(400), chunksize=5)
        assert answers == [f"Echo: job-{index}" for index in range(400)]
        assert _pool_client.get_models()  # the parent's client still works
    finally:
        _pool_client.close()
        _pool_client = None
