"""A raw-socket HTTP server on 127.0.0.1 for behaviour the test server will not produce.

Each accepted connection is handed to the test's ``handler(conn, request)`` on its own
thread, after the request's head and its ``Content-Length`` body were read; the handler writes
whatever bytes it likes (an answer dribbled byte by byte, an informational answer, ...).
Everything is torn down when the ``with`` block ends, so no test leaves a thread or socket.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Callable, List, Optional, Sequence, Tuple, Type

Handler = Callable[[socket.socket, bytes], None]


def read_request(conn: socket.socket) -> bytes:
    """One HTTP request, head and body; b"" if the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return b""
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


def fixed_answer(status: str, headers: Sequence[Tuple[str, str]], body: bytes = b"") -> Handler:
    """A handler that answers every request with ``HTTP/1.1 <status>``, ``headers`` as given
    (in their order, a name as many times as it is listed), then ``body`` with its
    ``Content-Length``, and ``Connection: close``."""
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(wire)

    return handler


class RawServer:
    """``with RawServer(handler) as server: ... server.url ...``"""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self.requests: List[bytes] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def __enter__(self) -> RawServer:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._stop.set()
        self._acceptor.join(5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = read_request(conn)
            if request:
                with self._lock:
                    self.requests.append(request)
                self._handler(conn, request)
        except OSError:
            pass  # the client went away: nothing to answer

    def stopping(self) -> bool:
        """True once the test is over: a dribbling handler should stop."""
        return self._stop.is_set()
