"""The domain state of the test server: users, tokens, projects, use cases, jobs."""

import base64
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

from ._clock import ServerClock

USE_CASE_KINDS = (
    "chat",
    "catalog_extract",
    "multimodal",
    "image_generation",
    "video_generation",
    "multi",
)

# Every model id the WayGPT plugin README's examples use is here, so those examples run
# against this server; within a type, the order is what "auto" prefers.
MODELS: List[Dict[str, str]] = [
    {"id": "gpt-4o-mini", "name": "GPT-4o mini", "provider": "openai", "type": "chat"},
    {"id": "gpt-4o", "name": "GPT-4o", "provider": "openai", "type": "chat"},
    {
        "id": "claude-3-5-sonnet",
        "name": "Claude 3.5 Sonnet",
        "provider": "anthropic",
        "type": "chat",
    },
    {"id": "yandexgpt-pro", "name": "YandexGPT Pro", "provider": "yandex", "type": "chat"},
    {"id": "gigachat-pro", "name": "GigaChat Pro", "provider": "sber", "type": "chat"},
    # Multimodal: a chat model that also reads the image parts of a message.
    {
        "id": "gemini-2.0-flash-exp",
        "name": "Gemini 2.0 Flash (experimental)",
        "provider": "google",
        "type": "chat",
    },
    {"id": "dall-e-3", "name": "DALL-E 3", "provider": "openai", "type": "image"},
    {"id": "kandinsky-3", "name": "Kandinsky 3", "provider": "sber", "type": "image"},
    {"id": "yandex-art", "name": "YandexART", "provider": "yandex", "type": "image"},
    {"id": "kling-1.6", "name": "Kling 1.6", "provider": "kuaishou", "type": "video"},
    {"id": "kling-v1", "name": "Kling v1", "provider": "kuaishou", "type": "video"},
]


@dataclass
class UseCase:
    id: str
    project_id: str
    key: str
    name: str
    kind: str
    config: Dict[str, Any] = field(default_factory=dict)
    is_active: bool = True
    created_at: str = ""  # set from the server's clock

    def public(self) -> Dict[str, Any]:
        """The Client API shape."""
        return {
            "id": self.id,
            "project_id": self.project_id,
            "key": self.key,
            "name": self.name,
            "kind": self.kind,
            "config": dict(self.config),
            "is_active": self.is_active,
            "created_at": self.created_at,
        }

    def summary(self, detailed: bool) -> Dict[str, Any]:
        """The project-key API shape (``GET /api/v1/waygpt/use-cases``): ``key, name, kind,
        config``, and with ``detailed`` also ``id`` and ``is_active``."""
        out: Dict[str, Any] = {
            "key": self.key,
            "name": self.name,
            "kind": self.kind,
            "config": dict(self.config),
        }
        if detailed:
            out.update(is_active=self.is_active, id=self.id)
        return out


@dataclass
class Project:
    id: str
    name: str
    api_key: str
    hmac_secret: str
    owner: str
    hmac_required: bool = False
    is_active: bool = True
    allowed_models: List[str] = field(default_factory=list)  # empty: every model
    allowed_domains: List[str] = field(default_factory=list)  # empty: every domain
    rate_limit_rpm: int = 60  # 0: no limit
    rate_limit_rpd: int = 10000  # 0: no limit
    created_at: str = ""  # set from the server's clock
    use_cases: Dict[str, UseCase] = field(default_factory=dict)  # by id, in creation order

    def public(self) -> Dict[str, Any]:
        # hmac_secret is included so tests can sign for projects they created.
        return {
            "id": self.id,
            "name": self.name,
            "api_key": self.api_key,
            "hmac_secret": self.hmac_secret,
            "is_active": self.is_active,
            "allowed_models": list(self.allowed_models),
            "allowed_domains": list(self.allowed_domains),
            "hmac_required": self.hmac_required,
            "rate_limit_rpm": self.rate_limit_rpm,
            "rate_limit_rpd": self.rate_limit_rpd,
            "created_at": self.created_at,
        }

    def active_use_case(self, key: str) -> Optional[UseCase]:
        for use_case in self.use_cases.values():
            if use_case.key == key and use_case.is_active:
                return use_case
        return None


@dataclass
class Job:
    job_id: str
    project_id: str
    prompt: str
    model: str
    result_url: str
    duration: Optional[float] = None
    status: str = "pending"
    progress: int = 0
    polls: int = 0
    error: Optional[str] = None
    created_at: str = ""  # set from the server's clock

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def advance(self, steps: int) -> None:
        """One poll's worth of progress: processing for ``steps - 1`` polls, then done."""
        if self.finished:
            return
        self.polls += 1
        if self.polls >= steps:
            self.status, self.progress = "completed", 100
        else:
            self.status, self.progress = "processing", self.polls * 100 // steps

    def public(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "job_id": self.job_id,
            "status": self.status,
            "progress": self.progress,
            "type": "video",
            "prompt": self.prompt,
            "model": self.model,
            "created_at": self.created_at,
        }
        if self.duration is not None:
            out["duration"] = self.duration
        if self.status == "completed":
            out["result"] = {"url": self.result_url}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class _Token:
    email: str
    expires_at: Optional[float]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class ServerState:
    """All mutable state; callers hold ``lock`` around every read and write."""

    def __init__(self, *, token_expires_in: Optional[int], clock: ServerClock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.token_expires_in = token_expires_in
        self.users: Dict[str, str] = {}
        self.projects: Dict[str, Project] = {}
        self.jobs: Dict[str, Job] = {}
        self.images: Set[str] = set()
        self._tokens: Dict[str, _Token] = {}
        self._nonces: Set[str] = set()

    # -- users and tokens ---------------------------------------------------
    def issue_token(self, email: str) -> str:
        """A JWT-shaped random token; only this server's memory makes it valid."""
        now = self.clock.now()
        claims: Dict[str, Any] = {"sub": email, "iat": int(now), "jti": uuid.uuid4().hex}
        expires_at: Optional[float] = None
        if self.token_expires_in is not None:
            expires_at = now + self.token_expires_in
            claims["exp"] = int(expires_at)
        header = _b64(b'{"alg":"HS256","typ":"JWT"}')
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        token = f"{header}.{payload}.{_b64(secrets.token_bytes(32))}"
        with self.lock:
            self._tokens[token] = _Token(email, expires_at)
        return token

    def user_for_token(self, token: str) -> Optional[str]:
        with self.lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            if entry.expires_at is not None and self.clock.now() >= entry.expires_at:
                del self._tokens[token]
                return None
            return entry.email

    def claim_nonce(self, nonce: str) -> bool:
        """Record a nonce; False when it was seen before."""
        with self.lock:
            if nonce in self._nonces:
                return False
            self._nonces.add(nonce)
            return True

    # -- projects -----------------------------------------------------------
    def add_project(
        self,
        *,
        owner: str,
        name: str,
        project_id: Optional[str] = None,
        api_key: Optional[str] = None,
        hmac_secret: Optional[str] = None,
        hmac_required: bool = False,
        **policy: Any,
    ) -> Project:
        """A new project; ``policy`` may set ``allowed_models``, ``allowed_domains``,
        ``rate_limit_rpm`` and ``rate_limit_rpd`` (otherwise the Project defaults)."""
        project = Project(
            id=project_id or str(uuid.uuid4()),
            name=name,
            api_key=api_key or "sk_live_" + secrets.token_hex(24),
            hmac_secret=hmac_secret or secrets.token_hex(32),
            owner=owner,
            hmac_required=hmac_required,
            created_at=self.clock.iso(),
            **policy,
        )
        with self.lock:
            self.projects[project.id] = project
        return project

    def project_by_key(self, api_key: str) -> Optional[Project]:
        with self.lock:
            for project in self.projects.values():
                if secrets.compare_digest(project.api_key.encode(), api_key.encode()):
                    return project
        return None

    def add_use_case(
        self,
        project: Project,
        *,
        key: str,
        name: str,
        kind: str,
        config: Optional[Dict[str, Any]] = None,
        is_active: bool = True,
    ) -> UseCase:
        use_case = UseCase(
            id=str(uuid.uuid4()),
            project_id=project.id,
            key=key,
            name=name,
            kind=kind,
            config=dict(config or {}),
            is_active=is_active,
            created_at=self.clock.iso(),
        )
        with self.lock:
            project.use_cases[use_case.id] = use_case
        return use_case

    def seed_default_use_cases(self, project: Project) -> None:
        """A couple of realistic use cases so use-case tests have something to find."""
        self.add_use_case(
            project,
            key="support",
            name="Поддержка клиентов",
            kind="chat",
            config={
                "system_prompt": "Ты — вежливый помощник службы поддержки. Отвечай кратко.",
                "models": [
                    {"model_id": "yandexgpt-pro", "priority": 1},
                    {"model_id": "gpt-4o-mini", "priority": 2},
                ],
                "temperature": 0.3,
            },
        )
        self.add_use_case(
            project,
            key="catalog",
            name="Catalog extraction",
            kind="catalog_extract",
            config={
                "response_format": "json",
                "json_schema": {
                    "type": "object",
                    "properties": {"title": {"type": "string"}, "price": {"type": "number"}},
                },
            },
        )
        self.add_use_case(project, key="legacy", name="Old bot", kind="chat", is_active=False)
