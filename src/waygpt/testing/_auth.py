"""HMAC request verification, as the WayGPT server performs it.

The canonical string is written out here again on purpose rather than imported from
``waygpt.signing``: the server must check the client against the protocol, not against
the client's own code, or a mistake in the signer would verify itself.
"""

import hashlib
import hmac
import re
from typing import Callable, Dict, Optional

_NONCE = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(r"-?[0-9]+")

MISSING_HEADERS = "Missing HMAC headers (X-MB-Timestamp, X-MB-Nonce, X-MB-Signature)"
BAD_TIMESTAMP = "Invalid HMAC timestamp"
STALE_TIMESTAMP = "HMAC timestamp outside the allowed window"
BAD_NONCE = "Invalid HMAC nonce"
NONCE_REUSED = "HMAC nonce already used"
BAD_SIGNATURE = "Invalid HMAC signature"


def canonical_string(
    method: str, target: str, body: bytes, timestamp: str, nonce: str, project_id: str
) -> str:
    """The text both sides sign (see PROTOCOL.md, "HMAC request signing")."""
    return "\n".join(
        [
            method.upper(),
            target,
            "sha256(body)=" + hashlib.sha256(body).hexdigest(),
            "timestamp=" + timestamp,
            "nonce=" + nonce,
            "project=" + project_id,
        ]
    )


def sign(secret: str, canonical: str) -> str:
    """Lower-case hex HMAC-SHA256 of the canonical string."""
    return hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def wants_hmac(headers: Dict[str, str]) -> bool:
    """A request that carries any X-MB-* header is checked even when not required."""
    return any(name.startswith("x-mb-") for name in headers)


def verify(
    *,
    method: str,
    target: str,
    headers: Dict[str, str],
    body: bytes,
    project_id: str,
    secret: str,
    now: float,
    window: int,
    claim_nonce: Callable[[str], bool],
) -> Optional[str]:
    """Check the HMAC headers of one request; return the 403 detail, or None when valid.

    ``claim_nonce`` records a nonce and says whether it was new; it is called
    only once the signature is valid, so a forged request cannot burn a nonce.
    """
    timestamp = headers.get("x-mb-timestamp")
    nonce = headers.get("x-mb-nonce")
    signature = headers.get("x-mb-signature")
    if not timestamp or not nonce or not signature:
        return MISSING_HEADERS
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        return BAD_TIMESTAMP
    if abs(now - int(timestamp)) > window:
        return STALE_TIMESTAMP
    if not _NONCE.fullmatch(nonce):
        return BAD_NONCE
    expected = sign(secret, canonical_string(method, target, body, timestamp, nonce, project_id))
    # Header values arrive as latin-1 text; compare bytes so odd input cannot raise.
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("latin-1", "replace")):
        return BAD_SIGNATURE
    if not claim_nonce(nonce):
        return NONCE_REUSED
    return None
