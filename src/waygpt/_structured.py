"""Structured answers: ``chat_completions_parse``'s schema going out and its answer coming back.

What the caller names as ``response_format`` (a pydantic model class, a ``TypedDict``, a JSON
schema dict) becomes OpenAI's ``response_format`` of type ``json_schema``, ``strict`` when the
schema allows it; each choice's answer is then read back into ``message["parsed"]``, or into
a :class:`StructuredOutputError`. Standard library only: pydantic is used only for a class of
the caller's, so it is already imported.
"""

from __future__ import annotations

import copy
import enum
import re
import sys
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional

from .errors import StructuredOutputError, error_body_text, parse_json

__all__ = ["StructuredAnswer"]

_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_SCALARS: Dict[Any, str] = {
    str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"
}
# How many problems an error lists: the first ones say what is wrong.
_MAX_PROBLEMS = 5


def _pydantic_model(value: Any) -> Optional[str]:
    """``"v2"`` or ``"v1"`` for a pydantic model class, else None (pydantic is never imported
    here: a caller with a model class has imported it)."""
    if not isinstance(value, type):
        return None
    for module, kind in (("pydantic", "v2"), ("pydantic.v1", "v1")):
        loaded = sys.modules.get(module)
        base = getattr(loaded, "BaseModel", None)
        if isinstance(base, type) and issubclass(value, base):
            return kind if hasattr(value, "model_json_schema") else "v1"
    return None


def _is_typeddict(value: Any) -> bool:
    return (
        isinstance(value, type)
        and issubclass(value, dict)
        and hasattr(value, "__required_keys__")
        and hasattr(value, "__annotations__")
    )


class _TypedDictSchema:
    """A ``TypedDict`` as a JSON schema: nested ones in ``$defs``, so recursion is a ``$ref``."""

    def __init__(self) -> None:
        self.defs: Dict[str, Any] = {}

    def of(self, kind: Any) -> Dict[str, Any]:
        return self._object(kind)

    def _object(self, kind: Any) -> Dict[str, Any]:
        try:
            hints = typing.get_type_hints(kind, include_extras=True)
        except KeyError:  # 3.9, a class whose module is not in sys.modules (code run by exec)
            hints = typing.get_type_hints(kind, globalns={}, include_extras=True)
        required = set(getattr(kind, "__required_keys__", hints))
        for name, hint in hints.items():
            # Read from the hint too: with postponed (string) annotations, a class made
            # before 3.14 counts a NotRequired field among __required_keys__.
            marker = _marker_name(hint)
            if marker == "NotRequired":
                required.discard(name)
            elif marker == "Required":
                required.add(name)
        schema: Dict[str, Any] = {
            "type": "object",
            "properties": {name: self._annotation(hint) for name, hint in hints.items()},
            "required": [name for name in hints if name in required],
            "additionalProperties": False,
        }
        if kind.__doc__:
            schema["description"] = kind.__doc__.strip()
        return schema

    def _annotation(self, hint: Any) -> Dict[str, Any]:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if _marker_name(hint) is not None:
            return self._annotation(args[0])
        if origin is getattr(typing, "Annotated", None) or hasattr(hint, "__metadata__"):
            inner = self._annotation(hint.__origin__)
            notes = [m for m in hint.__metadata__ if isinstance(m, str)]
            return {**inner, "description": notes[-1]} if notes else inner
        if hint in _SCALARS:
            return {"type": _SCALARS[hint]}
        if hint is typing.Any:
            return {}
        if _is_typeddict(hint):
            title = hint.__name__
            if title not in self.defs:
                self.defs[title] = {}  # taken before the walk: a recursive one ends here
                self.defs[title] = self._object(hint)
            return {"$ref": f"#/$defs/{title}"}
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return {"enum": [member.value for member in hint]}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin is typing.Union or type(hint).__name__ == "UnionType":
            return {"anyOf": [self._annotation(arg) for arg in args]}
        if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
            kinds = [arg for arg in args if arg is not Ellipsis]
            if len(set(kinds)) > 1:  # a fixed tuple of several types
                return {"type": "array", "items": {"anyOf": [self._annotation(k) for k in kinds]}}
            return {"type": "array", "items": self._annotation(kinds[0]) if kinds else {}}
        if origin is dict or hint is dict:
            values = args[1] if len(args) == 2 else Any
            return {"type": "object", "additionalProperties": self._annotation(values)}
        raise TypeError(f"response_format: cannot describe {hint!r} as a JSON schema")


def _subschemas(node: Dict[str, Any]) -> List[Any]:
    """The schemas directly inside a schema, read by keyword (a property may be called
    ``properties``)."""
    found: List[Any] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            found.extend(node[key].values())
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(node.get(key), list):
            found.extend(node[key])
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            found.append(node[key])
    return found


def _marker_name(hint: Any) -> Optional[str]:
    """``"Required"``, ``"NotRequired"`` or ``"ReadOnly"`` for a hint wrapped in one."""
    origin = typing.get_origin(hint)
    name = getattr(origin, "_name", None) or getattr(origin, "__name__", None)
    return name if name in ("Required", "NotRequired", "ReadOnly") else None


def _strict_form(schema: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The schema for OpenAI's strict mode (every object closed with
    ``additionalProperties: false``), or None when strict mode would change its meaning:
    an object with a property left out of ``required``, or one that allows other keys."""
    strict = copy.deepcopy(schema)
    pending: List[Any] = [strict]
    while pending:
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        if node.get("type") == "object" or "properties" in node:
            properties = node.get("properties") or {}
            extra = node.get("additionalProperties", False)
            if extra is not False or set(node.get("required") or []) != set(properties):
                return None
            node["additionalProperties"] = False
        pending.extend(_subschemas(node))
    return strict


def _check(value: Any, schema: Any, root: Dict[str, Any], path: str, out: List[str]) -> None:
    """Append to ``out`` where ``value`` breaks ``schema`` (the keywords structured-output
    schemas use: type, properties, required, additionalProperties, items, enum, const,
    anyOf/oneOf/allOf, local $ref)."""
    if len(out) >= _MAX_PROBLEMS or not isinstance(schema, dict):
        return
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#").split("/"):
            if part:
                target = target.get(part, {}) if isinstance(target, dict) else {}
        _check(value, target, root, path, out)
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: should be {schema['const']!r}")
        return
    if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        out.append(f"{path}: should be one of {schema['enum']!r}")
        return
    for options in (schema.get("anyOf"), schema.get("oneOf")):
        if isinstance(options, list) and options:
            trials = []
            for option in options:
                found: List[str] = []
                _check(value, option, root, path, found)
                trials.append(found)
            if all(trials):
                out.append(f"{path}: matches none of the allowed forms ({trials[0][0]})")
                return
    for part in schema.get("allOf") or []:
        _check(value, part, root, path, out)
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(value, kind) for kind in allowed):
            out.append(f"{path}: should be {' or '.join(map(str, allowed))}")
            return
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                out.append(f"{path}: {name!r} is required")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                _check(item, properties[name], root, f"{path}.{name}", out)
            elif extra is False:
                out.append(f"{path}: {name!r} is not allowed")
            elif isinstance(extra, dict):
                _check(item, extra, root, f"{path}.{name}", out)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _check(item, schema["items"], root, f"{path}[{index}]", out)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = {"string": str, "boolean": bool, "object": dict, "array": list}.get(kind)
    if expected is not None:
        return isinstance(value, expected)
    return value is None if kind == "null" else True


class StructuredAnswer:
    """One ``chat_completions_parse`` call: the ``response_format`` it sends and how it reads
    the answer. Built before anything is sent, so a schema that cannot be used is refused
    (``TypeError``) before the network."""

    def __init__(self, response_format: Any) -> None:
        self._model = _pydantic_model(response_format)
        self._target = response_format
        name = getattr(response_format, "__name__", None)
        if self._model == "v2":
            schema = response_format.model_json_schema()
        elif self._model == "v1":
            schema = response_format.schema()
        elif _is_typeddict(response_format):
            described = _TypedDictSchema()
            schema = described.of(response_format)
            if described.defs:
                schema["$defs"] = described.defs
        elif isinstance(response_format, Mapping):
            schema = dict(response_format)
            spec = schema.get("json_schema")
            if schema.get("type") == "json_schema" and isinstance(spec, Mapping):
                # Already OpenAI's response_format: sent as it is, its schema checked.
                self.response_format = schema
                self.schema: Dict[str, Any] = dict(spec.get("schema") or {})
                return
            name = schema.get("title")
        else:
            raise TypeError(
                "response_format must be a pydantic model class, a TypedDict or a JSON schema "
                f"dict, got {type(response_format).__name__}"
            )
        self.schema = schema
        strict = _strict_form(schema)
        spec = {
            "name": _NAME_CHARS.sub("_", str(name or "response"))[:64] or "response",
            "schema": strict if strict is not None else schema,
            "strict": strict is not None,
        }
        self.response_format = {"type": "json_schema", "json_schema": spec}

    def request_fields(self, extra: Mapping[str, Any]) -> Dict[str, Any]:
        """The extra body fields with this ``response_format``; a stream is refused."""
        if extra.get("stream"):
            raise TypeError("chat_completions_parse does not stream; use chat_completions")
        return {**extra, "response_format": self.response_format}

    def parse(self, completion: Any, redact: Callable[[str], str]) -> Any:
        """``completion`` with each choice's ``message["parsed"]``.

        Raises:
            StructuredOutputError: a choice's answer is a refusal, was cut (``length``), is
            not JSON, or does not match the schema; ``raw_text`` holds it, redacted.
        """
        for choice in completion.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            message["parsed"] = self._read(choice, message, redact)
        return completion

    def _read(self, choice: Dict[str, Any], message: Dict[str, Any], redact: Any) -> Any:
        content = message.get("content")
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise _failure("refusal", "the model refused to answer", refusal, redact)
        text = content if isinstance(content, str) else ""
        if choice.get("finish_reason") == "length":
            raise _failure(
                "length", "the answer was cut at max_tokens before its JSON ended", text, redact
            )
        ok, data = parse_json(text) if text else (False, None)
        if not ok:
            raise _failure("not_json", "the answer is not JSON", text, redact)
        problems: List[str] = []
        if self._model is None:
            try:
                _check(data, self.schema, self.schema, "$", problems)
            except RecursionError:
                problems.append("$: nested too deeply to check")
        else:
            try:  # pydantic's own validation; its error is summed up, never passed on
                if self._model == "v2":
                    return self._target.model_validate(data)
                return self._target.parse_obj(data)
            except (ValueError, TypeError) as error:
                problems = _pydantic_problems(error)
        if problems:
            detail = "; ".join(problems[:_MAX_PROBLEMS])
            raise _failure(
                "mismatch", f"the answer does not match the schema: {redact(detail)}", text, redact
            )
        return data


def _pydantic_problems(error: Exception) -> List[str]:
    """Where and why, from a pydantic ``ValidationError``: never the values it quotes."""
    try:
        items = error.errors()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 # not a ValidationError: its type is all that is said
        return [f"$: {type(error).__name__}"]
    problems = []
    for item in items:
        where = ".".join(str(part) for part in item.get("loc", ()))
        problems.append(f"$.{where}: {item.get('msg', 'invalid')}" if where else "$: invalid")
    return problems or ["$: invalid"]


def _failure(reason: str, what: str, text: str, redact: Any) -> StructuredOutputError:
    raw = error_body_text(text.encode("utf-8", errors="surrogatepass"), redact)
    return StructuredOutputError(
        f"structured answer unusable: {what}", 200, reason=reason, raw_text=raw
    )
