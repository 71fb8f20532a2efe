"""Project policy: what a project's settings let a project-key request do.

``is_active`` is checked with the key (``_dispatch``); this module holds the rest: which
models a project may name, which domains a browser may call it from, and how many requests
it may make per minute and per day. The choices where the protocol is silent (the status of
"model not found", how domains match, the window type) are written down in docs/testing.md.
"""

import math
from bisect import bisect_right
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple

from ._hosts import domain_host, same_host, url_host
from ._state import MODELS, Project
from ._validate import ApiError

MODEL_NOT_FOUND = "Модель не найдена"
MODEL_NOT_FOUND_STATUS = 404
PROJECT_INACTIVE = "Project is inactive"

# (seconds, Project attribute, unit in the 429 detail)
_WINDOWS: Tuple[Tuple[float, str, str], ...] = (
    (60.0, "rate_limit_rpm", "minute"),
    (86400.0, "rate_limit_rpd", "day"),
)
_LONGEST_WINDOW = max(window for window, _, _ in _WINDOWS)
# Admitted requests are remembered for a day, whether or not a limit is set (a limit set
# later counts them, as on a server that always counts), but at most this many per project:
# enough for any limit a test sets, and a bound for a shell server running for days.
_MAX_REMEMBERED = 100_000
_CATALOGUE = {model["id"] for model in MODELS}


# -- models --------------------------------------------------------------------


def model_not_found() -> ApiError:
    return ApiError(MODEL_NOT_FOUND_STATUS, MODEL_NOT_FOUND)


def _may_use(project: Project, model_id: str) -> bool:
    return not project.allowed_models or model_id in project.allowed_models


def visible_models(project: Project) -> List[Dict[str, str]]:
    """The catalogue entries the project may use, in catalogue order."""
    return [dict(model) for model in MODELS if _may_use(project, model["id"])]


def check_model(project: Project, model_id: str) -> str:
    """A model named in a request: it must exist and be allowed, else "Модель не найдена"."""
    if model_id not in _CATALOGUE or not _may_use(project, model_id):
        raise model_not_found()
    return model_id


def auto_model(project: Project, kind: str) -> str:
    """What ``"auto"`` picks: the first allowed model of the kind (chat, image, video)."""
    for model in MODELS:
        if model["type"] == kind and _may_use(project, model["id"]):
            return model["id"]
    raise model_not_found()


# -- domains -------------------------------------------------------------------


def host_of(value: str) -> Optional[str]:
    """The host a domain setting names (a bare domain or a URL), as compared; None when none.

    ``https://Shop.Example.com:8443/cart``, ``shop.example.com:8443`` and ``shop.example.com.``
    all give ``shop.example.com``: scheme, port, path and a trailing dot do not matter. The
    text is read as a browser reads a URL (``_hosts``): ``evil.com\\@shop.example.com`` is
    ``evil.com``.
    """
    host = domain_host(value)
    return None if host is None else same_host(host)


def _allowed_hosts(project: Project) -> Set[str]:
    return {host for host in map(host_of, project.allowed_domains) if host is not None}


def _host_allowed(project: Project, host: Optional[str]) -> bool:
    """Hosts match exactly (case-insensitively): ``example.com`` does not admit
    ``shop.example.com``. An empty ``allowed_domains`` admits everything, even no host."""
    if not project.allowed_domains:
        return True
    return host is not None and same_host(host) in _allowed_hosts(project)


def domain_allowed(project: Project, value: str) -> bool:
    """Whether a domain setting (a widget's ``site_domain``) names a host in ``allowed_domains``."""
    return _host_allowed(project, host_of(value))


def domain_refused(domain: str) -> ApiError:
    return ApiError(403, f"Domain '{domain}' is not allowed for this project")


def check_browser_origin(project: Project, headers: Mapping[str, str]) -> None:
    """403 when the request's ``Origin`` or ``Referer`` names a host outside the list.

    Each is read as the browser that sent it reads a URL; one with no host of its own
    (``null``, a sandboxed page or a ``file:`` one; anything that is not a URL) is refused.
    A request with neither header (a backend) is allowed; so is every request when the
    project sets no ``allowed_domains``.
    """
    for name in ("origin", "referer"):
        value = headers.get(name, "").strip()
        if not value:
            continue
        host = url_host(value)
        if not _host_allowed(project, host):
            raise domain_refused(value if host is None else same_host(host))


# -- rate limits ---------------------------------------------------------------


class RateLimiter:
    """Sliding-window request counts per project, for ``rate_limit_rpm`` and ``rate_limit_rpd``.

    A request is admitted when, over the last 60 s and over the last 86 400 s, the project
    has made fewer admitted requests than its limit (0 means no limit); only admitted
    requests are counted, also while no limit is set. ``clock`` gives seconds on any scale
    that never goes back. Callers hold the server state's lock.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._admitted: Dict[str, List[float]] = {}  # project id -> ascending times

    def admit(self, project: Project) -> None:
        """Count one request, or raise the 429 (with ``Retry-After``) when over a limit."""
        now = self._clock()
        times = self._admitted.setdefault(project.id, [])
        expired = bisect_right(times, now - _LONGEST_WINDOW)
        if expired or len(times) >= _MAX_REMEMBERED:
            del times[: max(expired, len(times) - _MAX_REMEMBERED + 1)]
        wait = 0.0
        exceeded: Optional[Tuple[int, str]] = None
        for window, attribute, unit in _WINDOWS:
            limit = int(getattr(project, attribute))
            if limit <= 0:
                continue
            start = bisect_right(times, now - window)
            recent = len(times) - start
            if recent < limit:
                continue
            # A slot frees when enough of the recent requests have left the window.
            frees_at = times[start + recent - limit] + window
            if exceeded is None or frees_at - now > wait:
                wait, exceeded = frees_at - now, (limit, unit)
        if exceeded is not None:
            limit, unit = exceeded
            seconds = max(1, math.ceil(round(wait, 6)))
            raise ApiError(
                429,
                f"Rate limit exceeded: {limit} requests per {unit}",
                {"Retry-After": str(seconds)},
            )
        times.append(now)
