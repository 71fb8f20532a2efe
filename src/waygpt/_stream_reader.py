"""The requests transport's stream reader: a streamed body's bytes, as soon as they arrive.

* Every read returns whatever the socket has, never waiting for a fixed-size block to fill,
  so an event is yielded as soon as its blank line arrives, whatever the framing:
  ``http.client``'s ``read1`` on the answer the SDK's own pools made (see
  ``_requests_transport._FinalResponse``), which costs a quarter fewer instructions per event
  than urllib3's ``read1`` over it (docs/performance.md); urllib3's for a caller's session.
* The bytes are returned as received (still compressed, if they are): the chat stream
  decodes them itself, in bounded steps (``_body.ContentDecoder``).
* When the body is fully read (a ``[DONE]`` is normally followed at once by the end of the
  body), the connection goes back to the pool for the next request; a stream left half-read
  closes its connection instead.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Optional

from .errors import TransportFailure
from .retry import OTHER_FAILURE

_STREAM_READ_SIZE = 64 * 1024  # as _body.READ_SIZE
# After [DONE], how long and how much the stream waits for the end of the body so that the
# connection can be reused; past either bound the connection is simply closed.
_STREAM_DRAIN_SECONDS = 0.1
STREAM_DRAIN_BYTES = 64 * 1024


class StreamBodyReader:
    """The byte source of one streamed response; knows how to finish and release it.

    ``read`` raises only ``TransportFailure``: ``to_failure`` turns any library or socket
    exception into one. ``watch`` is the call's ``_CallWatch``: its socket, if still its own.
    """

    def __init__(
        self, raw: Any, watch: Any, to_failure: Callable[[BaseException], TransportFailure]
    ) -> None:
        self._raw = raw
        self._watch = watch
        self._to_failure = to_failure
        self._plain: Any = watch.response  # the http.client answer, read directly
        # Bytes of the body still to come, when a Content-Length says so (http.client ends
        # a short body without a word).
        self._left: Optional[int] = getattr(raw, "length_remaining", None)
        self._ended = False  # read() returned the end of the body
        self._read: Callable[[], bytes]
        if self._plain is not None:
            self._read = self._read_plain
        elif hasattr(raw, "read1"):  # a caller's session (urllib3 2.1+)
            self._read = functools.partial(raw.read1, _STREAM_READ_SIZE, decode_content=False)
        elif hasattr(raw, "stream"):  # a caller's session on urllib3 < 2.1: chunk by chunk
            chunks: Iterator[bytes] = raw.stream(_STREAM_READ_SIZE, decode_content=False)
            self._read = lambda: next(chunks, b"")
        else:  # a caller's adapter that is not urllib3's
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

    def _read_plain(self) -> bytes:
        data: bytes = self._plain.read1(_STREAM_READ_SIZE)
        if self._left is not None:
            if not data and self._left:
                raise TransportFailure(
                    OTHER_FAILURE,
                    "connection closed mid-stream (the body is shorter than its Content-Length)",
                )
            self._left -= len(data)
        return data

    def finished(self) -> None:
        """The body was read to its end: hand the connection back to the pool."""
        if self._plain is not None:
            self._plain.close()  # (its reader, not the socket; urllib3 knows nothing of it)
        release = getattr(self._raw, "release_conn", None)
        if release is not None:
            release()

    def drain(self) -> None:
        """After [DONE]: read the (normally empty) rest of the body, within small bounds.

        When the body ends in time, the connection goes back to the pool; otherwise it is
        left to be closed.
        """
        raw = self._raw
        if not getattr(raw, "chunked", False) and getattr(raw, "length_remaining", None) is None:
            return  # close-delimited: this connection cannot be reused anyway
        if self._plain is not None and self._plain.isclosed():
            self.finished()  # the body has ended already
            return
        sock = self._watch.socket()
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
        """Wake a read blocked in another thread (used by ``ChatStream.close``): the socket
        is shut down, if it is still this call's (see ``_CallWatch.shut``)."""
        self._watch.shut()

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read to its end,
        else closed."""
        if self._ended:
            self.finished()
        self._raw.close()  # after finished() the response no longer holds the connection
        release = getattr(self._raw, "release_conn", None)
        if release is not None:
            release()
