"""The ``waygpt`` command line (also ``python -m waygpt``).

Settings come from flags or the ``WAYGPT_*`` environment variables (a flag wins). Data goes to
stdout (a reply, URLs, a job id, a token), commentary and progress to stderr, so the output of
every command can be piped or captured. ``--json`` prints the server's JSON instead.

Exit codes: 0 success, 1 a local I/O failure, 2 bad usage or configuration, 3 an API error
(an HTTP error status, a failed media job, an unexpected answer), 4 no answer (connection
failure or timeout), 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO
from urllib.parse import urlsplit

from ._progress import JobProgress
from ._version import __version__
from .client import WayGPTClient
from .errors import APIConnectionError, ConfigurationError, WayGPTError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_IO", "EXIT_USAGE", "EXIT_API",
           "EXIT_CONNECTION", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_IO = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_CONNECTION = 4
EXIT_INTERRUPTED = 130

_USE_CASE_KINDS = "chat, catalog_extract, multimodal, image_generation, video_generation, multi"
# Fields masked in project output unless --show-secrets is given.
_SECRET_FIELDS = frozenset({"api_key", "hmac_secret", "project_key", "secret"})

_EPILOG = """\
environment:
  WAYGPT_API_URL, WAYGPT_PROJECT_KEY, WAYGPT_PROJECT_ID, WAYGPT_HMAC_SECRET,
  WAYGPT_USE_HMAC=true    the same settings as the flags (a flag wins)
  WAYGPT_JWT              Client API token (see `waygpt login`)
  WAYGPT_EMAIL, WAYGPT_PASSWORD
                          Client API account: `login` reads them, and the projects and
                          use-cases --project commands log in with them when no token is set
  WAYGPT_LOG=debug|info   log each HTTP attempt to stderr

exit codes:
  0 success, 1 local I/O error, 2 bad usage or configuration,
  3 API error (HTTP error status, failed media job), 4 connection failure or timeout,
  130 interrupted

try it without an account:  waygpt demo
"""


class UsageError(Exception):
    """A problem with the command line or the settings, found before anything is sent."""


# -- argument types ---------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def _csv_list(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _json_value(text: str) -> Any:
    """A JSON value, or ``@FILE`` to read it from a file."""
    source = text
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as handle:
                source = handle.read()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(source)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


# -- the parser -------------------------------------------------------------------------------


def _global_options() -> argparse.ArgumentParser:
    """Options accepted both before and after the command (``waygpt --json models``)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options (before or after the command)")
    sup = argparse.SUPPRESS
    group.add_argument("--api-url", default=sup, metavar="URL",
                       help="server base URL (WAYGPT_API_URL; default https://app.waygpt.ru)")
    group.add_argument("--project-key", default=sup, metavar="KEY",
                       help="project key sk_live_... (WAYGPT_PROJECT_KEY)")
    group.add_argument("--project-id", default=sup, metavar="UUID",
                       help="project id, needed with --use-hmac (WAYGPT_PROJECT_ID)")
    group.add_argument("--hmac-secret", default=sup, metavar="SECRET",
                       help="HMAC secret, needed with --use-hmac (WAYGPT_HMAC_SECRET)")
    group.add_argument("--use-hmac", action="store_true", default=sup,
                       help="sign project-key requests (WAYGPT_USE_HMAC=true)")
    group.add_argument("--timeout", type=_positive_float, default=sup, metavar="SECONDS",
                       help="HTTP timeout (default 60)")
    group.add_argument("--max-retries", type=_int_at_least(0), default=sup, metavar="N",
                       help="retries for 429, 5xx and connect failures (default 3)")
    group.add_argument("--json", action="store_true", default=sup,
                       help="print the server's JSON answer")
    group.add_argument("--jwt", default=sup, metavar="TOKEN",
                       help="Client API token (WAYGPT_JWT)")
    group.add_argument("--email", default=sup, help="Client API e-mail (WAYGPT_EMAIL)")
    group.add_argument("--password", default=sup,
                       help="Client API password (WAYGPT_PASSWORD; visible to other local "
                            "users in the process list: prefer the variable or the prompt)")
    return parent


def _wait_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--poll-interval", type=_positive_float, default=2.0, metavar="SECONDS",
                        help="seconds between two polls while waiting (default 2)")
    parent.add_argument("--wait-timeout", type=_positive_float, default=600.0, metavar="SECONDS",
                        help="give up waiting after this many seconds (default 600)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The ``waygpt`` argument parser."""
    common = _global_options()
    waiting = _wait_options()
    sup = argparse.SUPPRESS
    parser = argparse.ArgumentParser(
        prog="waygpt",
        description="Command line for the WayGPT AI Server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"waygpt {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, handler: Callable[[_Run], None],
                parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  parents=[common, *parents], allow_abbrev=False)
        sub.set_defaults(handler=handler)
        return sub

    command("demo", "walk through the SDK against a built-in local server "
            "(no account, no network)", _cmd_demo)

    chat = command("chat", "send a chat message and print the reply", _cmd_chat)
    chat.add_argument("text", nargs="?", metavar="TEXT",
                      help="the message (read from stdin when absent)")
    chat.add_argument("--stream", action="store_true", help="print the reply as it arrives")
    chat.add_argument("--model", default="auto", help="model id (default auto)")
    chat.add_argument("--use-case", metavar="KEY", help="use-case key")
    chat.add_argument("--system", metavar="TEXT", help="a system message sent first")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=_int_at_least(1), metavar="N")

    models = command("models", "list the models this project may use", _cmd_models)
    models.add_argument("--full", action="store_true", help="with name, provider and type")

    use_cases = command(
        "use-cases",
        "list the project's use cases; with --project ID, manage them (Client API)",
        _cmd_use_cases,
    )
    use_cases.add_argument("--detailed", action="store_true", help="include each config")
    project_opt = argparse.ArgumentParser(add_help=False)
    for target in (use_cases, project_opt):
        target.add_argument("--project", default=sup, metavar="ID",
                            help="project id: use the Client API (JWT) instead of the key")
    actions = use_cases.add_subparsers(dest="uc_action", metavar="ACTION")

    def uc_action(name: str, help_text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help_text, description=help_text,
                                  parents=[common, project_opt], allow_abbrev=False)

    uc_action("list", "list the use cases of --project")
    uc_get = uc_action("get", "show one use case by id or key")
    uc_get.add_argument("use_case_id", metavar="USE_CASE_ID")
    uc_create = uc_action("create", "create a use case")
    uc_create.add_argument("key", metavar="KEY")
    uc_create.add_argument("name", metavar="NAME")
    uc_create.add_argument("--kind", default="chat", help=f"one of {_USE_CASE_KINDS}")
    uc_create.add_argument("--config", type=_json_value, metavar="JSON",
                           help="config as JSON, or @FILE")
    uc_create.add_argument("--active", action=argparse.BooleanOptionalAction, default=True)
    uc_update = uc_action("update", "change a use case (only the fields given)")
    uc_update.add_argument("use_case_id", metavar="USE_CASE_ID")
    uc_update.add_argument("--key")
    uc_update.add_argument("--name")
    uc_update.add_argument("--kind", help=f"one of {_USE_CASE_KINDS}")
    uc_update.add_argument("--config", type=_json_value, metavar="JSON",
                           help="config as JSON, or @FILE")
    uc_update.add_argument("--active", action=argparse.BooleanOptionalAction, default=None)
    uc_delete = uc_action("delete", "delete a use case")
    uc_delete.add_argument("use_case_id", metavar="USE_CASE_ID")

    image = command("image", "generate images and print their URLs", _cmd_image)
    image.add_argument("prompt", metavar="PROMPT")
    image.add_argument("--size", default="1024x1024", help="WIDTHxHEIGHT (default 1024x1024)")
    image.add_argument("-n", type=_int_at_least(1), default=1, metavar="N",
                       help="number of images (default 1)")
    image.add_argument("--model", help="model id (default: the server's choice)")
    image.add_argument("-o", "--output", metavar="FILE",
                       help="also write the JSON answer (with the URLs) to FILE")

    video = command("video", "start a video job; print its id, or wait for the result",
                    _cmd_video, parents=[waiting])
    video.add_argument("prompt", metavar="PROMPT")
    video.add_argument("--model", help="model id (default: the server's choice)")
    video.add_argument("--duration", type=_int_at_least(1), metavar="SECONDS")
    video.add_argument("--wait", action="store_true",
                       help="wait for the job, showing progress, and print the result URL")

    job = command("job", "show, wait for or cancel a media job", _cmd_job, parents=[waiting])
    job.add_argument("job_id", metavar="ID")
    mode = job.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="wait until the job finishes")
    mode.add_argument("--cancel", action="store_true", help="cancel the job")

    command("login", "log in to the Client API and print the token "
            "(export WAYGPT_JWT=$(waygpt login))", _cmd_login)

    projects = command("projects", "manage projects (Client API)", _cmd_projects)
    secrets_opt = argparse.ArgumentParser(add_help=False)
    for target in (projects, secrets_opt):
        target.add_argument("--show-secrets", action="store_true", default=sup,
                            help="print api_key and hmac_secret in full")
    p_actions = projects.add_subparsers(dest="project_action", metavar="ACTION", required=True)

    def project_action(name: str, help_text: str) -> argparse.ArgumentParser:
        return p_actions.add_parser(name, help=help_text, description=help_text,
                                    parents=[common, secrets_opt], allow_abbrev=False)

    project_action("list", "list your projects")
    p_get = project_action("get", "show a project's settings")
    p_get.add_argument("project_id", metavar="ID")
    p_create = project_action("create", "create a project")
    p_create.add_argument("name", metavar="NAME")
    p_update = project_action("update", "change a project (only the fields given)")
    p_update.add_argument("project_id", metavar="ID")
    p_update.add_argument("--name")
    p_update.add_argument("--active", action=argparse.BooleanOptionalAction, default=None)
    p_update.add_argument("--hmac-required", action=argparse.BooleanOptionalAction, default=None)
    p_update.add_argument("--allowed-models", type=_csv_list, metavar="M1,M2")
    p_update.add_argument("--allowed-domains", type=_csv_list, metavar="D1,D2")
    p_update.add_argument("--rate-limit-rpm", type=_int_at_least(0), metavar="N")
    p_update.add_argument("--rate-limit-rpd", type=_int_at_least(0), metavar="N")
    p_delete = project_action("delete", "delete a project")
    p_delete.add_argument("project_id", metavar="ID")
    return parser


# -- the run context --------------------------------------------------------------------------


class _Run:
    """One command's arguments, output streams and (lazily created) client."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.json = bool(self.opt("json"))
        self._client: Optional[WayGPTClient] = None

    def opt(self, name: str) -> Any:
        return getattr(self.args, name, None)

    def setting(self, name: str, env: str) -> Optional[str]:
        value = self.opt(name)
        if value is None:
            value = os.environ.get(env)
        return value if value else None

    @property
    def client(self) -> WayGPTClient:
        if self._client is None:
            kwargs: Dict[str, Any] = {}
            if self.opt("timeout") is not None:
                kwargs["timeout"] = self.opt("timeout")
            if self.opt("max_retries") is not None:
                kwargs["max_retries"] = self.opt("max_retries")
            self._client = WayGPTClient(
                api_url=self.opt("api_url"),
                project_key=self.opt("project_key"),
                project_id=self.opt("project_id"),
                hmac_secret=self.opt("hmac_secret"),
                use_hmac=bool(self.opt("use_hmac")),
                **kwargs,
            )
        return self._client

    def project_client(self) -> WayGPTClient:
        """The client, after checking a project key is configured (a clearer message)."""
        if not self.setting("project_key", "WAYGPT_PROJECT_KEY"):
            raise UsageError("no project key: pass --project-key or set WAYGPT_PROJECT_KEY")
        return self.client

    def jwt(self) -> str:
        """The Client API token: --jwt, WAYGPT_JWT, or a login with the e-mail and password."""
        token = self.setting("jwt", "WAYGPT_JWT")
        if token:
            return token
        email = self.setting("email", "WAYGPT_EMAIL")
        password = self.setting("password", "WAYGPT_PASSWORD")
        if email and password:
            answer = self.client.client_login(email, password)
            return str(answer["token"])
        raise UsageError(
            "the Client API needs a token: pass --jwt or set WAYGPT_JWT "
            "(export WAYGPT_JWT=$(waygpt login)), or set WAYGPT_EMAIL and WAYGPT_PASSWORD"
        )

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def note(self, text: str) -> None:
        """Commentary for a human: stderr, so stdout stays data only."""
        self.err.write(text + "\n")
        self.err.flush()

    def print_json(self, data: Any) -> None:
        self.print(json.dumps(data, ensure_ascii=False, indent=2))

    @property
    def client_if_created(self) -> Optional[WayGPTClient]:
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# -- output helpers ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [list(headers)] + [[_text(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in cells]
    return "\n".join(lines)


def _details(data: Dict[str, Any]) -> str:
    if not data:
        return "(empty)"
    width = max(len(str(key)) for key in data)
    return "\n".join(f"{str(key) + ':':<{width + 1}} {_text(value)}" for key, value in data.items())


def _mask(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    return "********" + (value[-4:] if len(value) >= 16 else "")


def _mask_secrets(data: Any) -> Any:
    """A copy of ``data`` with secret fields masked, at any depth."""
    if isinstance(data, dict):
        return {key: _mask(value) if key in _SECRET_FIELDS else _mask_secrets(value)
                for key, value in data.items()}
    if isinstance(data, list):
        return [_mask_secrets(item) for item in data]
    return data


def _job_result_url(job: Dict[str, Any]) -> Optional[str]:
    result = job.get("result")
    if isinstance(result, list) and result:
        result = result[0]
    if isinstance(result, dict):
        for key in ("url", "video_url"):
            if isinstance(result.get(key), str):
                return str(result[key])
    if isinstance(result, str):
        return result
    for key in ("url", "result_url", "video_url"):
        if isinstance(job.get(key), str):
            return str(job[key])
    return None


# -- commands ---------------------------------------------------------------------------------


def _cmd_demo(run: _Run) -> None:
    from ._demo import run_demo

    run_demo(run.out)


def _chat_text(run: _Run) -> str:
    text = run.opt("text")
    if text is None:
        if sys.stdin is None:
            raise UsageError("no message: pass TEXT or pipe it on stdin")
        if sys.stdin.isatty():
            run.note("Type the message, then Ctrl-D (Ctrl-Z Enter on Windows):")
        text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the message is empty: pass TEXT or pipe it on stdin")
    return str(text).rstrip("\r\n")


def _cmd_chat(run: _Run) -> None:
    text = _chat_text(run)
    client = run.project_client()
    messages: List[Dict[str, Any]] = []
    if run.opt("system"):
        messages.append({"role": "system", "content": run.opt("system")})
    messages.append({"role": "user", "content": text})
    options: Dict[str, Any] = {
        "model": run.opt("model"),
        "messages": messages,
        "use_case": run.opt("use_case"),
        "temperature": run.opt("temperature"),
        "max_tokens": run.opt("max_tokens"),
    }
    if not run.opt("stream"):
        reply = client.chat_completions(**options)
        if run.json:
            run.print_json(reply)
            return
        choices = reply.get("choices") or [{}]
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        run.print(content if isinstance(content, str) else _text(reply))
        return
    open_line = False
    try:
        with client.chat_completions_stream(**options) as stream:
            for chunk in stream:
                if run.json:
                    run.print(json.dumps(chunk, ensure_ascii=False))
                    run.out.flush()
                    continue
                for choice in chunk.get("choices") or ():
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    piece = (choice.get("delta") or {}).get("content")
                    if isinstance(piece, str) and piece:
                        run.out.write(piece)
                        run.out.flush()
                        open_line = not piece.endswith("\n")
    finally:
        if open_line:
            run.out.write("\n")
            run.out.flush()


def _cmd_models(run: _Run) -> None:
    client = run.project_client()
    if run.opt("full"):
        full = client.get_models_full()
        if run.json:
            run.print_json(full)
            return
        rows = [[m.get("id"), m.get("name"), m.get("provider"), m.get("type")]
                for m in full if isinstance(m, dict)]
        run.print(_table(rows, ["ID", "NAME", "PROVIDER", "TYPE"]))
        return
    ids = client.get_models()
    if run.json:
        run.print_json(ids)
        return
    for model_id in ids:
        run.print(_text(model_id))


def _cmd_use_cases(run: _Run) -> None:
    project = run.opt("project")
    action = run.opt("uc_action") or "list"
    if project is None:
        if run.opt("uc_action") is not None:
            raise UsageError(f"use-cases {action} needs --project ID (it uses the Client API)")
        _list_project_use_cases(run)
        return
    fields: Dict[str, Any] = {}
    if action == "update":
        fields = {name: run.opt(name) for name in ("key", "name", "kind", "config")}
        fields["is_active"] = run.opt("active")
        if all(value is None for value in fields.values()):
            raise UsageError("nothing to update: give --key, --name, --kind, --config "
                             "or --active/--no-active")
    client = run.client
    jwt = run.jwt()
    if action == "list":
        items = client.client_list_use_cases(project, jwt)
        if run.json:
            run.print_json(items)
            return
        rows = [[u.get("id"), u.get("key"), u.get("kind"), u.get("is_active"), u.get("name")]
                for u in items if isinstance(u, dict)]
        run.print(_table(rows, ["ID", "KEY", "KIND", "ACTIVE", "NAME"]))
        return
    result: Any
    if action == "create":
        result = client.client_create_use_case(
            project, jwt, key=run.opt("key"), name=run.opt("name"), kind=run.opt("kind"),
            config=run.opt("config"), is_active=bool(run.opt("active")),
        )
    else:
        # The server addresses use cases by id; a key is accepted too and resolved here.
        result = client.client_get_use_case(project, run.opt("use_case_id"), jwt)
        use_case_id = str(result.get("id") or run.opt("use_case_id"))
        if action == "update":
            result = client.client_update_use_case(project, use_case_id, jwt, **fields)
        elif action == "delete":
            result = client.client_delete_use_case(project, use_case_id, jwt)
            if not run.json:
                run.print(f"deleted use case {use_case_id}")
                return
    if run.json:
        run.print_json(result)
    else:
        run.print(_details(result) if isinstance(result, dict) else _text(result))


def _list_project_use_cases(run: _Run) -> None:
    detailed = bool(run.opt("detailed"))
    items = run.project_client().get_use_cases(detailed=detailed)
    if run.json:
        run.print_json(items)
        return
    rows = [u for u in items if isinstance(u, dict)]
    if not rows:
        run.note("no use cases")
        return
    table = _table([[u.get("key"), u.get("kind"), u.get("name")] for u in rows],
                   ["KEY", "KIND", "NAME"])
    lines = table.split("\n")
    run.print(lines[0])
    for line, use_case in zip(lines[1:], rows):
        run.print(line)
        if detailed and use_case.get("config"):
            run.print("  config: " + _text(use_case.get("config")))


def _cmd_image(run: _Run) -> None:
    output = run.opt("output")
    if output and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise UsageError(f"cannot write {output}: no such directory")
    answer = run.project_client().image_generations(
        run.opt("prompt"), model=run.opt("model"), size=run.opt("size"), n=run.opt("n")
    )
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(answer, ensure_ascii=False, indent=2) + "\n")
        run.note(f"wrote the answer to {output}")
    if run.json:
        run.print_json(answer)
        return
    data = answer.get("data")
    for index, item in enumerate(data if isinstance(data, list) else [], start=1):
        url = item.get("url") if isinstance(item, dict) else None
        run.print(url if isinstance(url, str) else f"(image {index} has no URL; see --json)")


def _wait(run: _Run, job_id: str) -> None:
    progress = JobProgress(run.err, prefix=f"job {job_id}  ")
    try:
        job = run.client.wait_for_media_job(
            job_id,
            poll_interval=run.opt("poll_interval"),
            timeout=run.opt("wait_timeout"),
            on_update=progress,
        )
    finally:
        progress.finish()
    if run.json:
        run.print_json(job)
        return
    url = _job_result_url(job)
    run.print(url if url else _details(job))


def _cmd_video(run: _Run) -> None:
    answer = run.project_client().video_generations(
        run.opt("prompt"), model=run.opt("model"), duration=run.opt("duration")
    )
    job_id = answer.get("job_id") or answer.get("id")
    if run.opt("wait") and job_id:
        _wait(run, str(job_id))
        return
    if run.json:
        run.print_json(answer)
        return
    if not job_id:
        run.print(_details(answer))
        return
    run.print(str(job_id))
    run.note(f"video job submitted ({answer.get('status', 'pending')}); "
             f"follow it with: waygpt job {job_id} --wait")


def _cmd_job(run: _Run) -> None:
    job_id = run.opt("job_id")
    client = run.project_client()
    if run.opt("wait"):
        _wait(run, job_id)
        return
    job = client.cancel_media_job(job_id) if run.opt("cancel") else client.get_media_job(job_id)
    if run.json:
        run.print_json(job)
        return
    if run.opt("cancel"):
        run.note(f"cancel requested for job {job_id}")
    run.print(_details(job))


def _cmd_login(run: _Run) -> None:
    email = run.setting("email", "WAYGPT_EMAIL")
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if not email and interactive:
        run.err.write("E-mail: ")
        run.err.flush()
        email = sys.stdin.readline().strip()
    if not email:
        raise UsageError("no e-mail: pass --email or set WAYGPT_EMAIL")
    password = run.setting("password", "WAYGPT_PASSWORD")
    if not password and interactive:
        password = getpass.getpass("Password: ", stream=run.err)
    if not password:
        raise UsageError("no password: set WAYGPT_PASSWORD, pass --password, "
                         "or run on a terminal to be asked")
    answer = run.client.client_login(email, password)
    if run.json:
        run.print_json(answer)
        return
    run.print(str(answer["token"]))
    if run.err.isatty():
        run.note(f"logged in as {email}; the token expires in {answer.get('expires_in')} s. "
                 "Use it with: export WAYGPT_JWT=$(waygpt login)")


def _cmd_projects(run: _Run) -> None:
    action = run.opt("project_action")
    show = bool(run.opt("show_secrets"))
    project_id = run.opt("project_id")
    fields: Dict[str, Any] = {}
    if action == "update":
        names = ("name", "hmac_required", "allowed_models", "allowed_domains",
                 "rate_limit_rpm", "rate_limit_rpd")
        fields = {name: run.opt(name) for name in names}
        fields["is_active"] = run.opt("active")
        if all(value is None for value in fields.values()):
            raise UsageError("nothing to update: give --name, --active/--no-active, "
                             "--hmac-required/--no-hmac-required, --allowed-models, "
                             "--allowed-domains, --rate-limit-rpm or --rate-limit-rpd")
    client = run.client
    jwt = run.jwt()
    result: Any
    if action == "list":
        projects = client.client_list_projects(jwt)
        if run.json:
            run.print_json(projects if show else _mask_secrets(projects))
            return
        rows = [[p.get("id"), p.get("is_active"), p.get("hmac_required"), p.get("name")]
                for p in projects if isinstance(p, dict)]
        run.print(_table(rows, ["ID", "ACTIVE", "HMAC", "NAME"]))
        return
    if action == "get":
        result = client.client_get_project(project_id, jwt)
    elif action == "create":
        result = client.client_create_project(run.opt("name"), jwt)
    elif action == "update":
        result = client.client_update_project(project_id, jwt, **fields)
    else:  # delete
        result = client.client_delete_project(project_id, jwt)
        if not run.json:
            run.print(f"deleted project {project_id}")
            return
    if not show:
        result = _mask_secrets(result)
    if run.json:
        run.print_json(result)
    else:
        run.print(_details(result) if isinstance(result, dict) else _text(result))


# -- entry point ------------------------------------------------------------------------------


def _error_line(exc: BaseException) -> str:
    """``error: <status> <ClassName>: <message>`` on one line."""
    if isinstance(exc, UsageError):
        return "error: " + " ".join(str(exc).split())
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or "(no message)"
    line = f"error: {f'{status} ' if status is not None else ''}{type(exc).__name__}: "
    line += " ".join(str(message).split())
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, (int, float)):
        line += f" (retry after {retry_after:g} s)"
    return line


def _server_hint(run: _Run) -> str:
    """`` (server http://host:port)``: where the CLI tried to connect, without credentials."""
    client = run.client_if_created
    if client is None:
        return ""
    parts = urlsplit(client.api_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f" (server {parts.scheme}://{host}{port})"


def _tolerant_streams() -> None:
    """Never fail on a character the console cannot show (Russian on a cp1252 terminal)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):  # pragma: no cover - a detached or closed stream
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    _tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    run = _Run(args, sys.stdout, sys.stderr)
    code = EXIT_OK
    try:
        args.handler(run)
        run.out.flush()
    except KeyboardInterrupt:
        run.err.write("\ninterrupted\n")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`waygpt models | head -1`): nothing left to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_IO
    except (UsageError, ConfigurationError) as exc:
        run.err.write(_error_line(exc) + "\n")
        code = EXIT_USAGE
    except APIConnectionError as exc:
        run.err.write(_error_line(exc) + _server_hint(run) + "\n")
        code = EXIT_CONNECTION
    except WayGPTError as exc:
        run.err.write(_error_line(exc) + "\n")
        code = EXIT_API
    except ValueError as exc:
        run.err.write(_error_line(exc) + "\n")
        code = EXIT_USAGE
    except OSError as exc:
        run.err.write(f"error: {exc.strerror or exc}"
                      f"{f': {exc.filename}' if exc.filename else ''}\n")
        code = EXIT_IO
    finally:
        run.close()
    return code
