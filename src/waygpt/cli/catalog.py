"""``waygpt models`` and ``waygpt use-cases``: what a project may use, and its presets."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from ._common import UsageError, format_details, format_table, format_value
from ._run import Run, add_command

_USE_CASE_KINDS = "chat, catalog_extract, multimodal, image_generation, video_generation, multi"
_PROJECT_HELP = "project id: use the Client API (JWT) instead of the project key"
_CONFIG_HELP = "the use case's settings as JSON, or @FILE to read them from FILE"


def register(commands: Any) -> None:
    """Add ``models`` and ``use-cases`` to ``commands`` (an ``add_subparsers()`` result)."""
    models = add_command(commands, "models", "list the models this project may use", _models)
    models.add_argument("--full", action="store_true", help="with name, provider and type")

    use_cases = add_command(
        commands, "use-cases",
        "list the project's use cases; with --project ID, manage them (Client API)", _use_cases,
    )
    use_cases.add_argument("--detailed", action="store_true",
                           help="include each use case's config (project-key listing)")
    use_cases.add_argument("--project", default=argparse.SUPPRESS, metavar="ID",
                           help=_PROJECT_HELP)
    actions = use_cases.add_subparsers(dest="uc_action", metavar="ACTION",
                                       help="with --project: what to do (default: list)")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = add_command(actions, name, help_text)
        # Also after the action: `waygpt use-cases create faq FAQ --project ID`.
        parser.add_argument("--project", default=argparse.SUPPRESS, metavar="ID",
                            help=_PROJECT_HELP)
        return parser

    action("list", "list the use cases of --project")
    get = action("get", "show one use case by id or key")
    get.add_argument("use_case_id", metavar="USE_CASE_ID", help="the use case's id or key")
    create = action("create", "create a use case")
    create.add_argument("key", metavar="KEY", help="the key chat requests refer to it by")
    create.add_argument("name", metavar="NAME", help="a name for people")
    create.add_argument("--kind", default="chat",
                        help=f"one of {_USE_CASE_KINDS} (default: %(default)s)")
    create.add_argument("--config", type=_json_value, metavar="JSON", help=_CONFIG_HELP)
    # None stands for "not given", so that the help states the default in the same words
    # as every other option (BooleanOptionalAction words a real default its own way).
    create.add_argument("--active", action=argparse.BooleanOptionalAction, default=None,
                        help="make it active or inactive (default: active)")
    update = action("update", "change a use case (only the fields given)")
    update.add_argument("use_case_id", metavar="USE_CASE_ID", help="the use case's id or key")
    update.add_argument("--key", help="a new key")
    update.add_argument("--name", help="a new name")
    update.add_argument("--kind", help=f"one of {_USE_CASE_KINDS}")
    update.add_argument("--config", type=_json_value, metavar="JSON", help=_CONFIG_HELP)
    update.add_argument("--active", action=argparse.BooleanOptionalAction, default=None,
                        help="make it active or inactive")
    delete = action("delete", "delete a use case")
    delete.add_argument("use_case_id", metavar="USE_CASE_ID", help="the use case's id or key")


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


def _models(run: Run) -> None:
    client = run.project_client()
    if run.opt("full"):
        full = client.get_models_full()
        if run.json:
            run.print_json(full)
            return
        rows = [[m.get("id"), m.get("name"), m.get("provider"), m.get("type")]
                for m in full if isinstance(m, dict)]
        run.print(format_table(rows, ["ID", "NAME", "PROVIDER", "TYPE"]))
        return
    ids = client.get_models()
    if run.json:
        run.print_json(ids)
        return
    for model_id in ids:
        run.print(format_value(model_id))


def _use_cases(run: Run) -> None:
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
        run.print(format_table(rows, ["ID", "KEY", "KIND", "ACTIVE", "NAME"]))
        return
    result: Any
    if action == "create":
        result = client.client_create_use_case(
            project, jwt, key=run.opt("key"), name=run.opt("name"), kind=run.opt("kind"),
            config=run.opt("config"), is_active=run.opt("active") is not False,
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
        run.print(format_details(result) if isinstance(result, dict) else format_value(result))


def _list_project_use_cases(run: Run) -> None:
    detailed = bool(run.opt("detailed"))
    items = run.project_client().get_use_cases(detailed=detailed)
    if run.json:
        run.print_json(items)
        return
    rows = [u for u in items if isinstance(u, dict)]
    if not rows:
        run.note("no use cases")
        return
    table = format_table([[u.get("key"), u.get("kind"), u.get("name")] for u in rows],
                         ["KEY", "KIND", "NAME"])
    lines = table.split("\n")
    run.print(lines[0])
    for line, use_case in zip(lines[1:], rows):
        run.print(line)
        if detailed and use_case.get("config"):
            run.print("  config: " + format_value(use_case.get("config")))
