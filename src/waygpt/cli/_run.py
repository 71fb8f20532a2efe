"""The global options, the per-command run context that reads them, and ``add_command``.

The global options are listed once, in ``waygpt --help``. Every command accepts them too (so
``waygpt models --json`` works as well as ``waygpt --json models``) but hides them from its
own help, which then fits a screen.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from .. import DEFAULT_API_URL, WayGPTClient
from ._common import UsageError, int_at_least, positive_float

__all__ = [
    "COMMAND_EPILOG", "GLOBAL_OPTIONS", "Run", "add_command", "add_global_options",
]

# (flag, argparse keyword arguments). Each defaults to SUPPRESS so that a value given before
# the command is not overwritten by the command's own (absent) copy of the option.
GLOBAL_OPTIONS: Tuple[Tuple[str, Dict[str, Any]], ...] = (
    ("--api-url", {"metavar": "URL",
                   "help": f"server base URL; env WAYGPT_API_URL (default: {DEFAULT_API_URL})"}),
    ("--project-key", {"metavar": "KEY",
                       "help": "project key sk_live_...; env WAYGPT_PROJECT_KEY"}),
    ("--project-id", {"metavar": "UUID",
                      "help": "project id, needed with --use-hmac; env WAYGPT_PROJECT_ID"}),
    ("--hmac-secret", {"metavar": "SECRET",
                       "help": "HMAC secret, needed with --use-hmac; env WAYGPT_HMAC_SECRET"}),
    ("--use-hmac", {"action": "store_true",
                    "help": "sign project-key requests; env WAYGPT_USE_HMAC=true"}),
    ("--timeout", {"type": positive_float, "metavar": "SECONDS",
                   "help": "how long to wait for the server (default: 60)"}),
    ("--max-retries", {"type": int_at_least(0), "metavar": "N",
                       "help": "retries after a 429, a 5xx or a failed connection (default: 3)"}),
    ("--json", {"action": "store_true", "help": "print the server's JSON answer instead of text"}),
    ("--jwt", {"metavar": "TOKEN", "help": "Client API token; env WAYGPT_JWT"}),
    ("--email", {"help": "Client API e-mail; env WAYGPT_EMAIL"}),
    ("--password", {"help": "Client API password; env WAYGPT_PASSWORD (a flag is visible to "
                            "other local users in the process list: prefer the variable or "
                            "the prompt)"}),
)

COMMAND_EPILOG = "Global options (see waygpt --help) go before or after the command."


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_global_options(
    parser: argparse.ArgumentParser, *, shown: bool, own: Tuple[str, ...] = ()
) -> None:
    """Add the global options to ``parser``: listed in its help only when ``shown``.

    ``own``: flags left out, because the command adds them itself, with its own help.
    """
    target: Any = parser
    if shown:
        target = parser.add_argument_group("global options (before or after the command)")
    for flag, settings in GLOBAL_OPTIONS:
        if flag in own:
            continue
        options = dict(settings, default=argparse.SUPPRESS)
        if not shown:
            options["help"] = argparse.SUPPRESS
        target.add_argument(flag, **options)


def add_command(
    commands: Any,
    name: str,
    help_text: str,
    handler: Optional[Callable[[Run], Optional[int]]] = None,
    *,
    global_options: bool = True,
    own_options: Tuple[str, ...] = (),
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` to ``commands`` (an ``add_subparsers()`` result).

    ``handler`` runs the command (an action of a command inherits its command's handler)
    and may return the exit code (None: success); ``global_options=False`` leaves the
    global options out for a command that uses none; ``own_options``: global flags the
    command adds itself, with a meaning or default of its own (``batch --max-retries``).
    """
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, allow_abbrev=False,
        epilog=COMMAND_EPILOG if global_options else None,
    )
    if global_options:
        add_global_options(parser, shown=False, own=own_options)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


class Run:
    """One command's arguments, output streams and (lazily created) client."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.json = bool(self.opt("json"))
        self._client: Optional[WayGPTClient] = None

    def opt(self, name: str) -> Any:
        """The value of option ``name`` (its ``dest``), None when it was not given."""
        return getattr(self.args, name, None)

    def setting(self, name: str, env: str) -> Optional[str]:
        """Option ``name``, else the environment variable ``env``; None when both are empty."""
        value = self.opt(name)
        if value is None:
            value = os.environ.get(env)
        return value if value else None

    def global_options_given(self) -> List[str]:
        """The global options on the command line, as flags (``--json``)."""
        return [flag for flag, _ in GLOBAL_OPTIONS if hasattr(self.args, _dest(flag))]

    @property
    def client(self) -> WayGPTClient:
        """The client configured by the global options (and the environment)."""
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

    @property
    def client_if_created(self) -> Optional[WayGPTClient]:
        """The client, or None when the command failed before it needed one."""
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
        """Data for stdout."""
        self.out.write(text + "\n")

    def print_json(self, data: Any) -> None:
        """``data`` as indented JSON on stdout, non-ASCII kept readable."""
        self.print(json.dumps(data, ensure_ascii=False, indent=2))

    def note(self, text: str) -> None:
        """Commentary for a human: stderr, so stdout stays data only."""
        self.err.write(text + "\n")
        self.err.flush()

    def close(self) -> None:
        """Close the client, if one was created."""
        if self._client is not None:
            self._client.close()
