"""The HTTP side: a keep-alive threading server that records, dispatches and answers."""

import re
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

try:  # POSIX only: how much a socket still has to send (see _wait_until_sent)
    import fcntl
    import termios
except ImportError:  # pragma: no cover - Windows
    fcntl = termios = None  # type: ignore[assignment]

from ._clock import ServerClock
from ._context import reply
from ._dispatch import Dispatcher
from ._faults import ScriptedResponse
from ._records import RecordedRequest, RequestLog

_MAX_LINE = 65536
# Trailer lines after a chunked body: as many as the stdlib allows headers.
_MAX_TRAILERS = 100
# Content-Length is 1*DIGIT (RFC 9110, 8.6): no sign, no spaces inside, no underscores.
_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
# Digits past which a length is certainly over any limit (and int() would be costly).
_MAX_DIGITS = 18
# After refusing a body, how long to read and drop what the client still sends. Closing a
# socket with unread data resets the connection, and a reset can destroy the answer in the
# client's buffer before the client reads it.
_LINGER_SECONDS = 2.0
# How long a reset waits for what was written before it to leave (see _wait_until_sent).
_SEND_WAIT_SECONDS = 1.0


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex


class _BadRequest(Exception):
    """The request body cannot be read; the connection is unusable afterwards."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


def _too_large(limit: int) -> _BadRequest:
    return _BadRequest(f"Request body larger than {limit} bytes", 413)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request after another on a connection and answers each."""

    protocol_version = "HTTP/1.1"
    server: "HTTPServer"

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET
    do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        # Tests inspect server.requests; an access log on stderr is only noise.
        return

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        # The Date of every answer, the stdlib's error pages too, is told by the server's clock.
        moment = self.server.clock.now() if timestamp is None else timestamp
        return formatdate(moment, usegmt=True)

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        # Only the stdlib's own error pages (malformed requests) come this way.
        super().send_response(code, message)
        self.send_header("x-request-id", _request_id())

    # -- reading -------------------------------------------------------------
    def _headers(self) -> Dict[str, str]:
        headers: Dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _declared_length(self) -> Optional[int]:
        """The Content-Length, checked against the limit before any of the body is read.

        None when there is none (or the body is chunked, which Content-Length must not
        override); 400 when malformed or repeated with different values, 413 when too large.
        """
        if self._chunked():
            return None
        values = self.headers.get_all("Content-Length") or []
        # "5, 5" and two identical headers are one length (RFC 9110, 8.6); anything else is not.
        lengths = {part.strip() for value in values for part in value.split(",")}
        if not lengths:
            return None
        if len(lengths) != 1:
            raise _BadRequest("Invalid Content-Length")
        length = lengths.pop()
        if not _DECIMAL.fullmatch(length):
            raise _BadRequest("Invalid Content-Length")
        limit = self.server.max_body_size
        digits = length.lstrip("0")
        if len(digits) > _MAX_DIGITS or int(digits or "0") > limit:
            raise _too_large(limit)
        return int(digits or "0")

    def _read_body(self) -> bytes:
        if self._chunked():
            return self._read_chunked()
        size = self._declared_length()
        if not size:
            return b""
        body = self.rfile.read(size)
        if len(body) < size:
            raise _BadRequest("Request body ended early")
        return body

    def _read_chunked(self) -> bytes:
        limit = self.server.max_body_size
        parts: List[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE)
            if not line:
                raise _BadRequest("Request body ended early")
            digits = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(digits):
                raise _BadRequest("Invalid chunk size")
            digits = digits.lstrip(b"0")
            # Refused on the size line, before the chunk is read.
            if len(digits) > _MAX_DIGITS or total + int(digits or b"0", 16) > limit:
                raise _too_large(limit)
            size = int(digits or b"0", 16)
            if size == 0:
                break
            total += size
            part = self.rfile.read(size)
            if len(part) < size:
                raise _BadRequest("Request body ended early")
            parts.append(part)
            self.rfile.readline(_MAX_LINE)  # the CRLF after each chunk
        for _ in range(_MAX_TRAILERS):
            if self.rfile.readline(_MAX_LINE) in (b"\r\n", b"\n", b""):
                return b"".join(parts)  # trailers carry nothing this server needs
        raise _BadRequest("Too many trailer lines")

    def handle_expect_100(self) -> bool:
        # A client that waits for "100 Continue" before sending a body learns at once that
        # the body is refused, and never sends it.
        try:
            self._declared_length()
        except _BadRequest as problem:
            self._refuse(problem)
            return False
        return super().handle_expect_100()

    def _refuse(self, problem: _BadRequest) -> None:
        """Answer a request whose body is not read, then drop what the client still sends."""
        self.close_connection = True
        self._send(reply({"detail": str(problem)}, problem.status, {"Connection": "close"}))
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            while not self.server.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.connection.settimeout(left)
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass  # the client is gone or too slow: nothing more to do for it

    # -- answering -----------------------------------------------------------
    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BadRequest as problem:
            self._refuse(problem)
            return
        request = RecordedRequest(self.command, self.path, self._headers(), body)
        self.server.log.append(request)
        try:
            answer = self.server.dispatcher.handle(request, self.server.base_url)
        except Exception as error:  # noqa: BLE001 - a server bug must reach the test as a 500
            traceback.print_exc()
            answer = reply({"detail": f"WayGPT test server error: {error!r}"}, 500)
        self._send(answer)

    def _send(self, answer: ScriptedResponse) -> None:
        stopping = self.server.stopping
        if answer.delay and stopping.wait(answer.delay):
            self.close_connection = True  # the server is stopping: drop the answer
            return
        if answer.reset:
            self._reset()
            return
        pieces = answer.pieces()
        framing = answer.effective_framing()
        given = {name.lower() for name in answer.headers}
        headers: List[Tuple[str, str]] = []
        content_type = answer.effective_content_type()
        if content_type is not None and "content-type" not in given:
            headers.append(("Content-Type", content_type))
        closes = framing == "close"
        if framing == "length":
            total = sum(len(piece) for piece in pieces)
            declared = total if answer.content_length is None else answer.content_length
            if "content-length" not in given:
                headers.append(("Content-Length", str(declared)))
            # A body shorter (or longer) than announced leaves the stream unusable.
            closes = declared != total
        elif framing == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        headers.extend(answer.headers.items())
        if "x-request-id" not in given:
            headers.append(("x-request-id", _request_id()))
        try:
            self.send_response_only(answer.status)
            if "date" not in given:
                self.send_header("Date", self.date_time_string())
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if framing == "length" and not answer.chunk_delay:
                self.wfile.write(b"".join(pieces))
            elif not self._write_pieces(pieces, framing, answer.chunk_delay, answer.cut is None):
                closes = True
        except OSError:
            closes = True  # the client went away; nothing left to answer on
        if answer.cut == "reset":
            self._wait_until_sent()
            self._reset()
            return
        if closes or answer.close_connection or answer.cut is not None:
            self.close_connection = True

    def _write_pieces(
        self, pieces: List[bytes], framing: str, chunk_delay: float, terminate: bool
    ) -> bool:
        """Write the body piece by piece; False when stopped before the end."""
        for index, piece in enumerate(pieces):
            if index and chunk_delay and self.server.stopping.wait(chunk_delay):
                return False
            if framing == "chunked":
                if piece:  # an empty chunk would end the body early
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
        if framing == "chunked" and terminate:
            self.wfile.write(b"0\r\n\r\n")
        return True

    def _wait_until_sent(self) -> None:
        """Wait (briefly) until the kernel has sent what was written and seen it acknowledged.

        A reset discards whatever is still queued for sending, so the events a test wants
        before a reset could otherwise never reach the client. Linux tells the queue's size;
        elsewhere the reset follows at once.
        """
        outq = getattr(termios, "TIOCOUTQ", None) if termios is not None else None
        if outq is None:
            return
        deadline = time.monotonic() + _SEND_WAIT_SECONDS
        try:
            while time.monotonic() < deadline:
                queued = fcntl.ioctl(self.connection.fileno(), outq, b"\0\0\0\0")
                if struct.unpack("i", queued)[0] == 0:
                    return
                time.sleep(0.001)
        except OSError:
            return

    def _reset(self) -> None:
        """Close the socket so the kernel sends RST instead of FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The socket really closes once rfile releases its reference too.
            self.connection.close()
            self.rfile.close()
        except OSError:
            pass


class HTTPServer(ThreadingHTTPServer):
    """Tracks live connections and handler threads so ``close`` can end them all."""

    daemon_threads = True
    # We join handler threads ourselves, with a deadline, in close().
    block_on_close = False
    # The stdlib backlog of 5 drops SYNs when many clients connect at once,
    # which costs them a one-second retransmit.
    request_queue_size = 128

    def __init__(
        self,
        address: Tuple[str, int],
        *,
        dispatcher: Dispatcher,
        log: RequestLog,
        on_connection: Callable[[], None],
        max_body_size: int,
        clock: ServerClock,
    ) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.max_body_size = max_body_size
        self.log = log
        self.on_connection = on_connection
        self.stopping = threading.Event()
        self.base_url = ""
        self._track_lock = threading.Lock()
        self._live: Set[socket.socket] = set()
        self._workers: Set[threading.Thread] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        host = address[0]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{self.server_port}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which may wait seconds on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def get_request(self) -> Tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # Streaming tests measure per-event latency; Nagle would add up to 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._track_lock:
            self._live.add(sock)
        self.on_connection()
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._work,
            args=(request, client_address),
            name="waygpt-test-connection",
            daemon=True,
        )
        with self._track_lock:
            self._workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._track_lock:
                self._workers.discard(threading.current_thread())

    @property
    def live_connections(self) -> int:
        with self._track_lock:
            return len(self._live)

    def shutdown_request(self, request: Any) -> None:
        with self._track_lock:
            self._live.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer is routine in fault tests, not a failure.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def close(self, timeout: float) -> None:
        """Stop accepting, cut every live connection, and join the handler threads."""
        self.stopping.set()
        self.shutdown()
        self.server_close()
        with self._track_lock:
            live = list(self._live)
            workers = list(self._workers)
        for sock in live:
            try:
                # shutdown() wakes a thread blocked in recv() on a kept-alive socket.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
