"""A batch's two files: the requests read (twice, streamed) and the output lines written.

The input is read once to check every request before anything is sent, keeping only the
set of ``custom_id``\\ s, then again to send them: memory does not grow with the bodies.
The output is appended to by one writer, a whole line per ``os.write``, so a crash or a
signal leaves whole lines only (a ``kill -9`` in the middle of a long line leaves a torn
last line, which the next run drops: its request runs again).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    Union,
)

from .errors import WayGPTError

__all__ = ["BatchInputError"]

# The request's ``url`` (OpenAI's Batch API paths and WayGPT's own) -> the client method.
_METHODS: Dict[str, str] = {
    "/v1/chat/completions": "chat_completions",
    "/api/v1/waygpt/chat/completions": "chat_completions",
    "/v1/images/generations": "image_generations",
    "/api/v1/waygpt/images/generations": "image_generations",
}
_URLS_TEXT = ", ".join(_METHODS)
# Problems quoted in the error; the others are counted.
_SHOWN_PROBLEMS = 20
_ID_SHOWN = 60

PathLike = Union[str, "os.PathLike[str]"]


class BatchInputError(WayGPTError, ValueError):
    """A batch's input (or its output file) cannot be run; nothing was sent.

    ``problems`` lists the first problems found, each naming its line (``line 7: ...``;
    ``request 7: ...`` for requests given as dicts); ``message`` says how many there are.
    """

    def __init__(
        self,
        message: str,
        status_code: Optional[int] = None,
        response: Any = None,
        *,
        problems: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        self.problems: List[str] = list(problems)
        text = message
        if self.problems:
            text += "\n" + "\n".join("  " + problem for problem in self.problems)
        super().__init__(text, status_code, response, **kwargs)


class BatchRequest(NamedTuple):
    """One checked request: its id, the client method it calls, and that method's body."""

    custom_id: str
    method: str
    body: Dict[str, Any]


class _Problem(Exception):
    """What is wrong with one request (its place is added by the caller)."""


def _quoted(custom_id: str) -> str:
    text = json.dumps(custom_id, ensure_ascii=False)
    return text if len(text) <= _ID_SHOWN else text[: _ID_SHOWN - 4] + '..."'


def _check_body(method: str, body: Mapping[str, Any]) -> None:
    if "self" in body:  # a keyword argument the client's methods cannot take
        raise _Problem('"body" has a field "self", which no endpoint takes')
    if method == "chat_completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Problem('"body" needs "messages", a non-empty list')
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise _Problem(f'"body": messages[{index}] must be an object with a "role"')
        if body.get("stream") not in (None, False):
            raise _Problem('"stream": true is not accepted: a batch does not stream')
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Problem('"body" needs "prompt", a non-empty string')


def parse_request(value: Any) -> BatchRequest:
    """A request line's object as a :class:`BatchRequest`, or ``_Problem``."""
    if not isinstance(value, Mapping):
        raise _Problem("a request is a JSON object with custom_id, url and body")
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _Problem(f'"custom_id" must be a non-empty string, not {custom_id!r}')
    http_method = value.get("method", "POST")
    if not isinstance(http_method, str) or http_method.upper() != "POST":
        raise _Problem(f'"method" must be "POST", not {http_method!r}')
    url = value.get("url")
    method = _METHODS.get(url) if isinstance(url, str) else None
    if method is None:
        raise _Problem(f'"url" {url!r} is not one a batch runs: {_URLS_TEXT}')
    body = value.get("body")
    if not isinstance(body, Mapping):
        raise _Problem('"body" must be a JSON object: what the endpoint is sent')
    _check_body(method, body)
    return BatchRequest(custom_id, method, dict(body))


# -- the input --------------------------------------------------------------------------------


class RequestSource:
    """Where the requests come from: a JSONL file (read each time it is iterated) or dicts.

    Iterating yields ``(place, request or problem text)``; a place is ``line N`` of the file
    (blank lines are skipped but counted) or ``request N`` of the dicts.
    """

    def __init__(self, requests: Union[PathLike, Iterable[Mapping[str, Any]]]) -> None:
        self.path: Optional[str] = None
        self._items: Optional[List[Any]] = None
        if isinstance(requests, (str, os.PathLike)):
            self.path = os.fspath(requests)
        elif isinstance(requests, (bytes, Mapping)):
            raise TypeError("requests must be a path to a JSONL file or an iterable of dicts")
        else:
            # A one-shot iterable (a generator) is read into a list: the requests are read
            # twice, to check them all before anything is sent. A file is read twice instead.
            self._items = list(requests)

    @property
    def name(self) -> str:
        return self.path if self.path is not None else "the requests"

    def __iter__(self) -> Iterator[Tuple[str, Union[BatchRequest, str]]]:
        if self._items is not None:
            for number, item in enumerate(self._items, start=1):
                parsed = _parsed(item)
                if isinstance(parsed, BatchRequest):  # a line of a file is JSON already
                    try:
                        json.dumps(parsed.body)
                    except (TypeError, ValueError) as exc:
                        parsed = f'"body" cannot be sent as JSON: {exc}'
                yield f"request {number}", parsed
            return
        assert self.path is not None
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                place = f"line {number}"
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    yield place, "not UTF-8 text"
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:  # json's message names the column
                    yield place, f"not JSON: {exc}"
                    continue
                except RecursionError:
                    yield place, "not JSON: nested too deep"
                    continue
                yield place, _parsed(value)


def _parsed(value: Any) -> Union[BatchRequest, str]:
    try:
        return parse_request(value)
    except _Problem as problem:
        return str(problem)


def check_requests(source: RequestSource) -> Set[str]:
    """Every request checked, before any is sent: the set of their ``custom_id``\\ s.

    Raises:
        BatchInputError: listing the first problems (a malformed request, an unknown
            ``url``, a repeated ``custom_id``) with their lines.
    """
    ids: Set[str] = set()
    problems: List[str] = []
    count = 0
    for place, parsed in source:
        if isinstance(parsed, str):
            count += 1
            if len(problems) < _SHOWN_PROBLEMS:
                problems.append(f"{place}: {parsed}")
        elif parsed.custom_id in ids:
            count += 1
            if len(problems) < _SHOWN_PROBLEMS:
                problems.append(f"{place}: custom_id {_quoted(parsed.custom_id)} is used by "
                                "an earlier request (each must be unique)")
        else:
            ids.add(parsed.custom_id)
    if count:
        more = f" (the first {len(problems)} below)" if count > len(problems) else ""
        raise BatchInputError(
            f"{count} problem{'s' if count > 1 else ''} in {source.name}{more}; "
            "nothing was sent:",
            problems=problems,
        )
    return ids


def pending_requests(source: RequestSource, done: Set[str]) -> Iterator[BatchRequest]:
    """The requests whose ``custom_id`` is not in ``done``, in input order.

    Raises:
        BatchInputError: the file changed since it was checked.
    """
    for place, parsed in source:
        if isinstance(parsed, str):
            raise BatchInputError(f"{source.name} changed while the batch ran: {place}: "
                                  f"{parsed}")
        if parsed.custom_id not in done:
            yield parsed


# -- the output -------------------------------------------------------------------------------


def _output_line(raw: bytes, place: str) -> Tuple[str, bool]:
    """A line of output as (custom_id, whether it is an error line); ``_Problem`` if none."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise _Problem(f"{place}: not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("custom_id"), str):
        raise _Problem(f"{place}: not a batch output line (it has no custom_id)")
    return value["custom_id"], value.get("error") is not None


class Resume(NamedTuple):
    """What an existing output file holds for the input's requests."""

    done: Set[str]  # custom_ids with a line, kept: they are skipped
    failed: int  # of them, error lines (kept, as retry_failed is off)
    dropped: int  # error lines removed for retry_failed
    repaired: bool  # a torn last line was dropped


class OutputFile:
    """The output JSONL: what it already holds, and the one writer of new lines."""

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._size = 0

    def resume(self, ids: Set[str], retry_failed: bool) -> Resume:
        """Read the lines of an earlier run: the input's requests they answer.

        A torn last line (no newline, not a whole output line) is cut off. With
        ``retry_failed``, the error lines of the input's requests are removed (the file is
        rewritten beside itself and renamed over, so it is never half-written).

        Raises:
            BatchInputError: a line in the file is not a batch output line.
        """
        done: Set[str] = set()
        failed = dropped = 0
        repaired = False
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return Resume(done, 0, 0, False)
        with handle:
            good_end = 0
            for number, raw in enumerate(handle, start=1):
                place = f"{self.path} line {number}"
                if not raw.endswith(b"\n"):
                    try:
                        custom_id, is_error = _output_line(raw, place)
                    except _Problem:
                        repaired = True  # torn by a crash mid-write: its request runs again
                        break
                else:
                    if not raw.strip():
                        good_end += len(raw)
                        continue
                    try:
                        custom_id, is_error = _output_line(raw, place)
                    except _Problem as problem:
                        raise BatchInputError(
                            f"{problem}; is {self.path} the output of a batch?"
                        ) from None
                good_end += len(raw)
                if custom_id not in ids:
                    continue
                if is_error and retry_failed:
                    dropped += 1
                    continue
                done.add(custom_id)
                failed += is_error
        if repaired:
            with open(self.path, "r+b") as torn:
                torn.truncate(good_end)
        elif good_end and not _ends_with_newline(self.path):
            with open(self.path, "ab") as whole:  # a whole last line, only its newline lost
                whole.write(b"\n")
        if dropped:
            self._drop_error_lines(ids)
        return Resume(done, failed, dropped, repaired)

    def _drop_error_lines(self, ids: Set[str]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, temporary = tempfile.mkstemp(prefix=".waygpt-batch-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out, open(self.path, "rb") as source:
                for raw in source:
                    if raw.strip():
                        custom_id, is_error = _output_line(raw, self.path)
                        if is_error and custom_id in ids:
                            continue
                    out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.chmod(temporary, os.stat(self.path).st_mode & 0o7777)
            except OSError:  # pragma: no cover - a file system without modes
                pass
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise

    def open(self) -> None:
        """Open for appending (creating the file); every line is added at its end."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._fd = os.open(self.path, flags, 0o644)
        self._size = os.fstat(self._fd).st_size

    def write(self, line: Mapping[str, Any]) -> bool:
        """Append ``line`` whole; False (nothing written) once the file is closed.

        A failed write (a full disk) is cut back off the file before the error is raised,
        so no partial line is ever left behind by this process.
        """
        # A lone surrogate (JSON allows "\ud800") goes out as the same JSON escape.
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode(
            "utf-8", "backslashreplace"
        )
        with self._lock:
            fd = self._fd
            if fd is None:
                return False
            written = 0
            try:
                while written < len(data):  # a regular file takes it whole but on errors
                    written += os.write(fd, data[written:])
            except BaseException:
                try:
                    os.ftruncate(fd, self._size)
                except OSError:  # pragma: no cover - the next run repairs a torn line
                    pass
                raise
            self._size += written
            return True

    def close(self) -> None:
        """Close the file: later :meth:`write` calls write nothing."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError:  # pragma: no cover - a pipe or a special file
                pass
            os.close(fd)


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
