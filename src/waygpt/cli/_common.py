"""What every command module shares: exit codes, the usage error, argument types, formatting."""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Iterable, List, Mapping, Sequence

EXIT_OK = 0
EXIT_IO = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_CONNECTION = 4
EXIT_SOME_FAILED = 5  # waygpt batch: the run ended, some requests with an error line
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line or the settings, found before anything is sent."""


# -- argument types ---------------------------------------------------------------------------


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def float_between(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number from ``low`` to ``high``, both included."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}: {text!r}")
        return value

    parse.__name__ = "number"  # argparse names the type in its "invalid ... value" message
    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


# -- output -----------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """One value as a table cell: ``-`` for nothing, yes/no, JSON for containers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """Left-aligned columns under ``headers``, two spaces apart, no trailing blanks."""
    cells: List[List[str]] = [list(headers)]
    cells += [[format_value(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in cells]
    return "\n".join(lines)


def format_details(data: Mapping[str, Any]) -> str:
    """``key: value`` lines with the values aligned, for one object."""
    if not data:
        return "(empty)"
    width = max(len(str(key)) for key in data)
    return "\n".join(f"{str(key) + ':':<{width + 1}} {format_value(value)}"
                     for key, value in data.items())
