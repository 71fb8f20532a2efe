"""A streamed chat gathered into its final form: the text, finish reason and usage.

Imported on first use (``collect()``, ``collect_chat_stream``): it needs ``dataclasses``,
which ``import waygpt`` does not pay for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

if TYPE_CHECKING:
    from .types import ChatCompletionChunk

__all__ = ["ChatStreamCollector", "ChatStreamResult", "collect_chat_stream"]


@dataclass
class ChatStreamResult:
    """A streamed chat gathered into its final form."""

    text: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[Dict[str, Any]] = None
    model: Optional[str] = None
    id: Optional[str] = None
    chunks: int = 0
    role: str = "assistant"


class ChatStreamCollector:
    """Gathers chat chunk dicts (of choice 0), one ``add`` at a time, into a ChatStreamResult.

    The one place that knows how chunks add up; ``collect_chat_stream`` and both streams'
    ``collect()`` feed it.
    """

    def __init__(self) -> None:
        self._result = ChatStreamResult()
        self._parts: List[str] = []

    def add(self, chunk: Any) -> None:
        result = self._result
        result.chunks += 1
        if not isinstance(chunk, dict):
            return
        result.id = chunk.get("id", result.id)
        result.model = chunk.get("model", result.model)
        if isinstance(chunk.get("usage"), dict):
            result.usage = dict(chunk["usage"])
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("role"), str) and delta["role"]:
                    result.role = delta["role"]
                content = delta.get("content")
                if isinstance(content, str):
                    self._parts.append(content)
            if choice.get("finish_reason"):
                result.finish_reason = str(choice["finish_reason"])

    def result(self) -> ChatStreamResult:
        self._result.text = "".join(self._parts)
        return self._result


def collect_chat_stream(chunks: Iterable[ChatCompletionChunk]) -> ChatStreamResult:
    """Gather chat chunk dicts (of choice 0) into the final text, finish reason and usage.

    ``chunks`` is usually a :class:`ChatStream`; it is read to its end.
    """
    collector = ChatStreamCollector()
    for chunk in chunks:
        collector.add(chunk)
    return collector.result()
