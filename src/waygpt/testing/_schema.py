"""A valid instance of a JSON schema, built the same way every time, as a model would fill it.

The values come from the request's last user message where they fit: its numbers fill the
number fields and its quoted phrases the string fields, in order; an enum takes the value
the message names. Whatever is left gets a fixed value (a string field its own name, a
number the smallest allowed around 0, ``true``, one item per array). The schema keywords
read are those tool and structured-output schemas use (pydantic's among them): ``type``,
``properties``, ``required``, ``items``, ``enum``, ``const``, ``anyOf``/``oneOf``/``allOf``,
``$ref`` into ``$defs``/``definitions``, bounds and lengths, and a few ``format``s.
"""

import math
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._validate import ApiError

# Deeper than any schema a request really holds; a recursive one whose recursion is required
# has no finite instance, and is refused rather than followed forever.
_MAX_DEPTH = 32
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
# '...' only where the quote is not an apostrophe inside a word ("What's").
_PHRASE = re.compile(r"(?<!\w)'([^'\n]+?)'(?!\w)|\"([^\"\n]+)\"|«([^»\n]+)»|“([^”\n]+)”")
_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
}


def phrases(text: str) -> List[str]:
    """The quoted phrases of ``text`` ('...', "...", «...», “...”), in order."""
    return [next(group for group in match.groups() if group) for match in _PHRASE.finditer(text)]


class Hints:
    """What a user message offers to fill a schema: its numbers, its quoted phrases, its text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._numbers = [float(found) for found in _NUMBER.findall(text)]
        self._phrases = phrases(text)

    def number(self, fits: Any) -> Optional[float]:
        """The message's next number that ``fits`` (it is taken), else None."""
        for index, value in enumerate(self._numbers):
            if fits(value):
                del self._numbers[: index + 1]
                return value
        return None

    def phrase(self) -> Optional[str]:
        return self._phrases.pop(0) if self._phrases else None

    def named(self, options: List[Any]) -> Any:
        """The first of ``options`` the message names as a whole word, else the first one."""
        for option in options:
            if isinstance(option, str) and re.search(
                rf"(?<!\w){re.escape(option)}(?!\w)", self.text, re.IGNORECASE
            ):
                return option
        return options[0]


def instance(schema: Any, hints: Hints) -> Any:
    """A value valid for ``schema`` (a JSON schema dict), drawn from ``hints`` where possible.

    Raises:
        ApiError: 400 for a schema with no finite instance (required recursion) or that is
        not a JSON schema object.
    """
    if not isinstance(schema, dict):
        raise ApiError(400, "Invalid schema: a JSON schema must be an object")
    return _Builder(schema, hints).build(schema, "value", 0)


class _Builder:
    def __init__(self, root: Dict[str, Any], hints: Hints) -> None:
        self.root = root
        self.hints = hints

    def _resolve(self, ref: str) -> Dict[str, Any]:
        target: Any = self.root
        if not ref.startswith("#"):
            raise ApiError(400, f"Invalid schema: only local $ref are supported, not {ref!r}")
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ApiError(400, f"Invalid schema: $ref {ref!r} points nowhere")
            target = target[part]
        if not isinstance(target, dict):
            raise ApiError(400, f"Invalid schema: $ref {ref!r} is not a schema")
        return target

    def build(self, schema: Any, name: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ApiError(400, "Invalid schema: it nests too deeply (required recursion?)")
        if schema is True or schema == {}:
            return self._string({}, name)
        if not isinstance(schema, dict):
            raise ApiError(400, f"Invalid schema at {name!r}: expected an object")
        if "$ref" in schema:
            merged = {**self._resolve(str(schema["$ref"])), **schema}
            del merged["$ref"]
            return self.build(merged, name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.hints.named(schema["enum"])
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                # A model fills an optional field rather than leaving it null.
                chosen = next((o for o in options if not _is_null(o)), options[0])
                rest = {k: v for k, v in schema.items() if k != key}
                return self.build({**rest, **chosen} if isinstance(chosen, dict) else chosen,
                                  name, depth + 1)
        if isinstance(schema.get("allOf"), list):
            return self.build(_merge_all_of(schema), name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "string":
            return self._string(schema, name)
        if kind in ("integer", "number"):
            return self._number(schema, kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        raise ApiError(400, f"Invalid schema at {name!r}: unknown type {kind!r}")

    def _object(self, schema: Dict[str, Any], depth: int) -> Dict[str, Any]:
        properties = schema.get("properties") or {}
        if not isinstance(properties, dict):
            raise ApiError(400, "Invalid schema: 'properties' must be an object")
        required = schema.get("required") or []
        # Past a few levels only what is required, so that an optional recursion ends.
        names = list(properties) if depth < 8 else [n for n in properties if n in required]
        return {name: self.build(properties[name], name, depth + 1) for name in names}

    def _array(self, schema: Dict[str, Any], name: str, depth: int) -> List[Any]:
        low = _int(schema.get("minItems"), 0) or 0
        high = _int(schema.get("maxItems"), None)
        count = max(low, 1 if depth < 8 else 0)
        if high is not None:
            count = min(count, high)
        items = schema.get("items", {})
        if isinstance(items, list):  # an old-style tuple
            return [self.build(item, name, depth + 1) for item in items]
        return [self.build(items, name, depth + 1) for _ in range(count)]

    def _string(self, schema: Dict[str, Any], name: str) -> str:
        fixed = _FORMATS.get(str(schema.get("format", "")))
        text = fixed if fixed is not None else self.hints.phrase() or name
        low = _int(schema.get("minLength"), 0) or 0
        high = _int(schema.get("maxLength"), None)
        if fixed is None and len(text) < low:
            text += "x" * (low - len(text))
        if fixed is None and high is not None:
            text = text[:high]
        return text

    def _number(self, schema: Dict[str, Any], integer: bool) -> Any:
        low, high = _bounds(schema, integer)

        def fits(value: float) -> bool:
            whole = not integer or value == int(value)
            return whole and (low is None or value >= low) and (high is None or value <= high)

        found = self.hints.number(fits)
        if found is None:
            found = 0.0 if fits(0.0) else (low if low is not None else high)
            if found is None or not fits(found):
                raise ApiError(400, "Invalid schema: a number range with no value in it")
        return int(found) if integer or found.is_integer() else found


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _int(value: Any, default: Optional[int]) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _bounds(schema: Dict[str, Any], integer: bool) -> Tuple[Optional[float], Optional[float]]:
    """The smallest and largest allowed values (exclusive bounds made inclusive)."""
    step = 1.0 if integer else 1e-6
    low: Optional[float] = None
    high: Optional[float] = None
    for key, value in schema.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key == "minimum":
            low = value if low is None else max(low, value)
        elif key == "exclusiveMinimum":
            edge = math.floor(value) + 1 if integer else value + step
            low = edge if low is None else max(low, edge)
        elif key == "maximum":
            high = value if high is None else min(high, value)
        elif key == "exclusiveMaximum":
            edge = math.ceil(value) - 1 if integer else value - step
            high = edge if high is None else min(high, edge)
    if integer:
        low = None if low is None else float(math.ceil(low))
        high = None if high is None else float(math.floor(high))
    return low, high


def _merge_all_of(schema: Dict[str, Any]) -> Dict[str, Any]:
    """``allOf`` read as one schema: the parts' keywords together, properties and required
    joined (what pydantic's ``allOf: [{"$ref": ...}]`` wrappers need)."""
    merged: Dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def iter_pieces(text: str, size: int = 12) -> Iterator[str]:
    """``text`` in pieces of ``size`` characters, as a model streams tool-call arguments."""
    for start in range(0, len(text), size):
        yield text[start : start + size]
