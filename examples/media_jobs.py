"""Images and video jobs: generate an image, start a video job and wait for it to finish.

    export WAYGPT_PROJECT_KEY=sk_live_...
    python examples/media_jobs.py "Закат над Невой"

    python examples/media_jobs.py --demo       # local test server, no network

Video generation is asynchronous: ``video_generations`` returns a job id at once, and
``wait_for_media_job`` polls until the job is completed (or raises a typed error when it
fails, is cancelled or takes too long).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

from waygpt import MediaJobFailedError, MediaJobTimeoutError, WayGPTClient


def show(job: Dict[str, Any]) -> None:
    """``on_update`` callback: called whenever the status or progress changes."""
    print(f"  job {job['job_id'][:8]}: {job['status']} {job.get('progress', '')}")


def generate(client: WayGPTClient, prompt: str, poll_interval: float, timeout: float) -> int:
    images = client.image_generations(prompt, size="1024x1024", n=1)
    print("image:", images["data"][0]["url"])

    job = client.video_generations(prompt, duration=5)
    print(f"video job {job['job_id']} started ({job['status']})")
    try:
        done = client.wait_for_media_job(
            job["job_id"], poll_interval=poll_interval, timeout=timeout, on_update=show
        )
    except MediaJobFailedError as exc:  # the job ended failed or cancelled; exc.job has it
        print(f"video failed: {exc}", file=sys.stderr)
        return 1
    except MediaJobTimeoutError as exc:  # still running after `timeout` seconds
        print(f"gave up waiting: {exc}; poll get_media_job() later", file=sys.stderr)
        return 1
    print("video:", (done.get("result") or {}).get("url"))

    # A job can be cancelled while it is pending or processing.
    second = client.video_generations(prompt + " (draft)")
    cancelled = client.cancel_media_job(second["job_id"])
    print(f"second job {cancelled['status']}")
    try:
        client.wait_for_media_job(second["job_id"], poll_interval=poll_interval)
    except MediaJobFailedError as exc:
        print(f"waiting for it raises {type(exc).__name__}: {exc}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Generate an image and a video.")
    parser.add_argument("prompt", nargs="?", default="Закат над Невой, акварель")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at most")
    parser.add_argument(
        "--demo", action="store_true", help="run against a local test server (no network)"
    )
    args = parser.parse_args(argv)
    if args.demo:
        from waygpt.testing import WayGPTTestServer

        # The test server completes a video job after `job_steps` polls.
        with WayGPTTestServer(job_steps=3) as server, WayGPTClient(
            api_url=server.url, project_key=server.project_key
        ) as client:
            return generate(client, args.prompt, poll_interval=0.05, timeout=30)
    if not os.environ.get("WAYGPT_PROJECT_KEY"):
        parser.error("set WAYGPT_PROJECT_KEY (and WAYGPT_API_URL if needed), or use --demo")
    with WayGPTClient() as client:
        return generate(client, args.prompt, args.poll_interval, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
