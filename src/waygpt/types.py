"""Typed shapes of the server's answers, for editors and type checkers: the methods return
plain dicts, as the server sent them (unknown fields pass through), which these ``TypedDict`` s
only describe. Fields the server does not always send are not required (``total=False``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, TypedDict

__all__ = [
    "ChatCompletion", "ChatCompletionChoice", "ChatCompletionChunk", "ChatCompletionChunkChoice",
    "ChatCompletionChunkDelta", "ChatMessage", "CompletionUsage", "ImageData", "ImageGeneration",
    "LoginResult", "MediaJob", "ModelInfo", "Project", "UseCase", "WidgetToken",
]


class ChatMessage(TypedDict, total=False):
    """A message of a chat answer: ``role`` and ``content``; ``tool_calls`` when the model
    calls tools, ``refusal`` when it refuses, ``parsed`` from ``chat_completions_parse``."""

    role: str
    content: Optional[str]
    tool_calls: List[Dict[str, Any]]
    refusal: Optional[str]
    parsed: Any


class CompletionUsage(TypedDict, total=False):
    """Token counts of a chat answer."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionChoice(TypedDict, total=False):
    """One choice of a chat answer."""

    index: int
    message: ChatMessage
    finish_reason: Optional[str]


class _ChatCompletionRequired(TypedDict):
    choices: List[ChatCompletionChoice]


class ChatCompletion(_ChatCompletionRequired, total=False):
    """The answer of ``chat_completions`` (the OpenAI shape)."""

    id: str
    object: str
    created: int
    model: str
    usage: CompletionUsage
    use_case: str


class ChatCompletionChunkDelta(TypedDict, total=False):
    """What a streamed chunk adds to the message."""

    role: str
    content: Optional[str]


class ChatCompletionChunkChoice(TypedDict, total=False):
    """One choice of a streamed chunk."""

    index: int
    delta: ChatCompletionChunkDelta
    finish_reason: Optional[str]


class ChatCompletionChunk(TypedDict, total=False):
    """One chunk of a streamed chat answer (``choices`` may be empty in a usage-only chunk)."""

    id: str
    object: str
    created: int
    model: str
    choices: List[ChatCompletionChunkChoice]
    usage: CompletionUsage


class ImageData(TypedDict, total=False):
    """One generated image: a ``url`` (or ``b64_json``)."""

    url: str
    b64_json: str
    revised_prompt: str


class _ImageGenerationRequired(TypedDict):
    data: List[ImageData]


class ImageGeneration(_ImageGenerationRequired, total=False):
    """The answer of ``image_generations``."""

    created: int
    model: str


class _MediaJobRequired(TypedDict):
    job_id: str
    status: str


class MediaJob(_MediaJobRequired, total=False):
    """A video job: ``status`` is pending, processing, completed, failed or cancelled."""

    progress: int
    type: str
    prompt: str
    model: str
    duration: int
    created_at: str
    video_url: str
    result: Dict[str, Any]
    error: Any


class ModelInfo(TypedDict, total=False):
    """An entry of ``get_models_full``."""

    id: str
    name: str
    provider: str
    type: str


class LoginResult(TypedDict):
    """The answer of ``client_login``: the server's, plus ``token`` and defaults."""

    access_token: str
    token: str
    token_type: str
    expires_in: int


class Project(TypedDict, total=False):
    """A Client API project (its settings carry ``api_key`` and the policy fields)."""

    id: str
    name: str
    api_key: str
    hmac_secret: str
    is_active: bool
    allowed_models: List[str]
    allowed_domains: List[str]
    hmac_required: bool
    rate_limit_rpm: Optional[int]
    rate_limit_rpd: Optional[int]
    created_at: str


class _UseCaseRequired(TypedDict):
    key: str


class UseCase(_UseCaseRequired, total=False):
    """A use case ("scenario"): ``config`` holds its system prompt, models, limits..."""

    id: str
    project_id: str
    name: str
    kind: str
    config: Dict[str, Any]
    is_active: bool
    created_at: str


class WidgetToken(TypedDict, total=False):
    """The answer of ``create_widget_token``."""

    token: str
    expires_in: int
    expires_at: str
    site_domain: Optional[str]
