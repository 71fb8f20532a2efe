"""The HTTP side: a keep-alive threading server that records, dispatches and answers."""

import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ._context import reply
from ._dispatch import Dispatcher
from ._faults import ScriptedResponse
from ._records import RecordedRequest, RequestLog

_MAX_LINE = 65536


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex


class _BadRequest(Exception):
    """The request body cannot be read; the connection is unusable afterwards."""


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

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _BadRequest("Invalid Content-Length") from None
        if size < 0:
            raise _BadRequest("Invalid Content-Length")
        body = self.rfile.read(size)
        if len(body) < size:
            raise _BadRequest("Request body ended early")
        return body

    def _read_chunked(self) -> bytes:
        parts: List[bytes] = []
        while True:
            line = self.rfile.readline(_MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest("Invalid chunk size") from None
            if size == 0:
                break
            part = self.rfile.read(size)
            if len(part) < size:
                raise _BadRequest("Request body ended early")
            parts.append(part)
            self.rfile.readline(_MAX_LINE)  # the CRLF after each chunk
        while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
            pass  # trailers carry nothing this server needs
        return b"".join(parts)

    # -- answering -----------------------------------------------------------
    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BadRequest as problem:
            self.close_connection = True
            self._send(reply({"detail": str(problem)}, 400))
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
            self.send_header("Date", self.date_time_string())
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if framing == "length" and not answer.chunk_delay:
                self.wfile.write(b"".join(pieces))
            elif not self._write_pieces(pieces, framing, answer.chunk_delay):
                closes = True
        except OSError:
            closes = True  # the client went away; nothing left to answer on
        if closes or answer.close_connection:
            self.close_connection = True

    def _write_pieces(self, pieces: List[bytes], framing: str, chunk_delay: float) -> bool:
        """Write the body piece by piece; False when stopped before the end."""
        for index, piece in enumerate(pieces):
            if index and chunk_delay and self.server.stopping.wait(chunk_delay):
                return False
            if framing == "chunked":
                if piece:  # an empty chunk would end the body early
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
        if framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
        return True

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
    ) -> None:
        self.dispatcher = dispatcher
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
