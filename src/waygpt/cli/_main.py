"""``main()``: the top-level parser, and the mapping of failures to one line and an exit code."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import sys
from typing import NoReturn, Optional, Sequence, TextIO, Tuple
from urllib.parse import urlsplit

from .. import APIConnectionError, ConfigurationError, WayGPTError, __version__
from . import account, batch, catalog, chat, demo, media
from ._common import (
    EXIT_API,
    EXIT_CONNECTION,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from ._run import Run, add_global_options

_EPILOG = """\
environment:
  WAYGPT_API_URL, WAYGPT_PROJECT_KEY, WAYGPT_PROJECT_ID, WAYGPT_HMAC_SECRET,
  WAYGPT_USE_HMAC=true    the same settings as the flags (a flag wins)
  WAYGPT_JWT              Client API token (see `waygpt login`)
  WAYGPT_EMAIL, WAYGPT_PASSWORD
                          Client API account: `login` reads them, and the projects and
                          use-cases --project commands log in with them when no token is set
  WAYGPT_LOG=debug|info   log each HTTP attempt to stderr

exit codes:
  0 success, 1 local I/O error, 2 bad usage or configuration,
  3 API error (HTTP error status, failed media job), 4 connection failure or timeout,
  5 batch: some requests failed (their error lines are in OUT), 130 interrupted

try it without an account:  waygpt demo
"""


class _Parser(argparse.ArgumentParser):
    """The top-level parser: a mistyped command gets one line, with the command it is
    closest to, instead of the usage and the list of every command."""

    command_names: Tuple[str, ...] = ()

    def error(self, message: str) -> NoReturn:
        typed = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
        if typed is not None:
            import difflib

            meant = difflib.get_close_matches(typed.group(1), self.command_names, n=1)
            hint = f" (did you mean '{meant[0]}'?)" if meant else " (see waygpt --help)"
            self.exit(EXIT_USAGE, f"waygpt: unknown command '{typed.group(1)}'{hint}\n")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``waygpt`` argument parser."""
    parser = _Parser(
        prog="waygpt",
        description="Command line for the WayGPT AI Server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"waygpt {__version__}",
                        help="print the version and exit")
    add_global_options(parser, shown=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     help="what to do (waygpt COMMAND --help for its options)")
    # The order of `waygpt --help`: try it, talk, look around, make media, run many
    # requests, then the account.
    for module in (demo, chat, catalog, media, batch, account):
        module.register(commands)
    parser.command_names = tuple(commands.choices)
    return parser


def _error_line(exc: BaseException) -> str:
    """``error: <status> <ClassName>: <message>`` on one line."""
    if isinstance(exc, UsageError):
        return "error: " + " ".join(str(exc).split())
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc) or "(no message)"
    line = f"error: {f'{status} ' if status is not None else ''}{type(exc).__name__}: "
    line += " ".join(str(message).split())
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, (int, float)):
        line += f" (retry after {retry_after:g} s)"
    return line


def _server_hint(run: Run) -> str:
    """`` (server http://host:port)``: where the CLI tried to connect, without credentials."""
    client = run.client_if_created
    if client is None:
        return ""
    parts = urlsplit(client.api_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f" (server {parts.scheme}://{host}{port})"


def _tolerant_streams() -> None:
    """Never fail on a character the console cannot show (Russian on a cp1252 terminal)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):  # pragma: no cover - a detached or closed stream
                pass


class _RetryNotes(logging.Handler):
    """``attempt 1 failed (HTTP 503); retrying in 0.8 s…`` on stderr for each retry.

    Without it a refused connection is silent while the client waits between its attempts
    (about 6 s with the defaults). The SDK logs every retry at WARNING on the ``waygpt``
    logger, with the attempt, reason and delay in the record: this handler reads those, so
    the CLI and the log number an attempt alike.
    """

    def __init__(self, err: TextIO) -> None:
        super().__init__(logging.WARNING)
        self._err = err

    def emit(self, record: logging.LogRecord) -> None:
        delay = getattr(record, "waygpt_retry_delay", None)
        attempt = getattr(record, "waygpt_attempt", None)
        reason = getattr(record, "waygpt_retry_reason", "")
        if isinstance(delay, (int, float)) and isinstance(attempt, int):
            self._err.write(f"attempt {attempt} failed ({reason}); retrying in {delay:.1f} s…\n")
            self._err.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (see ``waygpt --help``)."""
    _tolerant_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    run = Run(args, sys.stdout, sys.stderr)
    notes = _RetryNotes(run.err)
    sdk_logger = logging.getLogger("waygpt")
    sdk_logger.addHandler(notes)
    code = EXIT_OK
    try:
        returned = args.handler(run)
        run.out.flush()
        if returned is not None:
            code = returned
    except KeyboardInterrupt:
        run.err.write("\ninterrupted\n")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`waygpt models | head -1`): nothing left to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_IO
    except (UsageError, ConfigurationError) as exc:
        run.err.write(_error_line(exc) + "\n")
        code = EXIT_USAGE
    except APIConnectionError as exc:
        run.err.write(_error_line(exc) + _server_hint(run) + "\n")
        code = EXIT_CONNECTION
    except WayGPTError as exc:
        run.err.write(_error_line(exc) + "\n")
        code = EXIT_API
    except ValueError as exc:
        run.err.write(_error_line(exc) + "\n")
        code = EXIT_USAGE
    except OSError as exc:
        run.err.write(f"error: {exc.strerror or exc}"
                      f"{f': {exc.filename}' if exc.filename else ''}\n")
        code = EXIT_IO
    finally:
        sdk_logger.removeHandler(notes)
        run.close()
    return code
