"""``waygpt demo``: a tour of the SDK against the built-in local server.

Everything runs on 127.0.0.1 against :class:`waygpt.testing.WayGPTTestServer`: no account,
no network, a few seconds at most. Each step prints a heading saying what it shows.
"""

from __future__ import annotations

import logging
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    TextIO,
    Tuple,
)

import requests
from requests.adapters import HTTPAdapter

from .. import AuthenticationError, PermissionDeniedError, RateLimitError, WayGPTClient
from ._common import UsageError
from ._progress import JobProgress
from ._run import Run, add_command

if TYPE_CHECKING:
    from ..testing import WayGPTTestServer

__all__ = ["STEP_TITLES", "register", "run_demo"]

STEP_TITLES = (
    "Chat completion: one request, one answer",
    "Streaming: the reply printed token by token as it arrives",
    "Models: what the project may use",
    "Use cases: the project's presets",
    "Image generation: URLs of the generated images",
    "Video job: submitted, then waited for with progress",
    "HMAC signing: a signed request with Russian text",
    "Retries: a 429 answered, then retried after Retry-After",
    "Typed errors: a bad key raises AuthenticationError",
    "Client API: log in with e-mail and password, list the projects",
)

_MODELS_PATH = "/api/v1/waygpt/models"
# Long enough to see, short enough to keep the demo quick.
_RETRY_AFTER_SECONDS = 1


def register(commands: Any) -> None:
    """Add ``demo`` to ``commands`` (an ``add_subparsers()`` result)."""
    add_command(commands, "demo", "walk through the SDK against a built-in local server "
                "(no account, no network)", _demo, global_options=False)


def _demo(run: Run) -> None:
    # The global options are accepted before any command; the demo has no use for them,
    # so saying so beats ignoring them.
    given = run.global_options_given()
    if given:
        raise UsageError("the demo runs against its own local server and takes no options: "
                         f"drop {', '.join(given)}")
    run_demo(run.out)


class _Records(logging.Handler):
    """Keeps the ``waygpt`` log records of one step, to show what the SDK reported."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Exchange(NamedTuple):
    method: str
    path: str
    status: int
    retry_after: Optional[str]
    sent: float  # time.monotonic() when the request left
    answered: float  # ... and when its answer came back


class _Wire(HTTPAdapter):
    """A transport adapter that notes each request and its answer, as the client sent them.

    The retry step shows from these notes when the retry left, so what it prints about the
    wait is measured, not taken from the SDK's log or from what the demo scripted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: List[_Exchange] = []

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        sent = time.monotonic()
        response = super().send(request, *args, **kwargs)
        self.exchanges.append(_Exchange(
            str(request.method), request.path_url, response.status_code,
            response.headers.get("Retry-After"), sent, time.monotonic(),
        ))
        return response


def _content(reply: Mapping[str, Any]) -> str:
    choices = reply.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return str(message.get("content", ""))


def run_demo(out: TextIO) -> None:
    """Start a local server, run every step against it, print what happens to ``out``."""
    from ..testing import WayGPTTestServer

    started = time.monotonic()
    _say(out, "WayGPT SDK demo: a local WayGPT server on 127.0.0.1, no account, no network.")
    # The demo talks to its own server only: no proxy settings from the environment.
    session = requests.Session()
    session.trust_env = False
    with WayGPTTestServer(job_steps=5) as server:
        _say(out, f"Server: {server.url}   project key: {server.project_key[:12]}...")
        tour = _Tour(out, server, session)
        try:
            tour.run()
        finally:
            tour.client.close()
            session.close()
    _say(out)
    _say(out, f"Done: {len(STEP_TITLES)} steps in {time.monotonic() - started:.1f} s.")
    _say(out, "Next: export WAYGPT_PROJECT_KEY=sk_live_... and try  waygpt chat \"Привет!\"")


def _say(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


class _Tour:
    """The demo's steps, one method each, in the order of ``STEP_TITLES``."""

    def __init__(
        self, out: TextIO, server: WayGPTTestServer, session: requests.Session
    ) -> None:
        self.out = out
        self.server = server
        self.session = session
        self.client = self.make_client()

    def run(self) -> None:
        steps: List[Callable[[], None]] = [
            self.chat, self.stream, self.models, self.use_cases, self.image, self.video,
            self.hmac, self.retry, self.typed_error, self.client_api,
        ]
        for number, (title, step) in enumerate(zip(STEP_TITLES, steps), start=1):
            self.say()
            self.say(f"[{number}/{len(STEP_TITLES)}] {title}")
            step()

    def say(self, text: str = "") -> None:
        _say(self.out, text)

    def make_client(self, **overrides: Any) -> WayGPTClient:
        """A client of the demo's server; ``overrides`` replace its settings."""
        server = self.server
        settings: Dict[str, Any] = {
            "api_url": server.url,
            "project_key": server.project_key,
            # Given so that WAYGPT_USE_HMAC=true in the environment still works here.
            "project_id": server.project_id,
            "hmac_secret": server.hmac_secret,
            "timeout": 10,
            "session": self.session,
        }
        settings.update(overrides)
        return WayGPTClient(**settings)

    # -- the steps ---------------------------------------------------------------------------

    def chat(self) -> None:
        prompt = "Привет! Расскажи коротко, что ты умеешь."
        reply = self.client.chat_completions(messages=[{"role": "user", "content": prompt}])
        self.say(f"    you:   {prompt}")
        self.say(f"    model: {reply.get('model')}   usage: {reply.get('usage')}")
        self.say(f"    reply: {_content(reply)}")

    def stream(self) -> None:
        prompt = "Расскажи сказку про робота в трёх словах."
        self.say(f"    you:   {prompt}")
        self.out.write("    reply: ")
        chunks = 0
        with self.client.chat_completions_stream(
            messages=[{"role": "user", "content": prompt}]
        ) as chunk_stream:
            for chunk in chunk_stream:
                chunks += 1
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        self.out.write(piece)
                        self.out.flush()
                        time.sleep(0.03)  # slow enough to see the tokens arrive
        self.say()
        self.say(f"    ({chunks} chunks, the last one with the finish reason and usage)")

    def models(self) -> None:
        ids = self.client.get_models()
        self.say(f"    get_models(): {', '.join(ids)}")
        full = self.client.get_models_full()
        providers = sorted({str(m.get("provider")) for m in full})
        self.say(f"    get_models_full(): {len(full)} models from {', '.join(providers)}")

    def use_cases(self) -> None:
        for item in self.client.get_use_cases(detailed=True):
            self.say(f"    {item.get('key'):<10} {item.get('kind'):<16} {item.get('name')}")
        reply = self.client.chat_completions(
            messages=[{"role": "user", "content": "Где мой заказ?"}], use_case="support"
        )
        self.say(f"    chat with use_case='support' -> model {reply.get('model')}")

    def image(self) -> None:
        answer = self.client.image_generations("Закат над Волгой, акварель", size="512x512")
        for item in answer.get("data") or ():
            self.say(f"    {item.get('url')}")

    def video(self) -> None:
        job = self.client.video_generations("Кот играет на балалайке", duration=5)
        job_id = str(job["job_id"])
        self.say(f"    video_generations() -> job {job_id} ({job.get('status')})")
        self.say("    wait_for_media_job(job_id, on_update=...):")
        progress = JobProgress(self.out, prefix="      ")
        try:
            final = self.client.wait_for_media_job(
                job_id, poll_interval=0.15, timeout=30, on_update=progress
            )
        finally:
            progress.finish()
        result = final.get("result") or {}
        self.say(f"    completed: {result.get('url')}")

    def hmac(self) -> None:
        # Switch the project to "HMAC required" through the Client API (see the last step).
        server = self.server
        token = server.issue_token()
        self.client.client_update_project(server.project_id, token, hmac_required=True)
        try:
            self._signed_and_unsigned("Подпиши этот запрос, пожалуйста: ёжик, щука, объём.")
        finally:
            self.client.client_update_project(server.project_id, token, hmac_required=False)

    def _signed_and_unsigned(self, prompt: str) -> None:
        messages = [{"role": "user", "content": prompt}]
        try:
            self.client.chat_completions(messages=messages)
        except PermissionDeniedError as exc:
            self.say(f"    unsigned: {exc.status_code} {type(exc).__name__}: {exc.message}")
        with self.make_client(use_hmac=True) as signed:
            reply = signed.chat_completions(messages=messages)
        sent = self.server.requests[-1]
        self.say(f"    signed with X-MB-Signature {sent.headers.get('x-mb-signature', '')[:16]}"
                 f"..., nonce {sent.headers.get('x-mb-nonce', '')[:8]}...: accepted")
        self.say(f"    reply: {_content(reply)}")

    def retry(self) -> None:
        self.server.script(status=429, headers={"Retry-After": str(_RETRY_AFTER_SECONDS)},
                           body={"detail": "Rate limit exceeded"}, path=_MODELS_PATH)
        ids, exchanges, records = self._watched_get_models()
        for number, sent in enumerate(exchanges, start=1):
            line = f"    request {number}: {sent.method} {sent.path} -> {sent.status}"
            if sent.retry_after is not None:
                line += f", Retry-After: {sent.retry_after}"
            self.say(line)
        self.say(f"    get_models() returned {len(ids)} models after {len(exchanges)} "
                 "requests to the server")
        if len(exchanges) >= 2 and exchanges[0].retry_after is not None:
            waited = exchanges[1].sent - exchanges[0].answered
            self.say(f"    the client waited {waited:.2f} s before retrying: it honoured "
                     f"Retry-After: {exchanges[0].retry_after}")
        for record in records:
            self.say(f"    log {record.levelname:<7} {record.getMessage()}")
        self._no_retry()

    def _watched_get_models(self) -> Tuple[List[str], List[_Exchange], List[logging.LogRecord]]:
        """``get_models()`` with the requests on the wire and the SDK's log noted."""
        wire = _Wire()
        watched = requests.Session()
        watched.trust_env = False
        watched.mount("http://", wire)
        records = _Records()
        logger = logging.getLogger("waygpt")
        old_level = logger.level
        logger.addHandler(records)
        logger.setLevel(logging.DEBUG)
        try:
            with self.make_client(session=watched) as watching:
                ids = watching.get_models()
        finally:
            logger.removeHandler(records)
            logger.setLevel(old_level)
            watched.close()
        return ids, wire.exchanges, records.records

    def _no_retry(self) -> None:
        self.server.script(status=429, headers={"Retry-After": "7"},
                           body={"detail": "Rate limit exceeded"}, path=_MODELS_PATH)
        try:
            self.client.with_options(max_retries=0).get_models()
        except RateLimitError as exc:
            self.say(f"    with_options(max_retries=0): {type(exc).__name__}, "
                     f"status {exc.status_code}, retry_after={exc.retry_after:g} s")

    def typed_error(self) -> None:
        with self.make_client(project_key="sk_live_wrong_key_for_the_demo") as wrong:
            try:
                wrong.get_models()
            except AuthenticationError as exc:
                self.say(f"    except AuthenticationError: status {exc.status_code}, "
                         f"message {exc.message!r}")

    def client_api(self) -> None:
        server = self.server
        with self.make_client(project_key=None) as account:
            login = account.client_login(server.user_email, server.user_password)
            self.say(f"    client_login({server.user_email!r}, ...) -> a "
                     f"{login.get('token_type')} token, expires in {login.get('expires_in')} s")
            for project in account.client_list_projects():
                use_case_count = len(account.client_list_use_cases(str(project["id"])))
                self.say(f"    project {project.get('name')!r}  id {project.get('id')}  "
                         f"{use_case_count} use cases")
