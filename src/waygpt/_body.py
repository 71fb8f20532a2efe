"""Response bodies: content decoding with bounded output, and the size caps.

The SDK decodes ``Content-Encoding`` itself, not urllib3 or aiohttp: every decompression
step is bounded (a 1 MB gzip body can expand to 1 GB, which the libraries' decoders, in some
versions, expand at once), and both clients accept and refuse exactly the same bodies.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Optional

from .errors import APIConnectionError, APIResponseValidationError

# A decoded success body larger than this is refused: far above any real answer (a long
# chat completion is a few hundred KiB), far below what exhausts memory.
SUCCESS_BODY_LIMIT = 64 * 1024 * 1024
# Bytes asked of the transport per read, and the most one decoding step may produce.
READ_SIZE = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # what the SDK asks for: what it can decode
_MAX_ENCODINGS = 3  # "gzip, gzip" is legal; a long chain is only a way to multiply work


class _Inflater:
    """One ``gzip`` or ``deflate`` layer, decoded in bounded steps."""

    __slots__ = ("_gzip", "_obj", "_pending", "_started", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._gzip = name in ("gzip", "x-gzip")
        # gzip: the gzip wrapper; deflate: the zlib wrapper, or raw deflate (see pull).
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        self._pending = b""  # input not yet decompressed (its output was over the step size)
        self._started = False

    def push(self, data: bytes) -> None:
        self._pending = self._pending + data if self._pending else data

    def pull(self, size: int) -> bytes:
        """Up to ``size`` decoded bytes of what was pushed; b"" when it needs more input."""
        out = b""
        while self._pending and not out:
            data, self._pending = self._pending, b""
            try:
                out = self._obj.decompress(data, size)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                # Some servers send raw deflate data under "deflate": start again as raw.
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                out = self._obj.decompress(data, size)
            self._started = True
            self._pending = self._obj.unconsumed_tail
            if self._obj.eof and self._obj.unused_data:
                if not self._gzip:
                    raise zlib.error("data after the end of the deflate stream")
                # A gzip body may hold several members, one after the other.
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._pending = rest + self._pending
        return out

    def finish(self) -> None:
        """The input ended: it must have ended with the compressed stream."""
        if self._started and not self._obj.eof:
            raise zlib.error("the compressed data ends before its end marker")


class ContentDecoder:
    """Decode a body's ``Content-Encoding`` in steps of bounded size.

    ``push`` the bytes as received, then ``pull`` decoded bytes until it returns b"".
    Raises ``APIResponseValidationError`` for an encoding it cannot decode or corrupt data.
    """

    __slots__ = ("_layers", "_status")

    def __init__(self, header: Optional[str], status: int) -> None:
        self._status = status
        names = [part.strip().lower() for part in (header or "").split(",")]
        names = [name for name in names if name and name != "identity"]
        if len(names) > _MAX_ENCODINGS or not {"gzip", "x-gzip", "deflate"}.issuperset(names):
            raise APIResponseValidationError(
                f"the response body could not be decoded: unsupported Content-Encoding {header!r}",
                status,
            )
        # Encodings are listed in the order they were applied: undo them from the last.
        self._layers = [_Inflater(name) for name in reversed(names)]

    @property
    def identity(self) -> bool:
        """No encoding to undo ("identity"): the body is read as it is, without a decoder."""
        return not self._layers

    def push(self, data: bytes) -> None:
        self._layers[0].push(data)

    def pull(self, size: int = READ_SIZE) -> bytes:
        try:
            return self._pull(len(self._layers) - 1, size)
        except zlib.error as exc:
            reason = str(exc)
        raise self._corrupt(reason)

    def _pull(self, index: int, size: int) -> bytes:
        layer = self._layers[index]
        while True:
            out = layer.pull(size)
            if out or index == 0:
                return out
            more = self._pull(index - 1, size)  # feed this layer from the one before it
            if not more:
                return b""
            layer.push(more)

    def finish(self) -> None:
        """The body ended: every layer must be complete."""
        try:
            for layer in self._layers:
                layer.finish()
            return
        except zlib.error as exc:
            reason = str(exc)
        raise self._corrupt(reason)

    def _corrupt(self, reason: str) -> APIResponseValidationError:
        names = ", ".join(layer.name for layer in reversed(self._layers))
        return APIResponseValidationError(
            f"the response body could not be decoded ({names}): {reason}", self._status
        )


def expected_length(headers: Mapping[str, str]) -> Optional[int]:
    """The body length a ``Content-Length`` promises, when it governs the framing (chunked
    framing wins over it)."""
    value = headers.get("content-length")
    if value is None or headers.get("transfer-encoding"):
        return None
    try:
        length = int(value.split(",")[0].strip())
    except ValueError:
        return None
    return length if length >= 0 else None


class BodyCollector:
    """Gathers a whole body as it arrives: decoded, capped, checked against its length.

    ``feed`` each raw chunk, then ``finish()`` at the end of the body for the decoded bytes.
    """

    __slots__ = ("_buffer", "_decoder", "_discard", "_expected", "_limit", "_received",
                 "_status", "lenient")

    def __init__(
        self, status: int, headers: Mapping[str, str], limit: int, *, lenient: bool = False
    ) -> None:
        self._status = status
        self._limit = limit
        # An error body is read "leniently": what arrived is kept, past the limit it is cut,
        # and a decoding failure leaves it empty; the status says what went wrong.
        self.lenient = lenient
        self._buffer = bytearray()
        self._received = 0
        self._expected = expected_length(headers)
        self._discard = False  # an error body in an encoding we cannot read: keep nothing
        self._decoder: Optional[ContentDecoder] = None  # None: the body is not encoded
        encoding = headers.get("content-encoding")
        if encoding:
            try:
                decoder = ContentDecoder(encoding, status)
                self._decoder = None if decoder.identity else decoder
            except APIResponseValidationError:
                if not lenient:
                    raise
                self._discard = True

    @property
    def full(self) -> bool:
        """True once the cap is reached: a lenient reader stops reading here."""
        return len(self._buffer) >= self._limit

    @property
    def short(self) -> bool:
        """True while fewer bytes arrived than the ``Content-Length`` promised."""
        return self._expected is not None and self._received < self._expected

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._discard:
            return
        decoder = self._decoder
        if decoder is None:
            self._append(chunk)
            return
        decoder.push(chunk)
        try:
            while not (self.lenient and self.full):
                out = decoder.pull()
                if not out:
                    break
                self._append(out)
        except APIResponseValidationError:
            if not self.lenient:
                raise
            self._discard = True

    def _append(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._limit:
            if not self.lenient:
                raise APIResponseValidationError(
                    f"the response body is larger than {self._limit // (1024 * 1024)} MiB "
                    "once decoded: refused",
                    self._status,
                )
            del self._buffer[self._limit :]

    def finish(self) -> bytes:
        """The decoded body; raises when it is shorter than promised or truncated."""
        if not self.lenient:
            if self.short:
                raise APIConnectionError(
                    "connection closed before the whole body arrived "
                    f"({self._received} of {self._expected} bytes)"
                )
            if self._decoder is not None:
                self._decoder.finish()
        return bytes(self._buffer)
