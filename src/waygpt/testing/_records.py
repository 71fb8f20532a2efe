"""What the test server remembers about each request it received."""

import json
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class RecordedRequest:
    """One request exactly as the server received it.

    ``path`` is the raw request target (percent-escapes and query string kept),
    ``headers`` maps lower-case header names to values, ``body`` holds the exact
    bytes of the body (already de-chunked when the client sent it chunked).
    """

    method: str
    path: str
    headers: Dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.body.decode("utf-8"))

    @property
    def query(self) -> Dict[str, str]:
        """The query parameters, percent-decoded; the last value wins on repeats."""
        return dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))

    @property
    def path_only(self) -> str:
        """The raw path without its query string."""
        return self.path.split("?", 1)[0]


class RequestLog:
    """A thread-safe, append-only list of recorded requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: List[RecordedRequest] = []

    def append(self, request: RecordedRequest) -> None:
        with self._lock:
            self._items.append(request)

    def snapshot(self) -> List[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def last(self) -> Optional[RecordedRequest]:
        with self._lock:
            return self._items[-1] if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
