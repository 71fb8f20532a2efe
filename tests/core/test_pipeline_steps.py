"""The pipeline's decisions, driven without I/O: ``ClientCore._steps`` yields its steps and is
sent what a transport would answer, here given in advance.

The same rules are pinned over real sockets in ``tests/client``; these tests show them one
step at a time, so that a broken rule points at the step that broke it.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from waygpt import APIConnectionError, APITimeoutError, AuthenticationError, WayGPTClient
from waygpt._core import CallState, Deadline, Notify, Read, Send, Sleep, Steps
from waygpt._endpoints import Call, Endpoints
from waygpt._observe import AnswerHeaders
from waygpt.errors import TransportFailure
from waygpt.retry import STALE_CONNECTION

KEY = "sk_live_test_pipeline_steps_0000000000"


class Answer:
    """An answer whose headers were read, as a transport hands it to the pipeline."""

    def __init__(self, status: int, headers: Optional[Dict[str, str]] = None, body: bytes = b""):
        fields = {name.lower(): value for name, value in (headers or {}).items()}

        def values(name: str) -> List[str]:
            return [fields[name.lower()]] if name.lower() in fields else []

        self.status = status
        self.headers = AnswerHeaders(fields, values)
        self.body = body
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Transport:
    """Runs the steps as a transport does: a Send gets the next of ``answers``, a Read that
    answer's body (then b""), a Notify calls the hooks, a Sleep returns at once."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.steps: List[Any] = []
        self.sent: List[Dict[str, str]] = []  # the headers of each request, as it was sent

    def run(self, steps: Steps) -> Any:
        reply: Any = None
        body = b""
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as stop:
                return stop.value
            self.steps.append(step)
            reply = None
            if isinstance(step, Send):
                self.sent.append(dict(step.request.headers))
                reply = self.answers.pop(0)
                body = getattr(reply, "body", b"")
            elif isinstance(step, Read):
                reply, body = body, b""
            elif isinstance(step, Notify):
                for hook in step.hooks:
                    hook(step.view)

    def waits(self) -> List[float]:
        return [step.seconds for step in self.steps if isinstance(step, Sleep)]


@pytest.fixture
def make_client() -> Iterator[Any]:
    made: List[WayGPTClient] = []

    def make(**options: Any) -> WayGPTClient:
        client = WayGPTClient(api_url="http://127.0.0.1:9", project_key=KEY, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def pipeline(
    client: WayGPTClient, call: Call[Any], deadline: Optional[Deadline] = None
) -> Tuple[Steps, CallState]:
    """The steps of ``call`` (not started yet), and the state they keep."""
    state = client._call_state(call)
    return client._steps(call, deadline or Deadline(30), state), state


def chat() -> Call[Any]:
    messages = [{"role": "user", "content": "hi"}]
    return Endpoints.chat_completions("gpt-4o", messages, None, None, None, None, False, {})


def test_a_503_with_retry_after_is_sent_again_after_that_wait(make_client: Any) -> None:
    busy = Answer(503, {"Retry-After": "2"}, b'{"detail": "busy"}')
    transport = Transport(busy, Answer(200, {"Content-Type": "application/json"}, b'["gpt-4o"]'))
    steps, state = pipeline(make_client(max_retries=2), Endpoints.get_models())
    assert transport.run(steps) == ["gpt-4o"]
    assert len(transport.sent) == 2
    assert transport.waits() == [2.0]
    assert state.attempts == 2
    assert busy.closed  # its body read, its connection given back before the wait


def test_a_post_whose_kept_alive_connection_was_reset_is_not_sent_again(
    make_client: Any,
) -> None:
    # The server closed without answering: it may still have acted on the request.
    transport = Transport(TransportFailure(STALE_CONNECTION, "connection reset by peer"))
    with pytest.raises(APIConnectionError, match="connection reset by peer") as raised:
        transport.run(pipeline(make_client(max_retries=3), chat())[0])
    assert len(transport.sent) == 1
    assert transport.waits() == []
    assert raised.value.attempts == 1


def test_a_signature_refused_for_the_clock_is_signed_again_once_outside_the_budget(
    make_client: Any,
) -> None:
    def refused(ahead: float) -> Answer:  # the server's clock, ``ahead`` seconds ahead
        date = formatdate(time.time() + ahead, usegmt=True)
        return Answer(401, {"Date": date}, b'{"detail": "timestamp out of window"}')

    # Its clock moves again: still one correction per call, and then the refusal is raised.
    transport = Transport(refused(600), refused(1200))
    client = make_client(
        use_hmac=True, project_id="project-1", hmac_secret="hmac-secret", max_retries=0
    )
    with pytest.raises(AuthenticationError):
        transport.run(pipeline(client, Endpoints.get_models())[0])
    first, second = (int(headers["X-MB-Timestamp"]) for headers in transport.sent)
    assert 590 <= second - first <= 610  # signed again with the server's time, at once
    assert transport.waits() == []
    assert 590 <= client.clock_offset <= 610


def test_a_call_past_its_deadline_after_the_request_hooks_sends_nothing(
    make_client: Any,
) -> None:
    deadline = Deadline(0.5)
    seen: List[int] = []

    def slow_hook(view: Any) -> None:  # a hook that calls out over the network, slowly
        seen.append(view.attempt)
        time.sleep(max(deadline.remaining(), 0) + 0.1)

    client = make_client(event_hooks={"request": [slow_hook]})
    steps, state = pipeline(client, Endpoints.get_models(), deadline)
    transport = Transport()
    with pytest.raises(APITimeoutError):
        transport.run(steps)
    assert seen == [1]
    assert transport.sent == []
    assert state.attempts == 0
