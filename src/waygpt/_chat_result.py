"""A streamed chat gathered into its final form: text, tool calls, finish reason and usage.
Imported on first use: ``import waygpt`` does not pay for ``dataclasses``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence

from ._stream_forms import choice_index

if TYPE_CHECKING:
    from .types import ChatCompletionChunk

__all__ = ["ChatChoiceResult", "ChatStreamCollector", "ChatStreamResult", "collect_chat_stream"]


@dataclass
class ChatChoiceResult:
    """One choice of a streamed chat, gathered. ``tool_calls`` have OpenAI's shape (``{"id",
    "type", "function": {"name", "arguments"}}``), in the order of their ``index``."""

    index: int = 0
    text: str = ""
    role: str = "assistant"
    finish_reason: Optional[str] = None
    tool_calls: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class ChatStreamResult:
    """A streamed chat gathered into its final form.

    ``text``, ``role``, ``finish_reason`` and ``tool_calls`` are choice 0's; ``choices``
    holds every choice, choice 0 first, then by index.
    """

    text: str = ""
    finish_reason: Optional[str] = None
    usage: Optional[Dict[str, Any]] = None
    model: Optional[str] = None
    id: Optional[str] = None
    chunks: int = 0
    role: str = "assistant"
    tool_calls: List[Dict[str, Any]] = field(default_factory=list)
    choices: List[ChatChoiceResult] = field(default_factory=list)


# Text is joined this many pieces at a time: a long answer's millions of small strings would
# take several times the memory of their text.
_PARTS_PER_BLOCK = 4096


class _Text:
    """Pieces of text, joined in blocks; ``budget``, the collector, bounds all its texts."""

    __slots__ = ("_blocks", "_parts")

    def __init__(self) -> None:
        self._parts: List[str] = []
        self._blocks: List[str] = []

    def add(self, piece: str, budget: ChatStreamCollector) -> None:
        self._parts.append(piece)
        if len(self._parts) >= _PARTS_PER_BLOCK:
            self._join(budget)

    def text(self, budget: ChatStreamCollector) -> str:
        self._join(budget)
        if len(self._blocks) > 1:
            self._blocks = ["".join(self._blocks)]
        return self._blocks[0] if self._blocks else ""

    def _join(self, budget: ChatStreamCollector) -> None:
        if self._parts:
            block = budget._keep("".join(self._parts))
            self._parts.clear()
            if block:
                self._blocks.append(block)


class _Choice:
    """What one choice's deltas have added so far."""

    __slots__ = ("calls", "finish_reason", "index", "role", "text")

    def __init__(self, index: int) -> None:
        self.index = index
        self.text = _Text()
        self.role = "assistant"
        self.finish_reason: Optional[str] = None
        self.calls: Dict[int, Any] = {}  # by index: [id, type, name, arguments (_Text)]

    def add(self, choice: Dict[str, Any], budget: ChatStreamCollector) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            role = delta.get("role")
            if role and isinstance(role, str):
                self.role = role
            content = delta.get("content")
            if isinstance(content, str):
                self.text.add(content, budget)
            calls = delta.get("tool_calls")
            if calls:
                self._add_calls(calls, budget)
        reason = choice.get("finish_reason")
        if reason:
            self.finish_reason = str(reason)

    def _add_calls(self, calls: Any, budget: ChatStreamCollector) -> None:
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            if not isinstance(call, dict):
                continue
            index = call.get("index")
            if type(index) is not int:
                index = position
            gathered = self.calls.get(index)
            if gathered is None:
                gathered = self.calls[index] = [None, None, None, _Text()]
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            # The id, type and name come with the call's first delta; arguments in pieces.
            for slot, value in ((0, call.get("id")), (1, call.get("type")),
                                (2, function.get("name"))):
                if gathered[slot] is None and isinstance(value, str):
                    gathered[slot] = value
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                gathered[3].add(arguments, budget)

    def result(self, budget: ChatStreamCollector) -> ChatChoiceResult:
        calls = [
            {
                "id": call_id,
                "type": kind or "function",
                "function": {"name": name or "", "arguments": arguments.text(budget)},
            }
            for _, (call_id, kind, name, arguments) in sorted(self.calls.items())
        ]
        return ChatChoiceResult(
            self.index, self.text.text(budget), self.role, self.finish_reason, calls
        )


class ChatStreamCollector:
    """Gathers chat chunk dicts into a :class:`ChatStreamResult`: the one place that knows
    how chunks add up (``collect()``, an error's ``partial``). ``id`` and ``model`` are the
    first a chunk names, ``usage`` the last. ``text_limit`` bounds the text kept, tool calls'
    arguments included (characters; None: all of it)."""

    def __init__(self, text_limit: Optional[int] = None) -> None:
        self._result = ChatStreamResult()
        self._left = text_limit  # the characters it may still keep (None: no bound)
        self._first = _Choice(0)
        self._choices: Dict[int, _Choice] = {0: self._first}
        self._unnamed = True  # no chunk named both the id and the model yet

    def add(self, chunk: Any) -> None:
        self.extend((chunk,))

    def extend(self, chunks: Sequence[Any]) -> None:
        """``add`` each of ``chunks`` (a stream's batch). Run for every chunk a stream hands
        out, so a field is read only where a chunk may still change what it adds up to."""
        result = self._result
        result.chunks += len(chunks)
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
                index = choice_index(choice)
                if index == 0:
                    self._first.add(choice, self)
                elif index is not None:
                    gathered = self._choices.get(index)
                    if gathered is None:
                        gathered = self._choices[index] = _Choice(index)
                    gathered.add(choice, self)

    def result(self) -> ChatStreamResult:
        """What the chunks added so far add up to."""
        result = self._result
        ordered = sorted(self._choices, key=lambda index: (index != 0, index))  # choice 0 first
        result.choices = [self._choices[index].result(self) for index in ordered]
        first = result.choices[0]
        result.text, result.role = first.text, first.role
        result.finish_reason, result.tool_calls = first.finish_reason, first.tool_calls
        return result

    def _keep(self, block: str) -> str:
        if self._left is None:
            return block
        block = block[: max(self._left, 0)]
        self._left -= len(block)
        return block


def collect_chat_stream(chunks: Iterable[ChatCompletionChunk]) -> ChatStreamResult:
    """Gather chat chunk dicts (a :class:`ChatStream`, read to its end) into each choice's
    final text, tool calls and finish reason, and the usage (choice 0's at the top)."""
    collector = ChatStreamCollector()
    for chunk in chunks:
        collector.add(chunk)
    return collector.result()
