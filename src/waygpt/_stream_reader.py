"""The requests transport's stream reader: a streamed body's bytes, as soon as they arrive.

How the bytes are read matters for both latency and CPU:

* Every read returns whatever the socket has (``read1``), never waiting for a fixed-size block
  to fill, so an event is yielded as soon as its blank line arrives, whatever the framing.
* A chunked body (the usual framing of a stream) is de-chunked here, from the connection's
  buffered reader, in blocks of up to 64 KiB: ``http.client`` would hand over one HTTP chunk,
  that is one event, per call, and that per-call overhead would outweigh the parsing itself.
* The bytes are returned as received (still compressed, if they are): the chat stream
  decodes them itself, in bounded steps (``_body.ContentDecoder``).
* When the body is fully read (a ``[DONE]`` is normally followed at once by the end of the
  body), the connection goes back to the pool for the next request; a stream left half-read
  closes its connection instead.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, List, Optional

import requests

from .errors import TransportFailure
from .retry import OTHER_FAILURE

_STREAM_READ_SIZE = 64 * 1024  # as _body.READ_SIZE
# After [DONE], how long and how much the stream waits for the end of the body so that the
# connection can be reused; past either bound the connection is simply closed.
_STREAM_DRAIN_SECONDS = 0.1
STREAM_DRAIN_BYTES = 64 * 1024


def _cut(message: str) -> TransportFailure:
    return TransportFailure(OTHER_FAILURE, message)


class _ChunkedBody:
    """A chunked HTTP body read straight from the connection's buffered reader.

    ``read()`` returns the data of whatever chunks (or parts of a chunk) the next read of the
    socket delivered, joined, and ``b""`` after the last chunk and its trailers.
    """

    __slots__ = ("_crlf", "_left", "_pending", "_read1", "_trailers", "done")

    def __init__(self, reader: Any) -> None:
        self._read1: Callable[[int], bytes] = reader.read1
        self._pending = b""  # framing bytes not parsed yet (a size line cut by the read)
        self._left = 0  # bytes of the current chunk's data still to come
        self._crlf = False  # the CRLF ending a chunk's data is still to come
        self._trailers = False  # the last chunk was read: trailer lines until a blank one
        self.done = False

    def read(self) -> bytes:
        while not self.done:
            block = self._read1(_STREAM_READ_SIZE)
            if not block:
                raise _cut("connection closed mid-stream (the chunked body was cut off)")
            data = self._parse(block)
            if data:
                return data
        return b""

    def _parse(self, block: bytes) -> bytes:
        if self._pending:
            block = self._pending + block
            self._pending = b""
        out: List[bytes] = []
        pos = 0
        size = len(block)
        left = self._left
        while pos < size:
            if left:  # chunk data
                stop = pos + left
                if stop > size:
                    out.append(block[pos:] if pos else block)
                    left = stop - size
                    break
                out.append(block[pos:stop])
                pos = stop
                left = 0
                self._crlf = True
                continue
            eol = block.find(b"\n", pos)
            if eol < 0:
                if size - pos > 4096:
                    raise _cut("malformed chunked body (a framing line is too long)")
                self._pending = block[pos:]
                break
            line = block[pos:eol]
            pos = eol + 1
            if self._crlf:  # the line ending a chunk's data: must be empty
                self._crlf = False
                if line not in (b"", b"\r"):
                    raise _cut("malformed chunked body (no CRLF after a chunk)")
                continue
            if self._trailers:
                if line in (b"", b"\r"):
                    self.done = True
                    break
                continue
            try:
                left = int(line.split(b";", 1)[0], 16)
            except ValueError:
                left = -1
            if left < 0:
                raise _cut(f"malformed chunked body (chunk size {line[:40]!r})")
            if left == 0:
                self._trailers = True
        self._left = left
        return b"".join(out) if len(out) != 1 else out[0]


def raw_socket(raw: Any) -> Optional[socket.socket]:
    """The socket under a urllib3 response: its connection's, else its reader's."""
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if not isinstance(sock, socket.socket):  # a close-delimited answer owns the socket alone
        reader = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _stream_plain_reader(raw: Any) -> Optional[Any]:
    """The ``http.client`` response under urllib3's, when its body can be read directly.

    Only for a body that nothing has read yet; otherwise None and urllib3 reads.
    """
    fp = getattr(raw, "_fp", None)
    if fp is None or getattr(fp, "fp", None) is None or not hasattr(fp.fp, "read1"):
        return None
    if getattr(fp, "chunked", False) and getattr(fp, "chunk_left", None) is not None:
        return None  # http.client has started on the chunks
    if getattr(raw, "_fp_bytes_read", None):
        return None  # urllib3 has read some of the body
    return fp


class StreamBodyReader:
    """The byte source of one streamed response; knows how to finish and release it.

    ``read`` raises only ``TransportFailure``: ``to_failure`` turns any library or socket
    exception into one.
    """

    def __init__(
        self,
        response: requests.Response,
        to_failure: Callable[[BaseException], TransportFailure],
    ) -> None:
        raw = response.raw
        self._raw = raw
        self._to_failure = to_failure
        try:
            self._fp = _stream_plain_reader(raw)
        except Exception:  # noqa: BLE001 - not urllib3 over http.client: use the generic reads
            self._fp = None
        self._chunked: Optional[_ChunkedBody] = None
        self._ended = False  # read() returned the end of the body
        self._read: Callable[[], bytes]
        if self._fp is not None and getattr(self._fp, "chunked", False) is True:
            self._chunked = _ChunkedBody(self._fp.fp)
            self._read = self._chunked.read
        elif hasattr(raw, "read1"):
            self._read = self._read_urllib3
        elif self._fp is not None:  # urllib3 1.26 has no read1 of its own
            self._read = self._read_http_client
        elif hasattr(raw, "stream"):
            chunks = raw.stream(_STREAM_READ_SIZE, decode_content=False)
            self._read = lambda: next(chunks, b"")
        else:
            self._read = lambda: raw.read(_STREAM_READ_SIZE) or b""

    def read(self) -> bytes:
        """The next bytes of the body as soon as some arrive; b"" at its end."""
        try:
            data = self._read()
            if not data:
                self._ended = True
            return data
        except TransportFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes typed
            failure = self._to_failure(exc)
        raise failure

    def _read_urllib3(self) -> bytes:
        data: bytes = self._raw.read1(_STREAM_READ_SIZE, decode_content=False)
        return data

    def _read_http_client(self) -> bytes:
        assert self._fp is not None
        data: bytes = self._fp.read1(_STREAM_READ_SIZE)
        if not data and self._fp.length:  # http.client reads a short body without a word
            raise _cut("connection closed mid-stream (the body is shorter than its Content-Length)")
        return data

    def finished(self) -> None:
        """The body was read to its end: hand the connection back to the pool."""
        if self._fp is not None:
            # Closing the http.client response closes its reader, not the socket.
            self._fp.close()
        if self._fp is None or self._fp.isclosed():
            release = getattr(self._raw, "release_conn", None)
            if release is not None:
                release()

    def drain(self) -> None:
        """After [DONE]: read the (normally empty) rest of the body, within small bounds.

        When the body ends in time, the connection goes back to the pool; otherwise it is
        left to be closed.
        """
        raw = self._raw
        if self._chunked is None and getattr(raw, "length_remaining", None) is None:
            return  # close-delimited: this connection cannot be reused anyway
        if self._fp is not None and self._fp.isclosed():
            return  # nothing left to read (or to reuse)
        sock = raw_socket(raw)
        if sock is None:
            return
        previous = sock.gettimeout()
        ended = False
        try:
            limit = _STREAM_DRAIN_SECONDS
            sock.settimeout(limit if previous is None else min(previous, limit))
            total = 0
            while total <= STREAM_DRAIN_BYTES:
                data = self._read()
                if not data:
                    ended = True
                    break
                total += len(data)
        except Exception:  # noqa: BLE001, S110 - any trouble here: the connection is closed
            pass
        finally:
            try:
                sock.settimeout(previous)  # before the pool can hand the socket to anyone
            except OSError:
                ended = False
        if ended:
            self.finished()

    def interrupt(self) -> None:
        """Wake a read blocked in another thread (used by ``ChatStream.close``).

        The answer may be closed already (the stream waits to start again, or has just
        ended): urllib3 then raises ValueError or RuntimeError, and there is nothing to wake.
        """
        shutdown = getattr(self._raw, "shutdown", None)  # urllib3 >= 2.3
        try:
            if shutdown is not None:
                shutdown()
                return
            sock = raw_socket(self._raw)
            if sock is not None:
                sock.shutdown(socket.SHUT_RD)
        except Exception:  # noqa: BLE001, S110 - no library exception leaves close()
            pass

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read to its end,
        else closed."""
        if self._ended:
            self.finished()
        self._raw.close()  # after finished() the response no longer holds the connection
        release = getattr(self._raw, "release_conn", None)
        if release is not None:
            release()
