"""What the local server's chat model answers: text, a tool call, or JSON for a schema.

Deterministic, as docs/testing.md ("Tool calls and structured answers") describes it:

* ``tools`` with ``tool_choice`` naming a function, or ``"required"``, or (with ``"auto"`` or
  none) a last user message that names a tool: one call of that tool, its ``arguments`` a
  valid instance of the tool's ``parameters`` (``_schema``), ``finish_reason: tool_calls``;
* after ``tool`` messages: a text answer made of their contents (and their numbers and
  quoted phrases fill a schema after the user's);
* ``response_format`` ``json_schema``: content that is a valid instance of the schema;
  ``json_object``: a small JSON object;
* otherwise ``"Echo: "`` and the last user message.

``stop`` cuts the content at the first stop sequence; ``max_tokens`` (counted in words, as
``usage`` is) cuts it with ``finish_reason: length``.
"""

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from . import _validate as v
from ._schema import Hints, instance, phrases

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_WORD = re.compile(r"\s*\S+")


@dataclass
class Message:
    """A request message as the model reads it."""

    role: str
    text: str
    tool_calls: List[Dict[str, Any]] = field(default_factory=list)
    tool_call_id: Optional[str] = None
    name: Optional[str] = None


@dataclass
class Answer:
    content: Optional[str]
    tool_calls: List[Dict[str, Any]]
    finish_reason: str


def message_text(content: Any, loc: List[Any]) -> str:
    """The text of a message: a string, or the text parts of an OpenAI content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return " ".join(parts)
    raise v.invalid([*loc, "content"], "Input should be a valid string", "string_type")


def read_messages(body: Dict[str, Any]) -> List[Message]:
    messages = body.get("messages")
    if messages is None:
        raise v.invalid(["messages"], "Field required", "missing")
    if not isinstance(messages, list):
        raise v.invalid(["messages"], "Input should be a valid list", "list_type")
    if not messages:
        raise v.invalid(
            ["messages"], "List should have at least 1 item after validation, not 0", "too_short"
        )
    out = []
    for index, message in enumerate(messages):
        loc: List[Any] = ["messages", index]
        if not isinstance(message, dict):
            raise v.invalid(loc, "Input should be a valid dictionary", "dict_type")
        role = message.get("role")
        if role is None:
            raise v.invalid([*loc, "role"], "Field required", "missing")
        if not isinstance(role, str):
            raise v.invalid([*loc, "role"], "Input should be a valid string", "string_type")
        tool_calls = message.get("tool_calls") or []
        # OpenAI's assistant message may leave content out when it calls tools.
        if "content" not in message and not tool_calls:
            raise v.invalid([*loc, "content"], "Field required", "missing")
        if not isinstance(tool_calls, list) or not all(isinstance(c, dict) for c in tool_calls):
            raise v.invalid([*loc, "tool_calls"], "Input should be a valid list", "list_type")
        out.append(
            Message(
                role=role,
                text=message_text(message.get("content"), loc),
                tool_calls=tool_calls,
                tool_call_id=v.string(message, "tool_call_id"),
                name=v.string(message, "name"),
            )
        )
    return out


def _tools(body: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The request's functions by name (``tools``: ``[{"type": "function", "function": ...}]``)."""
    tools = body.get("tools")
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise v.invalid(["tools"], "Input should be a valid list", "list_type")
    found: Dict[str, Dict[str, Any]] = {}
    for index, tool in enumerate(tools):
        loc: List[Any] = ["tools", index]
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise v.invalid([*loc, "type"], "Input should be 'function'", "literal_error")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise v.invalid([*loc, "function"], "Input should be a valid dictionary", "dict_type")
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            raise v.invalid(
                [*loc, "function", "name"], "Input should be a non-empty string", "string_type"
            )
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise v.invalid(
                [*loc, "function", "parameters"], "Input should be a valid dictionary", "dict_type"
            )
        if function.get("strict") is True:
            check_strict(parameters, f"function '{name}'")
        found[name] = parameters
    return found


def _tool_choice(body: Dict[str, Any], tools: Dict[str, Dict[str, Any]]) -> str:
    """``"none"``, ``"auto"``, ``"required"``, or ``"function:<name>"``."""
    choice = body.get("tool_choice")
    if choice is None:
        return "auto"
    if not tools:
        raise v.ApiError(400, "'tool_choice' is only allowed when 'tools' are specified")
    if choice in ("none", "auto", "required"):
        return str(choice)
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or choice.get("type") != "function":
        raise v.ApiError(
            400, "'tool_choice' must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}'
        )
    if name not in tools:
        raise v.ApiError(400, f"'tool_choice' names function '{name}', which is not in 'tools'")
    return "function:" + name


def _response_format(body: Dict[str, Any]) -> Tuple[str, Optional[Dict[str, Any]]]:
    """``("text", None)``, ``("json_object", None)`` or ``("json_schema", schema)``."""
    value = body.get("response_format")
    if value is None:
        return "text", None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return str(kind), None
    if kind != "json_schema":
        raise v.invalid(
            ["response_format", "type"],
            "Input should be 'text', 'json_object' or 'json_schema'",
            "literal_error",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise v.invalid(["response_format", "json_schema"], "Field required", "missing")
    name = v.string(spec, "name", required=True, non_empty=True)
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise v.invalid(
            ["response_format", "json_schema", "schema"],
            "Input should be a valid dictionary",
            "dict_type",
        )
    if spec.get("strict") is True:
        check_strict(schema, f"response_format '{name}'")
    return "json_schema", schema


def check_strict(schema: Dict[str, Any], what: str) -> None:
    """Refuse, as OpenAI does, a strict schema with an object that allows other properties
    or leaves one of its properties out of ``required``."""
    pending: List[Tuple[Any, Tuple[str, ...]]] = [(schema, ())]
    while pending:
        node, where = pending.pop()
        if not isinstance(node, dict):
            continue
        problem = None
        if node.get("type") == "object" or "properties" in node:
            properties = node.get("properties") or {}
            if node.get("additionalProperties") is not False:
                problem = "'additionalProperties' is required to be supplied and to be false"
            elif isinstance(properties, dict) and set(node.get("required") or []) != set(
                properties
            ):
                problem = "'required' is required to list every key of 'properties'"
        if problem is not None:
            raise v.ApiError(400, f"Invalid schema for {what}: in context={where}, {problem}")
        for key in ("properties", "$defs", "definitions"):
            children = node.get(key)
            if isinstance(children, dict):
                pending.extend((child, (*where, key, name)) for name, child in children.items())
        for key in ("anyOf", "oneOf", "allOf"):
            options = node.get(key)
            if isinstance(options, list):
                pending.extend((child, (*where, key, str(i))) for i, child in enumerate(options))
        if "items" in node:
            pending.append((node["items"], (*where, "items")))


def _names_tool(text: str, name: str, whole: bool) -> bool:
    """Whether ``text`` names the tool: its whole name, or (``whole`` False) one of the words
    of four letters or more its name is made of (``weather`` for ``get_weather``)."""
    words = [name] if whole else [w for w in _NAME_WORD.findall(name) if len(w) >= 4]
    return any(
        re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", text, re.IGNORECASE)
        for word in words
    )


def _tool_named_in(text: str, tools: Dict[str, Dict[str, Any]]) -> Optional[str]:
    for whole in (True, False):
        for name in tools:
            if _names_tool(text, name, whole):
                return name
    return None


def _tool_results(messages: List[Message]) -> str:
    """The answer after tool messages: ``<tool name>: <its result>``, one line each."""
    names = {
        call.get("id"): (call.get("function") or {}).get("name")
        for message in messages
        for call in message.tool_calls
        if isinstance(call.get("function"), dict)
    }
    trailing: List[Message] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        trailing.insert(0, message)
    lines = []
    for message in trailing:
        name = message.name or names.get(message.tool_call_id) or "tool"
        lines.append(f"{name}: {message.text}")
    return "\n".join(lines)


def _json_object(text: str, fallback: str) -> Dict[str, Any]:
    """JSON mode: the quoted identifiers of the message as keys (``'setup'`` and
    ``'punchline'`` give ``{"setup": "setup", "punchline": "punchline"}``), else
    ``{"answer": <the text answer>}``."""
    keys = [p for p in phrases(text) if _IDENTIFIER.fullmatch(p)]
    return {key: key for key in keys} if keys else {"answer": fallback}


def _cut(content: str, body: Dict[str, Any]) -> Tuple[str, str]:
    """The content after ``stop`` and ``max_tokens``, and the finish reason."""
    stop = body.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    found = [content.find(s) for s in sequences if isinstance(s, str) and s and s in content]
    if found:
        content = content[: min(found)]
    limit = body.get("max_tokens")
    words = _WORD.findall(content)
    if isinstance(limit, int) and not isinstance(limit, bool) and len(words) > limit:
        return "".join(words[:limit]), "length"
    return content, "stop"


def answer(body: Dict[str, Any], messages: List[Message]) -> Answer:
    """What the model says to this request (its fields checked: 400/422 when they are bad)."""
    tools = _tools(body)
    choice = _tool_choice(body, tools)
    kind, schema = _response_format(body)
    user_texts = [m.text for m in messages if m.role == "user"]
    last_user = user_texts[-1] if user_texts else messages[-1].text
    after_tools = messages[-1].role == "tool"
    results = _tool_results(messages) if after_tools else ""
    # What fills a schema: the user's words, then what the tools said.
    facts = f"{last_user}\n{results}" if results else last_user

    called: Optional[str] = None
    if choice.startswith("function:"):
        called = choice[len("function:") :]
    elif choice == "required":
        called = _tool_named_in(last_user, tools) or next(iter(tools))
    elif choice == "auto" and tools and not after_tools and messages[-1].role == "user":
        called = _tool_named_in(last_user, tools)
    if called is not None:
        arguments = instance(tools[called], Hints(facts))
        call = {
            "id": "call_" + uuid.uuid4().hex[:24],
            "type": "function",
            "function": {
                "name": called,
                "arguments": json.dumps(arguments, ensure_ascii=False),
            },
        }
        return Answer(content=None, tool_calls=[call], finish_reason="tool_calls")

    text = results if after_tools else "Echo: " + last_user
    if kind == "json_schema":
        text = json.dumps(instance(schema, Hints(facts)), ensure_ascii=False)
    elif kind == "json_object":
        text = json.dumps(_json_object(last_user, text), ensure_ascii=False)
    content, finish_reason = _cut(text, body)
    return Answer(content=content, tool_calls=[], finish_reason=finish_reason)
