"""Calls that fail half-way recover, or say exactly what was lost.

* A signed call refused for its timestamp by a server whose clock is minutes away is signed
  again with the server's time (its ``Date`` header), once, and the offset is kept.
* A stream that fails before its first content (cut after the headers, an in-stream 429 or
  5xx) is started again within the retry budget and the deadline; after content it never is,
  and the error carries ``partial``, what was handed out, each chunk once.

Everything runs over real HTTP against ``waygpt.testing`` (``clock_offset``,
``script_stream_fault``), for the sync client, the async client and the one-file build.
"""

from __future__ import annotations

import email.utils
import logging
import pickle
import socket
import threading
import time
from typing import Any, Iterator, List

import pytest
from urllib3.util.retry import Retry

from raw_server import RawServer
from waygpt.retry import default_retry
from waygpt.testing import WayGPTTestServer

MODELS = "/api/v1/waygpt/models"
CHAT = "/api/v1/waygpt/chat/completions"
MESSAGES = [{"role": "user", "content": "hello there"}]
ANSWER = "Echo: hello there"  # what the test server streams for MESSAGES
SKEW = 900.0  # seconds: three times the server's window


def fast_retry(total: int = 3) -> Retry:
    """The default retry policy without its backoff sleeps."""
    return default_retry(total, backoff_factor=0)


def signed(sdk: Any, server: WayGPTTestServer, **options: Any) -> Any:
    options.setdefault("max_retries", fast_retry())
    options.setdefault("timeout", 5)
    return sdk.WayGPTClient(
        api_url=server.url,
        project_key=server.project_key,
        project_id=server.project_id,
        hmac_secret=options.pop("hmac_secret", server.hmac_secret),
        use_hmac=True,
        **options,
    )


def nonces(server: WayGPTTestServer) -> List[str]:
    return [r.headers.get("x-mb-nonce", "") for r in server.requests]


@pytest.fixture(params=[SKEW, -SKEW], ids=["server-ahead", "server-behind"])
def skewed_server(request: Any) -> Iterator[WayGPTTestServer]:
    with WayGPTTestServer(require_hmac=True, clock_offset=request.param) as running:
        yield running


# -- clock skew -----------------------------------------------------------------------------


def test_a_signed_call_from_a_skewed_clock_is_signed_again_with_the_servers_time(
    sdk, skewed_server
):
    with signed(sdk, skewed_server) as client:
        assert client.get_models()
        offset = client.clock_offset

    assert len(skewed_server.requests) == 2  # refused once, then accepted
    assert len(set(nonces(skewed_server))) == 2  # a fresh nonce for the second attempt
    assert abs(offset - skewed_server.clock_offset) < 5


def test_the_learned_offset_is_kept_so_later_calls_need_no_extra_request(sdk, skewed_server):
    with signed(sdk, skewed_server) as client:
        client.get_models()
        skewed_server.clear_requests()
        client.get_models()
        client.chat_completions(messages=MESSAGES)

    assert len(skewed_server.requests) == 2


def test_a_copy_made_with_with_options_shares_the_learned_offset(sdk, skewed_server):
    with signed(sdk, skewed_server) as client:
        client.get_models()
        skewed_server.clear_requests()
        client.with_options(timeout=10).get_models()

    assert len(skewed_server.requests) == 1


def test_the_clock_correction_does_not_count_against_max_retries(sdk, skewed_server):
    with signed(sdk, skewed_server, max_retries=0) as client:
        assert client.get_models()

    assert len(skewed_server.requests) == 2


def test_a_stream_from_a_skewed_clock_is_corrected_too(sdk, skewed_server):
    with signed(sdk, skewed_server) as client:
        result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == ANSWER
    assert len(skewed_server.requests) == 2


def test_the_correction_is_logged_at_info(sdk, skewed_server, caplog):
    caplog.set_level(logging.INFO, logger="waygpt")
    with signed(sdk, skewed_server) as client:
        client.get_models()

    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("clock is" in line and "s from this machine" in line for line in lines), lines


def test_twenty_threads_first_calls_on_a_skewed_clock_all_succeed(sdk, skewed_server):
    results: List[Any] = []
    with signed(sdk, skewed_server) as client:

        def call() -> None:
            try:
                results.append(client.get_models())
            except Exception as error:  # noqa: BLE001 - collected for the assertion
                results.append(error)

        threads = [threading.Thread(target=call) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    assert len(results) == 20
    assert all(isinstance(result, list) for result in results), results
    assert len(set(nonces(skewed_server))) == len(skewed_server.requests)  # never one reused


def test_a_refusal_whose_date_agrees_with_the_local_clock_is_not_retried(sdk, hmac_server):
    with signed(sdk, hmac_server, hmac_secret="not-the-secret") as client:
        with pytest.raises(sdk.PermissionDeniedError):
            client.get_models()
        assert client.clock_offset == 0

    assert len(hmac_server.requests) == 1


@pytest.mark.parametrize("date", ["garbage", "", "Mon, 99 Foo 2026 25:61:61 GMT"])
def test_an_unreadable_date_changes_nothing(sdk, hmac_server, date):
    hmac_server.script(path=MODELS, status=403, body={"detail": "bad timestamp"},
                       headers={"Date": date})
    with signed(sdk, hmac_server) as client:
        with pytest.raises(sdk.PermissionDeniedError):
            client.get_models()
        assert client.clock_offset == 0

    assert len(hmac_server.requests) == 1


def test_a_refusal_without_a_date_header_changes_nothing(sdk):
    body = b'{"detail": "HMAC timestamp outside the window"}'

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    with RawServer(handler) as raw, sdk.WayGPTClient(
        api_url=raw.url, project_key="sk_live_x", project_id="p", hmac_secret="s" * 16,
        use_hmac=True, max_retries=0, timeout=5,
    ) as client:
        with pytest.raises(sdk.PermissionDeniedError):
            client.get_models()
        assert client.clock_offset == 0
        assert len(raw.requests) == 1


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def test_at_most_one_correction_is_made_per_call_whatever_the_server_says(sdk, hmac_server):
    for hours in (1, 2):  # each refusal names a clock an hour further on
        hmac_server.script(path=MODELS, status=403, body={"detail": "bad timestamp"},
                           headers={"Date": http_date(3600 * hours)})
    with signed(sdk, hmac_server) as client:
        with pytest.raises(sdk.PermissionDeniedError):
            client.get_models()

    assert len(hmac_server.requests) == 2


def test_an_unsigned_client_never_corrects_a_clock(sdk, server):
    server.script(path=MODELS, status=401, body={"detail": "no"}, headers={"Date": http_date(3600)})
    with sdk.WayGPTClient(api_url=server.url, project_key=server.project_key) as client:
        with pytest.raises(sdk.AuthenticationError):
            client.get_models()
        assert client.clock_offset == 0

    assert len(server.requests) == 1


# -- a stream that fails before its first content -------------------------------------------


def stream_client(sdk: Any, server: WayGPTTestServer, **options: Any) -> Any:
    options.setdefault("max_retries", fast_retry())
    options.setdefault("timeout", 5)
    return sdk.WayGPTClient(api_url=server.url, project_key=server.project_key, **options)


def contents(chunks: List[Any]) -> List[str]:
    return [
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk.get("choices", [])
    ]


@pytest.mark.parametrize("cut", ["close", "reset"])
def test_a_stream_cut_right_after_its_headers_is_started_again(sdk, server, cut):
    server.script_stream_fault(after_events=0, cut=cut, times=2)
    with stream_client(sdk, server) as client:
        chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert "".join(contents(chunks)) == ANSWER  # every chunk once
    assert len(server.requests) == 3


@pytest.mark.parametrize("code", [429, 500, 502, 503])
def test_a_retryable_error_event_before_any_content_starts_the_stream_again(sdk, server, code):
    server.script_stream_fault(after_events=0, error_code=code)
    with stream_client(sdk, server) as client:
        result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == ANSWER
    assert result.finish_reason == "stop"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("code", "cls"),
    [(400, "BadRequestError"), (401, "AuthenticationError"), (403, "PermissionDeniedError"),
     (404, "NotFoundError"), (422, "UnprocessableEntityError")],
)
def test_a_non_retryable_error_event_is_raised_at_once(sdk, server, code, cls):
    server.script_stream_fault(after_events=0, error_code=code)
    with stream_client(sdk, server) as client:
        with pytest.raises(getattr(sdk, cls)) as caught:
            list(client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.status_code == code
    assert len(server.requests) == 1


def test_a_stream_restarted_after_a_cut_is_signed_afresh(sdk, hmac_server):
    hmac_server.script_stream_fault(after_events=0, cut="close", times=2)
    with signed(sdk, hmac_server) as client:
        result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == ANSWER
    assert len(set(nonces(hmac_server))) == 3


def test_with_max_retries_0_a_stream_cut_before_content_raises_at_once(sdk, server):
    server.script_stream_fault(after_events=0, cut="close")
    with stream_client(sdk, server, max_retries=0) as client:
        with pytest.raises(sdk.APIConnectionError) as caught:
            list(client.chat_completions_stream(messages=MESSAGES))

    assert not isinstance(caught.value, sdk.StreamInterruptedError)
    assert len(server.requests) == 1


def test_the_retry_budget_is_shared_with_the_request_before_the_stream(sdk, server):
    server.script(method="POST", path=CHAT, status=503, body={"detail": "busy"})
    server.script_stream_fault(after_events=0, cut="close", times=None)
    with stream_client(sdk, server, max_retries=fast_retry(2)) as client:
        with pytest.raises(sdk.APIConnectionError):
            list(client.chat_completions_stream(messages=MESSAGES))

    assert len(server.requests) == 3  # the 503, one cut stream, then no budget for more



def test_a_restarted_stream_may_last_longer_than_total_timeout(sdk, server):
    # total_timeout bounds what comes before a stream's events, on the first attempt and on
    # the one that starts it again; the events themselves may go on for longer.
    server.script(
        method="POST", path=CHAT, chunks=[b'data: {"error": {"message": "busy", '
                                          b'"code": 503, "retry_after": 0}}\n\n'],
        content_type="text/event-stream",
    )
    pieces = [b'data: {"choices": [{"index": 0, "delta": {"content": "w"}}]}\n\n'] * 6
    server.script(method="POST", path=CHAT, chunks=[*pieces, b"data: [DONE]\n\n"],
                  chunk_delay=0.4, content_type="text/event-stream")
    with stream_client(sdk, server, total_timeout=1.0) as client:
        result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == "w" * 6  # 2.4 s of events after a 1 s total_timeout
    assert len(server.requests) == 2

def test_a_stream_restart_waits_as_a_retry_does(sdk, server, sleeps):
    server.script(
        method="POST", path=CHAT, chunks=[b'data: {"error": {"message": "slow down", '
                                          b'"code": 429, "retry_after": 2}}\n\n'],
        content_type="text/event-stream",
    )
    with stream_client(sdk, server, max_retries=3) as client:
        result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == ANSWER
    assert sleeps == [2.0]  # the error's retry_after, as a Retry-After


@pytest.mark.parametrize(
    "retry_after", [b'"Wed, 21 Oct 99999999999999999999 07:28:00 GMT"', b"1e999", b"NaN"]
)
def test_a_stream_restart_ignores_an_unreadable_retry_after(sdk, server, sleeps, retry_after):
    server.script(
        method="POST", path=CHAT, chunks=[b'data: {"error": {"message": "slow down", '
                                          b'"code": 429, "retry_after": %s}}\n\n' % retry_after],
        content_type="text/event-stream",
    )
    with stream_client(sdk, server, max_retries=3) as client:
        result = client.chat_completions_stream(messages=MESSAGES).collect()

    assert result.text == ANSWER
    # Started again as after an error without retry_after: after the first backoff.
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0, sleeps


def test_stream_restarts_end_with_total_timeout(sdk, server):
    server.script_stream_fault(after_events=0, cut="close", times=None)
    with stream_client(sdk, server, max_retries=100, total_timeout=2) as client:
        started = time.monotonic()
        with pytest.raises(sdk.APIConnectionError):
            list(client.chat_completions_stream(messages=MESSAGES))
        elapsed = time.monotonic() - started

    assert elapsed < 8, f"the restarts went on for {elapsed:.1f} s"
    assert len(server.requests) >= 2


def test_close_while_a_stream_waits_to_start_again_sends_nothing_more(sdk, server):
    # A "stop" button pressed while the stream waits out a Retry-After before starting again.
    server.script(
        method="POST", path=CHAT, chunks=[b'data: {"error": {"message": "slow down", '
                                          b'"code": 429, "retry_after": 6}}\n\n'],
        content_type="text/event-stream",
    )
    waiting = threading.Event()

    class NoteTheWait(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "starting it again" in record.getMessage():
                waiting.set()

    note = NoteTheWait()
    logging.getLogger("waygpt").addHandler(note)
    received: List[Any] = []
    failures: List[BaseException] = []
    try:
        with stream_client(sdk, server) as client:
            stream = client.chat_completions_stream(messages=MESSAGES)

            def consume() -> None:
                try:
                    received.extend(stream)
                except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                    failures.append(exc)

            reader = threading.Thread(target=consume)
            reader.start()
            assert waiting.wait(10), "the stream never started to wait"
            time.sleep(0.2)  # well inside the 6 s wait
            started = time.monotonic()
            stream.close()
            reader.join(15)
            elapsed = time.monotonic() - started
    finally:
        logging.getLogger("waygpt").removeHandler(note)

    assert not reader.is_alive()
    assert elapsed < 3, f"the iteration ended {elapsed:.1f} s after close()"
    assert failures == [] and received == []
    assert stream.closed
    assert server.wait_for_open_connections(0) == 0
    assert len(server.requests) == 1  # the first attempt only



def test_close_while_a_restarted_stream_waits_to_retry_its_new_attempt_sends_nothing_more(
    sdk, server
):
    # The stream starts again; its new attempt is refused with a 503 whose Retry-After the
    # pipeline waits out, and the stream is closed during that wait.
    server.script(
        method="POST", path=CHAT, chunks=[b'data: {"error": {"message": "slow down", '
                                          b'"code": 429, "retry_after": 0}}\n\n'],
        content_type="text/event-stream",
    )
    server.script(method="POST", path=CHAT, status=503, headers={"Retry-After": "2"},
                  body={"detail": "busy"})
    received: List[Any] = []
    failures: List[BaseException] = []
    with stream_client(sdk, server) as client:
        stream = client.chat_completions_stream(messages=MESSAGES)

        def consume() -> None:
            try:
                received.extend(stream)
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                failures.append(exc)

        reader = threading.Thread(target=consume)
        reader.start()
        give_up = time.monotonic() + 10
        while len(server.requests) < 2 and time.monotonic() < give_up:
            time.sleep(0.01)
        time.sleep(0.3)  # the 503 arrived: the pipeline waits 2 s before its next request
        stream.close()
        reader.join(15)
        time.sleep(2.5)  # past the Retry-After: a request sent after it would be here by now

    assert not reader.is_alive()
    assert failures == [] and received == []
    assert server.wait_for_open_connections(0) == 0
    assert len(server.requests) == 2

LATE_ANSWERS = {
    "a stream": {
        "content_type": "text/event-stream",
        "chunks": [b'data: {"choices": [{"index": 0, "delta": {"content": "late"}}]}\n\n',
                   b"data: [DONE]\n\n"],
    },
    "an error": {"status": 401, "body": {"detail": "Invalid project key"}},
}


@pytest.mark.parametrize("late", LATE_ANSWERS, ids=["stream", "error"])
def test_close_while_a_restarted_stream_waits_for_its_headers_hands_out_nothing(
    sdk, server, late
):
    server.script(
        method="POST", path=CHAT, chunks=[b'data: {"error": {"message": "slow down", '
                                          b'"code": 429, "retry_after": 0}}\n\n'],
        content_type="text/event-stream",
    )
    # The new attempt's answer comes 2 s late.
    server.script(method="POST", path=CHAT, delay=2.0, **LATE_ANSWERS[late])
    received: List[Any] = []
    failures: List[BaseException] = []
    with stream_client(sdk, server) as client:
        stream = client.chat_completions_stream(messages=MESSAGES)

        def consume() -> None:
            try:
                received.extend(stream)
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                failures.append(exc)

        reader = threading.Thread(target=consume)
        reader.start()
        give_up = time.monotonic() + 10
        while len(server.requests) < 2 and time.monotonic() < give_up:
            time.sleep(0.01)
        time.sleep(0.2)  # the new attempt is sent; its answer is 2 s away
        stream.close()
        reader.join(15)

    assert not reader.is_alive()
    assert failures == [] and received == []
    assert server.wait_for_open_connections(0) == 0
    assert len(server.requests) == 2


def test_chunks_without_content_before_a_cut_are_not_repeated(sdk, server):
    role_only = (b'data: {"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, '
                 b'"delta": {"role": "assistant"}}]}\n\n')
    server.script(method="POST", path=CHAT, chunks=[role_only, role_only], framing="chunked",
                  content_type="text/event-stream", cut="close")
    with stream_client(sdk, server) as client:
        chunks = list(client.chat_completions_stream(messages=MESSAGES))

    assert "".join(contents(chunks)) == ANSWER
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"] ==
               {"role": "assistant"}) == 0  # the first stream's were dropped with it
    assert len(server.requests) == 2


# -- after the first content: never retried, never repeated ---------------------------------


def test_a_stream_cut_after_content_raises_stream_interrupted_with_the_partial_answer(
    sdk, server
):
    server.script_stream_fault(after_events=2, cut="reset")
    received: List[Any] = []
    with stream_client(sdk, server) as client:
        with pytest.raises(sdk.StreamInterruptedError) as caught:
            for chunk in client.chat_completions_stream(messages=MESSAGES):
                received.append(chunk)

    partial = caught.value.partial
    assert isinstance(caught.value, sdk.APIConnectionError)
    assert contents(received) == ["Echo:", " hello"]  # each delivered chunk once
    assert (partial.text, partial.chunks, partial.role) == ("Echo: hello", 2, "assistant")
    assert partial.model == "gpt-4o-mini" and partial.id.startswith("chatcmpl-")
    assert (partial.finish_reason, partial.usage) == (None, None)
    assert len(server.requests) == 1


def test_an_error_event_after_content_raises_its_type_with_the_partial_answer(sdk, server):
    server.script_stream_fault(after_events=1, error_code=503)
    with stream_client(sdk, server) as client:
        with pytest.raises(sdk.InternalServerError) as caught:
            list(client.chat_completions_stream(messages=MESSAGES))

    assert caught.value.partial.text == "Echo:"
    assert caught.value.partial.chunks == 1
    assert len(server.requests) == 1


def test_stream_interrupted_pickles_with_its_partial_answer_and_no_secret(sdk, server):
    server.script_stream_fault(after_events=2, cut="close")
    with stream_client(sdk, server) as client:
        with pytest.raises(sdk.StreamInterruptedError) as caught:
            list(client.chat_completions_stream(messages=MESSAGES))

    data = pickle.dumps(caught.value)
    copy = pickle.loads(data)
    assert type(copy).__name__ == "StreamInterruptedError"
    assert copy.partial.text == "Echo: hello"
    assert server.project_key.encode() not in data
    assert server.project_key not in repr(copy) + str(copy)


def test_collect_after_content_raises_with_the_partial_answer(sdk, server):
    server.script_stream_fault(after_events=1, cut="close")
    with stream_client(sdk, server) as client:
        with pytest.raises(sdk.StreamInterruptedError) as caught:
            client.chat_completions_stream(messages=MESSAGES).collect()

    assert caught.value.partial.text == "Echo:"
