"""Forks of the process: each transport compares the generation it made its connections in
with ``fork_generation()`` before a call, and in a child sets the parent's connections aside
with ``keep_inherited``, referenced until the child exits so that no finaliser closes them
(why: docs/architecture.md, fork safety)."""

from __future__ import annotations

import os
from typing import Any, List

_generation = 0
_inherited: List[Any] = []


def fork_generation() -> int:
    """How many forks lie between the first process and this one."""
    return _generation


def keep_inherited(connections: Any) -> None:
    """Keep what a parent's connections hang on, unused and unclosed, in a forked child."""
    _inherited.append(connections)


def _count_fork() -> None:
    global _generation
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)
