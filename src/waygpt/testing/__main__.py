"""``python -m waygpt.testing``: run the test server in the foreground."""

import argparse
import threading
from typing import List, Optional

from ._server import WayGPTTestServer


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m waygpt.testing", description="Run a local WayGPT test server."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="0 picks a free port (default: %(default)s)"
    )
    parser.add_argument(
        "--require-hmac", action="store_true", help="the default project demands HMAC signatures"
    )
    parser.add_argument(
        "--job-steps", type=int, default=3, help="polls before a video job completes"
    )
    args = parser.parse_args(argv)
    server = WayGPTTestServer(
        host=args.host, port=args.port, require_hmac=args.require_hmac, job_steps=args.job_steps
    )
    with server:
        print(f"WayGPT test server listening on {server.url}")
        print(f"  WAYGPT_API_URL={server.url}")
        print(f"  WAYGPT_PROJECT_KEY={server.project_key}")
        print(f"  WAYGPT_PROJECT_ID={server.project_id}")
        print(f"  WAYGPT_HMAC_SECRET={server.hmac_secret}")
        if args.require_hmac:
            print("  WAYGPT_USE_HMAC=true")
        print(f"  Client API login: {server.user_email} / {server.user_password}")
        print("Press Ctrl+C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
