"""``python -m waygpt.testing``: run the test server in the foreground.

It prints where it listens and the credentials it accepts as lines to paste into another
terminal (``export NAME=value`` for a POSIX shell, PowerShell's ``$env:NAME = 'value'`` or
cmd.exe's ``set "NAME=value"``; the shell is named in a comment line, and every other line
is a comment), then serves until Ctrl+C or SIGTERM, after which it stops cleanly and exits 0.
A port it cannot listen on is a one-line error and exit status 1.
"""

import argparse
import math
import os
import shlex
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._server import (
    DEFAULT_HMAC_SECRET,
    DEFAULT_PROJECT_ID,
    DEFAULT_PROJECT_KEY,
    DEFAULT_USER_EMAIL,
    DEFAULT_USER_PASSWORD,
    WayGPTTestServer,
)

PROG = "python -m waygpt.testing"
# How often the main thread looks whether a stop was asked for.
_POLL_SECONDS = 0.1

_SignalHandler = Union[Callable[[int, Optional[FrameType]], Any], int, None]


def _text(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not between 0 and 65535")
    return port


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return number


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {value!r}") from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError("must be a finite number of seconds")
    return seconds


SHELLS = ("posix", "powershell", "cmd")
_SHELL_NAMES = {
    "posix": "a POSIX shell (bash, zsh, sh)",
    "powershell": "PowerShell",
    "cmd": "cmd.exe",
}
# What makes a line a comment in each shell; "REM" needs the space after it.
_COMMENT = {"posix": "# ", "powershell": "# ", "cmd": "REM "}
# PowerShell ends a single-quoted string at any of these quote characters, not just '.
_POWERSHELL_QUOTES = ("'", "\u2018", "\u2019", "\u201a", "\u201b")


def default_shell(platform: str = sys.platform) -> str:
    """The shell the lines are written for when ``--shell`` is not given."""
    return "powershell" if platform == "win32" else "posix"


def _powershell_quote(value: str) -> str:
    for quote in _POWERSHELL_QUOTES:
        value = value.replace(quote, quote * 2)
    return f"'{value}'"


def comment_line(shell: str, text: str) -> str:
    return _COMMENT[shell] + text


def export_lines(
    shell: str, variables: Sequence[Tuple[str, str]], unset: Sequence[str] = ()
) -> List[str]:
    """Lines that, pasted into ``shell``, set ``variables`` and remove ``unset``."""
    lines: List[str] = []
    for name in unset:
        if shell == "posix":
            lines.append(f"unset {name}")
        elif shell == "powershell":
            lines.append(f"Remove-Item Env:{name} -ErrorAction SilentlyContinue")
        else:
            lines.append(f'set "{name}="')
    for name, value in variables:
        if shell == "posix":
            lines.append(f"export {name}={shlex.quote(value)}")
        elif shell == "powershell":
            lines.append(f"$env:{name} = {_powershell_quote(value)}")
        elif any(char in value for char in '"%\r\n'):
            # cmd.exe has no quoting that keeps " or %VAR% literal on an interactive line.
            lines.append(comment_line(shell, f"set {name} by hand: its value holds \" or %"))
        else:
            lines.append(f'set "{name}={value}"')
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a local WayGPT test server in the foreground (Ctrl+C stops it).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument(
        "--port", type=_port, default=8765, help="0 picks a free port (default: %(default)s)"
    )
    parser.add_argument(
        "--project-key", type=_text, default=DEFAULT_PROJECT_KEY, help="the project key accepted"
    )
    parser.add_argument(
        "--project-id", type=_text, default=DEFAULT_PROJECT_ID, help="the project id (HMAC)"
    )
    parser.add_argument(
        "--hmac-secret", type=_text, default=DEFAULT_HMAC_SECRET, help="the project's HMAC secret"
    )
    parser.add_argument(
        "--email", type=_text, default=DEFAULT_USER_EMAIL, help="the Client API login e-mail"
    )
    parser.add_argument(
        "--password", type=_text, default=DEFAULT_USER_PASSWORD, help="the Client API password"
    )
    parser.add_argument(
        "--require-hmac", action="store_true", help="the project demands HMAC signatures"
    )
    parser.add_argument(
        "--job-steps", type=_positive, default=3, help="polls before a video job completes"
    )
    parser.add_argument(
        "--rate-limit-rpm",
        type=_limit,
        default=0,
        metavar="N",
        help="throttle the project to N requests a minute, answering 429 with Retry-After "
        "beyond (default: %(default)s, no limit)",
    )
    parser.add_argument(
        "--clock-offset",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="run the server's clock this far ahead of this machine's (negative: behind); "
        "it moves the Date header and the HMAC timestamp window (default: %(default)s)",
    )
    parser.add_argument(
        "--shell",
        choices=SHELLS,
        default=default_shell(),
        help="the shell the printed lines are for (default: %(default)s, for this platform)",
    )
    return parser


class _StopRequest:
    """Set from a signal handler; a plain flag, so the handler takes no lock."""

    def __init__(self) -> None:
        self.signal_name: Optional[str] = None

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        self.signal_name = signal.Signals(signum).name


def _install(handler: _StopRequest) -> Dict[int, _SignalHandler]:
    """Route SIGINT and SIGTERM to ``handler``; the previous handlers, to restore."""
    previous: Dict[int, _SignalHandler] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous  # only the main thread may set handlers; Ctrl+C still interrupts
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous


def _say(line: str = "") -> None:
    try:
        print(line, flush=True)
    except BrokenPipeError:
        # Whoever read the output is gone: keep serving (and stop cleanly) without it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _offset_text(seconds: float) -> str:
    side = "ahead of" if seconds > 0 else "behind"
    return f"{abs(seconds):g} s {side}"


def _banner(server: WayGPTTestServer, args: argparse.Namespace) -> List[str]:
    """What the server prints once it listens: every line can be pasted into ``args.shell``."""
    shell = args.shell
    variables = [
        ("WAYGPT_API_URL", server.url),
        ("WAYGPT_PROJECT_KEY", server.project_key),
        ("WAYGPT_PROJECT_ID", server.project_id),
        ("WAYGPT_HMAC_SECRET", server.hmac_secret),
        # Set either way, so a "true" left from an earlier paste does not linger.
        ("WAYGPT_USE_HMAC", "true" if args.require_hmac else "false"),
        ("WAYGPT_EMAIL", server.user_email),
        ("WAYGPT_PASSWORD", server.user_password),
    ]
    lines = [
        comment_line(shell, f"WayGPT test server listening on {server.url}"),
        comment_line(
            shell,
            f"For {_SHELL_NAMES[shell]}; paste into another terminal (--shell for another shell):",
        ),
        # A token from an earlier server (export WAYGPT_JWT=$(waygpt login)) is not valid here.
        *export_lines(shell, variables, unset=["WAYGPT_JWT"]),
    ]
    if args.clock_offset:
        clock = f"Clock: {_offset_text(args.clock_offset)} this machine's"
        lines.append(comment_line(shell, clock))
    if args.rate_limit_rpm:
        limit = f"Rate limit: {args.rate_limit_rpm} requests a minute, then 429"
        lines.append(comment_line(shell, limit))
    lines.append(comment_line(shell, "Press Ctrl+C to stop."))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    server = WayGPTTestServer(
        project_key=args.project_key,
        project_id=args.project_id,
        hmac_secret=args.hmac_secret,
        require_hmac=args.require_hmac,
        user_email=args.email,
        user_password=args.password,
        job_steps=args.job_steps,
        host=args.host,
        port=args.port,
        clock_offset=args.clock_offset,
        rate_limit_rpm=args.rate_limit_rpm,
    )
    stop = _StopRequest()
    previous = _install(stop)
    try:
        try:
            server.start()
        except OSError as error:  # busy port, unknown host, no permission
            reason = error.strerror or str(error)
            print(
                f"{PROG}: error: cannot listen on {args.host}:{args.port}: {reason}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        try:
            for line in _banner(server, args):
                _say(line)
            while stop.signal_name is None:
                time.sleep(_POLL_SECONDS)
            _say(f"{stop.signal_name}: stopping")
        except KeyboardInterrupt:  # when no handler could be installed
            _say("stopping")
        finally:
            server.stop()
    finally:
        for signum, handler in previous.items():
            # None: the old handler was not set from Python; the default is the best guess.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    _say("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
