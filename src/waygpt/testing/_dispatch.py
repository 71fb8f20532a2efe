"""From a received request to the answer: authenticate, apply scripts, route, enforce policy.

The order of the checks, for a project-key request (docs/testing.md, "Project policy"):

1. the project key (401), then whether the project is active (401), then its HMAC
   signature when required or present (403; a valid one uses up its nonce);
2. a scripted answer, when one matches, replaces everything below;
3. routing: an unknown path is 404, a wrong method 405;
4. ``Origin``/``Referer`` against ``allowed_domains`` (403);
5. the rate limits (429 with ``Retry-After``); only requests that get this far are counted;
6. the endpoint: body validation (400/422), use case and model (404), ``site_domain`` (403);
   a streamed chat completion that gets this far takes the next stream fault, if any.
"""

import struct
import time
import zlib
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote

from . import _auth
from . import _client_api as client_api
from . import _policy as policy
from . import _waygpt_api as waygpt_api
from ._context import Context, reply
from ._faults import ScriptBook, ScriptedResponse, StreamFaultBook
from ._records import RecordedRequest
from ._state import ServerState
from ._validate import ApiError, not_found

Handler = Callable[[Context], ScriptedResponse]


def _png_1x1() -> bytes:
    """A valid one-pixel PNG, so generated image URLs can be downloaded."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


_PNG = _png_1x1()
# Just an MP4 "ftyp" box: enough for a download test, not a playable video.
_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def _media_image(ctx: Context) -> ScriptedResponse:
    name = ctx.params["file"]
    if not name.endswith(".png") or name[: -len(".png")] not in ctx.state.images:
        raise not_found()
    return ScriptedResponse(body=_PNG, content_type="image/png", times=None)


def _media_video(ctx: Context) -> ScriptedResponse:
    name = ctx.params["file"]
    job = ctx.state.jobs.get(name[: -len(".mp4")]) if name.endswith(".mp4") else None
    if job is None or job.status != "completed":
        raise not_found()
    return ScriptedResponse(body=_MP4, content_type="video/mp4", times=None)


_ROUTE_TABLE: List[Tuple[str, str, Handler]] = [
    ("POST", "/api/v1/waygpt/chat/completions", waygpt_api.chat_completions),
    ("POST", "/api/v1/waygpt/images/generations", waygpt_api.image_generations),
    ("POST", "/api/v1/waygpt/videos/generations", waygpt_api.video_generations),
    ("GET", "/api/v1/waygpt/media/jobs/{job_id}", waygpt_api.get_media_job),
    ("POST", "/api/v1/waygpt/media/jobs/{job_id}/cancel", waygpt_api.cancel_media_job),
    ("GET", "/api/v1/waygpt/models", waygpt_api.models),
    ("GET", "/api/v1/waygpt/models/full", waygpt_api.models_full),
    ("GET", "/api/v1/waygpt/use-cases", waygpt_api.use_cases),
    ("POST", "/api/v1/widget/token", waygpt_api.widget_token),
    ("POST", "/api/v1/auth/login/access-token", client_api.login),
    ("GET", "/api/v1/client/projects", client_api.list_projects),
    ("POST", "/api/v1/client/projects", client_api.create_project),
    ("GET", "/api/v1/client/projects/{project_id}/settings", client_api.project_settings),
    ("PUT", "/api/v1/client/projects/{project_id}", client_api.update_project),
    ("DELETE", "/api/v1/client/projects/{project_id}", client_api.delete_project),
    ("GET", "/api/v1/client/projects/{project_id}/use-cases", client_api.list_use_cases),
    ("POST", "/api/v1/client/projects/{project_id}/use-cases", client_api.create_use_case),
    (
        "PUT",
        "/api/v1/client/projects/{project_id}/use-cases/{use_case_id}",
        client_api.update_use_case,
    ),
    (
        "DELETE",
        "/api/v1/client/projects/{project_id}/use-cases/{use_case_id}",
        client_api.delete_use_case,
    ),
    ("GET", "/media/images/{file}", _media_image),
    ("GET", "/media/videos/{file}", _media_video),
]

_ROUTES = [(method, pattern.split("/"), handler) for method, pattern, handler in _ROUTE_TABLE]


def _match(pattern: List[str], segments: List[str]) -> Optional[Dict[str, str]]:
    """Path parameters when the raw path fits the pattern; each is one raw segment."""
    if len(pattern) != len(segments):
        return None
    params: Dict[str, str] = {}
    for expected, actual in zip(pattern, segments):
        if expected.startswith("{"):
            if not actual:
                return None
            params[expected[1:-1]] = unquote(actual)
        elif expected != actual:
            return None
    return params


def route(method: str, path: str) -> Tuple[Handler, Dict[str, str]]:
    """The endpoint for a request; 404 for unknown paths, 405 for a wrong method."""
    segments = path.split("/")
    allowed: List[str] = []
    for route_method, pattern, handler in _ROUTES:
        params = _match(pattern, segments)
        if params is None:
            continue
        if route_method == method:
            return handler, params
        allowed.append(route_method)
    if allowed:
        raise ApiError(405, "Method Not Allowed", {"Allow": ", ".join(allowed)})
    raise not_found()


def _needs_project_key(path: str) -> bool:
    return path.startswith("/api/v1/waygpt/") or path == "/api/v1/widget/token"


class Dispatcher:
    """Turns each recorded request into the answer the server sends."""

    def __init__(
        self,
        state: ServerState,
        scripts: ScriptBook,
        stream_faults: StreamFaultBook,
        *,
        job_steps: int,
        timestamp_window: int,
        rate_limit_clock: Callable[[], float] = time.monotonic,
        always_include_usage: bool = False,
    ) -> None:
        self.state = state
        self.scripts = scripts
        self.stream_faults = stream_faults
        self.job_steps = job_steps
        self.timestamp_window = timestamp_window
        self.always_include_usage = always_include_usage
        self.rate_limiter = policy.RateLimiter(rate_limit_clock)

    def handle(self, request: RecordedRequest, base_url: str) -> ScriptedResponse:
        path = request.path_only
        ctx = Context(
            request=request,
            state=self.state,
            base_url=base_url,
            job_steps=self.job_steps,
            always_include_usage=self.always_include_usage,
            stream_faults=self.stream_faults,
        )
        try:
            # One lock around the whole decision keeps state changes atomic per request.
            with self.state.lock:
                self._authenticate(ctx, path)
                # Scripts come after authentication, so a scripted failure on a
                # signed request still consumes its nonce, as a real server would.
                script = self.scripts.take(request.method, path)
                if script is not None:
                    return script
                handler, ctx.params = route(request.method, path)
                if ctx.project is not None:
                    policy.check_browser_origin(ctx.project, request.headers)
                    self.rate_limiter.admit(ctx.project)
                return handler(ctx)
        except ApiError as error:
            return reply({"detail": error.detail}, error.status, error.headers)

    def _authenticate(self, ctx: Context, path: str) -> None:
        headers = ctx.request.headers
        if _needs_project_key(path):
            key = headers.get("x-project-key", "")
            project = self.state.project_by_key(key) if key else None
            if project is None:
                raise ApiError(401, "Invalid project key")
            if not project.is_active:
                raise ApiError(401, policy.PROJECT_INACTIVE)
            if project.hmac_required or _auth.wants_hmac(headers):
                problem = _auth.verify(
                    method=ctx.request.method,
                    target=ctx.request.path,
                    headers=headers,
                    body=ctx.request.body,
                    project_id=project.id,
                    secret=project.hmac_secret,
                    now=self.state.clock.now(),
                    window=self.timestamp_window,
                    claim_nonce=self.state.claim_nonce,
                )
                if problem is not None:
                    raise ApiError(403, problem)
            ctx.project = project
        elif path.startswith("/api/v1/client/"):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            user = None
            if scheme.lower() == "bearer" and token.strip():
                user = self.state.user_for_token(token.strip())
            if user is None:
                raise ApiError(
                    401, "Could not validate credentials", {"WWW-Authenticate": "Bearer"}
                )
            ctx.user = user
