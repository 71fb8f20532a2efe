"""``waygpt chat``: send one message, print the reply (whole, or as it streams in)."""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List

from ._common import UsageError, float_between, format_value, int_at_least
from ._run import Run, add_command


def register(commands: Any) -> None:
    """Add ``chat`` to ``commands`` (an ``add_subparsers()`` result)."""
    chat = add_command(commands, "chat", "send a chat message and print the reply", _chat)
    chat.add_argument("text", nargs="?", metavar="TEXT",
                      help="the message (default: read from stdin)")
    chat.add_argument("--stream", action="store_true", help="print the reply as it arrives")
    chat.add_argument("--model", default="auto",
                      help="model id; auto lets the server choose (default: %(default)s)")
    chat.add_argument("--use-case", metavar="KEY",
                      help="key of one of the project's use cases (presets)")
    chat.add_argument("--system", metavar="TEXT", help="a system message, sent before TEXT")
    chat.add_argument("--temperature", type=float_between(0, 2), metavar="T",
                      help="sampling temperature from 0 to 2: lower gives steadier answers, "
                           "higher more varied ones; sent only when given "
                           "(default: the server's)")
    chat.add_argument("--max-tokens", type=int_at_least(1), metavar="N",
                      help="caps the length of the answer, in tokens; sent only when given "
                           "(default: the model's limit)")


def _message_text(run: Run) -> str:
    text = run.opt("text")
    if text is None:
        if sys.stdin is None:
            raise UsageError("no message: pass TEXT or pipe it on stdin")
        if sys.stdin.isatty():
            run.note("Type the message, then Ctrl-D (Ctrl-Z Enter on Windows):")
        text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the message is empty: pass TEXT or pipe it on stdin")
    return str(text).rstrip("\r\n")


def _chat(run: Run) -> None:
    text = _message_text(run)
    client = run.project_client()
    messages: List[Dict[str, Any]] = []
    if run.opt("system"):
        messages.append({"role": "system", "content": run.opt("system")})
    messages.append({"role": "user", "content": text})
    options: Dict[str, Any] = {
        "model": run.opt("model"),
        "messages": messages,
        "use_case": run.opt("use_case"),
        "temperature": run.opt("temperature"),
        "max_tokens": run.opt("max_tokens"),
    }
    if run.opt("stream"):
        _print_stream(run, options)
        return
    reply = client.chat_completions(**options)
    if run.json:
        run.print_json(reply)
        return
    choices = reply.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    run.print(content if isinstance(content, str) else format_value(reply))


def _print_stream(run: Run, options: Dict[str, Any]) -> None:
    open_line = False
    try:
        with run.client.chat_completions_stream(**options) as stream:
            for chunk in stream:
                if run.json:
                    run.print(json.dumps(chunk, ensure_ascii=False))
                    run.out.flush()
                    continue
                for choice in chunk.get("choices") or ():
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    piece = (choice.get("delta") or {}).get("content")
                    if isinstance(piece, str) and piece:
                        run.out.write(piece)
                        run.out.flush()
                        open_line = not piece.endswith("\n")
    finally:
        # A reply cut short (Ctrl-C, a dropped connection) still leaves the shell prompt
        # on a line of its own.
        if open_line:
            run.out.write("\n")
            run.out.flush()
