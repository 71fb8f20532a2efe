"""HMAC request signing: every project-key request carries X-MB-Timestamp, X-MB-Nonce and
X-MB-Signature, computed over the exact bytes sent (Russian text included).

    export WAYGPT_PROJECT_KEY=sk_live_...
    export WAYGPT_PROJECT_ID=<project uuid>
    export WAYGPT_HMAC_SECRET=<the project's HMAC secret>
    python examples/hmac_signing.py

    python examples/hmac_signing.py --demo     # a local server that requires signatures

The demo also shows what the server sees, that a retried request is signed afresh (new
nonce), and the 403 an unsigned client gets from a project that requires signatures.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import sys
from typing import List, Optional

from waygpt import PermissionDeniedError, WayGPTClient


def chat(client: WayGPTClient) -> None:
    reply = client.chat_completions(messages=[{"role": "user", "content": "Привет, мир! ✓"}])
    print("signed chat ok:", reply["choices"][0]["message"]["content"])
    print("use cases:", [uc["key"] for uc in client.get_use_cases(detailed=True)])


def canonical(method: str, path: str, body: bytes, ts: str, nonce: str, project: str) -> str:
    """The string that is signed, written out by hand to show there is no magic in it."""
    return "\n".join(
        [
            method.upper(),
            path,  # the path as sent, with its query string
            "sha256(body)=" + hashlib.sha256(body).hexdigest(),
            "timestamp=" + ts,
            "nonce=" + nonce,
            "project=" + project,
        ]
    )


def demo() -> None:
    from urllib3.util.retry import Retry

    from waygpt.testing import WayGPTTestServer

    with WayGPTTestServer(require_hmac=True) as server:
        with WayGPTClient(
            api_url=server.url,
            project_key=server.project_key,
            project_id=server.project_id,
            hmac_secret=server.hmac_secret,
            use_hmac=True,
        ) as client:
            chat(client)

            # What went over the wire, and the same signature recomputed from it.
            sent = server.requests[0]
            headers = sent.headers
            print("X-MB-Timestamp:", headers["x-mb-timestamp"])
            print("X-MB-Nonce:    ", headers["x-mb-nonce"])
            print("X-MB-Signature:", headers["x-mb-signature"])
            text = canonical(
                sent.method, sent.path, sent.body,
                headers["x-mb-timestamp"], headers["x-mb-nonce"], server.project_id,
            )
            expected = hmac.new(
                server.hmac_secret.encode(), text.encode(), hashlib.sha256
            ).hexdigest()
            print("recomputed signature matches:", expected == headers["x-mb-signature"])

            # A 503 followed by a retry: the second attempt has a new nonce, so the server,
            # which refuses a nonce it has seen, accepts it.
            server.clear_requests()
            server.script(status=503, body={"detail": "busy"}, path="/api/v1/waygpt/models")
            no_wait = Retry(total=2, backoff_factor=0, status_forcelist=[503])
            client.with_options(max_retries=no_wait).get_models()
            nonces = [r.headers["x-mb-nonce"] for r in server.requests]
            print(f"attempts: {len(nonces)}, distinct nonces: {len(set(nonces))}")

        # The same project without signing: the server answers 403.
        with WayGPTClient(api_url=server.url, project_key=server.project_key) as unsigned:
            try:
                unsigned.get_models()
            except PermissionDeniedError as exc:
                print(f"unsigned request refused: {type(exc).__name__} {exc}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Sign requests with the project's HMAC secret.")
    parser.add_argument(
        "--demo", action="store_true", help="run against a local test server (no network)"
    )
    args = parser.parse_args(argv)
    if args.demo:
        demo()
        return 0
    missing = [
        name
        for name in ("WAYGPT_PROJECT_KEY", "WAYGPT_PROJECT_ID", "WAYGPT_HMAC_SECRET")
        if not os.environ.get(name)
    ]
    if missing:
        parser.error(f"set {', '.join(missing)}, or use --demo")
    # use_hmac=True here; WAYGPT_USE_HMAC=true would do the same without code.
    with WayGPTClient(use_hmac=True) as client:
        chat(client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
