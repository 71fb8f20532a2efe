"""Login and the JWT-authenticated Client API (``/api/v1/client/*``)."""

from typing import Any, Dict, Optional
from urllib.parse import parse_qs

from . import _validate as v
from ._context import Context, reply
from ._faults import ScriptedResponse
from ._state import USE_CASE_KINDS, Project, UseCase

_PROJECT_FIELDS = (
    "name",
    "is_active",
    "allowed_models",
    "allowed_domains",
    "hmac_required",
    "rate_limit_rpm",
    "rate_limit_rpd",
)
_USE_CASE_FIELDS = ("key", "name", "kind", "config", "is_active")


def login(ctx: Context) -> ScriptedResponse:
    """OAuth2 password form: ``username=<email>&password=<password>``."""
    try:
        form = parse_qs(ctx.request.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise v.ApiError(400, "Invalid form body") from None
    fields: Dict[str, str] = {}
    for name in ("username", "password"):
        values = form.get(name)
        if not values:
            raise v.invalid([name], "Field required", "missing")
        fields[name] = values[-1]
    password = ctx.state.users.get(fields["username"])
    if password is None or password != fields["password"]:
        raise v.ApiError(400, "Incorrect email or password")
    answer: Dict[str, Any] = {
        "access_token": ctx.state.issue_token(fields["username"]),
        "token_type": "bearer",
    }
    if ctx.state.token_expires_in is not None:
        answer["expires_in"] = ctx.state.token_expires_in
    return reply(answer)


def _owned_project(ctx: Context) -> Project:
    project = ctx.state.projects.get(ctx.params["project_id"])
    # Someone else's project must not even be confirmed to exist.
    if project is None or project.owner != ctx.require_user():
        raise v.not_found()
    return project


def _use_case(ctx: Context, project: Project) -> UseCase:
    use_case = project.use_cases.get(ctx.params["use_case_id"])
    if use_case is None:
        raise v.not_found()
    return use_case


def list_projects(ctx: Context) -> ScriptedResponse:
    user = ctx.require_user()
    return reply([p.public() for p in ctx.state.projects.values() if p.owner == user])


def create_project(ctx: Context) -> ScriptedResponse:
    body = v.json_object(ctx.request)
    name = v.string(body, "name", required=True, non_empty=True)
    project = ctx.state.add_project(owner=ctx.require_user(), name=name or "")
    return reply(project.public())


def project_settings(ctx: Context) -> ScriptedResponse:
    return reply(_owned_project(ctx).public())


def update_project(ctx: Context) -> ScriptedResponse:
    project = _owned_project(ctx)
    body = v.json_object(ctx.request)
    v.only_fields(body, _PROJECT_FIELDS)
    # Validate every field before changing any, so a 422 leaves the project intact.
    name = v.string(body, "name", non_empty=True)
    is_active = v.boolean(body, "is_active")
    allowed_models = v.string_list(body, "allowed_models")
    allowed_domains = v.string_list(body, "allowed_domains")
    hmac_required = v.boolean(body, "hmac_required")
    rpm = v.integer(body, "rate_limit_rpm", low=0)
    rpd = v.integer(body, "rate_limit_rpd", low=0)
    if name is not None:
        project.name = name
    if is_active is not None:
        project.is_active = is_active
    if allowed_models is not None:
        project.allowed_models = allowed_models
    if allowed_domains is not None:
        project.allowed_domains = allowed_domains
    if hmac_required is not None:
        project.hmac_required = hmac_required
    if rpm is not None:
        project.rate_limit_rpm = rpm
    if rpd is not None:
        project.rate_limit_rpd = rpd
    return reply(project.public())


def delete_project(ctx: Context) -> ScriptedResponse:
    project = _owned_project(ctx)
    del ctx.state.projects[project.id]
    return reply({"id": project.id, "deleted": True})


def list_use_cases(ctx: Context) -> ScriptedResponse:
    project = _owned_project(ctx)
    return reply([uc.public() for uc in project.use_cases.values()])


def _kind(body: Dict[str, Any]) -> Optional[str]:
    kind = v.string(body, "kind")
    if kind is not None and kind not in USE_CASE_KINDS:
        allowed = ", ".join(repr(k) for k in USE_CASE_KINDS)
        raise v.invalid(["kind"], f"Input should be {allowed}", "literal_error")
    return kind


def _check_key_free(project: Project, key: str, exclude: Optional[str] = None) -> None:
    for use_case in project.use_cases.values():
        if use_case.key == key and use_case.id != exclude:
            raise v.ApiError(409, f"Use case with key '{key}' already exists in this project")


def create_use_case(ctx: Context) -> ScriptedResponse:
    project = _owned_project(ctx)
    body = v.json_object(ctx.request)
    key = v.string(body, "key", required=True, non_empty=True) or ""
    name = v.string(body, "name", required=True, non_empty=True) or ""
    kind = _kind(body) or "chat"
    config = v.mapping(body, "config")
    is_active = v.boolean(body, "is_active")
    _check_key_free(project, key)
    use_case = ctx.state.add_use_case(
        project,
        key=key,
        name=name,
        kind=kind,
        config=config,
        is_active=True if is_active is None else is_active,
    )
    return reply(use_case.public())


def update_use_case(ctx: Context) -> ScriptedResponse:
    project = _owned_project(ctx)
    use_case = _use_case(ctx, project)
    body = v.json_object(ctx.request)
    v.only_fields(body, _USE_CASE_FIELDS)
    key = v.string(body, "key", non_empty=True)
    name = v.string(body, "name", non_empty=True)
    kind = _kind(body)
    config = v.mapping(body, "config")
    is_active = v.boolean(body, "is_active")
    if key is not None:
        _check_key_free(project, key, exclude=use_case.id)
        use_case.key = key
    if name is not None:
        use_case.name = name
    if kind is not None:
        use_case.kind = kind
    if config is not None:
        use_case.config = config
    if is_active is not None:
        use_case.is_active = is_active
    return reply(use_case.public())


def delete_use_case(ctx: Context) -> ScriptedResponse:
    project = _owned_project(ctx)
    use_case = _use_case(ctx, project)
    del project.use_cases[use_case.id]
    return reply({"id": use_case.id, "deleted": True})
