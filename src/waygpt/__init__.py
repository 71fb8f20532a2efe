"""waygpt: the Python SDK for the WayGPT AI Server.

    from waygpt import WayGPTClient

    client = WayGPTClient()  # configured from WAYGPT_* environment variables
    reply = client.chat_completions(messages=[{"role": "user", "content": "Привет!"}])
"""

from ._version import __version__
from .client import DEFAULT_API_URL, WayGPTClient
from .errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    MediaJobError,
    MediaJobFailedError,
    MediaJobTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    WayGPTError,
)
from .signing import HMACSigner
from .sse import ServerSentEvent, SSEDecoder
from .streaming import ChatStream, ChatStreamResult, collect_chat_stream

__all__ = [
    "DEFAULT_API_URL",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ChatStream",
    "ChatStreamResult",
    "ConfigurationError",
    "ConflictError",
    "HMACSigner",
    "InternalServerError",
    "MediaJobError",
    "MediaJobFailedError",
    "MediaJobTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "SSEDecoder",
    "ServerSentEvent",
    "UnprocessableEntityError",
    "WayGPTClient",
    "WayGPTError",
    "__version__",
    "collect_chat_stream",
]
