"""The ``waygpt`` command line (also ``python -m waygpt``).

Settings come from flags or the ``WAYGPT_*`` environment variables (a flag wins). Data goes to
stdout (a reply, URLs, a job id, a token), commentary and progress to stderr, so the output of
every command can be piped or captured. ``--json`` prints the server's JSON instead.

Exit codes: 0 success, 1 a local I/O failure, 2 bad usage or configuration, 3 an API error
(an HTTP error status, a failed media job, an unexpected answer), 4 no answer (connection
failure or timeout), 5 a batch whose run ended with some requests failed, 130 interrupted.

One module per group of commands, each adding its commands with ``register(commands)``
next to their handlers: ``chat``, ``media`` (image, video, job), ``catalog`` (models,
use-cases), ``batch``, ``account`` (login, projects) and ``demo``. ``_run`` holds the global
options and the per-command context that reads them, ``_main`` the parser and ``main()``.
"""

from ._common import (
    EXIT_API,
    EXIT_CONNECTION,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
)
from ._main import build_parser, main

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_IO", "EXIT_USAGE", "EXIT_API",
           "EXIT_CONNECTION", "EXIT_SOME_FAILED", "EXIT_INTERRUPTED"]
