"""``waygpt login`` and ``waygpt projects``: the Client API, with an account's JWT."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any, Dict, List

from ._common import UsageError, format_details, format_table, format_value, int_at_least
from ._run import Run, add_command

# Fields masked in project output unless --show-secrets is given.
_SECRET_FIELDS = frozenset({"api_key", "hmac_secret", "project_key", "secret"})
_SHOW_SECRETS_HELP = "print api_key and hmac_secret unmasked"


def register(commands: Any) -> None:
    """Add ``login`` and ``projects`` to ``commands`` (an ``add_subparsers()`` result)."""
    add_command(commands, "login", "log in to the Client API and print the token "
                "(export WAYGPT_JWT=$(waygpt login))", _login)

    projects = add_command(commands, "projects", "manage projects (Client API)", _projects)
    projects.add_argument("--show-secrets", action="store_true", default=argparse.SUPPRESS,
                          help=_SHOW_SECRETS_HELP)
    actions = projects.add_subparsers(dest="project_action", metavar="ACTION", required=True,
                                      help="what to do")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = add_command(actions, name, help_text)
        # Also after the action: `waygpt projects get ID --show-secrets`.
        parser.add_argument("--show-secrets", action="store_true", default=argparse.SUPPRESS,
                            help=_SHOW_SECRETS_HELP)
        return parser

    action("list", "list your projects")
    get = action("get", "show a project's settings")
    get.add_argument("project_id", metavar="ID", help="the project's id")
    create = action("create", "create a project")
    create.add_argument("name", metavar="NAME", help="the new project's name")
    update = action("update", "change a project (only the fields given)")
    update.add_argument("project_id", metavar="ID", help="the project's id")
    update.add_argument("--name", help="a new name")
    update.add_argument("--active", action=argparse.BooleanOptionalAction, default=None,
                        help="switch the project on or off")
    update.add_argument("--hmac-required", action=argparse.BooleanOptionalAction, default=None,
                        help="whether project-key requests must be HMAC-signed")
    update.add_argument("--allowed-models", type=_csv_list, metavar="M1,M2",
                        help="models it may use, comma-separated")
    update.add_argument("--allowed-domains", type=_csv_list, metavar="D1,D2",
                        help="domains it accepts requests from, comma-separated")
    update.add_argument("--rate-limit-rpm", type=int_at_least(0), metavar="N",
                        help="most requests per minute")
    update.add_argument("--rate-limit-rpd", type=int_at_least(0), metavar="N",
                        help="most requests per day")
    delete = action("delete", "delete a project")
    delete.add_argument("project_id", metavar="ID", help="the project's id")


def _csv_list(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _login(run: Run) -> None:
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


def _projects(run: Run) -> None:
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
        run.print(format_table(rows, ["ID", "ACTIVE", "HMAC", "NAME"]))
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
        run.print(format_details(result) if isinstance(result, dict) else format_value(result))


def _mask(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    # The last four characters of a long secret tell two keys apart without revealing them.
    return "********" + (value[-4:] if len(value) >= 16 else "")


def _mask_secrets(data: Any) -> Any:
    """A copy of ``data`` with secret fields masked, at any depth."""
    if isinstance(data, dict):
        return {key: _mask(value) if key in _SECRET_FIELDS else _mask_secrets(value)
                for key, value in data.items()}
    if isinstance(data, list):
        return [_mask_secrets(item) for item in data]
    return data
