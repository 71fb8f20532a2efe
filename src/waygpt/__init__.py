"""waygpt: the Python SDK for the WayGPT AI Server.

    from waygpt import WayGPTClient

    client = WayGPTClient()  # configured from WAYGPT_* environment variables
    reply = client.chat_completions(messages=[{"role": "user", "content": "Привет!"}])

``AsyncWayGPTClient`` is the same surface for asyncio, on aiohttp (``pip install
"waygpt[aiohttp]"``).
"""

from typing import TYPE_CHECKING, Any

from ._config import DEFAULT_API_URL
from ._observe import RawResponse, RequestView, ResponseView
from ._version import __version__
from .client import WayGPTClient
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
    StreamInterruptedError,
    StructuredOutputError,
    UnprocessableEntityError,
    WayGPTError,
)
from .signing import HMACSigner
from .streaming import AsyncChatStream, ChatStream

if TYPE_CHECKING:
    from ._async_client import AsyncWayGPTClient
    from ._batch import BatchInputError, BatchSummary, batch
    from ._chat_result import ChatChoiceResult, ChatStreamResult, collect_chat_stream
    from .sse import ServerSentEvent, SSEDecoder

# Imported on first use, so that `import waygpt` costs little more than `import requests`:
# the async client needs asyncio (and aiohttp), the SSE parser and the stream result
# dataclasses, the batch runner threads. The one-file build bundles the sync client only.
_LAZY = {
    "AsyncWayGPTClient": "_async_client", "BatchInputError": "_batch", "BatchSummary": "_batch",
    "batch": "_batch", "ChatChoiceResult": "_chat_result", "ChatStreamResult": "_chat_result",
    "collect_chat_stream": "_chat_result", "ServerSentEvent": "sse", "SSEDecoder": "sse",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module("." + _LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_API_URL", "APIConnectionError", "APIResponseValidationError", "APIStatusError",
    "APITimeoutError", "AsyncChatStream", "AsyncWayGPTClient", "AuthenticationError",
    "BadRequestError", "BatchInputError", "BatchSummary", "ChatChoiceResult", "ChatStream",
    "ChatStreamResult", "ConfigurationError", "ConflictError", "HMACSigner",
    "InternalServerError", "MediaJobError", "MediaJobFailedError", "MediaJobTimeoutError",
    "NotFoundError", "PermissionDeniedError", "RateLimitError", "RawResponse", "RequestView",
    "ResponseView", "SSEDecoder", "ServerSentEvent", "StreamInterruptedError",
    "StructuredOutputError", "UnprocessableEntityError", "WayGPTClient", "WayGPTError",
    "__version__", "batch", "collect_chat_stream",
]
