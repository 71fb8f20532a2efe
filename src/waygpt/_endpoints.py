"""The endpoints: for each method, its argument checks, its path and its body, written once.

Each returns a :class:`Call`, which both clients send through the same pipeline
(``_core.py``). Nothing here does I/O, so a bad argument is refused before anything is sent.
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
from .errors import APIResponseValidationError

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
    values sent with this call only (a password) that must never show in an error. ``name``
    is the client method's, for traces.
    """

    __slots__ = (
        "auth", "expect", "form", "json", "jwt_token", "method", "name", "path", "secrets",
        "stream",
    )

    def __init__(
        self, method: str, path: str, *, name: str, auth: str = "project", json: Any = NO_BODY,
        form: Optional[Mapping[str, str]] = None, expect: type = object, stream: bool = False,
        jwt_token: Optional[str] = None, secrets: Tuple[str, ...] = (),
    ) -> None:
        self.method = method
        self.path = path
        self.name = name
        self.auth = auth
        self.json = json
        self.form = form
        self.expect = expect
        self.stream = stream
        self.jwt_token = jwt_token
        self.secrets = secrets


def _segment(name: str, value: Any) -> str:
    """One path segment: an id that can only ever reach the endpoint it was meant for.
    Escaping is not enough: Starlette (FastAPI) and others decode ``%2F`` before routing, so
    ``"p/use-cases/u"`` would reach another endpoint. Every real id is a UUID or a short token,
    so anything a router could read as more than one segment is refused, before the network."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        uuid = sys.modules.get("uuid")  # (a caller with a UUID imported it; others save 2 ms)
        if isinstance(value, bool) or uuid is None or not isinstance(value, uuid.UUID):
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


def _extra(method: str, extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """The extra keywords of ``method``, sent in the body as they are; one that is a typo of
    one of its parameters (``temprature``, ``max_token``) is refused before the network."""
    if extra:
        import difflib  # only for a call with extra keywords

        code = getattr(Endpoints, method).__code__  # its parameters, as its signature names them
        named = [name for name in code.co_varnames[: code.co_argcount] if name != "extra"]
        for key in extra:
            meant = difflib.get_close_matches(key, named, n=1, cutoff=0.8)
            if meant:
                raise TypeError(
                    f"{method}() got an unexpected keyword argument {key!r}: did you mean "
                    f"{meant[0]!r}? (other keywords are sent in the body as they are)"
                )
    return extra


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
        if value is not None and not isinstance(value, str):
            raise TypeError(f"use_case must be a string, got {type(value).__name__}")
        if value and value.strip():
            return value.strip()
    return None


def _messages(messages: Any) -> List[Dict[str, Any]]:
    """The messages as a list of dicts; any iterable is read once, here, before sending."""
    readable = isinstance(messages, Iterable) and not isinstance(messages, (str, bytes, Mapping))
    messages = list(messages) if readable else None  # a generator is read once, here
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
        # (Not kept to fail every later call; a secret, so not repeated, nor the answer kept.)
        raise APIResponseValidationError(
            "login answer's access_token cannot go into an Authorization header (it holds "
            "CR, LF or characters other than printable ASCII)", 200,
        )
    data["token"] = token
    if data.get("expires_in") is None:
        data["expires_in"] = 3600
    data.setdefault("token_type", "bearer")
    return data  # type: ignore[return-value] # the keys LoginResult needs were just checked


def check_use_case_id(use_case_id: str) -> str:
    """The id as text (a UUID must match the list's strings), refused before the list is
    fetched (the server has no single-use-case GET)."""
    _segment("use_case_id", use_case_id)
    return str(use_case_id)


class Endpoints:
    """One static method per endpoint: checks its arguments, returns its :class:`Call`."""

    # -- chat and media ----------------------------------------------------------------------------

    @staticmethod
    def chat_completions(
        model: str, messages: Any, use_case_id: Optional[str], use_case: Optional[str],
        temperature: Optional[float], max_tokens: Optional[int], stream: bool,
        extra: Mapping[str, Any],
    ) -> Call[ChatCompletion]:
        body: Dict[str, Any] = {"model": model, "messages": _messages(messages)}
        _require_text("model", model)
        key = _use_case_key(use_case, use_case_id)
        if key is not None:
            body["use_case"] = key
        body.update(_only_given(temperature=temperature, max_tokens=max_tokens))
        if stream:
            body["stream"] = True
        body.update(_extra("chat_completions", extra))
        path = f"{_WAYGPT}/chat/completions"
        return Call("POST", path, name="chat_completions", json=body, expect=dict, stream=stream)

    @staticmethod
    def image_generations(
        prompt: str, model: Optional[str], size: str, n: int, extra: Mapping[str, Any]
    ) -> Call[ImageGeneration]:
        _require_text("prompt", prompt)
        _require_text("size", size)
        _positive_int("n", n)
        body = {"prompt": prompt, "size": size, "n": n, **_only_given(model=model)}
        body.update(_extra("image_generations", extra))
        path = f"{_WAYGPT}/images/generations"
        return Call("POST", path, name="image_generations", json=body, expect=dict)

    @staticmethod
    def video_generations(
        prompt: str, model: Optional[str], duration: Optional[int], extra: Mapping[str, Any]
    ) -> Call[MediaJob]:
        _require_text("prompt", prompt)
        body: Dict[str, Any] = {"prompt": prompt, **_only_given(model=model, duration=duration)}
        body.update(_extra("video_generations", extra))
        path = f"{_WAYGPT}/videos/generations"
        return Call("POST", path, name="video_generations", json=body, expect=dict)

    @staticmethod
    def get_media_job(job_id: str) -> Call[MediaJob]:
        path = f"{_WAYGPT}/media/jobs/{_segment('job_id', job_id)}"
        return Call("GET", path, name="get_media_job", expect=dict)

    @staticmethod
    def cancel_media_job(job_id: str) -> Call[Dict[str, Any]]:
        path = f"{_WAYGPT}/media/jobs/{_segment('job_id', job_id)}/cancel"
        return Call("POST", path, name="cancel_media_job", expect=dict)

    # -- catalogue and widget ----------------------------------------------------------------------

    @staticmethod
    def get_models() -> Call[List[str]]:
        return Call("GET", f"{_WAYGPT}/models", name="get_models", expect=list)

    @staticmethod
    def get_models_full() -> Call[List[ModelInfo]]:
        return Call("GET", f"{_WAYGPT}/models/full", name="get_models_full", expect=list)

    @staticmethod
    def get_use_cases(detailed: bool) -> Call[List[UseCase]]:
        query = "?" + urlencode({"detailed": "true"}) if detailed else ""
        return Call("GET", f"{_WAYGPT}/use-cases{query}", name="get_use_cases", expect=list)

    @staticmethod
    def create_widget_token(ttl_seconds: int, site_domain: Optional[str]) -> Call[WidgetToken]:
        _positive_int("ttl_seconds", ttl_seconds)
        body = {"ttl_seconds": ttl_seconds, **_only_given(site_domain=site_domain)}
        path = "/api/v1/widget/token"
        return Call("POST", path, name="create_widget_token", json=body, expect=dict)

    # -- Client API (JWT) --------------------------------------------------------------------------

    @staticmethod
    def client_login(email: str, password: str) -> Call[Dict[str, Any]]:
        _require_text("email", email)
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        form = {"username": email, "password": password}
        return Call(
            "POST", "/api/v1/auth/login/access-token", name="client_login", auth="none",
            form=form, expect=dict, secrets=(password,),
        )

    @staticmethod
    def client_list_projects(jwt_token: Optional[str]) -> Call[List[Project]]:
        return _jwt_call("GET", "/projects", jwt_token, name="client_list_projects", expect=list)

    @staticmethod
    def client_get_project(project_id: str, jwt_token: Optional[str]) -> Call[Project]:
        path = _project_path(project_id, "/settings")
        return _jwt_call("GET", path, jwt_token, name="client_get_project", expect=dict)

    @staticmethod
    def client_create_project(name: str, jwt_token: Optional[str]) -> Call[Project]:
        _require_text("name", name)
        body = {"name": name}
        return _jwt_call(
            "POST", "/projects", jwt_token, name="client_create_project", json=body, expect=dict
        )

    @staticmethod
    def client_update_project(
        project_id: str, jwt_token: Optional[str], *, name: Optional[str],
        is_active: Optional[bool], allowed_models: Optional[List[str]],
        allowed_domains: Optional[List[str]], hmac_required: Optional[bool],
        rate_limit_rpm: Optional[int], rate_limit_rpd: Optional[int],
    ) -> Call[Project]:
        body = _only_given(
            name=name, is_active=is_active, allowed_models=allowed_models,
            allowed_domains=allowed_domains, hmac_required=hmac_required,
            rate_limit_rpm=rate_limit_rpm, rate_limit_rpd=rate_limit_rpd,
        )
        path = _project_path(project_id)
        return _jwt_call(
            "PUT", path, jwt_token, name="client_update_project", json=body, expect=dict
        )

    @staticmethod
    def client_delete_project(project_id: str, jwt_token: Optional[str]) -> Call[Any]:
        path = _project_path(project_id)
        return _jwt_call("DELETE", path, jwt_token, name="client_delete_project")

    @staticmethod
    def client_list_use_cases(project_id: str, jwt_token: Optional[str]) -> Call[List[UseCase]]:
        path = _project_path(project_id, "/use-cases")
        return _jwt_call("GET", path, jwt_token, name="client_list_use_cases", expect=list)

    @staticmethod
    def client_create_use_case(
        project_id: str, jwt_token: Optional[str], key: Optional[str], name: Optional[str],
        kind: str, config: Optional[Dict[str, Any]], is_active: bool,
    ) -> Call[UseCase]:
        _require_text("key", key)
        _require_text("name", name)
        _require_text("kind", kind)
        body = {"key": key, "name": name, "kind": kind, "is_active": is_active,
                **_only_given(config=config)}
        path = _project_path(project_id, "/use-cases")
        return _jwt_call(
            "POST", path, jwt_token, name="client_create_use_case", json=body, expect=dict
        )

    @staticmethod
    def client_update_use_case(
        project_id: str, use_case_id: str, jwt_token: Optional[str], *, key: Optional[str],
        name: Optional[str], kind: Optional[str], config: Optional[Dict[str, Any]],
        is_active: Optional[bool],
    ) -> Call[UseCase]:
        body = _only_given(key=key, name=name, kind=kind, config=config, is_active=is_active)
        path = _use_case_path(project_id, use_case_id)
        return _jwt_call(
            "PUT", path, jwt_token, name="client_update_use_case", json=body, expect=dict
        )

    @staticmethod
    def client_delete_use_case(
        project_id: str, use_case_id: str, jwt_token: Optional[str]
    ) -> Call[Any]:
        path = _use_case_path(project_id, use_case_id)
        return _jwt_call("DELETE", path, jwt_token, name="client_delete_use_case")
