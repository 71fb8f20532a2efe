"""What an endpoint function receives, and the helper that builds its answer."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ._faults import ScriptedResponse, StreamFaultBook
from ._records import RecordedRequest
from ._state import Project, ServerState


@dataclass
class Context:
    """One authenticated request on its way to an endpoint.

    ``params`` holds the percent-decoded path parameters; ``project`` is set on
    project-key endpoints, ``user`` (an e-mail) on JWT endpoints. ``always_include_usage``:
    every stream ends with a usage-only chunk, as if the request had asked for one.
    """

    request: RecordedRequest
    state: ServerState
    base_url: str
    job_steps: int
    always_include_usage: bool = False
    stream_faults: StreamFaultBook = field(default_factory=StreamFaultBook)
    params: Dict[str, str] = field(default_factory=dict)
    project: Optional[Project] = None
    user: Optional[str] = None

    def require_project(self) -> Project:
        assert self.project is not None, "project-key endpoint reached without a project"
        return self.project

    def require_user(self) -> str:
        assert self.user is not None, "JWT endpoint reached without a user"
        return self.user


def reply(
    body: Any, status: int = 200, headers: Optional[Dict[str, str]] = None
) -> ScriptedResponse:
    """An ordinary JSON answer."""
    return ScriptedResponse(status=status, body=body, headers=dict(headers or {}), times=None)
