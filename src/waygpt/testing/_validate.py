"""Error answers and FastAPI-style (422) request validation."""

import json
from typing import Any, Dict, List, Optional, Sequence, Union

from ._records import RecordedRequest

Loc = Sequence[Union[str, int]]

_MISSING = object()
# How deeply a request's JSON may nest. Python's parser gives up somewhere past 900 levels
# on one version and 9000 on another; one fixed bound answers the same everywhere and keeps
# every body the server accepts within what it can serialise back.
MAX_JSON_DEPTH = 256


class ApiError(Exception):
    """An error answer: ``{"detail": detail}`` with this status."""

    def __init__(self, status: int, detail: Any, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def invalid(loc: Loc, msg: str, kind: str) -> ApiError:
    """A 422 shaped like FastAPI's validation errors."""
    return ApiError(422, [{"loc": ["body", *loc], "msg": msg, "type": kind}])


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (without recursing)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _too_deep() -> ApiError:
    return invalid([], f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "json_too_deep")


def json_object(request: RecordedRequest) -> Dict[str, Any]:
    """The request body as a JSON object: 400 when not JSON, 422 when not an object or
    nested deeper than ``MAX_JSON_DEPTH``."""
    try:
        data = json.loads(request.body.decode("utf-8")) if request.body else _MISSING
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "Invalid JSON body") from None
    if isinstance(data, (dict, list)) and _deeper_than(data, MAX_JSON_DEPTH):
        raise _too_deep()
    if data is _MISSING:
        raise invalid([], "Field required", "missing")
    if not isinstance(data, dict):
        raise invalid(
            [], "Input should be a valid dictionary or object to extract fields from", "dict_type"
        )
    return data


def string(
    body: Dict[str, Any], name: str, *, required: bool = False, non_empty: bool = False
) -> Optional[str]:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid([name], "Field required", "missing")
        return None
    if not isinstance(value, str):
        raise invalid([name], "Input should be a valid string", "string_type")
    if non_empty and not value.strip():
        raise invalid([name], "String should have at least 1 character", "string_too_short")
    return value


def _check_bounds(name: str, value: float, low: Optional[float], high: Optional[float]) -> None:
    if low is not None and value < low:
        msg = f"Input should be greater than or equal to {low}"
        raise invalid([name], msg, "greater_than_equal")
    if high is not None and value > high:
        raise invalid([name], f"Input should be less than or equal to {high}", "less_than_equal")


def integer(
    body: Dict[str, Any],
    name: str,
    *,
    default: Optional[int] = None,
    low: Optional[int] = None,
    high: Optional[int] = None,
) -> Optional[int]:
    value = body.get(name)
    if value is None:
        return default
    # bool is an int subclass, but True is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid([name], "Input should be a valid integer", "int_type")
    _check_bounds(name, value, low, high)
    return value


def number(
    body: Dict[str, Any], name: str, *, low: Optional[float] = None, high: Optional[float] = None
) -> Optional[float]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid([name], "Input should be a valid number", "float_type")
    _check_bounds(name, value, low, high)
    return float(value)


def boolean(body: Dict[str, Any], name: str) -> Optional[bool]:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid([name], "Input should be a valid boolean", "bool_type")
    return value


def string_list(body: Dict[str, Any], name: str) -> Optional[List[str]]:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid([name], "Input should be a valid list", "list_type")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid([name, index], "Input should be a valid string", "string_type")
    return list(value)


def mapping(body: Dict[str, Any], name: str) -> Optional[Dict[str, Any]]:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid([name], "Input should be a valid dictionary", "dict_type")
    return dict(value)


def only_fields(body: Dict[str, Any], allowed: Sequence[str]) -> None:
    """Reject fields an update endpoint does not know (FastAPI ``extra=forbid``)."""
    for name in body:
        if name not in allowed:
            raise invalid([name], "Extra inputs are not permitted", "extra_forbidden")
