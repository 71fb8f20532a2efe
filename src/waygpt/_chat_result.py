"""A streamed chat gathered into its final form: the text, finish reason and usage.

Imported on first use (``collect()``, ``collect_chat_stream``): it needs ``dataclasses``,
which ``import waygpt`` does not pay for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence

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


# A collector joins the text's pieces this many at a time: a long answer's millions of
# small strings would take several times the memory of their text.
_PARTS_PER_BLOCK = 4096


def _choice_index(choice: Any) -> Optional[int]:
    """The choice a streamed choice object belongs to: its ``index`` when that is an int,
    choice 0 when it has none (missing or null), None for anything else."""
    if not isinstance(choice, dict):
        return None
    index = choice.get("index")
    if index is None:
        return 0
    return index if type(index) is int else None


class ChatStreamCollector:
    """Gathers chat chunk dicts (of choice 0), one ``add`` at a time, into a ChatStreamResult.

    The one place that knows how chunks add up: ``collect_chat_stream``, both streams'
    ``collect()`` and the ``partial`` answer of a stream's error all feed one. The text, the
    role and finish reason are choice 0's (``_choice_index``); ``id`` and ``model`` the first
    a chunk names, ``usage`` the last. ``text_limit`` bounds the text kept (characters;
    None: all of it).
    """

    def __init__(self, text_limit: Optional[int] = None) -> None:
        self._result = ChatStreamResult()
        self._parts: List[str] = []  # text not yet joined into a block
        self._blocks: List[str] = []
        self._size = 0  # characters in the blocks
        self._limit = text_limit
        self._unnamed = True  # no chunk named both the id and the model yet

    def add(self, chunk: Any) -> None:
        self.extend((chunk,))

    def extend(self, chunks: Sequence[Any]) -> None:
        """``add`` each of ``chunks``: a stream's batch, in one call.

        Run for every chunk a stream hands out, so written for speed: a field is read only
        where a chunk may still change what it adds up to.
        """
        result = self._result
        result.chunks += len(chunks)
        parts = self._parts
        for chunk in chunks:
            if not isinstance(chunk, dict):
                continue
            if self._unnamed:
                if result.id is None and isinstance(chunk.get("id"), str):
                    result.id = chunk["id"]
                if result.model is None and isinstance(chunk.get("model"), str):
                    result.model = chunk["model"]
                self._unnamed = result.id is None or result.model is None
            if "usage" in chunk and isinstance(chunk["usage"], dict):
                result.usage = dict(chunk["usage"])
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                if _choice_index(choice) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    if "role" in delta and delta["role"] and isinstance(delta["role"], str):
                        result.role = delta["role"]
                    content = delta.get("content")
                    if isinstance(content, str):
                        parts.append(content)
                        if len(parts) >= _PARTS_PER_BLOCK:
                            self._join()
                value = choice.get("finish_reason")
                if value:
                    result.finish_reason = str(value)

    def result(self) -> ChatStreamResult:
        """What the chunks added so far add up to."""
        self._join()
        if len(self._blocks) > 1:
            self._blocks = ["".join(self._blocks)]
        self._result.text = self._blocks[0] if self._blocks else ""
        return self._result

    def _join(self) -> None:
        if not self._parts:
            return
        block = "".join(self._parts)
        self._parts.clear()  # (the same list: extend holds it)
        if self._limit is not None:
            block = block[: self._limit - self._size]
        if block:
            self._blocks.append(block)
            self._size += len(block)


def collect_chat_stream(chunks: Iterable[ChatCompletionChunk]) -> ChatStreamResult:
    """Gather chat chunk dicts (of choice 0: ``index`` 0, or none) into the final text,
    finish reason and usage.

    ``chunks`` is usually a :class:`ChatStream`; it is read to its end.
    """
    collector = ChatStreamCollector()
    for chunk in chunks:
        collector.add(chunk)
    return collector.result()
