"""HMAC-SHA256 request signing for project-key endpoints: the exact bytes that go on the wire
(the body serialised, the URL quoted), with a fresh timestamp and nonce for each attempt."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Callable, Mapping, Optional

from requests import PreparedRequest
from requests.auth import AuthBase

from .errors import parse_http_date

__all__ = ["CLOCK_SKEW_TOLERANCE", "HMACSigner", "canonical_string", "compute_signature"]


def canonical_string(
    method: str, path: str, body: bytes, timestamp: str, nonce: str, project_id: str
) -> str:
    """The string that is signed: method, path with query, body hash, timestamp, nonce, project."""
    return "\n".join((
        method.upper(), path, "sha256(body)=" + hashlib.sha256(body).hexdigest(),
        "timestamp=" + timestamp, "nonce=" + nonce, "project=" + project_id,
    ))


def compute_signature(secret: str, canonical: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``canonical`` keyed with ``secret`` (both UTF-8)."""
    return hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()


# A refused signature whose server clock (its Date header) is further than this from the
# timestamp that was signed is taken for a skewed clock: the server allows 300 s, and the
# Date header, to the second, and the network's delay are well within a minute.
CLOCK_SKEW_TOLERANCE = 60.0


class HMACSigner(AuthBase):
    """Adds ``X-MB-Timestamp``, ``X-MB-Nonce`` and ``X-MB-Signature`` to a prepared request.

    ``offset`` is how many seconds the server's clock is ahead of this machine's, as learned
    by :meth:`correct_clock` (0 until then); every timestamp is signed with it. The secret is
    kept out of ``repr``. ``clock`` and ``nonce_factory`` exist for tests.
    """

    def __init__(
        self, project_id: str, secret: str, *, clock: Callable[[], float] = time.time,
        nonce_factory: Optional[Callable[[], str]] = None,
    ) -> None:
        if not project_id or not secret:
            raise ValueError("HMAC signing needs both project_id and hmac_secret")
        self.project_id = project_id
        self._secret = secret
        self._clock = clock
        self._nonce_factory = nonce_factory or (lambda: secrets.token_hex(16))
        # One float, written whole: threads and tasks that learn it at once agree on it.
        self.offset = 0.0

    def __repr__(self) -> str:
        return f"HMACSigner(project_id={self.project_id!r}, secret=<hidden>)"

    def sign(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The three signature headers for one attempt."""
        timestamp = str(int(self._clock() + self.offset))
        nonce = self._nonce_factory()
        canonical = canonical_string(method, path, body, timestamp, nonce, self.project_id)
        signature = compute_signature(self._secret, canonical)
        return {"X-MB-Timestamp": timestamp, "X-MB-Nonce": nonce, "X-MB-Signature": signature}

    def correct_clock(self, date: Optional[str], signed: Mapping[str, str]) -> Optional[float]:
        """Learn the server's clock from the ``Date`` of a refused request signed with ``signed``.

        Returns the new offset when the server's clock was more than ``CLOCK_SKEW_TOLERANCE``
        from the timestamp signed (not from now: another thread may have learned it meanwhile);
        None, changing nothing, when they agree or the date cannot be read.
        """
        server = parse_http_date(date)
        try:
            sent = float(signed["X-MB-Timestamp"])
        except (KeyError, ValueError):
            return None
        if server is None or abs(server - sent) <= CLOCK_SKEW_TOLERANCE:
            return None
        self.offset = server - self._clock()
        return self.offset

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        body = r.body.encode("utf-8") if isinstance(r.body, str) else r.body or b""
        if not isinstance(body, (bytes, bytearray)):  # a generator or file: hashing consumes it
            raise TypeError("HMAC signing needs the request body as bytes")
        r.headers.update(self.sign(r.method or "GET", r.path_url, bytes(body)))
        return r
