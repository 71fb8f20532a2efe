"""The endpoints: for each method, its argument checks, its path and its body, written once.

Each function returns a :class:`Call` describing one request; the sync and the async client
both send it through the same pipeline (``_core.py``). Nothing here does any I/O, so a bad
argument is refused before anything is sent.
"""

from __future__ import annotations

import sys
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Generic,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
)
from urllib.parse import quote, urlencode

from ._config import is_header_safe
from .errors import APIResponseValidationError, NotFoundError

if TYPE_CHECKING:
    from .types import (
        ChatCompletion,
        ImageGeneration,
        LoginResult,
        MediaJob,
        ModelInfo,
        Project,
        UseCase,
        WidgetToken,
    )

T = TypeVar("T")
Messages = Iterable[Mapping[str, Any]]

_WAYGPT = "/api/v1/waygpt"
_CLIENT_API = "/api/v1/client"
NO_BODY: Any = object()


class Call(Generic[T]):
    """One request an endpoint method makes; ``T`` is what the method returns.

    ``path`` is relative to ``api_url``, percent-encoded, with its query. ``auth`` is
    ``"project"`` (the project key, HMAC-signed when on), ``"jwt"`` (the Client API's Bearer
    token) or ``"none"``. ``expect`` is the JSON type the answer must have. ``secrets`` are
    values sent with this call only (a password) that must never show in an error.
    """

    __slots__ = (
        "auth", "expect", "form", "json", "jwt_token", "method", "name", "path", "secrets",
        "stream",
    )

    def __init__(
        self,
        method: str,
        path: str,
        *,
        auth: str = "project",
        json: Any = NO_BODY,
        form: Optional[Mapping[str, str]] = None,
        expect: Optional[type] = None,
        stream: bool = False,
        jwt_token: Optional[str] = None,
        secrets: Tuple[str, ...] = (),
        name: str = "",
    ) -> None:
        self.name = name  # the client method's name, for traces
        self.method = method
        self.path = path
        self.auth = auth
        self.json = json
        self.form = form
        self.expect = expect
        self.stream = stream
        self.jwt_token = jwt_token
        self.secrets = secrets


def _is_uuid(value: Any) -> bool:
    # A caller with a UUID has imported uuid; checking through sys.modules spares every
    # other program the import (2 ms).
    module = sys.modules.get("uuid")
    return module is not None and isinstance(value, module.UUID)


def _segment(name: str, value: Any) -> str:
    """One path segment: an id that can only ever reach the endpoint it was meant for.

    Escaping alone is not enough: servers on Starlette (FastAPI) and others decode ``%2F``
    before routing, so ``"p/use-cases/u"`` sent as ``p%2Fuse-cases%2Fu`` would reach another
    endpoint. Every real id is a UUID or a short token, so anything a router could read as
    more than one segment is refused, before the network.
    """
    if isinstance(value, bool) or not (isinstance(value, (str, int)) or _is_uuid(value)):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    text = str(value)
    if not text.strip() or text in (".", ".."):
        raise ValueError(f"{name} must be a non-empty id, got {text[:80]!r}")
    if "/" in text or "\\" in text or "%" in text:
        raise ValueError(
            f"{name} must be one id: '/', backslash and '%' (so no escape such as %2F) "
            f"are not allowed, got {text[:80]!r}"
        )
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in text):  # category Cc
        raise ValueError(f"{name} must not contain control characters, got {text[:80]!r}")
    try:
        return quote(text, safe="")
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form, so no URL either
        pass
    raise ValueError(f"{name} is not valid text (it holds a lone surrogate)")


def _require_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _extra(method: str, extra: Mapping[str, Any], named: Tuple[str, ...]) -> Mapping[str, Any]:
    """The extra keywords of ``method``, sent in the body as they are; one that is a typo of
    a named parameter (``temprature``, ``max_token``) is refused before the network."""
    if extra:
        import difflib  # only for a call with extra keywords

        for key in extra:
            meant = difflib.get_close_matches(key, named, n=1, cutoff=0.8)
            if meant:
                raise TypeError(
                    f"{method}() got an unexpected keyword argument {key!r}: did you mean "
                    f"{meant[0]!r}? (other keywords are sent in the body as they are)"
                )
    return extra


_CHAT_PARAMETERS = (
    "model", "messages", "use_case_id", "use_case", "temperature", "max_tokens", "stream",
)


def _only_given(**fields: Any) -> Dict[str, Any]:
    """The fields that were given (not None), in the order of the method's parameters."""
    return {name: value for name, value in fields.items() if value is not None}


def _jwt_call(method: str, path: str, jwt_token: Optional[str], **options: Any) -> Call[Any]:
    return Call(method, _CLIENT_API + path, auth="jwt", jwt_token=jwt_token, **options)


def check_jwt(token: Any) -> str:
    """A JWT as it may go into the ``Authorization`` header; refused before the network."""
    if not isinstance(token, str) or not token.strip():
        raise ValueError("jwt_token must be a non-empty string")
    if "\r" in token or "\n" in token:
        raise ValueError("jwt_token must not contain CR or LF characters")
    if not is_header_safe(token):
        raise ValueError("jwt_token must contain printable ASCII characters only")
    return token.strip()


def _use_case_key(use_case: Any, use_case_id: Any) -> Optional[str]:
    """The use-case key to send: ``use_case``, else its alias; stripped; None when empty."""
    for value in (use_case, use_case_id):
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"use_case must be a string, got {type(value).__name__}")
        if value.strip():
            return value.strip()
    return None


def _messages(messages: Any) -> List[Dict[str, Any]]:
    """The messages as a list of dicts; any iterable is read once, here, before sending."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        messages = None
    else:
        messages = list(messages)  # a generator is consumed once, and what it gave is sent
    if not messages or not all(isinstance(m, Mapping) for m in messages):
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    return [dict(m) for m in messages]


def _project_path(project_id: str, rest: str = "") -> str:
    return f"/projects/{_segment('project_id', project_id)}{rest}"


def _use_case_path(project_id: str, use_case_id: str) -> str:
    return _project_path(project_id, f"/use-cases/{_segment('use_case_id', use_case_id)}")


def login_result(data: Dict[str, Any]) -> LoginResult:
    """The login answer as the reference gives it: ``token``, ``expires_in``, ``token_type`` set."""
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise APIResponseValidationError("login answer has no access_token", 200)
    if not token.strip() or not is_header_safe(token):  # what check_jwt would refuse later
        # Refused now rather than kept to fail every later call; the token is a secret, so
        # the error neither repeats it nor keeps the answer.
        raise APIResponseValidationError(
            "login answer's access_token cannot go into an Authorization header (it holds "
            "CR, LF or characters other than printable ASCII)",
            200,
        )
    data["token"] = token
    if data.get("expires_in") is None:
        data["expires_in"] = 3600
    data.setdefault("token_type", "bearer")
    return data  # type: ignore[return-value] # the keys LoginResult needs were just checked


def check_use_case_id(use_case_id: str) -> str:
    """Refuse a bad id before the list is fetched (the server has no single-use-case GET).

    The id as text: the list's ids are strings, and a UUID given must match its own.
    """
    _segment("use_case_id", use_case_id)
    return str(use_case_id)


def pick_use_case(items: List[UseCase], use_case_id: str) -> UseCase:
    """The use case with that id (or key) among ``items``, as the reference picks it.

    Raises:
        NotFoundError: none has that id.
    """
    for item in items:
        if isinstance(item, dict) and use_case_id in (item.get("id"), item.get("key")):
            return item
    raise NotFoundError(f"use case {use_case_id!r} not found", 404)


class Endpoints:
    """One static method per endpoint: checks its arguments, returns its :class:`Call`."""

    # -- chat and media ----------------------------------------------------------------------------

    @staticmethod
    def chat_completions(
        model: str,
        messages: Any,
        use_case_id: Optional[str],
        use_case: Optional[str],
        temperature: Optional[float],
        max_tokens: Optional[int],
        stream: bool,
        extra: Mapping[str, Any],
    ) -> Call[ChatCompletion]:
        body: Dict[str, Any] = {"model": model, "messages": _messages(messages)}
        _require_text("model", model)
        key = _use_case_key(use_case, use_case_id)
        if key is not None:
            body["use_case"] = key
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
        body.update(_extra("chat_completions", extra, _CHAT_PARAMETERS))
        return Call(
            "POST",
            f"{_WAYGPT}/chat/completions",
            json=body,
            expect=dict,
            stream=stream,
            name="chat_completions",
        )

    @staticmethod
    def image_generations(
        prompt: str, model: Optional[str], size: str, n: int, extra: Mapping[str, Any]
    ) -> Call[ImageGeneration]:
        _require_text("prompt", prompt)
        _require_text("size", size)
        _positive_int("n", n)
        body: Dict[str, Any] = {"prompt": prompt, "size": size, "n": n}
        if model is not None:
            body["model"] = model
        body.update(_extra("image_generations", extra, ("prompt", "model", "size", "n")))
        return Call(
            "POST",
            f"{_WAYGPT}/images/generations",
            json=body,
            expect=dict,
            name="image_generations",
        )

    @staticmethod
    def video_generations(
        prompt: str, model: Optional[str], duration: Optional[int], extra: Mapping[str, Any]
    ) -> Call[MediaJob]:
        _require_text("prompt", prompt)
        body: Dict[str, Any] = {"prompt": prompt}
        if model is not None:
            body["model"] = model
        if duration is not None:
            body["duration"] = duration
        body.update(_extra("video_generations", extra, ("prompt", "model", "duration")))
        return Call(
            "POST",
            f"{_WAYGPT}/videos/generations",
            json=body,
            expect=dict,
            name="video_generations",
        )

    @staticmethod
    def get_media_job(job_id: str) -> Call[MediaJob]:
        return Call(
            "GET",
            f"{_WAYGPT}/media/jobs/{_segment('job_id', job_id)}",
            expect=dict,
            name="get_media_job",
        )

    @staticmethod
    def cancel_media_job(job_id: str) -> Call[Dict[str, Any]]:
        path = f"{_WAYGPT}/media/jobs/{_segment('job_id', job_id)}/cancel"
        return Call("POST", path, expect=dict, name="cancel_media_job")

    # -- catalogue and widget ----------------------------------------------------------------------

    @staticmethod
    def get_models() -> Call[List[str]]:
        return Call("GET", f"{_WAYGPT}/models", expect=list, name="get_models")

    @staticmethod
    def get_models_full() -> Call[List[ModelInfo]]:
        return Call("GET", f"{_WAYGPT}/models/full", expect=list, name="get_models_full")

    @staticmethod
    def get_use_cases(detailed: bool) -> Call[List[UseCase]]:
        query = "?" + urlencode({"detailed": "true"}) if detailed else ""
        return Call("GET", f"{_WAYGPT}/use-cases{query}", expect=list, name="get_use_cases")

    @staticmethod
    def create_widget_token(ttl_seconds: int, site_domain: Optional[str]) -> Call[WidgetToken]:
        _positive_int("ttl_seconds", ttl_seconds)
        body: Dict[str, Any] = {"ttl_seconds": ttl_seconds}
        if site_domain is not None:
            body["site_domain"] = site_domain
        return Call(
            "POST", "/api/v1/widget/token", json=body, expect=dict,
            name="create_widget_token",
        )

    # -- Client API (JWT) --------------------------------------------------------------------------

    @staticmethod
    def client_login(email: str, password: str) -> Call[Dict[str, Any]]:
        _require_text("email", email)
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        return Call(
            "POST",
            "/api/v1/auth/login/access-token",
            auth="none",
            form={"username": email, "password": password},
            expect=dict,
            secrets=(password,),
            name="client_login",
        )

    @staticmethod
    def client_list_projects(jwt_token: Optional[str]) -> Call[List[Project]]:
        return _jwt_call("GET", "/projects", jwt_token, expect=list, name="client_list_projects")

    @staticmethod
    def client_get_project(project_id: str, jwt_token: Optional[str]) -> Call[Project]:
        return _jwt_call(
            "GET",
            _project_path(project_id, "/settings"),
            jwt_token,
            expect=dict,
            name="client_get_project",
        )

    @staticmethod
    def client_create_project(name: str, jwt_token: Optional[str]) -> Call[Project]:
        _require_text("name", name)
        return _jwt_call(
            "POST",
            "/projects",
            jwt_token,
            json={"name": name},
            expect=dict,
            name="client_create_project",
        )

    @staticmethod
    def client_update_project(
        project_id: str,
        jwt_token: Optional[str],
        *,
        name: Optional[str],
        is_active: Optional[bool],
        allowed_models: Optional[List[str]],
        allowed_domains: Optional[List[str]],
        hmac_required: Optional[bool],
        rate_limit_rpm: Optional[int],
        rate_limit_rpd: Optional[int],
    ) -> Call[Project]:
        body = _only_given(
            name=name,
            is_active=is_active,
            allowed_models=allowed_models,
            allowed_domains=allowed_domains,
            hmac_required=hmac_required,
            rate_limit_rpm=rate_limit_rpm,
            rate_limit_rpd=rate_limit_rpd,
        )
        return _jwt_call(
            "PUT",
            _project_path(project_id),
            jwt_token,
            json=body,
            expect=dict,
            name="client_update_project",
        )

    @staticmethod
    def client_delete_project(project_id: str, jwt_token: Optional[str]) -> Call[Any]:
        return _jwt_call(
            "DELETE", _project_path(project_id), jwt_token,
            name="client_delete_project",
        )

    @staticmethod
    def client_list_use_cases(project_id: str, jwt_token: Optional[str]) -> Call[List[UseCase]]:
        return _jwt_call(
            "GET",
            _project_path(project_id, "/use-cases"),
            jwt_token,
            expect=list,
            name="client_list_use_cases",
        )

    @staticmethod
    def client_create_use_case(
        project_id: str,
        jwt_token: Optional[str],
        key: Optional[str],
        name: Optional[str],
        kind: str,
        config: Optional[Dict[str, Any]],
        is_active: bool,
    ) -> Call[UseCase]:
        _require_text("key", key)
        _require_text("name", name)
        _require_text("kind", kind)
        body: Dict[str, Any] = {"key": key, "name": name, "kind": kind, "is_active": is_active}
        if config is not None:
            body["config"] = config
        path = _project_path(project_id, "/use-cases")
        return _jwt_call(
            "POST", path, jwt_token, json=body, expect=dict,
            name="client_create_use_case",
        )

    @staticmethod
    def client_update_use_case(
        project_id: str,
        use_case_id: str,
        jwt_token: Optional[str],
        *,
        key: Optional[str],
        name: Optional[str],
        kind: Optional[str],
        config: Optional[Dict[str, Any]],
        is_active: Optional[bool],
    ) -> Call[UseCase]:
        body = _only_given(key=key, name=name, kind=kind, config=config, is_active=is_active)
        path = _use_case_path(project_id, use_case_id)
        return _jwt_call(
            "PUT", path, jwt_token, json=body, expect=dict,
            name="client_update_use_case",
        )

    @staticmethod
    def client_delete_use_case(
        project_id: str, use_case_id: str, jwt_token: Optional[str]
    ) -> Call[Any]:
        return _jwt_call(
            "DELETE",
            _use_case_path(project_id, use_case_id),
            jwt_token,
            name="client_delete_use_case",
        )
